//! One handler instance: the `Store` of one connection and the calls into it.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::HandlerModule;
use super::PackedRequest;
use super::bindings::{
    CloseInfo, Message, MessageBatch, OpenInfo, UpgradeDecision, UpgradeRequest,
};
use super::clocks::{CoarseMonotonicClock, CoarseWallClock};
use super::contract::Exports;
use super::cpu_allowance::CpuAllowance;
use super::cpu_time::CpuMeter;
use super::effects::Effect;
use super::guest_log::{GuestLog, GuestStream};
use super::limits::InstanceLimits;
use super::log_budget::{LogBudget, cut};
use super::memory_budget::{InstanceLimiter, MemoryBudgetSpent};
use super::turns::Turns;

/// Why a call into a handler failed. After any of these the instance is dead.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The handler trapped: a panic, an out-of-bounds access, `unreachable`,
    /// or a memory limit hit.
    #[error("handler trapped: {0}")]
    Trap(String),
    /// The handler ran past its CPU time for one event.
    #[error("handler exceeded its CPU time of {0:?} for one call")]
    Deadline(std::time::Duration),
    /// The call took longer than its wall-clock bound (blocked in a WASI
    /// wait, or starved of CPU); it was cancelled.
    #[error("handler call did not return within its wall-clock time of {0:?}; cancelled")]
    WallTime(std::time::Duration),
    /// The peer went away while the call was running (the socket reached
    /// EOF or failed); the call was cancelled.
    #[error("the peer went away during the handler call; cancelled")]
    PeerGone,
    /// An earlier call failed, so the instance can no longer be entered.
    #[error("handler instance is dead after an earlier failure")]
    Dead,
    /// The process's memory budget for handlers has no room for the
    /// instance (`runtime.max_memory_total`).
    #[error("could not instantiate handler: {0}")]
    MemoryBudget(MemoryBudgetSpent),
    /// The instance could not be created (pool exhausted, start trap).
    #[error("could not instantiate handler: {0}")]
    Instantiate(String),
}

/// The host side of one instance: what the host imports act on.
pub struct HostState {
    /// Made by the guest's first WASI call (most handlers make none after
    /// instantiation): about ten allocations and two random generators'
    /// seeding that an instance would otherwise pay for nothing.
    wasi: Option<Box<WasiCtx>>,
    wasi_setup: WasiSetup,
    table: ResourceTable,
    limiter: InstanceLimiter,
    /// The CPU time the current call may use, and what it used so far.
    cpu_budget: std::time::Duration,
    cpu: CpuMeter,
    /// The connection's CPU time per second, across its calls.
    allowance: CpuAllowance,
    /// This instance's turns to run among its route's calls, made at its
    /// first tick (most instances never reach one).
    turns: Option<Arc<Turns>>,
    /// The route's and the tenant's semaphores those turns come from.
    route_turns: Arc<tokio::sync::Semaphore>,
    tenant_turns: Option<Arc<tokio::sync::Semaphore>>,
    /// The current call reached an epoch tick (and so may hold a turn).
    ticked: bool,
    /// The connection this instance serves.
    pub(crate) conn: ConnState,
    /// How much more the handler may log.
    pub(crate) log_budget: Arc<LogBudget>,
}

/// The connection as the host imports see it during one call.
pub(crate) struct ConnState {
    pub id: u64,
    /// Whether the handler may write: the connection is open and the
    /// handler has not closed it. Set by the connection task before each
    /// call; the handler's `close` clears it.
    pub open: bool,
    /// Bytes waiting for the socket as far as this call knows: the task's
    /// queue when the call began plus what the call queued since.
    pub queued: usize,
    /// The handler tried to queue more than `max_pending_output`: its
    /// writes fail from then on and the connection must be closed.
    pub output_overflow: bool,
    pub max_pending_output: usize,
    /// What the handler asked for, not yet applied.
    pub effects: Vec<Effect>,
    /// The request the connection was opened with, kept (packed) after
    /// `upgrade` for `connection.request` (0.2) or `on-open` (0.1).
    pub request: Option<PackedRequest>,
    /// The connection's way to the pub/sub hub, once it is accepted
    /// (`None` during `upgrade`).
    pub pubsub: Option<Arc<dyn crate::pubsub::PubsubPort>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let setup = &self.wasi_setup;
        let connection_id = self.conn.id;
        let log_budget = &self.log_budget;
        WasiCtxView {
            ctx: self
                .wasi
                .get_or_insert_with(|| Box::new(setup.build(connection_id, log_budget))),
            table: &mut self.table,
        }
    }
}

