//! How the rest of the server reaches a live connection without touching
//! its socket or its handler: each connection task owns a [`Mailbox`] and
//! the server keeps them by connection id in a [`Registry`]. A message
//! posted here goes straight to the peer: the handler is not called.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use std::net::SocketAddr;
use std::time::Instant;

use arc_swap::ArcSwap;
use futures_util::task::AtomicWaker;

use super::routes::ServedModule;

/// Something asked of a connection from outside its task.
#[derive(Debug)]
pub enum Command {
    /// Send a message to the peer.
    Send(wsbox_protocol::Message),
    /// Queue a frame encoded beforehand: one complete, unmasked,
    /// uncompressed data frame, shared by every subscriber of a topic
    /// (pub/sub fan-out encodes a message once). Its length was added to
    /// [`Mailbox::backlog`] when it was posted.
    Frame(bytes::Bytes),
    /// Start the closing handshake with this code and reason (already
    /// validated: a sendable code, a reason of at most 123 bytes).
    Close { code: u16, reason: String },
    /// Hibernate now if the connection can (pool pressure): its handler
    /// exports `hibernation`, its route hibernates, and it is awake.
    Hibernate,
}

/// A connection's queue of commands, with a wake-up for its task.
///
/// The task checks it on every turn of its loop, so the empty case costs
/// two atomic operations and no lock.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Command>>,
    has_mail: AtomicBool,
    waker: AtomicWaker,
    /// Bytes read from and written to the socket (frames, after TLS).
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Bytes waiting for the socket as far as others can tell: the
    /// connection task stores its engine's queued output on every turn,
    /// and posters of frames add theirs. Approximate (a frame posted just
    /// before the task stores is missed until the task applies it), which
    /// is fine for a slow-consumer bound.
    backlog: AtomicUsize,
    /// While the connection could hibernate (awake, on a hibernating route,
    /// its handler exports `hibernation`): when it last had a message, as
    /// microseconds since [`clock_base`] plus one; 0 otherwise.
    hibernatable_since: AtomicU64,
    /// Hibernated now (no instance), for the metrics.
    hibernated: AtomicBool,
    /// What the task wants done with its tracing span between polls (see
    /// `traced::InConnSpan`): one of the `SPAN_*` values.
    span: AtomicU8,
}

/// Keep the span (the default).
pub const SPAN_KEEP: u8 = 0;
/// The connection hibernated and waits: the span may go.
pub const SPAN_MAY_DROP: u8 = 1;
/// Make the span again and poll the task in it.
pub const SPAN_WANTED: u8 = 2;

