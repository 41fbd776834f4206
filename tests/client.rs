//! `wsbox::client` against independent servers: Python `websockets` and
//! Tornado (tests/peers/*.py, run as subprocesses), a raw server that never
//! answers pings, and the wsbox server itself (ws:// and wss://).
//!
//! The Python peers need a venv: `bash tests/peers/setup.sh` creates
//! tests/peers/.venv; or set WSBOX_PYTHON to a python that has `websockets`
//! and `tornado`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use wsbox::client::{
    ClientError, ClientOptions, CloseCause, Message, WebSocketClient, WriteError, connect,
    connect_with_callback,
};
use wsbox::config::TlsConfig;
use wsbox::protocol::ProtocolError;
use wsbox::protocol::deflate::DeflateConfig;
use wsbox_tests::*;

// ---- Python peers ----

/// A peer server subprocess; killed when dropped.
struct Peer {
    name: &'static str,
    port: u16,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    _child: Child,
}

impl Peer {
    /// Starts tests/peers/`script` and waits for its `READY <port>` line.
    async fn start(script: &'static str) -> Peer {
        init_logging();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("peers")
            .join(script);
        let mut child = Command::new(python())
            .arg("-u")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} with {}: {e} (tests/peers/setup.sh installs the peers)",
                    path.display(),
                    python().display()
                )
            });
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (prefix, stream) in [
            (
                "",
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            ),
            ("stderr: ", Box::new(stderr)),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(format!("{prefix}{line}")).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx); // the channel closes when the peer's output ends
        let mut peer = Peer {
            name: script,
            port: 0,
            lines,
            seen: Vec::new(),
            _child: child,
        };
        let ready = peer.wait_line("READY ").await;
        peer.port = ready
            .trim_start_matches("READY ")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{script}: bad ready line {ready:?}"));
        peer
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for an output line starting with `prefix`; panics after [`WAIT`]
    /// with everything the peer printed.
    async fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "{} exited before printing {prefix:?} (tests/peers/setup.sh installs the peers); output: {:#?}",
                    self.name, self.seen
                ),
                Err(_) => panic!(
                    "{} did not print {prefix:?} within {WAIT:?}; output: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }
}

const PYTHON_PEERS: [&str; 2] = ["websockets_server.py", "tornado_server.py"];

fn compressed() -> ClientOptions {
    ClientOptions::default().with_compression(DeflateConfig::default())
}

async fn open(url: &str, options: ClientOptions) -> WebSocketClient {
    tokio::time::timeout(WAIT, connect(url, options))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} took over {WAIT:?}"))
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

async fn read(ws: &mut WebSocketClient) -> Option<Message> {
    tokio::time::timeout(WAIT, ws.read_message())
        .await
        .expect("a message (or the close) in time")
}

async fn read_some(ws: &mut WebSocketClient) -> Message {
    read(ws).await.expect("a message, not the close")
}

async fn read_text(ws: &mut WebSocketClient) -> String {
    match read_some(ws).await {
        Message::Text(text) => text,
        other => panic!("expected text, got {} bytes of binary", other.len()),
    }
}

/// Reads until the connection closes; panics on a data message.
async fn expect_end(ws: &mut WebSocketClient) {
    if let Some(message) = read(ws).await {
        panic!(
            "expected the close, got a message of {} bytes",
            message.len()
        );
    }
}

fn text_of(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect()
}