/// What an instance's WASI context is made of. No WASI capability is
/// granted: no files, no sockets, no environment; stdout and stderr go to
/// the log.
struct WasiSetup {
    clock_resolution: std::time::Duration,
    /// The monotonic clock counts from the instance's creation.
    start: std::time::Instant,
}

impl WasiSetup {
    fn build(&self, connection_id: u64, log_budget: &Arc<LogBudget>) -> WasiCtx {
        WasiCtx::builder()
            .stdout(GuestLog {
                connection_id,
                stream: GuestStream::Stdout,
                budget: Arc::clone(log_budget),
            })
            .stderr(GuestLog {
                connection_id,
                stream: GuestStream::Stderr,
                budget: Arc::clone(log_budget),
            })
            .wall_clock(CoarseWallClock {
                resolution: self.clock_resolution,
            })
            .monotonic_clock(CoarseMonotonicClock {
                resolution: self.clock_resolution,
                start: self.start,
            })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build()
    }
}

/// What a hibernated connection keeps of its instance's host state for the
/// next one.
pub struct Resumable {
    /// The request the connection was opened with (`connection.request`).
    pub request: Option<PackedRequest>,
    /// Its way to the pub/sub hub.
    pub pubsub: Option<Arc<dyn crate::pubsub::PubsubPort>>,
}

/// A live handler instance bound to one connection.
pub struct HandlerInstance {
    store: Store<HostState>,
    exports: Exports,
    limits: InstanceLimits,
    dead: bool,
    /// The last call waited for a CPU allowance (for the metrics).
    throttled: bool,
    /// The CPU time the last call was charged (for the metrics).
    last_cpu: std::time::Duration,
}

impl HandlerModule {
    /// Creates the instance for a new connection. No WASI capability is
    /// granted (see `WasiSetup`).
    pub async fn instantiate(
        &self,
        limits: &InstanceLimits,
        connection_id: u64,
    ) -> Result<HandlerInstance, CallError> {
        let log_budget = Arc::new(LogBudget::new(
            limits.log_lines_per_second,
            limits.log_bytes_per_second,
            limits.tenant.log.clone(),
        ));
        let wasi_setup = WasiSetup {
            clock_resolution: limits.effective_clock_resolution(),
            start: std::time::Instant::now(),
        };
        let state = HostState {
            wasi: None,
            wasi_setup,
            table: ResourceTable::new(),
            limiter: InstanceLimiter::new(
                StoreLimitsBuilder::new()
                    .memory_size(limits.memory_limit)
                    .instances(self.per_component.core_instances as usize)
                    .tables(self.per_component.tables as usize)
                    .memories(self.per_component.memories as usize)
                    .trap_on_grow_failure(true)
                    .build(),
                Arc::clone(&self.memory_budget),
                limits.tenant.memory.clone(),
            ),
            cpu_budget: limits.cpu_time_per_event,
            cpu: CpuMeter::new(self.epoch_tick),
            allowance: CpuAllowance::new(
                limits.cpu_time_per_second,
                limits.cpu_time_per_event,
                std::time::Instant::now(),
            ),
            turns: None,
            route_turns: Arc::clone(&limits.turns),
            tenant_turns: limits.tenant.turns.clone(),
            ticked: false,
            log_budget,
            conn: ConnState {
                id: connection_id,
                open: false,
                queued: 0,
                output_overflow: false,
                max_pending_output: limits.max_pending_output,
                effects: Vec::new(),
                request: None,
                pubsub: None,
            },
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Each epoch tick the guest's CPU time is checked: over its budget
        // it is stopped; otherwise it yields to tokio, so a busy guest
        // shares its worker.
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.ticked = true;
            if state.cpu.charge() >= state.cpu_budget {
                return Err(Trap::Interrupt.into());
            }
            let restart = state.cpu.restarter();
            let route = Arc::clone(&state.route_turns);
            let tenant = state.tenant_turns.clone();
            let turns = Arc::clone(
                state
                    .turns
                    .get_or_insert_with(|| Arc::new(Turns::new(route, tenant))),
            );
            // The call gives any turn it holds to the next long call of its
            // route, yields to tokio (whose `yield_now` lets the I/O driver
            // run first; a plain self-wake would let a looping guest starve
            // socket readiness for up to 61 scheduler ticks), then waits for
            // a turn to run on with.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    turns.pass().await;
                    // The guest resumes right after this, on this thread.
                    restart();
                }),
            ))
        });
        store.set_epoch_deadline(1);
        let instance = self.pre.instantiate_async(&mut store).await.map_err(|e| {
            match e.downcast_ref::<MemoryBudgetSpent>() {
                Some(spent) => CallError::MemoryBudget(spent.clone()),
                None => CallError::Instantiate(format!("{e:#}")),
            }
        })?;
        let exports = self
            .contract
            .load(&mut store, &instance)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(HandlerInstance {
            store,
            exports,
            limits: limits.clone(),
            dead: false,
            throttled: false,
            last_cpu: std::time::Duration::ZERO,
        })
    }
}

