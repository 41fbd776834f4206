//! Logging to the host's log, where each line is tagged with the
//! connection id, the route and the module.
//!
//! ```no_run
//! use wsbox_guest::log;
//!
//! log::info("connection opened");
//! log::warn(format!("unexpected message of {} bytes", 42));
//! ```
//!
//! Anything the handler prints to stdout or stderr (`println!`) also ends up
//! in the host's log.

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging details.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the handler recovered from.
    Warn,
    /// A failure.
    Error,
}

/// Writes `message` to the host's log at `level`.
///
/// Outside a component (a native `cargo test` with
/// [`testing`](crate::testing)), the line goes to stderr, which the test
/// harness captures.
pub fn log(level: Level, message: impl AsRef<str>) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::wsbox::websocket::types::LogLevel;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        crate::bindings::wsbox::websocket::logging::log(level, message.as_ref());
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {}", message.as_ref());
}

/// Writes `message` to the host's log at trace level.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Writes `message` to the host's log at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Writes `message` to the host's log at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Writes `message` to the host's log at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Writes `message` to the host's log at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}