fn binary_of(len: usize) -> Vec<u8> {
    // xorshift: poorly compressible, deterministic.
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Text and binary of 10 B, 10 KiB and 1 MiB, each echoed back intact.
async fn echo_round_trips(ws: &mut WebSocketClient) {
    for len in [10, 10 << 10, 1 << 20] {
        let text = text_of(len);
        ws.write_text(&text).await.expect("write text");
        assert_eq!(read_some(ws).await, Message::Text(text), "text of {len}");
        let data = binary_of(len);
        ws.write_binary(&data).await.expect("write binary");
        assert_eq!(
            read_some(ws).await,
            Message::Binary(data.into()),
            "binary of {len}"
        );
    }
}

async fn close_normally(ws: &mut WebSocketClient) {
    ws.close(Some(1000), "bye").expect("close");
    expect_end(ws).await;
    let info = tokio::time::timeout(WAIT, ws.closed())
        .await
        .expect("closed");
    assert_eq!(info.cause, CloseCause::ClientClosed, "{info:?}");
    assert_eq!(info.code, Some(1000), "{info:?}");
    assert!(info.is_normal());
}

#[tokio::test]
async fn compressed_echo_round_trips_with_python_peers() {
    if skip_peers(Peers::Python) {
        return;
    }
    for script in PYTHON_PEERS {
        let mut peer = Peer::start(script).await;
        let mut ws = open(&peer.url("/echo"), compressed()).await;
        let extensions = ws.extensions().unwrap_or_default().to_owned();
        assert!(
            extensions.starts_with("permessage-deflate"),
            "{script}: negotiated {extensions:?}"
        );
        assert!(ws.is_compressed(), "{script}");
        echo_round_trips(&mut ws).await;
        close_normally(&mut ws).await;
        let line = peer.wait_line("closed /echo").await;
        assert_eq!(line, "closed /echo code=1000 reason=bye", "{script}");
    }
}

#[tokio::test]
async fn uncompressed_by_default() {
    if skip_peers(Peers::Python) {
        return;
    }
    let peer = Peer::start("websockets_server.py").await;
    let mut ws = open(&peer.url("/echo"), ClientOptions::default()).await;
    assert_eq!(ws.extensions(), None);
    assert!(!ws.is_compressed());
    ws.write_text("plain").await.unwrap();
    assert_eq!(read_text(&mut ws).await, "plain");
    close_normally(&mut ws).await;
}

#[tokio::test]
async fn subprotocol_selection() {
    if skip_peers(Peers::Python) {
        return;
    }
    for script in PYTHON_PEERS {
        let peer = Peer::start(script).await;
        let options = ClientOptions::default()
            .with_subprotocol("nope")
            .with_subprotocol("chat")
            .with_subprotocol("superchat");
        let mut ws = open(&peer.url("/subprotocol"), options).await;
        assert_eq!(ws.selected_subprotocol(), Some("chat"), "{script}");
        assert_eq!(
            read_text(&mut ws).await,
            "chat",
            "{script}: the server's view"
        );
        close_normally(&mut ws).await;

        let mut ws = open(&peer.url("/subprotocol"), ClientOptions::default()).await;
        assert_eq!(ws.selected_subprotocol(), None, "{script}");
        assert_eq!(read_text(&mut ws).await, "", "{script}");
        close_normally(&mut ws).await;
    }
}

#[tokio::test]
async fn extra_headers_reach_the_server() {
    if skip_peers(Peers::Python) {
        return;
    }
    for script in PYTHON_PEERS {
        let peer = Peer::start(script).await;
        let options = compressed()
            .with_header("X-Wsbox-Test", "hello header")
            .with_header("Authorization", "Bearer t0ken");
        let mut ws = open(&peer.url("/headers"), options).await;
        let headers = read_text(&mut ws).await;
        for expected in [
            r#""x-wsbox-test": "hello header""#,
            r#""authorization": "Bearer t0ken""#,
            r#""user-agent": "wsbox/"#,
            r#""sec-websocket-extensions": "permessage-deflate"#,
        ] {
            assert!(
                headers.contains(expected),
                "{script}: {expected} not in {headers}"
            );
        }
        close_normally(&mut ws).await;
    }
}

#[tokio::test]
async fn server_close_code_and_reason_reach_the_client() {
    if skip_peers(Peers::Python) {
        return;
    }
    for script in PYTHON_PEERS {
        let mut peer = Peer::start(script).await;
        let mut ws = open(&peer.url("/close?code=4001&reason=go%20away"), compressed()).await;
        expect_end(&mut ws).await;
        assert_eq!(ws.close_code(), Some(4001), "{script}");
        assert_eq!(ws.close_reason().as_deref(), Some("go away"), "{script}");
        let info = ws.closed().await;
        assert_eq!(info.cause, CloseCause::ServerClosed, "{script}");
        assert!(!info.is_normal());
        assert_eq!(
            ws.write_text("late").await,
            Err(WriteError::Closed),
            "{script}: writing after the close"
        );
        // We answered with the server's code (RFC 6455 §5.5.1).
        let line = peer.wait_line("closed /close").await;
        assert!(
            line.starts_with("closed /close code=4001"),
            "{script}: {line}"
        );
    }
}

#[tokio::test]
async fn a_message_over_max_message_size_closes_with_1009() {
    if skip_peers(Peers::Python) {
        return;
    }
    for script in PYTHON_PEERS {
        let mut peer = Peer::start(script).await;
        let options = ClientOptions {
            max_message_size: 1000,
            ..compressed()
        };
        let mut ws = open(&peer.url("/big?size=5000"), options).await;
        expect_end(&mut ws).await;
        let info = ws.closed().await;
        assert!(
            matches!(
                info.cause,
                CloseCause::ProtocolError(
                    ProtocolError::MessageTooBig { .. } | ProtocolError::InflatedTooBig { .. }
                )
            ),
            "{script}: {info:?}"
        );
        assert_eq!(info.sent.as_ref().map(|f| f.code), Some(1009), "{script}");
        let line = peer.wait_line("closed /big").await;
        assert!(
            line.starts_with("closed /big code=1009"),
            "{script}: {line}"
        );
    }
}

#[tokio::test]
async fn refused_upgrades_are_clear_errors() {
    if skip_peers(Peers::Python) {
        return;
    }
    let peer = Peer::start("websockets_server.py").await;
    let error = connect(&peer.url("/forbidden"), ClientOptions::default())
        .await
        .expect_err("403 refuses the upgrade");
    match &error {
        ClientError::HttpStatus { status, body, .. } => {
            assert_eq!(*status, 403);
            assert!(
                body.contains("forbidden by the websockets test peer"),
                "{body}"
            );
        }
        other => panic!("expected HttpStatus, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(
        text.contains("forbidden by the websockets test peer"),
        "{text}"
    );

    let peer = Peer::start("tornado_server.py").await;
    let error = connect(&peer.url("/unauthorized"), ClientOptions::default())
        .await
        .expect_err("401 refuses the upgrade");
    assert!(
        matches!(&error, ClientError::HttpStatus { status: 401, body, .. }
            if body.contains("unauthorized by the tornado test peer")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_pings_times_out() {
    if skip_peers(Peers::Python) {
        return;
    }
    let mut peer = Peer::start("silent_server.py").await;
    let options = ClientOptions::default()
        .with_ping(Duration::from_millis(200), Some(Duration::from_millis(200)));
    let mut ws = open(&peer.url("/"), options).await;
    peer.wait_line("handshake done").await;
    peer.wait_line("frame opcode=9").await; // our keepalive ping
    expect_end(&mut ws).await;
    let info = ws.closed().await;
    assert_eq!(info.cause, CloseCause::PingTimeout, "{info:?}");
    assert_eq!(info.sent.as_ref().map(|f| f.code), Some(1011), "{info:?}");
    assert_eq!(info.code, None);
    assert!(!info.is_normal());
    peer.wait_line("close code=1011").await;
    peer.wait_line("eof").await;
}

#[tokio::test]
async fn connect_timeout_when_the_handshake_is_never_answered() {
    // The kernel completes the TCP handshake for the backlog; nobody ever
    // accepts or answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let error = tokio::time::timeout(WAIT, connect(&url, options))
        .await
        .expect("the connect timeout fires within the wait")
        .expect_err("no handshake, no connection");
    assert!(
        matches!(
            error,
            ClientError::Timeout {
                stage: "waiting for the response",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("timed out"), "{error}");
    drop(listener);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    drop(listener);
    let error = connect(&url, ClientOptions::default())
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
}

// ---- against the wsbox server ----

#[tokio::test]
async fn wsbox_server_echo_and_client_api() {
    let server = TestServer::start(demo_config()).await;
    let mut ws = open(&server.url("/echo"), ClientOptions::default()).await;
    echo_round_trips(&mut ws).await;

    ws.write_json(&[1, 2, 3]).await.unwrap();
    assert_eq!(read_text(&mut ws).await, "[1,2,3]");
    let rtt = ws.ping_roundtrip(b"are you there").await.unwrap();
    assert!(rtt < WAIT);
    assert_eq!(
        ws.ping(&[0u8; 126]),
        Err(WriteError::PingTooLong(126)),
        "ping payloads are at most 125 bytes"
    );
    assert!(matches!(
        ws.close(Some(1005), ""),
        Err(WriteError::InvalidClose(_))
    ));
    assert!(matches!(
        ws.close(Some(1000), &"x".repeat(124)),
        Err(WriteError::InvalidClose(_))
    ));

    // The Stream interface, and a handle used from another task.
    let handle = ws.handle();
    tokio::spawn(async move { handle.write_text("from another task").await });
    let next = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time");
    assert_eq!(next, Some(Message::Text("from another task".into())));

    close_normally(&mut ws).await;
    assert_eq!(ws.close_code(), Some(1000));
    assert_eq!(ws.close_reason().as_deref(), Some("bye"));
    assert_eq!(ws.write_text("x").await, Err(WriteError::Closed));
    assert_eq!(ws.ping(b""), Err(WriteError::Closed));
    ws.close(Some(1000), "").expect("closing again is a no-op");
}

#[tokio::test]
async fn wsbox_server_with_compression() {
    let mut config = demo_config();
    for route in &mut config.routes {
        route.compression = Some(DeflateConfig::default());
    }
    let server = TestServer::start(config).await;
    let mut ws = open(&server.url("/echo"), compressed()).await;
    assert!(ws.is_compressed(), "extensions: {:?}", ws.extensions());
    echo_round_trips(&mut ws).await;
    close_normally(&mut ws).await;
}

#[tokio::test]
async fn wsbox_handler_close_code_and_callback_style() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = tokio::time::timeout(
        WAIT,
        connect_with_callback(&server.url("/chaos"), ClientOptions::default(), move |m| {
            let _ = tx.send(m);
        }),
    )
    .await
    .expect("in time")
    .expect("connects");
    handle.write_text("one").await.unwrap();
    handle
        .write_text("!close 4000 handler says bye")
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("callback in time")
        {
            Some(Some(message)) => got.push(message),
            Some(None) => break, // the close
            None => panic!("callback dropped without the final None"),
        }
    }
    assert_eq!(got, vec![Message::Text("one".into())]);
    assert_eq!(handle.close_code(), Some(4000));
    assert_eq!(handle.close_reason().as_deref(), Some("handler says bye"));
    assert_eq!(handle.closed().await.cause, CloseCause::ServerClosed);
}

#[tokio::test]
async fn wss_with_a_dev_certificate() {
    let dir = std::env::temp_dir().join(format!("wsbox-client-wss-{}", std::process::id()));
    let dev = wsbox::tls::write_dev_certificate(&dir).expect("dev certificate");
    let mut config = demo_config();
    config.tls = Some(TlsConfig {
        cert: dev.cert.clone(),
        key: dev.key.clone(),
    });
    let server = TestServer::start(config).await;
    let url = format!("wss://127.0.0.1:{}/echo", server.addr.port());

    let mut ws = open(&url, ClientOptions::default().with_ca_file(&dev.cert)).await;
    echo_round_trips(&mut ws).await;
    close_normally(&mut ws).await;

    // `localhost` is in the certificate too.
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let mut ws = open(&url, ClientOptions::default().with_ca_file(&dev.cert)).await;
    ws.write_text("by name").await.unwrap();
    assert_eq!(read_text(&mut ws).await, "by name");
    close_normally(&mut ws).await;

    // Without trusting the certificate the TLS handshake fails.
    let error = connect(&url, ClientOptions::default())
        .await
        .expect_err("an untrusted certificate");
    assert!(matches!(error, ClientError::Tls { .. }), "{error:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dropping_the_client_closes_with_1001() {
    if skip_peers(Peers::Python) {
        return;
    }
    let mut peer = Peer::start("websockets_server.py").await;
    let mut ws = open(&peer.url("/echo"), ClientOptions::default()).await;
    ws.write_text("hi").await.unwrap();
    assert_eq!(read_text(&mut ws).await, "hi");
    let handle = ws.handle();
    drop(ws);
    // A handle keeps the connection open.
    handle.write_text("still open").await.unwrap();
    drop(handle);
    let line = peer.wait_line("closed /echo").await;
    assert_eq!(line, "closed /echo code=1001 reason=going away");
}

#[tokio::test]
async fn keepalive_pings_reach_a_live_server_without_timing_out() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let options = ClientOptions::default().with_ping(Duration::from_millis(20), None);
    let mut ws = open(&server.url("/chaos"), options).await;
    // The handler lists the pings it saw; ask until our keepalive shows up.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        ws.write_text("!events").await.unwrap();
        let events = read_text(&mut ws).await;
        if events.contains("ping:") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keepalive ping reached the handler: {events}"
        );
    }
    assert!(!ws.is_closed(), "{:?}", ws.close_info());
    close_normally(&mut ws).await;
}
