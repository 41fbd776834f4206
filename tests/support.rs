//! Shared helpers for the end-to-end tests: start a real wsbox server on
//! 127.0.0.1 in-process, connect independent clients, capture logs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsbox::config::{Config, ModuleSource, RouteConfig, RouteLimits, RoutePattern, RuntimeConfig};

#[path = "support/examples.rs"]
pub mod examples;
pub use examples::*;

/// The chaos test guest (tests/guests/chaos), built by this crate's build script.
pub const CHAOS_WASM: &str = env!("WSBOX_CHAOS_WASM");
/// A handler on the bare 0.2.0 bindings, without the batch interface.
pub const BASIC_WASM: &str = env!("WSBOX_BASIC_WASM");

/// A handler on the bare 0.2.3 bindings that drives `pubsub` by commands.
pub const PUBSUB_WASM: &str = env!("WSBOX_PUBSUB_WASM");

/// A counter on the SDK that opts into hibernation (tests/guests/hibernate).
pub const HIBERNATE_WASM: &str = env!("WSBOX_HIBERNATE_WASM");

/// The echo example built with its `hibernate` feature: the bundled echo
/// (`wsbox::bundled::ECHO_WASM`) does not export hibernation.
pub const ECHO_HIBERNATE_WASM: &str = env!("WSBOX_ECHO_HIBERNATE_WASM");

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Any byte stream a WebSocket client runs over (plain TCP, TLS).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Stream for T {}

/// A running server; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Reaches the server's live connections (send, close).
    pub handle: wsbox::server::ServerHandle,
    task: JoinHandle<anyhow::Result<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server for `config` on an ephemeral loopback port.
    pub async fn start(mut config: Config) -> TestServer {
        init_logging();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = wsbox::server::Server::bind(&config)
            .await
            .expect("server binds");
        let addr = server.local_addr().expect("local addr");
        let handle = server.handle();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let drain = config.server.drain_time;
        let task = tokio::spawn(server.run_until(
            async {
                let _ = rx.await;
            },
            drain,
        ));
        TestServer {
            addr,
            handle,
            task,
            shutdown: Some(tx),
        }
    }

    /// Starts a graceful shutdown and waits for the server to finish it.
    pub async fn shut_down(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = &mut self.task;
        tokio::time::timeout(WAIT, task)
            .await
            .expect("shutdown within the wait")
            .expect("server task")
            .expect("server result");
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Connects a tokio-tungstenite client to `path`.
    pub async fn connect(&self, path: &str) -> Client {
        let (ws, _resp) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(self.url(path)))
                .await
                .expect("connect in time")
                .expect("handshake succeeds");
        ws
    }
}

/// A small runtime for tests: many test servers live in one process.
pub fn test_runtime() -> RuntimeConfig {
    RuntimeConfig {
        max_instances: 64,
        max_memory_per_instance: 64 << 20,
        epoch_tick: Duration::from_millis(5),
        ..RuntimeConfig::default()
    }
}

/// A config with one route serving the chaos guest at `pattern`.
pub fn chaos_config(pattern: &str, limits: RouteLimits) -> Config {
    module_config(pattern, CHAOS_WASM, limits)
}

/// One route serving the component at `path`.
pub fn module_config(pattern: &str, path: &str, limits: RouteLimits) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        server: Default::default(),
        tls: None,
        runtime: test_runtime(),
        routes: vec![RouteConfig {
            pattern: RoutePattern::new(pattern).expect("route pattern"),
            tenant: "default".to_string(),
            module: ModuleSource::File(PathBuf::from(path)),
            limits,
            origin: Default::default(),
            keepalive: Default::default(),
            compression: None,
            hibernation: Default::default(),
        }],
        tenants: Vec::new(),
        pages: Vec::new(),
        admin: None,
        pubsub: Default::default(),
    }
}

