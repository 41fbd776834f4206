//! Opening client connections: the target URL, TCP connect and the opening
//! handshake (tokio-tungstenite), and how failures are classified.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Error as WsError, Message};

use super::payload::Payload;
use super::report::Shared;

/// How long one connect + handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a single round trip outside the measured load may take.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the closing handshake may take.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A `ws://host:port/path` URL, taken apart.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
}

impl Target {
    /// Accepts `ws://HOST[:PORT][/PATH]` (port 80 by default).
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("ws://") else {
            if url.starts_with("wss://") {
                bail!("`{url}`: wss:// is not supported (no TLS in the load generator)");
            }
            bail!("`{url}` is not a ws:// URL");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("`{url}`: expected ws://HOST[:PORT]/PATH");
        }
        // An IPv6 literal is `[::1]:port`; anything else `host[:port]`.
        let has_port = match authority.rfind(']') {
            Some(close) => authority[close..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(Target {
            url: format!("ws://{authority}{path}"),
            authority,
        })
    }
}

/// The kinds of errors a run counts (the JSON keys of `errors_by_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// TCP connect failed (refused, EMFILE, ...).
    Connect,
    /// The opening handshake failed (HTTP status other than 101, bad headers).
    Handshake,
    /// Connect + handshake took longer than [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// An echo differed from what was sent (content, length, type or order).
    Mismatch,
    /// The server closed the connection while it was in use.
    Closed,
    /// A socket or protocol error while the connection was in use.
    Io,
    /// Echoes still missing when the drain period after the run ended.
    Unanswered,
    /// The closing handshake did not complete in time.
    CloseTimeout,
    /// Broadcast: a delivery seen twice, or older than one already seen
    /// from the same publisher (reordered).
    Duplicate,
    /// Broadcast: a subscriber that saw none of the readiness probes.
    NotReady,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::ConnectTimeout,
        ErrorKind::Mismatch,
        ErrorKind::Closed,
        ErrorKind::Io,
        ErrorKind::Unanswered,
        ErrorKind::CloseTimeout,
        ErrorKind::Duplicate,
        ErrorKind::NotReady,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Unanswered => "unanswered",
            ErrorKind::CloseTimeout => "close_timeout",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::NotReady => "not_ready",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies an error of an open connection.
    pub fn of_ws_error(e: &WsError) -> ErrorKind {
        match e {
            WsError::ConnectionClosed | WsError::AlreadyClosed => ErrorKind::Closed,
            WsError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            WsError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset => {
                ErrorKind::Closed
            }
            WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
                ErrorKind::Closed
            }
            _ => ErrorKind::Io,
        }
    }
}

/// A client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Client settings: buffers sized for `message_size`, no size limit below
/// 64 MiB (the largest payload the command accepts).
pub fn ws_config(message_size: usize) -> WebSocketConfig {
    let buf = message_size.saturating_add(64).clamp(4096, 128 * 1024);
    WebSocketConfig::default()
        .read_buffer_size(buf)
        .write_buffer_size(buf)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// TCP connect and opening handshake, bounded by [`CONNECT_TIMEOUT`].
pub async fn open(target: &Target, config: WebSocketConfig) -> Result<Ws, ErrorKind> {
    let attempt = async {
        let tcp = TcpStream::connect(&target.authority)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        // The client must not add Nagle delays to what it measures.
        let _ = tcp.set_nodelay(true);
        match tokio_tungstenite::client_async_with_config(target.url.as_str(), tcp, Some(config))
            .await
        {
            Ok((ws, _response)) => Ok(ws),
            Err(WsError::Io(_)) => Err(ErrorKind::Connect),
            Err(_) => Err(ErrorKind::Handshake),
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ErrorKind::ConnectTimeout),
    }
}

/// Sends message `seq` and waits for its echo. Pings and pongs in between
/// are skipped (tungstenite answers pings itself).
pub async fn round_trip(ws: &mut Ws, payload: &Payload, seq: u64) -> Result<(), ErrorKind> {
    ws.send(payload.message(seq))
        .await
        .map_err(|e| ErrorKind::of_ws_error(&e))?;
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return check(payload.matches(seq, true, t.as_bytes()));
                }
                Some(Ok(Message::Binary(b))) => return check(payload.matches(seq, false, &b)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Err(ErrorKind::Closed),
                Some(Err(e)) => return Err(ErrorKind::of_ws_error(&e)),
            }
        }
    };
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, wait).await {
        Ok(result) => result,
        Err(_) => Err(ErrorKind::Unanswered),
    }
}

