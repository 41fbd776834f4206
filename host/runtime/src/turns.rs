//! Fair shares of the worker threads: each route, and each tenant across
//! its routes, lets only so many of its long-running handler calls run at
//! once (`max_concurrent_calls`). A call
//! that is still running at an epoch tick gives back the turn it holds (if
//! any), yields, and queues for a turn (first come, first served) before it
//! runs on; it keeps that turn until its next tick or its end. So calls of
//! one route that run for many ticks take turns among themselves, and a
//! route full of spinning handlers cannot occupy every worker while other
//! routes have work. A call shorter than a tick, the usual case, never
//! waits for a turn, and a call blocked in a WASI wait holds none unless it
//! ran a full tick first.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The permits a turn is made of: the tenant's (if it has a bound) and the
/// route's.
type Held = (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>);

/// One instance's place in its route's (and tenant's) queue for turns.
#[derive(Debug)]
pub struct Turns {
    route: Arc<Semaphore>,
    tenant: Option<Arc<Semaphore>>,
    held: Mutex<Held>,
}

impl Turns {
    pub fn new(route: Arc<Semaphore>, tenant: Option<Arc<Semaphore>>) -> Turns {
        Turns {
            route,
            tenant,
            held: Mutex::new((None, None)),
        }
    }

    /// Waits for a turn and holds it until the next [`Turns::pass`] or
    /// [`Turns::end`]. The tenant's permit is taken first, always, so two
    /// calls never wait for each other's second permit.
    async fn take(&self) {
        // The semaphores are never closed; without a permit the call would
        // simply run unthrottled.
        let tenant = match &self.tenant {
            Some(t) => Arc::clone(t).acquire_owned().await.ok(),
            None => None,
        };
        let route = Arc::clone(&self.route).acquire_owned().await.ok();
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = (tenant, route);
    }

    /// Gives the turn back (the call is over).
    pub fn end(&self) {
        drop(std::mem::take(
            &mut *self.held.lock().unwrap_or_else(|e| e.into_inner()),
        ));
    }

    /// At an epoch tick: gives any turn held to the next in line, lets
    /// tokio run other tasks, then queues for a turn to run on with.
    pub async fn pass(&self) {
        self.end();
        tokio::task::yield_now().await;
        self.take().await;
    }
}

/// A route's or a tenant's semaphore: as configured, else one less than
/// the worker threads (so another route or tenant always finds one free),
/// at least 1.
pub fn route_turns(configured: Option<u32>) -> Arc<Semaphore> {
    let n = match configured {
        Some(n) => n as usize,
        None => std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1),
    };
    Arc::new(Semaphore::new(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenants_bound_holds_across_its_routes() {
        let tenant = route_turns(Some(1));
        let a = Arc::new(Turns::new(route_turns(Some(4)), Some(Arc::clone(&tenant))));
        let b = Arc::new(Turns::new(route_turns(Some(4)), Some(Arc::clone(&tenant))));
        a.pass().await;
        let waiting = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.pass().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "another route of the tenant waits");
        a.end();
        waiting.await.unwrap();
        b.end();
        assert_eq!(tenant.available_permits(), 1);
    }

    #[tokio::test]
    async fn turns_are_taken_in_order_and_passed_on() {
        let route = route_turns(Some(1));
        let a = Arc::new(Turns::new(Arc::clone(&route), None));
        let b = Arc::new(Turns::new(Arc::clone(&route), None));
        a.pass().await;
        assert_eq!(route.available_permits(), 0);
        // b waits while a holds the turn...
        let waiting = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.pass().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...and gets it when a passes; a then queues behind b.
        let a_again = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.pass().await }
        });
        waiting.await.unwrap();
        assert!(!a_again.is_finished());
        b.end();
        a_again.await.unwrap();
        a.end();
        assert_eq!(route.available_permits(), 1);
    }
}