/// Connects to a handler that answers `id` with `id <connection id>` (the
/// pubsub guest) and waits until its `on-open` has run (the answer comes
/// after it): the client and its connection id.
pub async fn join(server: &TestServer, path: &str) -> (Client, u64) {
    let mut ws = server.connect(path).await;
    let answer = ask(&mut ws, "id").await;
    let id = answer
        .strip_prefix("id ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer to id: {answer}"));
    (ws, id)
}

/// The next message, which must be text.
pub async fn text(ws: &mut Client) -> String {
    match next_message(ws).await {
        WsMessage::Text(t) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Starts the control plane (registry and admin API) of a running test
/// server, with `token` as the operator token: the admin listener's
/// address and the task serving it.
pub async fn start_admin(
    server: &TestServer,
    config: &wsbox::config::AdminConfig,
    token: &str,
) -> (SocketAddr, JoinHandle<()>) {
    let (admin, _plane) = wsbox::admin::start(
        server.handle.clone(),
        config,
        wsbox::admin::Tokens::new(token),
    )
    .await
    .expect("control plane starts");
    let addr = admin.local_addr().expect("admin addr");
    (addr, tokio::spawn(admin.run()))
}

/// Serves `wasm` at `pattern` in `tenant` beside a running server's
/// config routes, as a deploy through the admin API would.
pub fn add_tenant_route(server: &TestServer, tenant: &str, pattern: &str, wasm: &str) {
    let handler = server
        .handle
        .runtime()
        .load_module(&ModuleSource::File(PathBuf::from(wasm)))
        .expect("the module loads");
    let module = Arc::new(wsbox::server::routes::ServedModule {
        name: handler.name().to_string(),
        handler,
        tenant: tenant.to_string(),
        version: Some(1),
    });
    let route = wsbox::server::routes::Route::new(
        RouteConfig {
            pattern: RoutePattern::new(pattern).expect("route pattern"),
            tenant: tenant.to_string(),
            module: ModuleSource::File(PathBuf::from(wasm)),
            limits: test_limits(),
            origin: Default::default(),
            keepalive: Default::default(),
            compression: None,
            hibernation: Default::default(),
        },
        module,
        server.handle.tenant_share(tenant),
    );
    server
        .handle
        .install_routes(vec![route], &std::collections::HashMap::new())
        .expect("routes installed");
}

/// Limits suited to tests: small memory, a short CPU deadline.
pub fn test_limits() -> RouteLimits {
    RouteLimits {
        memory_limit: 32 << 20,
        cpu_time_per_event: Duration::from_millis(300),
        ..RouteLimits::default()
    }
}

/// The bundled demo, as `wsbox serve` runs it with no config.
pub fn demo_config() -> Config {
    let mut config = Config::bundled_demo();
    config.runtime = test_runtime();
    config.admin = None;
    config
}

/// The echo example built against `wsbox:websocket@0.1.0`, checked in so
/// that components built for the first contract keep being tested.
pub const ECHO_0_1_0_WASM: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/echo-wit-0.1.0.wasm");

/// The echo example built against `wsbox:websocket@0.2.0` (before
/// `pubsub` made the package 0.2.1), checked in for the same reason.
pub const ECHO_0_2_0_WASM: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/echo-wit-0.2.0.wasm");

/// The pubsub test guest built against `wsbox:websocket@0.2.2` (before
/// 0.2.3 added the `hibernation` export), checked in for the same reason.
pub const PUBSUB_0_2_2_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/pubsub-wit-0.2.2.wasm"
);

/// The pubsub test guest built against `wsbox:websocket@0.2.1` (before
/// 0.2.2 added `publish-with-broker-report`), checked in for the same
/// reason.
pub const PUBSUB_0_2_1_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/pubsub-wit-0.2.1.wasm"
);

/// The bundled demo with its echo route's module replaced by `wasm`.
fn demo_with_echo(wasm: &str) -> Config {
    let mut config = demo_config();
    for route in &mut config.routes {
        if route.pattern.as_str().starts_with("/echo") {
            route.module = wsbox::config::ModuleSource::File(wasm.into());
        }
    }
    config
}

