//! How the rest of the server reaches a live connection without touching
//! its socket or its handler: each connection task owns a [`Mailbox`] and
//! the server keeps them by connection id in a [`Registry`]. A message
//! posted here goes straight to the peer: the handler is not called.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Something asked of a connection from outside its task.
#[derive(Debug)]
pub enum Command {
    /// Send a message to the peer.
    Send(wsbox_protocol::Message),
    /// Start the closing handshake with this code and reason (already
    /// validated: a sendable code, a reason of at most 123 bytes).
    Close { code: u16, reason: String },
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
}

impl Mailbox {
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

/// The live connections of a server, by id.
#[derive(Default)]
pub struct Registry {
    mailboxes: Mutex<HashMap<u64, Arc<Mailbox>>>,
}

impl Registry {
    /// Registers a connection; it is removed when the returned guard drops.
    pub fn register(self: &Arc<Self>, id: u64) -> Registration {
        let mailbox = Arc::new(Mailbox::default());
        lock(&self.mailboxes).insert(id, Arc::clone(&mailbox));
        Registration {
            registry: Arc::clone(self),
            id,
            mailbox,
        }
    }

    /// The mailbox of a live connection.
    pub fn get(&self, id: u64) -> Option<Arc<Mailbox>> {
        lock(&self.mailboxes).get(&id).cloned()
    }

    /// The ids of the live connections, in no particular order.
    pub fn ids(&self) -> Vec<u64> {
        lock(&self.mailboxes).keys().copied().collect()
    }
}

/// A connection's place in the [`Registry`], held by its task.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl Registration {
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.mailboxes).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_wake_the_owner_and_registrations_end_with_their_guard() {
        let registry = Arc::new(Registry::default());
        let reg = registry.register(7);
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