/// Waits out a CPU-time debt, if any (`who`: the handler's own allowance,
/// or its route's). Returns whether it waited.
async fn throttle(wait: Option<std::time::Duration>, who: &str) -> bool {
    let Some(wait) = wait else {
        return false;
    };
    tracing::debug!(
        wait_ms = wait.as_millis() as u64,
        "{who} over its CPU time per second; its next call waits"
    );
    tokio::time::sleep(wait).await;
    true
}

impl HandlerInstance {
    /// What the last call cost: the CPU time it was charged (its wall
    /// time when shorter than an epoch tick), and whether it waited for a
    /// CPU allowance first (reading clears both).
    pub fn take_call_stats(&mut self) -> (std::time::Duration, bool) {
        (
            std::mem::take(&mut self.last_cpu),
            std::mem::take(&mut self.throttled),
        )
    }

    /// Host state of this instance.
    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    /// Whether an earlier call failed, so no further calls will be made.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Tells the instance the state of its connection before a call:
    /// whether the handler may write (`open`), and how many bytes already
    /// wait for the socket (`queued`), which count against its output cap.
    pub fn set_connection(&mut self, open: bool, queued: usize) {
        let conn = &mut self.store.data_mut().conn;
        conn.open = open;
        conn.queued = queued;
    }

    /// Gives the handler its connection's way to the pub/sub hub.
    pub fn set_pubsub(&mut self, handle: Arc<dyn crate::pubsub::PubsubPort>) {
        self.store.data_mut().conn.pubsub = Some(handle);
    }