/// The bundled demo with its echo module replaced by the 0.1.0 build.
pub fn echo_0_1_0_config() -> Config {
    demo_with_echo(ECHO_0_1_0_WASM)
}

/// The bundled demo with its echo module replaced by the 0.2.0 build.
pub fn echo_0_2_0_config() -> Config {
    demo_with_echo(ECHO_0_2_0_WASM)
}

/// The echo demo as built today (contract 0.2.3), and as built against
/// 0.2.0 and 0.1.0: the echo end-to-end tests run on all three.
pub fn echo_configs() -> [Config; 3] {
    [demo_config(), echo_0_2_0_config(), echo_0_1_0_config()]
}

/// The environment variable that skips the tests needing peers installed
/// from outside the project (Python packages, Debian's Chromium).
pub const SKIP_PEERS_VAR: &str = "WSBOX_SKIP_PEERS";

/// A program from a Debian package, installed with apt-get on first use
/// (tests run as root on a fresh machine, as .ci/run does). `env` names a
/// variable that overrides the path.
pub fn debian_program(path: &str, package: &str, env: &str, skip_name: &str) -> String {
    // Tests run in parallel: one apt-get at a time.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::env::var(env).unwrap_or_else(|_| path.into());
    if !std::path::Path::new(&path).exists() && std::env::var_os(env).is_none() {
        announce(&format!(
            "wsbox tests: installing Debian's {package} with apt-get (once; {SKIP_PEERS_VAR}={skip_name} skips the tests that need it)"
        ));
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}"
                ),
            ])
            .status();
    }
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} not found: install Debian's `{package}` package (.ci/run does) or set {env}"
    );
    path
}

/// `promtool`, installed from Debian's `prometheus` package on first use.
pub fn promtool() -> String {
    debian_program(
        "/usr/bin/promtool",
        "prometheus",
        "WSBOX_PROMTOOL",
        "promtool",
    )
}

/// Runs `promtool check metrics` on a Prometheus text exposition; panics
/// with promtool's complaint if it fails.
pub fn promtool_check(text: &str) {
    let mut check = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Peers that `cargo test` installs on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Python `websockets` and `tornado`, pip-installed into tests/peers/.venv.
    Python,
    /// Debian's `chromium`, apt-installed (as root).
    Chromium,
    /// `promtool` from Debian's `prometheus`, apt-installed (as root).
    Promtool,
    /// Debian's `redis-server`, apt-installed (as root).
    Redis,
    /// Debian's `nats-server`, apt-installed (as root).
    Nats,
    /// The guest-language toolchains (componentize-py, ...), installed
    /// into `~/.cache/wsbox/toolchains` by `guest-sdk/toolchains/ensure.sh`.
    Polyglot,
}

impl Peers {
    fn name(self) -> &'static str {
        match self {
            Peers::Python => "python",
            Peers::Chromium => "chromium",
            Peers::Promtool => "promtool",
            Peers::Redis => "redis",
            Peers::Nats => "nats",
            Peers::Polyglot => "polyglot",
        }
    }
}