/// The base of the stamps in [`Mailbox::hibernatable_since`]: set before
/// the first connection registers, so every stamp is after it.
fn clock_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Mailbox {
    /// Bytes waiting for this connection's socket (see the field).
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// The connection task's report of its queued output.
    pub fn set_backlog(&self, queued: usize) {
        self.backlog.store(queued, Ordering::Relaxed);
    }

    /// Posts a pre-encoded frame, counting it in the backlog.
    pub fn post_frame(&self, frame: bytes::Bytes) {
        self.backlog.fetch_add(frame.len(), Ordering::Relaxed);
        self.post(Command::Frame(frame));
    }

    /// Posts a message for the connection to encode itself, counting its
    /// payload in the backlog (pub/sub's per-connection fan-out).
    pub fn post_message(&self, message: wsbox_protocol::Message) {
        self.backlog.fetch_add(message.len(), Ordering::Relaxed);
        self.post(Command::Send(message));
    }

    /// Says whether the connection could hibernate now, and since when it
    /// has had no messages (for pool pressure, which picks the least
    /// recently active).
    pub fn set_hibernatable(&self, since: Option<Instant>) {
        let stamp = since.map_or(0, |t| {
            u64::try_from(t.saturating_duration_since(clock_base()).as_micros())
                .unwrap_or(u64::MAX - 1)
                + 1
        });
        self.hibernatable_since.store(stamp, Ordering::Relaxed);
    }

    /// When the connection last had a message, if it could hibernate now
    /// (an opaque stamp: smaller is earlier).
    pub fn hibernatable_since(&self) -> Option<u64> {
        match self.hibernatable_since.load(Ordering::Relaxed) {
            0 => None,
            stamp => Some(stamp),
        }
    }

    /// Says whether the connection is hibernated now.
    pub fn set_hibernated(&self, hibernated: bool) {
        self.hibernated.store(hibernated, Ordering::Relaxed);
    }

    /// Tells the task's span wrapper what to do with the span (`SPAN_*`).
    pub fn set_span(&self, what: u8) {
        self.span.store(what, Ordering::Relaxed);
    }

    /// What the task last asked for its span (`SPAN_*`).
    pub fn span(&self) -> u8 {
        self.span.load(Ordering::Relaxed)
    }

    /// Whether the connection is hibernated now.
    pub fn is_hibernated(&self) -> bool {
        self.hibernated.load(Ordering::Relaxed)
    }

    /// Counts bytes read from the peer.
    pub fn count_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes written to the peer.
    pub fn count_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `(bytes in, bytes out)` so far.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Queues a command and wakes the connection task.
    pub fn post(&self, command: Command) {
        lock(&self.queue).push_back(command);
        self.has_mail.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once something was posted since the last ready poll (a post
    /// made while nobody polls is remembered); otherwise registers `cx` to
    /// be woken by the next post.
    pub fn poll_posted(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_mail.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A post between the check and the registration is not lost.
        if self.has_mail.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Whether something was posted since the last check, clearing the
    /// flag: the caller then takes the queue.
    pub fn take_posted(&self) -> bool {
        self.has_mail.swap(false, Ordering::Acquire)
    }

    /// Takes the queued commands, oldest first.
    pub fn take(&self) -> VecDeque<Command> {
        std::mem::take(&mut *lock(&self.queue))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a plain queue or map behind,
    // which is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the server shows about a live connection (the admin API lists it).
pub struct ConnectionMeta {
    /// The route pattern it matched.
    pub route: std::sync::Arc<str>,
    /// The module version it runs; held, so that version stays loaded
    /// while the connection lives even after a deploy replaced it.
    /// Swapped when a hibernated connection wakes into another version.
    pub module: ArcSwap<ServedModule>,
    pub remote: SocketAddr,
    pub opened: Instant,
    /// Its place in its tenant's connection count.
    pub admission: super::tenants::Admission,
}

/// A live connection as registered: its mailbox and what it is.
pub struct Entry<M> {
    pub mailbox: Arc<Mailbox>,
    pub meta: M,
}

/// The live connections of a server, by id.
pub struct Registry<M = ConnectionMeta> {
    entries: Mutex<HashMap<u64, Arc<Entry<M>>>>,
}

impl<M> Default for Registry<M> {
    fn default() -> Self {
        Registry {
            entries: Mutex::default(),
        }
    }
}

impl<M> Registry<M> {
    /// Registers a connection; it is removed when the returned guard drops.
    pub fn register(self: &Arc<Self>, id: u64, meta: M) -> Registration<M> {
        clock_base();
        let entry = Arc::new(Entry {
            mailbox: Arc::new(Mailbox::default()),
            meta,
        });
        lock(&self.entries).insert(id, Arc::clone(&entry));
        Registration {
            registry: Arc::clone(self),
            id,
            entry,
        }
    }

    /// The mailbox of a live connection.
    pub fn get(&self, id: u64) -> Option<Arc<Mailbox>> {
        lock(&self.entries).get(&id).map(|e| Arc::clone(&e.mailbox))
    }

    /// The ids of the live connections, in no particular order.
    pub fn ids(&self) -> Vec<u64> {
        lock(&self.entries).keys().copied().collect()
    }

    /// The live connections, by id, in no particular order.
    pub fn entries(&self) -> Vec<(u64, Arc<Entry<M>>)> {
        lock(&self.entries)
            .iter()
            .map(|(id, e)| (*id, Arc::clone(e)))
            .collect()
    }
}

/// A connection's place in the [`Registry`], held by its task.
pub struct Registration<M = ConnectionMeta> {
    registry: Arc<Registry<M>>,
    id: u64,
    entry: Arc<Entry<M>>,
}

impl<M> Registration<M> {
    pub fn mailbox(&self) -> &Mailbox {
        &self.entry.mailbox
    }

    /// The mailbox, to be shared (the pub/sub hub posts to it).
    pub fn shared_mailbox(&self) -> Arc<Mailbox> {
        Arc::clone(&self.entry.mailbox)
    }

    pub fn meta(&self) -> &M {
        &self.entry.meta
    }

    /// The entry (mailbox and facts), to be shared.
    pub fn shared_entry(&self) -> Arc<Entry<M>> {
        Arc::clone(&self.entry)
    }
}

impl<M> Drop for Registration<M> {
    fn drop(&mut self) {
        lock(&self.registry.entries).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_wake_the_owner_and_registrations_end_with_their_guard() {
        let registry = Arc::new(Registry::<()>::default());
        let reg = registry.register(7, ());
        assert_eq!(registry.ids(), vec![7]);
        let mailbox = registry.get(7).expect("registered");
        mailbox.post(Command::Close {
            code: 1000,
            reason: String::new(),
        });
        // The post came before the wait: it is not lost.
        std::future::poll_fn(|cx| reg.mailbox().poll_posted(cx)).await;
        assert!(
            std::future::poll_fn(|cx| Poll::Ready(reg.mailbox().poll_posted(cx).is_pending()))
                .await
        );
        assert_eq!(reg.mailbox().take().len(), 1);
        assert!(reg.mailbox().take().is_empty());
        drop(reg);
        assert!(registry.get(7).is_none() && registry.ids().is_empty());
    }
}
