//! Hibernation: what a connection keeps while it has no instance, and how
//! it gets a fresh one (of its route's version in force now) when it wakes.
//!
//! The connection task owns the lifecycle (see `connection.rs`): after the
//! route's `hibernate_after` without messages it asks a handler that exports
//! `hibernation` for its attachment, drops the instance (its pool slot and
//! memory go back at once) and keeps a [`Sleeping`]; the next message, or
//! the close, wakes it through its [`WakeSource`].

use std::sync::Arc;

use super::Shared;
use super::routes::ServedModule;
use crate::config::Hibernation;
use crate::metrics::{ModuleLabels, ModuleMetrics};
use wsbox_runtime::{CallError, HandlerInstance, PackedRequest, Resumable};

/// What a hibernated connection keeps of its handler: the attachment and
/// the host state a fresh instance needs.
pub(super) struct Sleeping {
    /// What `on-hibernate` returned; `on-wake` gets it.
    pub attachment: Box<[u8]>,
    /// The request the connection was opened with, packed. (The pub/sub
    /// handle is not kept: the wake makes a new one.)
    pub request: Option<PackedRequest>,
}

impl Sleeping {
    pub(super) fn new(attachment: Box<[u8]>, resumable: Resumable) -> Sleeping {
        Sleeping {
            attachment,
            request: resumable.request,
        }
    }

    /// What a fresh instance takes over, with its new pub/sub handle.
    pub(super) fn take_resumable(
        &mut self,
        pubsub: std::sync::Arc<dyn wsbox_runtime::pubsub::PubsubPort>,
    ) -> Resumable {
        Resumable {
            request: self.request.take(),
            pubsub: Some(pubsub),
        }
    }
}

/// A hibernating route as its connections know it: shared by all of them
/// (one copy per route, not per connection).
pub struct WakeRoute {
    /// The route, found again by pattern and tenant in the table in force
    /// at wake time (a deploy may have replaced it).
    pub pattern: String,
    pub tenant: String,
    /// The route's hibernation settings.
    pub config: Hibernation,
}

/// How a connection of a hibernating route makes its next instance.
pub struct WakeSource {
    shared: Arc<Shared>,
    /// The route when the connection opened.
    route: Arc<WakeRoute>,
    /// The connection's version pin and its rollout roll, so that it wakes
    /// into the same side of a canary rollout that is still going on.
    pin: Option<String>,
    roll: u8,
    connection_id: u64,
}

/// A fresh instance for a waking connection.
pub(super) struct Woken {
    pub instance: HandlerInstance,
    pub module: Arc<ServedModule>,
    pub metrics: Arc<ModuleMetrics>,
}

/// Why a connection could not get a fresh instance.
#[derive(Debug, thiserror::Error)]
pub(super) enum WakeError {
    #[error("route {0} is no longer served")]
    RouteGone(String),
    #[error("cannot create an instance of module `{module}`: {error}")]
    Instantiate { module: String, error: CallError },
}

impl WakeSource {
    pub(super) fn new(
        shared: Arc<Shared>,
        route: Arc<WakeRoute>,
        pin: Option<String>,
        roll: u8,
        connection_id: u64,
    ) -> WakeSource {
        WakeSource {
            shared,
            route,
            pin,
            roll,
            connection_id,
        }
    }

    /// The route's hibernation settings when the connection opened.
    pub fn config(&self) -> &Hibernation {
        &self.route.config
    }

    /// Tells upgrades waiting under pool pressure that a hibernation
    /// attempt ended (an instance freed, or the handler stayed awake).
    pub(super) fn attempt_ended(&self) {
        self.shared.hibernations.notify_waiters();
    }

    /// The connection's pub/sub handle, for a woken instance.
    pub(super) fn pubsub_handle(
        &self,
        tenant: &str,
    ) -> std::sync::Arc<dyn wsbox_runtime::pubsub::PubsubPort> {
        Arc::new(self.shared.pubsub.handle(self.connection_id, tenant))
    }