/// A line on the real stderr: the test harness captures `eprintln!`, and an
/// install or a skip must be seen even when the test passes.
pub fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether to skip a test that needs `peers`: `WSBOX_SKIP_PEERS=1` (or
/// `all`) skips every such test, a comma list (`python,chromium`) names
/// the ones to skip. Prints one line per skipped test, so a skip is never
/// silent.
pub fn skip_peers(peers: Peers) -> bool {
    let Ok(value) = std::env::var(SKIP_PEERS_VAR) else {
        return false;
    };
    let skip = value
        .split(',')
        .map(str::trim)
        .any(|v| v == "1" || v == "all" || v.eq_ignore_ascii_case(peers.name()));
    if skip {
        announce(&format!(
            "SKIPPED: this test needs the {} peer and {SKIP_PEERS_VAR}={value}",
            peers.name()
        ));
    }
    skip
}

/// The Python with the test peers: `WSBOX_PYTHON`, else
/// `tests/peers/.venv/bin/python`, created on first use by
/// `tests/peers/setup.sh` (from PyPI), so that `cargo test` alone sets up a
/// fresh machine.
pub fn python() -> PathBuf {
    static SETUP: Mutex<()> = Mutex::new(());
    if let Some(p) = std::env::var_os("WSBOX_PYTHON") {
        return PathBuf::from(p);
    }
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/peers/.venv/bin/python"
    ));
    if !path.exists() {
        let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        if !path.exists() {
            announce(&format!(
                "wsbox tests: installing the Python test peers (websockets, tornado) from PyPI into {} (once; {SKIP_PEERS_VAR}=python skips these tests)",
                path.parent()
                    .and_then(|p| p.parent())
                    .unwrap_or(&path)
                    .display()
            ));
            let status = std::process::Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/setup.sh"))
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "tests/peers/setup.sh failed: it installs Python `websockets` and `tornado` from PyPI"
            );
        }
    }
    assert!(
        path.exists(),
        "no Python with the test peers at {}: run `bash tests/peers/setup.sh` or set WSBOX_PYTHON",
        path.display()
    );
    path
}

/// Turns permessage-deflate on for every route, with the defaults.
pub fn enable_compression(config: &mut Config) {
    for route in &mut config.routes {
        route.compression = Some(Default::default());
    }
}

/// The next data or close message, skipping pings and pongs; panics after [`WAIT`].
pub async fn next_message<S: Stream>(ws: &mut WebSocketStream<S>) -> WsMessage {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream not ended")
            .expect("no protocol error");
        match msg {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Sends a text message and returns the text reply.
pub async fn ask<S: Stream>(ws: &mut WebSocketStream<S>, text: &str) -> String {
    ws.send(WsMessage::text(text)).await.expect("send");
    match next_message(ws).await {
        WsMessage::Text(t) => t.to_string(),
        other => panic!("expected a text reply to {text:?}, got {other:?}"),
    }
}

/// Waits for the server's close frame and returns its code and reason, then
/// drives the client until the connection ends, so that the client's reply
/// to the close reaches the server.
pub async fn expect_close<S: Stream>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    let result = loop {
        match next_message(ws).await {
            WsMessage::Close(Some(frame)) => break (frame.code.into(), frame.reason.to_string()),
            WsMessage::Close(None) => break (1005, String::new()),
            _ => {} // data sent before the close is fine
        }
    };
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
    result
}

/// Opens a raw TCP connection and completes a handshake by hand, for tests
/// that must send frames no well-behaved client would send.
pub async fn raw_handshake(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write handshake");
    let head = read_http_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
    stream
}

/// Sends a raw HTTP request and returns the response head and body.
pub async fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    // A complete response with Content-Length is enough.
                    if response_complete(&out) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(head_end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = text[..head_end].to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match len {
        Some(len) => bytes.len() >= head_end + 4 + len,
        None => head.starts_with("http/1.1 101"),
    }
}

async fn read_http_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read head");
            assert!(n == 1, "connection closed during handshake");
            head.push(byte[0]);
        }
    })
    .await
    .expect("handshake response in time");
    String::from_utf8_lossy(&head).into_owned()
}

/// Encodes a client frame (masked unless `mask` is None).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one server frame (unmasked) from a raw stream: (opcode, payload).
pub async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.expect("frame head");
        assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).await.expect("len16");
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).await.expect("len64");
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.expect("payload");
        (head[0] & 0x0f, payload)
    })
    .await
    .expect("a frame in time")
}

/// Reads frames until a close frame; returns its code (1005 if empty).
pub async fn read_close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (opcode, payload) = read_frame(stream).await;
        if opcode == 0x8 {
            return if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            };
        }
    }
}

