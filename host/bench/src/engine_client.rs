//! The `--compress` path of `wsbox bench echo`: a client driven by wsbox's
//! own sans-IO engine ([`wsbox_protocol::Connection`], client role) over a
//! plain `TcpStream`, because tokio-tungstenite has no permessage-deflate.
//!
//! The opening handshake is done here (the request from
//! [`handshake::client_request_headers`] with a deflate offer, the answer
//! checked by [`handshake::validate_response`] and
//! [`deflate::negotiate_client_response`]). A server that declines
//! compression is counted as a `handshake` error: a compression benchmark
//! must not silently measure uncompressed traffic.
//!
//! The load loop mirrors the tokio-tungstenite one in [`super::echo`]: read
//! everything available, verify each echo, refill the window, write.

use std::future::poll_fn;
use std::task::Poll;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsbox_protocol::deflate::{self, DeflateConfig};
use wsbox_protocol::handshake::{self, client::ClientHandshake};
use wsbox_protocol::{Config, Connection, Event, Message, Role, State};

use wsbox_io::driver::{SocketIo, poll_socket, write_all_output};

use super::client::{CLOSE_TIMEOUT, CONNECT_TIMEOUT, ErrorKind, Target};
use super::echo::InFlight;
use super::payload::Payload;
use super::report::Shared;

/// Size of a read.
const READ_CHUNK: usize = 64 * 1024;

/// An open client connection: the socket and its engine.
pub struct EngineWs {
    tcp: TcpStream,
    engine: Connection,
    buf: Vec<u8>,
}

/// The client's permessage-deflate settings: the library defaults (context
/// takeover both ways, 15-bit windows), as browsers use them.
fn deflate_config() -> DeflateConfig {
    DeflateConfig {
        // Compress every message, whatever its size.
        min_compress_size: 0,
        ..DeflateConfig::default()
    }
}

/// TCP connect and opening handshake offering permessage-deflate.
pub async fn open(target: &Target) -> Result<EngineWs, ErrorKind> {
    open_with(target, deflate_config(), READ_CHUNK).await
}

/// [`open`] with this deflate offer (e.g. asking for
/// `server_no_context_takeover`) and reads of at most `read_chunk` bytes.
pub async fn open_with(
    target: &Target,
    config: DeflateConfig,
    read_chunk: usize,
) -> Result<EngineWs, ErrorKind> {
    match tokio::time::timeout(CONNECT_TIMEOUT, open_inner(target, config, read_chunk)).await {
        Ok(r) => r,
        Err(_) => Err(ErrorKind::ConnectTimeout),
    }
}

/// The client's deflate offer: the defaults, or asking the server to reset
/// its compressor after every message.
pub fn offer_config(server_no_context_takeover: bool) -> DeflateConfig {
    DeflateConfig {
        server_no_context_takeover,
        ..deflate_config()
    }
}

async fn open_inner(
    target: &Target,
    config: DeflateConfig,
    read_chunk: usize,
) -> Result<EngineWs, ErrorKind> {
    let mut tcp = TcpStream::connect(&target.authority)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let _ = tcp.set_nodelay(true);
    let key = handshake::generate_key();
    let offer = deflate::client_offer(&config);
    let headers = handshake::client_request_headers(&target.authority, &key, &[], Some(&offer))
        .map_err(|_| ErrorKind::Handshake)?;
    let path = target
        .url
        .strip_prefix("ws://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let (mut opening, request) = ClientHandshake::new(path, &headers, key, Vec::new());
    tcp.write_all(&request)
        .await
        .map_err(|_| ErrorKind::Connect)?;

    let mut chunk = [0u8; 2048];
    let head = loop {
        let n = tcp.read(&mut chunk).await.map_err(|_| ErrorKind::Connect)?;
        if n == 0 {
            return Err(ErrorKind::Handshake);
        }
        match opening.receive(&chunk[..n]) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(_) => return Err(ErrorKind::Handshake),
        }
    };
    let info = opening.validate(&head).map_err(|_| ErrorKind::Handshake)?;
    let negotiated = deflate::negotiate_client_response(&info.extensions, &config)
        .map_err(|_| ErrorKind::Handshake)?
        .ok_or(ErrorKind::Handshake)?;
    let mut engine = Connection::with_deflate(
        Config {
            max_message_size: 64 << 20,
            ..Config::new(Role::Client)
        },
        Some(negotiated),
    );
    engine.receive(&head.rest);
    Ok(EngineWs {
        tcp,
        engine,
        buf: vec![0; read_chunk.max(1024)],
    })
}