fn check(ok: bool) -> Result<(), ErrorKind> {
    if ok { Ok(()) } else { Err(ErrorKind::Mismatch) }
}

/// The closing handshake: sends a close frame (1000) and reads until the
/// server's close arrives or the connection ends, within [`CLOSE_TIMEOUT`].
pub async fn close(mut ws: Ws) -> Result<(), ErrorKind> {
    let handshake = async {
        ws.close(None)
            .await
            .map_err(|e| ErrorKind::of_ws_error(&e))?;
        loop {
            match ws.next().await {
                None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return match ErrorKind::of_ws_error(&e) {
                        // The server closed TCP right after its close frame.
                        ErrorKind::Closed => Ok(()),
                        other => Err(other),
                    };
                }
            }
        }
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, handshake).await {
        Ok(result) => result,
        Err(_) => Err(ErrorKind::CloseTimeout),
    }
}

/// Opens `n` connections with `open(i)`, at most `concurrency` attempts at
/// once, giving up on those not open within `deadline`. Failures are
/// counted in `shared`; `on_progress` is called about every 100 ms with the
/// number opened.
pub async fn open_many<T, F, Fut>(
    n: usize,
    concurrency: usize,
    shared: &Shared,
    deadline: Duration,
    open: F,
    mut on_progress: impl FnMut(usize),
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<T, ErrorKind>> + Send + 'static,
{
    let end = Instant::now() + deadline;
    let mut opened = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    let mut started = 0usize;
    let mut last_progress = Instant::now();
    loop {
        while started < n && tasks.len() < concurrency && Instant::now() < end {
            tasks.spawn(open(started as u64));
            started += 1;
        }
        let next = tokio::time::timeout_at(end.into(), tasks.join_next()).await;
        match next {
            Ok(Some(Ok(Ok(ws)))) => {
                shared
                    .opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                opened.push(ws);
            }
            Ok(Some(Ok(Err(kind)))) => shared.error(kind),
            Ok(Some(Err(_join_error))) => shared.error(ErrorKind::Io),
            Ok(None) => break,
            Err(_) => {
                // Out of time: what is still connecting counts as timed out.
                for _ in 0..tasks.len() {
                    shared.error(ErrorKind::ConnectTimeout);
                }
                tasks.abort_all();
                break;
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(100) {
            on_progress(opened.len());
            last_progress = Instant::now();
        }
    }
    opened
}

/// Opens one tokio-tungstenite connection; with a `probe` payload, it first
/// makes one round trip (message `seq`).
pub async fn open_probed(
    target: Arc<Target>,
    config: WebSocketConfig,
    probe: Option<Arc<Payload>>,
    seq: u64,
) -> Result<Ws, ErrorKind> {
    let mut ws = open(&target, config).await?;
    if let Some(p) = probe {
        round_trip(&mut ws, &p, seq).await?;
    }
    Ok(ws)
}

/// Closes every connection (closing handshakes, `concurrency` at once);
/// returns how many closed cleanly. Failures are counted in `shared`.
pub async fn close_many(conns: Vec<Ws>, concurrency: usize, shared: &Shared) -> usize {
    let mut tasks = JoinSet::new();
    let mut clean = 0;
    let mut pending = conns.into_iter();
    loop {
        while tasks.len() < concurrency {
            let Some(ws) = pending.next() else { break };
            tasks.spawn(close(ws));
        }
        match tasks.join_next().await {
            Some(Ok(Ok(()))) => clean += 1,
            Some(Ok(Err(kind))) => shared.error(kind),
            Some(Err(_)) => shared.error(ErrorKind::Io),
            None => break,
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("ws://127.0.0.1:8080/echo").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.url, "ws://127.0.0.1:8080/echo");
        let t = Target::parse("ws://localhost").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.url, "ws://localhost:80/");
        let t = Target::parse("ws://[::1]:9000/x?y=1").unwrap();
        assert_eq!(t.authority, "[::1]:9000");
        assert_eq!(t.url, "ws://[::1]:9000/x?y=1");
        assert!(Target::parse("wss://a/b").is_err());
        assert!(Target::parse("http://a/b").is_err());
        assert!(Target::parse("ws:///b").is_err());
    }

    #[test]
    fn error_names_are_distinct() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