// ---- log capture: handler logs are how tests observe on_close ----

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        LOG_WRITTEN.notify_waiters();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<SharedBuf> = OnceLock::new();
static LOG_WRITTEN: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Captures this process's logs (all tests of one binary share them).
pub fn init_logging() {
    LOGS.get_or_init(|| {
        let buf = SharedBuf::default();
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("wsbox=debug,wsbox::guest=trace")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    });
}

/// Everything logged so far.
pub fn logs() -> String {
    LOGS.get()
        .and_then(|b| {
            b.0.lock()
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        })
        .unwrap_or_default()
}

/// Waits until the logs contain `needle`; panics after [`WAIT`].
pub async fn wait_for_log(needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Register before looking, so a write in between is not missed.
        let written = LOG_WRITTEN.notified();
        if let Some(line) = logs().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        if tokio::time::timeout_at(deadline, written).await.is_err() {
            panic!("log line containing {needle:?} never appeared");
        }
    }
}

/// Waits until a log line contains every one of `needles`; panics after
/// [`WAIT`].
pub async fn wait_for_log_all(needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let written = LOG_WRITTEN.notified();
        if let Some(line) = logs()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return line.to_string();
        }
        if tokio::time::timeout_at(deadline, written).await.is_err() {
            panic!("log line containing all of {needles:?} never appeared");
        }
    }
}

/// Waits until at least `n` log lines contain every one of `needles`;
/// panics after [`WAIT`].
pub async fn wait_for_log_count(needles: &[&str], n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let written = LOG_WRITTEN.notified();
        if count_log_lines(needles) >= n {
            return;
        }
        if tokio::time::timeout_at(deadline, written).await.is_err() {
            panic!("fewer than {n} log lines contain all of {needles:?}");
        }
    }
}