impl EngineWs {
    /// The next data message (pings are answered, pongs skipped).
    /// Cancel-safe while it waits for the socket.
    pub async fn recv(&mut self) -> Result<Message, ErrorKind> {
        loop {
            while let Some(event) = self.engine.next_event() {
                match event {
                    Event::Message(m) => return Ok(m),
                    Event::Ping(_) | Event::Pong(_) => {}
                    Event::Closed(_) => return Err(ErrorKind::Closed),
                    Event::ProtocolError(_) => return Err(ErrorKind::Io),
                }
            }
            write_all_output(&mut self.tcp, &mut self.engine)
                .await
                .map_err(|_| ErrorKind::Io)?;
            let n = self
                .tcp
                .read(&mut self.buf)
                .await
                .map_err(|_| ErrorKind::Io)?;
            if n == 0 {
                return Err(ErrorKind::Closed);
            }
            self.engine.receive(&self.buf[..n]);
        }
    }

    /// Queues message `seq` of `payload`.
    fn send(&mut self, payload: &Payload, seq: u64) -> Result<(), ErrorKind> {
        let bytes = payload.bytes(seq);
        let sent = match (payload.is_text(), std::str::from_utf8(&bytes)) {
            (true, Ok(text)) => self.engine.send_text(text),
            _ => self.engine.send_binary(&bytes),
        };
        sent.map_err(|_| ErrorKind::Closed)
    }
}

/// Runs one connection of the echo scenario until the run stops and its
/// window has drained.
pub async fn pump(
    ws: &mut EngineWs,
    payload: &Payload,
    shared: &Shared,
    window: usize,
    in_flight: &mut InFlight,
) -> Result<(), ErrorKind> {
    poll_fn(|cx| {
        loop {
            // Events from what was read.
            while let Some(event) = ws.engine.next_event() {
                match event {
                    Event::Message(m) => {
                        let (text, data) = match &m {
                            Message::Text(t) => (true, t.as_bytes()),
                            Message::Binary(b) => (false, &b[..]),
                        };
                        if let Err(kind) = in_flight.answered(payload, shared, text, data) {
                            return Poll::Ready(Err(kind));
                        }
                    }
                    Event::Ping(_) | Event::Pong(_) => {}
                    Event::Closed(_) => return Poll::Ready(Err(ErrorKind::Closed)),
                    Event::ProtocolError(_) => return Poll::Ready(Err(ErrorKind::Io)),
                }
            }
            // Refill the window.
            let stopping = shared.stopping();
            while !stopping && in_flight.len() < window {
                let seq = in_flight.send();
                if let Err(kind) = ws.send(payload, seq) {
                    return Poll::Ready(Err(kind));
                }
            }
            if stopping && in_flight.len() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Write what is queued, else read what has arrived.
            match poll_socket(&mut ws.tcp, cx, &mut ws.engine, Some(&mut ws.buf[..])) {
                Poll::Ready(SocketIo::Wrote(_) | SocketIo::Read(_)) => {}
                Poll::Ready(SocketIo::Eof) => return Poll::Ready(Err(ErrorKind::Closed)),
                Poll::Ready(SocketIo::Failed(_)) => return Poll::Ready(Err(ErrorKind::Io)),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// The closing handshake, bounded by [`CLOSE_TIMEOUT`].
pub async fn close(mut ws: EngineWs) -> Result<(), ErrorKind> {
    let handshake = async {
        ws.engine
            .close(Some(1000), "")
            .map_err(|_| ErrorKind::Closed)?;
        loop {
            write_all_output(&mut ws.tcp, &mut ws.engine)
                .await
                .map_err(|_| ErrorKind::Io)?;
            while let Some(event) = ws.engine.next_event() {
                if let Event::Closed(_) = event {
                    return Ok(());
                }
            }
            if ws.engine.state() == State::Closed {
                return Ok(());
            }
            let n = ws.tcp.read(&mut ws.buf).await.map_err(|_| ErrorKind::Io)?;
            if n == 0 {
                return Ok(());
            }
            ws.engine.receive(&ws.buf[..n]);
        }
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, handshake).await {
        Ok(r) => r,
        Err(_) => Err(ErrorKind::CloseTimeout),
    }
}