    /// Hands over the effects the handler recorded since the last call, in
    /// order, by swapping them into `into` (which must be empty): the
    /// caller keeps one buffer for many instances, and an idle instance
    /// keeps none.
    pub fn take_effects(&mut self, into: &mut Vec<Effect>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.store.data_mut().conn.effects, into);
    }

    /// Guest log lines dropped over the rate limit and not yet reported.
    pub fn log_lines_dropped(&self) -> u64 {
        self.store.data().log_budget.take_dropped()
    }

    /// Whether the handler tried to queue more output than it may.
    pub fn output_overflowed(&self) -> bool {
        self.store.data().conn.output_overflow
    }

    /// Calls the handler's `upgrade` export. The instance keeps the
    /// request for the connection's later events.
    pub async fn upgrade(&mut self, request: UpgradeRequest) -> Result<UpgradeDecision, CallError> {
        self.begin_call().await?;
        let call = self.exports.upgrade(&mut self.store, request);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Calls `on-open`.
    pub async fn on_open(&mut self, info: &OpenInfo) -> Result<(), CallError> {
        self.begin_call().await?;
        let call = self.exports.on_open(&mut self.store, info);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Calls `on-message`.
    pub async fn on_message(&mut self, message: Message) -> Result<(), CallError> {
        self.begin_call().await?;
        let call = self.exports.on_message(&mut self.store, message);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Hands over one or more messages: in one `on-messages` call when the
    /// handler exports the batch interface, which gets the CPU time of one
    /// event whatever the batch holds (the client, which picks the batch
    /// size by how it writes, cannot pick the budget); otherwise one
    /// `on-message` call, with its own budget, per message, until the
    /// handler closes. The batch's buffers may be taken.
    pub async fn on_messages(&mut self, batch: &mut MessageBatch) -> Result<(), CallError> {
        if !self.exports.takes_batches() {
            let mut offset = 0;
            for span in &batch.spans {
                let end = offset + span.len as usize;
                let bytes = batch.data.get(offset..end).unwrap_or_default();
                offset = end;
                let message = match span.kind {
                    super::MessageKind::Text => {
                        Message::Text(String::from_utf8_lossy(bytes).into_owned())
                    }
                    super::MessageKind::Binary => Message::Binary(bytes.to_vec()),
                };
                self.on_message(message).await?;
                if !self.store.data().conn.open {
                    // The handler closed: the host drops what follows.
                    break;
                }
            }
            return Ok(());
        }
        self.begin_call().await?;
        let call = self.exports.on_messages(&mut self.store, batch);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Whether the handler exports `hibernation`: only such a handler is
    /// ever hibernated.
    pub fn hibernates(&self) -> bool {
        self.exports.hibernates()
    }

    /// Calls `on-hibernate`: the attachment to keep, or `None` when the
    /// handler stays awake.
    pub async fn on_hibernate(
        &mut self,
        max_attachment: u32,
    ) -> Result<Option<Vec<u8>>, CallError> {
        self.begin_call().await?;
        let call = self.exports.on_hibernate(&mut self.store, max_attachment);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Calls `on-hibernate-error`: the attachment was `size` bytes, over
    /// the limit.
    pub async fn on_attachment_too_large(&mut self, size: usize) -> Result<(), CallError> {
        self.begin_call().await?;
        let error = super::bindings::hibernation::HibernateError::AttachmentTooLarge(
            u32::try_from(size).unwrap_or(u32::MAX),
        );
        let call = self.exports.on_hibernate_error(&mut self.store, error);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Calls `on-wake` with the attachment of the instance that hibernated.
    pub async fn on_wake(&mut self, attachment: &[u8]) -> Result<(), CallError> {
        self.begin_call().await?;
        let call = self.exports.on_wake(&mut self.store, attachment);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Takes what the connection's next instance needs from this one (the
    /// request it was opened with, its way to the pub/sub hub) before this
    /// one is dropped for hibernation.
    pub fn take_resumable(&mut self) -> Resumable {
        let conn = &mut self.store.data_mut().conn;
        Resumable {
            request: conn.request.take(),
            pubsub: conn.pubsub.take(),
        }
    }

    /// Gives a fresh instance what its hibernated predecessor kept.
    pub fn resume(&mut self, resumable: Resumable) {
        let conn = &mut self.store.data_mut().conn;
        conn.request = resumable.request;
        conn.pubsub = resumable.pubsub;
    }

    /// Calls `on-ping`.
    pub async fn on_ping(&mut self, data: &[u8]) -> Result<(), CallError> {
        self.begin_call().await?;
        let call = self.exports.on_ping_or_pong(&mut self.store, false, data);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Calls `on-pong`.
    pub async fn on_pong(&mut self, data: &[u8]) -> Result<(), CallError> {
        self.begin_call().await?;
        let call = self.exports.on_ping_or_pong(&mut self.store, true, data);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    /// Calls `on-close`.
    pub async fn on_close(&mut self, info: &CloseInfo) -> Result<(), CallError> {
        self.begin_call().await?;
        let call = self.exports.on_close(&mut self.store, info);
        let r = within(self.limits.wall_time_per_call, call).await;
        self.end_call(r)
    }

    async fn begin_call(&mut self) -> Result<(), CallError> {
        if self.dead {
            return Err(CallError::Dead);
        }
        let now = std::time::Instant::now();
        let own = self.store.data_mut().allowance.wait(now);
        self.throttled = throttle(own, "handler").await;
        let route = self
            .limits
            .route_cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait(now);
        self.throttled |= throttle(route, "route").await;
        self.store.data_mut().cpu.start();
        self.store.set_epoch_deadline(1);
        Ok(())
    }

    fn end_call<T>(
        &mut self,
        result: Result<wasmtime::Result<T>, WallTimeOver>,
    ) -> Result<T, CallError> {
        let state = self.store.data_mut();
        let used = state.cpu.finish();
        self.last_cpu = used;
        let now = std::time::Instant::now();
        state.allowance.charge(used, now);
        self.limits
            .route_cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .charge(used, now);
        if std::mem::take(&mut self.store.data_mut().ticked)
            && let Some(turns) = &self.store.data().turns
        {
            turns.end();
        }
        let Ok(result) = result else {
            // The call's future was dropped mid-call: the instance cannot
            // be entered again.
            self.dead = true;
            return Err(CallError::WallTime(self.limits.wall_time_per_call));
        };
        result.map_err(|e| {
            self.dead = true;
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => CallError::Deadline(self.limits.cpu_time_per_event),
                _ => CallError::Trap(cut(&format!("{e:#}"), MAX_TRAP_REPORT).into_owned()),
            }
        })
    }
}

/// The longest trap report kept (a wasm backtrace can run to kilobytes, and
/// a client can make a handler trap on every connection).
const MAX_TRAP_REPORT: usize = 1024;

/// A call ran past its wall-clock bound.
#[derive(Debug)]
pub struct WallTimeOver;

/// Runs `call` within `limit` of wall time. Unlike `tokio::time::timeout`,
/// no timer is made for a call that completes when first polled (nearly
/// every call: only a call that yields or waits needs one).
async fn within<F: std::future::Future>(
    limit: std::time::Duration,
    call: F,
) -> Result<F::Output, WallTimeOver> {
    use std::task::Poll;
    let started = tokio::time::Instant::now();
    let mut call = std::pin::pin!(call);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = call.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let timer =
            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(WallTimeOver)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