/// How many log lines so far contain every one of `needles`.
pub fn count_log_lines(needles: &[&str]) -> usize {
    logs()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// The `wsbox` binary of this build: this package's `wsbox-under-test`,
/// which cargo builds beside the test executables, in `target/<profile>/`.
pub fn wsbox_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let bin = dir.join("wsbox-under-test");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test -p wsbox-tests` builds it",
        bin.display()
    );
    bin
}

/// A `wsbox serve` process of this build, serving the chaos guest at
/// `/chaos` with the given extra `[server]` and `[[route]]` lines; killed
/// when dropped.
pub struct WsboxProcess {
    pub child: tokio::process::Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its stderr, unread: a test reads it, or leaves it to fill up.
    pub stderr: tokio::process::ChildStderr,
}

impl WsboxProcess {
    pub async fn start(server_lines: &str, route_lines: &str) -> WsboxProcess {
        use tokio::io::{AsyncBufReadExt, BufReader};
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wsbox-process-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("wsbox.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\n[server]\n{server_lines}\n\
                 [runtime]\nmax_instances = 8\nmax_memory_per_instance = \"64MiB\"\n\
                 [[route]]\npath = \"/chaos\"\nmodule = {CHAOS_WASM:?}\nmemory_limit = \"32MiB\"\n{route_lines}\n"
            ),
        )
        .expect("write the config");
        let mut child = tokio::process::Command::new(wsbox_binary())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start wsbox");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let addr = loop {
            let line = tokio::time::timeout(WAIT, stdout.next_line())
                .await
                .expect("wsbox printed its address in time")
                .expect("read stdout")
                .expect("wsbox exited before listening");
            if let Some(rest) = line.strip_prefix("wsbox listening on ws://") {
                break rest.split(',').next().unwrap_or_default().to_string();
            }
        };
        // Keep reading stdout: wsbox prints more lines after this one (its
        // routes), and a println! into a closed pipe panics the server.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = child.stderr.take().expect("piped");
        WsboxProcess {
            child,
            addr,
            stderr,
        }
    }
}

/// Polls server state that nothing notifies about, every 10 ms, until
/// `check` returns `None`; fails with its last description of the state
/// (`Some`) after [`WAIT`].
async fn poll_until(mut check: impl FnMut() -> Option<String>) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let Some(state) = check() else { return };
        assert!(std::time::Instant::now() < deadline, "{state}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits (10 s at most) until at most `n` handler instances are alive in
/// the server's pool: a client that drops its connection does not wait
/// for the server to free the instance's slot.
pub async fn pool_holds_at_most(server: &TestServer, n: u64) {
    poll_until(|| {
        let (live, _) = server.handle.runtime().pool_usage();
        (live > n).then(|| format!("{live} handler instances still alive, not at most {n}"))
    })
    .await
}

/// Waits (10 s at most) until the metrics count `n` hibernated
/// connections on `route`.
pub async fn metrics_count_hibernated(server: &TestServer, route: &str, n: u64) {
    let needle = format!(r#"route="{route}""#);
    poll_until(|| {
        let text = server.handle.encode_metrics(0, 0).expect("metrics");
        let count: u64 = text
            .lines()
            .filter(|l| l.starts_with("wsbox_connections_hibernated{") && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        (count != n).then(|| {
            format!("the metrics count {count} hibernated connections on {route}, not {n}")
        })
    })
    .await
}

/// Where a guest's main core module puts its stack and data, read from
/// the component: `(stack top, end of the initialised data, end of the
/// initial memory)`.
pub fn guest_memory_layout(component: &[u8]) -> (u64, u64, u64) {
    use wasmparser::{Operator, Parser, Payload};
    let const_i32 = |expr: wasmparser::ConstExpr| match expr.get_operators_reader().read() {
        Ok(Operator::I32Const { value }) => u64::try_from(value).ok(),
        _ => None,
    };
    let (mut modules, mut stack, mut data_end, mut memory_end) = (0, None, 0, None);
    for payload in Parser::new(0).parse_all(component) {
        match payload.expect("a valid component") {
            Payload::ModuleSection { .. } => modules += 1,
            // The first core module is the guest's own; the rest are shims.
            _ if modules != 1 => {}
            Payload::GlobalSection(globals) => {
                let first = globals
                    .into_iter()
                    .next()
                    .expect("a global")
                    .expect("valid");
                assert!(first.ty.mutable, "global 0 is the stack pointer");
                stack = const_i32(first.init_expr);
            }
            Payload::MemorySection(memories) => {
                let memory = memories
                    .into_iter()
                    .next()
                    .expect("a memory")
                    .expect("valid");
                memory_end = Some(memory.initial * 65536);
            }
            Payload::DataSection(segments) => {
                for segment in segments {
                    let segment = segment.expect("valid");
                    if let wasmparser::DataKind::Active { offset_expr, .. } = segment.kind {
                        let start = const_i32(offset_expr).expect("a constant offset");
                        data_end = data_end.max(start + segment.data.len() as u64);
                    }
                }
            }
            _ => {}
        }
    }
    (
        stack.expect("a stack pointer"),
        data_end,
        memory_end.expect("a memory"),
    )
}

/// Checks that a Rust guest was linked with the packed memory layout of
/// `wsbox build` and this workspace's guest builds: a stack of at least
/// 1 MiB, and data that ends in the initial memory's last 4 KiB page (where
/// malloc writes its first heap's footer) with room for a heap after it.
pub fn assert_packed_layout(name: &str, component: &[u8]) {
    let (stack, data_end, memory_end) = guest_memory_layout(component);
    assert!(
        stack >= 1 << 20,
        "{name}: a stack of {stack} bytes, less than Rust's 1 MiB"
    );
    assert!(
        data_end > memory_end - 4096 && data_end + 1024 <= memory_end,
        "{name}: the data ends at {data_end}, not inside the last page before {memory_end} with room for a heap"
    );
}