    /// Creates an instance of the route's version in force now.
    pub(super) async fn instantiate(&self) -> Result<Woken, WakeError> {
        let table = self.shared.routes.load_full();
        let route = table
            .routes()
            .iter()
            .find(|r| r.pattern() == self.route.pattern && r.config.tenant == self.route.tenant)
            .ok_or_else(|| WakeError::RouteGone(self.route.pattern.clone()))?;
        // A pin the rollout no longer serves falls back to the active version.
        let module = Arc::clone(
            route
                .choose(self.pin.as_deref(), self.roll)
                .unwrap_or(&route.module),
        );
        let (limits, _) = super::upgrade::connection_limits(&self.shared, route, &module.tenant);
        let labels = ModuleLabels::new(route.pattern(), &module);
        let started = std::time::Instant::now();
        // A wake under pool pressure makes room like an upgrade does.
        let instantiated = instantiate_making_room(&self.shared, || {
            module.handler.instantiate(&limits, self.connection_id)
        })
        .await;
        self.shared
            .metrics
            .instantiate_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let instance = instantiated.map_err(|error| WakeError::Instantiate {
            module: module.label(),
            error,
        })?;
        let metrics = self.shared.metrics.for_module(&labels);
        Ok(Woken {
            instance,
            module,
            metrics,
        })
    }
}

/// How many connections pool pressure asks to hibernate at once: one, the
/// least recently active; the caller asks again (the next one) when that
/// did not make room.
const PRESSURE_BATCH: usize = 1;
/// How long an upgrade waits for a hibernation to free room.
const PRESSURE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long one instantiation may keep making room under pool pressure.
/// Upgrades and wakes that run at once compete for the slots that
/// hibernations free, so a fixed number of tries can lose every time while
/// idle connections remain; a deadline cannot.
const PRESSURE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(6);

/// Runs `instantiate`; while the pool (or a memory budget) is full, asks an
/// idle connection to hibernate ([`relieve_pressure`]) and tries again,
/// until an attempt fits, nothing can hibernate, or [`PRESSURE_DEADLINE`]
/// has passed. The last attempt's result is returned.
pub(super) async fn instantiate_making_room<T, F, Fut>(
    shared: &Shared,
    mut instantiate: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let deadline = std::time::Instant::now() + PRESSURE_DEADLINE;
    let mut result = instantiate().await;
    while matches!(&result, Err(e) if super::upgrade::is_pool_full(e))
        && std::time::Instant::now() < deadline
        && relieve_pressure(shared).await
    {
        result = instantiate().await;
    }
    result
}

/// The instance pool (or a memory budget) is full: asks the least recently
/// active connection that could hibernate to do so now, and waits until it
/// has answered (a handler that declines counts as recently active from
/// then on, so the next call asks another). Returns false when there is
/// none to ask, or no answer came in time (the caller answers 503 then).
pub(super) async fn relieve_pressure(shared: &Shared) -> bool {
    let mut candidates: Vec<(u64, Arc<super::mailbox::Mailbox>)> = shared
        .live
        .entries()
        .into_iter()
        .filter_map(|(_, entry)| {
            let since = entry.mailbox.hibernatable_since()?;
            Some((since, Arc::clone(&entry.mailbox)))
        })
        .collect();
    if candidates.is_empty() {
        return false;
    }
    candidates.sort_unstable_by_key(|(since, _)| *since);
    // Registered before asking, so that a hibernation in between counts.
    let freed = shared.hibernations.notified();
    let mut freed = std::pin::pin!(freed);
    freed.as_mut().enable();
    let asked = candidates.len().min(PRESSURE_BATCH);
    for (_, mailbox) in candidates.into_iter().take(PRESSURE_BATCH) {
        mailbox.post(super::mailbox::Command::Hibernate);
    }
    tracing::info!(
        asked,
        "instance pool or memory budget full: hibernating the least recently active connections"
    );
    tokio::time::timeout(PRESSURE_WAIT, freed).await.is_ok()
}
