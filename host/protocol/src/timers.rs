//! A connection's deadlines without a clock: keepalive pings, their answers,
//! the closing handshake and idleness. The host passes the current time in,
//! sleeps until [`Timers::next_wake`], and acts on what [`Timers::poll`]
//! reports.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wsbox_protocol::timers::{Due, TimerConfig, Timers};
//!
//! let start = Instant::now();
//! let config = TimerConfig {
//!     ping_interval: Some(Duration::from_secs(10)),
//!     pong_timeout: Duration::from_secs(5),
//!     ..TimerConfig::default()
//! };
//! let mut timers = Timers::new(config, start);
//! assert_eq!(timers.next_wake(), Some(start + Duration::from_secs(10)));
//! let later = start + Duration::from_secs(10);
//! assert_eq!(timers.poll(later), Some(Due::Ping)); // send a ping now
//! assert_eq!(timers.poll(later + Duration::from_secs(5)), Some(Due::PongTimeout));
//! ```

use std::time::{Duration, Instant};

use crate::State;

/// What the deadlines are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// How often to ping the peer; `None`: never.
    pub ping_interval: Option<Duration>,
    /// How long a ping may go unanswered (any frame from the peer does not
    /// count; only its pong).
    pub pong_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    /// After how long without traffic the connection counts as idle (the
    /// host then makes it cheap: [`crate::Connection::compact_idle`]); `None`:
    /// never.
    pub idle_after: Option<Duration>,
}

impl Default for TimerConfig {
    /// No keepalive, 5 s for the closing handshake, no idle report.
    fn default() -> Self {
        Self {
            ping_interval: None,
            pong_timeout: Duration::MAX,
            close_timeout: Duration::from_secs(5),
            idle_after: None,
        }
    }
}

/// A deadline that passed, for the host to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The peer did not answer our close frame in time: drop the transport.
    CloseTimeout,
    /// A keepalive ping went unanswered for `pong_timeout`: the peer is
    /// unresponsive (Tornado closes with 1011).
    PongTimeout,
    /// No traffic for `idle_after`.
    Idle,
    /// Time for a keepalive ping: send one (it counts as sent).
    Ping,
}

/// The deadlines of one connection.
#[derive(Debug, Clone)]
pub struct Timers {
    config: TimerConfig,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
    idle_at: Option<Instant>,
}

impl Timers {
    /// Deadlines for a connection that opened at `now`.
    pub fn new(config: TimerConfig, now: Instant) -> Self {
        let mut timers = Self {
            config,
            next_ping: config.ping_interval.and_then(|i| now.checked_add(i)),
            pong_deadline: None,
            close_deadline: None,
            idle_at: None,
        };
        timers.activity(now);
        timers
    }

    /// Traffic happened at `now`: idleness starts over.
    pub fn activity(&mut self, now: Instant) {
        self.idle_at = self.config.idle_after.and_then(|d| now.checked_add(d));
    }

    /// The peer answered a ping.
    pub fn pong_received(&mut self) {
        self.pong_deadline = None;
    }

    /// The connection's state at `now`: closing starts the close deadline;
    /// once it is no longer open, no more pings are sent or awaited.
    pub fn observe(&mut self, state: State, now: Instant) {
        if state == State::Closing && self.close_deadline.is_none() {
            // Too far to represent: never.
            self.close_deadline = now.checked_add(self.config.close_timeout);
        }
        if state != State::Open {
            self.next_ping = None;
            self.pong_deadline = None;
        }
    }

    /// When the next deadline falls, if any: wake then and [`Self::poll`].
    pub fn next_wake(&self) -> Option<Instant> {
        [
            self.close_deadline,
            self.pong_deadline,
            self.idle_at,
            self.next_ping,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The first deadline that passed by `now`, most urgent first; call
    /// again until `None`. A reported deadline is cleared (a ping is
    /// counted as sent: one in flight at a time, like Tornado).
    pub fn poll(&mut self, now: Instant) -> Option<Due> {
        let passed = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if passed(self.close_deadline) {
            self.close_deadline = None;
            return Some(Due::CloseTimeout);
        }
        if passed(self.pong_deadline) {
            self.pong_deadline = None;
            self.next_ping = None;
            return Some(Due::PongTimeout);
        }
        if passed(self.idle_at) {
            self.idle_at = None;
            return Some(Due::Idle);
        }
        if passed(self.next_ping) {
            if self.pong_deadline.is_none() {
                self.pong_deadline = now.checked_add(self.config.pong_timeout);
            }
            self.next_ping = self.config.ping_interval.and_then(|i| now.checked_add(i));
            return Some(Due::Ping);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn config() -> TimerConfig {
        TimerConfig {
            ping_interval: Some(10 * S),
            pong_timeout: 4 * S,
            close_timeout: 5 * S,
            idle_after: Some(3 * S),
        }
    }

    #[test]
    fn pings_go_out_each_interval_and_an_answer_clears_the_deadline() {
        let t0 = Instant::now();
        let mut timers = Timers::new(config(), t0);
        assert_eq!(timers.next_wake(), Some(t0 + 3 * S), "idle first");
        assert_eq!(timers.poll(t0 + 2 * S), None);
        assert_eq!(timers.poll(t0 + 3 * S), Some(Due::Idle));
        assert_eq!(timers.poll(t0 + 3 * S), None, "reported once");
        assert_eq!(timers.poll(t0 + 10 * S), Some(Due::Ping));
        assert_eq!(timers.next_wake(), Some(t0 + 14 * S), "the pong deadline");
        timers.pong_received();
        assert_eq!(timers.next_wake(), Some(t0 + 20 * S), "the next ping");
        assert_eq!(timers.poll(t0 + 20 * S), Some(Due::Ping));
        // Unanswered: a second ping keeps the first deadline.
        assert_eq!(timers.poll(t0 + 23 * S), None);
        assert_eq!(timers.poll(t0 + 24 * S), Some(Due::PongTimeout));
        assert_eq!(timers.poll(t0 + 100 * S), None, "no pings after a timeout");
    }

    #[test]
    fn traffic_postpones_idleness_and_closing_stops_pings() {
        let t0 = Instant::now();
        let mut timers = Timers::new(config(), t0);
        timers.activity(t0 + 2 * S);
        assert_eq!(timers.poll(t0 + 4 * S), None);
        assert_eq!(timers.poll(t0 + 5 * S), Some(Due::Idle));
        timers.observe(State::Closing, t0 + 6 * S);
        timers.observe(State::Closing, t0 + 8 * S);
        assert_eq!(
            timers.next_wake(),
            Some(t0 + 11 * S),
            "first close deadline kept"
        );
        assert_eq!(timers.poll(t0 + 10 * S), None, "no ping while closing");
        assert_eq!(timers.poll(t0 + 11 * S), Some(Due::CloseTimeout));
        assert_eq!(timers.next_wake(), None);
    }

    #[test]
    fn without_keepalive_or_idleness_nothing_is_due_while_open() {
        let t0 = Instant::now();
        let mut timers = Timers::new(TimerConfig::default(), t0);
        assert_eq!(timers.next_wake(), None);
        assert_eq!(timers.poll(t0 + 1000 * S), None);
        // Huge durations saturate instead of overflowing.
        let mut far = Timers::new(
            TimerConfig {
                ping_interval: Some(Duration::MAX),
                close_timeout: Duration::MAX,
                ..TimerConfig::default()
            },
            t0,
        );
        far.observe(State::Closing, t0);
        assert_eq!(far.poll(t0 + S), None);
        assert_eq!(far.next_wake(), None);
    }
}
