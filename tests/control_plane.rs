//! The control plane end to end: the module registry, hot deploys under
//! load, rollback, restart from the registry, the admin API's auth and
//! connection commands, the CLI, and crash safety under `kill -9`.
//!
//! Two distinguishable handlers stand for two versions: the bundled echo
//! answers `!json` with `!json`; the chaos guest answers it with
//! `{"hello":"world","n":42}`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsbox::config::{AdminConfig, RoutePattern};
use wsbox_tests::{
    CHAOS_WASM, Client, HIBERNATE_WASM, Peers, TestServer, WAIT, ask, chaos_config,
    count_log_lines, expect_close, init_logging, metrics_count_hibernated, next_message,
    promtool_check, skip_peers, test_limits, wait_for_log, wait_for_log_all, wsbox_binary,
};

const TOKEN: &str = "test-operator-token";
const CHAOS_JSON: &str = r#"{"hello":"world","n":42}"#;

fn echo_bytes() -> Vec<u8> {
    wsbox::bundled::ECHO_WASM.to_vec()
}

fn chaos_bytes() -> Vec<u8> {
    std::fs::read(CHAOS_WASM).expect("the chaos guest is built")
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wsbox-control-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An in-process server with its control plane.
struct Plane {
    server: TestServer,
    admin: SocketAddr,
    admin_task: tokio::task::JoinHandle<()>,
    /// How long opening the registry and restoring its deployments took.
    control_start: Duration,
}

impl Plane {
    async fn start(data_dir: &Path, max_module_size: u64) -> Plane {
        Plane::start_with(
            chaos_config("/chaos", test_limits()),
            data_dir,
            max_module_size,
        )
        .await
    }

    async fn start_with(
        config: wsbox::config::Config,
        data_dir: &Path,
        max_module_size: u64,
    ) -> Plane {
        let admin = AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            max_module_size,
            ..Default::default()
        };
        Plane::start_admin(config, admin).await
    }

    async fn start_admin(config: wsbox::config::Config, admin: AdminConfig) -> Plane {
        init_logging();
        let server = TestServer::start(config).await;
        let config = admin;
        let started = Instant::now();
        let (addr, admin_task) = wsbox_tests::start_admin(&server, &config, TOKEN).await;
        let control_start = started.elapsed();
        Plane {
            server,
            admin: addr,
            admin_task,
            control_start,
        }
    }

    async fn stop(self) {
        self.admin_task.abort();
        let _ = self.admin_task.await;
        self.server.shut_down().await;
    }

    async fn api(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        http(&self.admin.to_string(), method, path, Some(TOKEN), body).await
    }

    async fn upload(&self, module: &str, bytes: &[u8], note: &str) -> u64 {
        let (status, v) = self
            .api(
                "POST",
                &format!("/v1/tenants/default/modules/{module}/versions?note={note}"),
                bytes,
            )
            .await;
        assert_eq!(status, 201, "upload: {v}");
        v["version"].as_u64().expect("a version number")
    }

    async fn activate_without_route(&self, module: &str, version: u64) -> Value {
        let body = json!({"module": module, "version": version}).to_string();
        let (status, v) = self
            .api("POST", "/v1/tenants/default/deployments", body.as_bytes())
            .await;
        assert_eq!(status, 200, "activate: {v}");
        v
    }

    async fn activate(&self, module: &str, version: u64, route: &str) -> Value {
        let body = json!({"module": module, "version": version, "route": route}).to_string();
        let (status, v) = self
            .api("POST", "/v1/tenants/default/deployments", body.as_bytes())
            .await;
        assert_eq!(status, 200, "activate: {v}");
        v
    }
}

/// One HTTP/1.1 request to the admin API; the status and the JSON answer.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("admin connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("admin answer in time")
        .expect("read answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "JSON answer expected: {head}"
    );
    (status, serde_json::from_str(body).expect("a JSON body"))
}

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}{path}")),
    )
    .await
    .expect("connect in time")
    .expect("handshake succeeds");
    ws
}

/// Which handler a connection runs: "chaos" or "echo".
async fn which(ws: &mut Client) -> &'static str {
    match ask(ws, "!json").await.as_str() {
        CHAOS_JSON => "chaos",
        "!json" => "echo",
        other => panic!("unexpected answer to !json: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_under_load_drop_no_connection_and_lose_no_message() {
    let dir = TempDir::new("load");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let echo = echo_bytes();
    let chaos = chaos_bytes();
    let v1 = plane.upload("live", &echo, "v1").await;
    plane.activate("live", v1, "/live").await;

    // Streaming clients on v1: each sends numbered messages and checks
    // every echo, until told to stop.
    const STREAMERS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let mut streamers = Vec::new();
    for i in 0..STREAMERS {
        let mut ws = connect(plane.server.addr, "/live").await;
        let stop = Arc::clone(&stop);
        streamers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("streamer {i} message {n}");
                assert_eq!(ask(&mut ws, &text).await, text, "echo of message {n}");
                n += 1;
            }
            (n, ws)
        }));
    }

    // 20 deploys, alternating the two handlers; a connection opened after
    // each deploy must run that deploy's handler, and keep running it.
    const DEPLOYS: usize = 20;
    let mut pinned: Vec<(Client, &'static str)> = Vec::new();
    let mut deploy_ms = Vec::new();
    for k in 0..DEPLOYS {
        let (bytes, expected) = if k.is_multiple_of(2) {
            (&chaos, "chaos")
        } else {
            (&echo, "echo")
        };
        let started = Instant::now();
        let v = plane.upload("live", bytes, &format!("deploy-{k}")).await;
        let d = plane.activate("live", v, "/live").await;
        deploy_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(d["version"].as_u64(), Some(v));
        let mut ws = connect(plane.server.addr, "/live").await;
        assert_eq!(
            which(&mut ws).await,
            expected,
            "a connection after deploy {k}"
        );
        pinned.push((ws, expected));
    }

    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for s in streamers {
        let (n, mut ws) = s.await.expect("streamer ran without a lost message");
        assert!(n > 0, "each streamer got messages through");
        total += n;
        // Still on v1 after 20 deploys.
        assert_eq!(which(&mut ws).await, "echo");
        ws.close(None).await.expect("close");
    }
    for (k, (ws, expected)) in pinned.iter_mut().enumerate() {
        assert_eq!(
            which(ws).await,
            *expected,
            "the connection opened after deploy {k}"
        );
    }

    // Live connections per version: v1 keeps the streamers' (closing) or
    // none, each deploy's version exactly its one pinned connection.
    let (_, view) = plane
        .api("GET", "/v1/tenants/default/modules/live/versions", b"")
        .await;
    let versions = view["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), DEPLOYS + 1);
    for v in &versions[1..] {
        assert_eq!(v["live_connections"], 1, "{v}");
    }
    assert_eq!(view["active_version"].as_u64(), Some(DEPLOYS as u64 + 1));
    let mut sorted = deploy_ms.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "deploy under load: {total} messages echoed by {STREAMERS} streamers during {DEPLOYS} deploys, \
         0 lost, 0 dropped; upload+activate median {:.1} ms, max {:.1} ms",
        sorted[DEPLOYS / 2],
        sorted[DEPLOYS - 1]
    );
    for (mut ws, _) in pinned {
        ws.close(None).await.expect("close");
    }
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_restart_restore_without_recompiling() {
    let dir = TempDir::new("restart");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let v1 = plane.upload("rs", &echo_bytes(), "first").await;
    plane.activate("rs", v1, "/rs").await;
    let v2 = plane.upload("rs", &chaos_bytes(), "second").await;
    let d = plane.activate("rs", v2, "/rs").await;
    assert_eq!(d["previous_version"].as_u64(), Some(v1));
    assert_eq!(d["routes"], json!(["/rs"]));
    let mut ws = connect(plane.server.addr, "/rs").await;
    assert_eq!(which(&mut ws).await, "chaos");

    // Rollback: one step back to v1, for new connections only.
    let (status, d) = plane
        .api("POST", "/v1/tenants/default/modules/rs/rollback", b"")
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["version"].as_u64(), Some(v1));
    let mut after = connect(plane.server.addr, "/rs").await;
    assert_eq!(which(&mut after).await, "echo");
    assert_eq!(
        which(&mut ws).await,
        "chaos",
        "the older connection keeps v2"
    );
    let _ = wait_for_log("audit=\"rollback\"").await;
    ws.close(None).await.expect("close");
    after.close(None).await.expect("close");
    let (_, status) = plane.api("GET", "/v1/status", b"").await;
    assert_eq!(status["compiles"], 2, "one compile per upload: {status}");
    plane.stop().await;

    // A new server on the same data directory serves v1 at /rs again,
    // from the compiled-code cache.
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let restore_ms = plane.control_start.as_secs_f64() * 1000.0;
    let (_, status) = plane.api("GET", "/v1/status", b"").await;
    assert_eq!(status["compiles"], 0, "nothing recompiled: {status}");
    assert_eq!(status["compiled_cache_hits"], 1, "{status}");
    let mut ws = connect(plane.server.addr, "/rs").await;
    assert_eq!(which(&mut ws).await, "echo");
    let (_, view) = plane
        .api("GET", "/v1/tenants/default/modules/rs/versions", b"")
        .await;
    assert_eq!(view["active_version"].as_u64(), Some(v1));
    assert_eq!(view["versions"][1]["note"], "second");
    // Rolling back again goes to v2, also from the cache.
    let (status_code, d) = plane
        .api("POST", "/v1/tenants/default/modules/rs/rollback", b"")
        .await;
    assert_eq!(status_code, 200, "{d}");
    assert_eq!(d["version"].as_u64(), Some(v2));
    let (_, status) = plane.api("GET", "/v1/status", b"").await;
    assert_eq!(
        status["compiles"], 0,
        "rollback loaded cached code: {status}"
    );
    // The same bytes uploaded again: a new version, from the cache too.
    let v3 = plane.upload("rs", &echo_bytes(), "again").await;
    assert_eq!(v3, v2 + 1);
    let (_, status) = plane.api("GET", "/v1/status", b"").await;
    assert_eq!(status["compiles"], 0, "re-upload not recompiled: {status}");
    eprintln!(
        "restart with one active deployment: registry opened and deployment restored in {restore_ms:.1} ms, 0 compiles"
    );
    ws.close(None).await.expect("close");
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_route_is_served_by_the_deployed_module_of_its_name() {
    let dir = TempDir::new("override");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let mut before = connect(plane.server.addr, "/chaos").await;
    assert_eq!(which(&mut before).await, "chaos");
    // The config route's module is named after its file's stem.
    let module = Path::new(CHAOS_WASM)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a file stem");
    let v = plane.upload(module, &echo_bytes(), "override").await;
    let d = plane.activate_without_route(module, v).await;
    assert_eq!(d["routes"], json!(["/chaos"]), "{d}");
    let mut after = connect(plane.server.addr, "/chaos").await;
    assert_eq!(which(&mut after).await, "echo");
    assert_eq!(
        which(&mut before).await,
        "chaos",
        "the older connection keeps its module"
    );
    before.close(None).await.expect("close");
    after.close(None).await.expect("close");
    plane.stop().await;
}

/// `POST /v1/tenants/default/deployments` with `body`: the status and answer.
async fn deploy(plane: &Plane, body: &Value) -> (u16, Value) {
    plane
        .api(
            "POST",
            "/v1/tenants/default/deployments",
            body.to_string().as_bytes(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_bound_through_the_api_hibernates_and_wakes_with_its_state() {
    // Unique to this test: its log needles name it.
    const P: &str = "/api-bound-hibernates";
    let dir = TempDir::new("hibernate");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let counter = std::fs::read(HIBERNATE_WASM).expect("the hibernate guest is built");
    let v = plane.upload("counter", &counter, "hibernating").await;

    // Bad values are refused with 400 saying what is wrong; nothing is
    // deployed or bound.
    for (extra, needle) in [
        (
            json!({"hibernate_after": "5 fortnights"}),
            "`hibernate_after`: unknown duration unit `fortnights`",
        ),
        (
            json!({"hibernate_after": [10]}),
            "`hibernate_after` must be a duration",
        ),
        (
            json!({"max_attachment": "2MiB"}),
            "`max_attachment`: must be at most 1MiB",
        ),
        (
            json!({"auto_response": {"request": "", "response": "x"}}),
            "`auto_response.request`: must not be empty",
        ),
    ] {
        let mut body = json!({"module": "counter", "version": v, "route": P});
        for (k, value) in extra.as_object().expect("an object") {
            body[k] = value.clone();
        }
        let (status, answer) = deploy(&plane, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{body}: {error}");
    }
    let (status, answer) = deploy(
        &plane,
        &json!({"module": "counter", "version": v, "hibernate_after": "10s"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("give `route`")),
        "{answer}"
    );
    let (_, listed) = plane
        .api("GET", "/v1/tenants/default/deployments", b"")
        .await;
    assert_eq!(listed["deployments"], json!([]), "{listed}");

    // Bound with the settings a config route would have.
    let (status, d) = deploy(
        &plane,
        &json!({"module": "counter", "version": v, "route": P, "hibernate_after": "100ms",
                "max_attachment": 4096, "auto_response": {"request": "ping?", "response": "pong!"}}),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    let settings = json!([{"route": P, "hibernate_after": "100ms", "max_attachment": "4KiB",
        "auto_response": {"request": "ping?", "response": "pong!"}}]);
    assert_eq!(d["bound_routes"], settings, "{d}");
    let (_, listed) = plane
        .api("GET", "/v1/tenants/default/deployments", b"")
        .await;
    assert_eq!(
        listed["deployments"][0]["bound_routes"], settings,
        "{listed}"
    );
    let _ = wait_for_log_all(&[
        "audit=\"deploy\"",
        &format!("route=\"{P}\""),
        "hibernate_after=100ms",
    ])
    .await;

    let mut ws = connect(plane.server.addr, P).await;
    assert_eq!(ask(&mut ws, "count").await, "count 1 messages 1 wakes 0");
    let answer = ask(&mut ws, "id").await;
    let id: u64 = answer
        .strip_prefix("counter-id ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer to id: {answer}"));
    let span = format!("conn{{id={id} route={P} tenant=default module=counter version=1}}");
    wait_for_log_all(&[&span, "connection hibernated"]).await;
    metrics_count_hibernated(&plane.server, P, 1).await;
    // The host answers the auto-response without waking it...
    assert_eq!(ask(&mut ws, "ping?").await, "pong!");
    assert_eq!(count_log_lines(&[&span, "hibernated connection woke"]), 0);
    // ...and the next message wakes it with its state.
    assert_eq!(ask(&mut ws, "count").await, "count 2 messages 3 wakes 1");
    let woke = wait_for_log_all(&[&span, "hibernated connection woke"]).await;
    assert!(woke.contains("version=Some(1)"), "{woke}");
    ws.close(None).await.expect("close");
    plane.stop().await;

    // A restart builds the route from the stored binding, settings and all
    // (checked on the new server's metrics: connection ids start over).
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let (_, listed) = plane
        .api("GET", "/v1/tenants/default/deployments", b"")
        .await;
    assert_eq!(
        listed["deployments"][0]["bound_routes"], settings,
        "{listed}"
    );
    let mut ws = connect(plane.server.addr, P).await;
    assert_eq!(ask(&mut ws, "count").await, "count 1 messages 1 wakes 0");
    metrics_count_hibernated(&plane.server, P, 1).await;
    assert_eq!(ask(&mut ws, "count").await, "count 2 messages 2 wakes 1");
    ws.close(None).await.expect("close");

    // Bound again without settings: the binding is replaced whole, so
    // hibernation is off for new connections.
    let (status, d) = deploy(
        &plane,
        &json!({"module": "counter", "version": v, "route": P}),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["bound_routes"],
        json!([{"route": P, "hibernate_after": null, "max_attachment": "16KiB",
                "auto_response": null}]),
        "{d}"
    );
    plane.stop().await;
}

/// The status line and body of a WebSocket upgrade request to `path`.
async fn upgrade_answer(addr: SocketAddr, path: &str) -> String {
    wsbox_tests::raw_request(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_have_namespaces_and_connection_caps() {
    let dir = TempDir::new("tenants");
    let mut plane = Plane::start(&dir.0, 8 << 20).await;
    let (status, v) = plane
        .api(
            "POST",
            "/v1/tenants/acme/modules/chat/versions",
            &echo_bytes(),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let bind = json!({"module": "chat", "route": "/chat"}).to_string();
    let (status, v) = plane
        .api("POST", "/v1/tenants/acme/deployments", bind.as_bytes())
        .await;
    assert_eq!(status, 409, "no namespace yet: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("path_prefix"),
        "{v}"
    );

    let settings = json!({"path_prefix": "/acme", "max_connections": 2}).to_string();
    let (status, v) = plane
        .api("PUT", "/v1/tenants/acme", settings.as_bytes())
        .await;
    assert_eq!(status, 200, "{v}");
    let nested = json!({"path_prefix": "/acme/sub"}).to_string();
    let (status, v) = plane
        .api("PUT", "/v1/tenants/beta", nested.as_bytes())
        .await;
    assert_eq!(status, 409, "nested namespaces: {v}");
    let (status, _) = plane
        .api("PUT", "/v1/tenants/default", br#"{"path_prefix": "/d"}"#)
        .await;
    assert_eq!(status, 422);

    let (status, d) = plane
        .api("POST", "/v1/tenants/acme/deployments", bind.as_bytes())
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["routes"], json!(["/acme/(?:chat)"]));
    assert!(
        upgrade_answer(plane.server.addr, "/chat")
            .await
            .starts_with("HTTP/1.1 404")
    );

    for round in ["before a restart", "after a restart"] {
        let mut first = connect(plane.server.addr, "/acme/chat").await;
        let mut second = connect(plane.server.addr, "/acme/chat").await;
        let refused = upgrade_answer(plane.server.addr, "/acme/chat").await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{round}: {refused}");
        assert!(
            refused.contains("tenant `acme` is at its limit of 2 open connections"),
            "{round}: {refused}"
        );
        // Another tenant is not refused.
        let mut other = connect(plane.server.addr, "/chaos").await;
        assert_eq!(ask(&mut other, "fine").await, "fine");
        assert_eq!(ask(&mut first, "a").await, "a");
        assert_eq!(ask(&mut second, "b").await, "b");
        for mut ws in [first, second, other] {
            ws.close(None).await.expect("close");
        }
        if round == "before a restart" {
            let (_, tenants) = plane.api("GET", "/v1/tenants", b"").await;
            let acme = tenants["tenants"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["name"] == "acme").cloned())
                .expect("acme listed");
            assert_eq!(acme["path_prefix"], "/acme");
            assert_eq!(acme["max_connections"], 2);
        }
        if round == "before a restart" {
            plane.stop().await;
            plane = Plane::start(&dir.0, 8 << 20).await;
        }
    }
    plane.stop().await;
}

/// A tenant's `max_memory_total` is shared by its instances: once spent,
/// its new connections get 503 with a body that names it, while another
/// tenant's still connect; memory comes back when a connection closes, and
/// the setting survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_memory_budget_refuses_its_new_instances_and_no_one_elses() {
    let dir = TempDir::new("tenant-memory");
    let mut plane = Plane::start(&dir.0, 8 << 20).await;
    let (status, v) = plane
        .api(
            "POST",
            "/v1/tenants/acme/modules/echo/versions",
            &echo_bytes(),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = plane
        .api("PUT", "/v1/tenants/acme", br#"{"path_prefix": "/acme"}"#)
        .await;
    assert_eq!(status, 200, "{v}");
    let bind = json!({"module": "echo", "route": "/echo"}).to_string();
    let (status, d) = plane
        .api("POST", "/v1/tenants/acme/deployments", bind.as_bytes())
        .await;
    assert_eq!(status, 200, "{d}");

    let acme = |tenants: &Value| {
        tenants["tenants"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "acme").cloned())
            .expect("acme listed")
    };
    let mut first = connect(plane.server.addr, "/acme/echo").await;
    assert_eq!(ask(&mut first, "one").await, "one");
    let (_, tenants) = plane.api("GET", "/v1/tenants", b"").await;
    let one = acme(&tenants)["memory_used"].as_u64().expect("memory_used");
    assert!(one > 0, "{tenants}");

    // Room for one instance and a half.
    let settings = json!({"path_prefix": "/acme", "max_memory_total": one + one / 2}).to_string();
    let (status, v) = plane
        .api("PUT", "/v1/tenants/acme", settings.as_bytes())
        .await;
    assert_eq!(status, 200, "{v}");
    for zero in [
        r#"{"max_memory_total": 0}"#,
        r#"{"max_publishes_per_second": 0}"#,
    ] {
        let (status, v) = plane.api("PUT", "/v1/tenants/acme", zero.as_bytes()).await;
        assert_eq!(status, 422, "{zero}: {v}");
    }

    for round in ["before a restart", "after a restart"] {
        let refused = upgrade_answer(plane.server.addr, "/acme/echo").await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{round}: {refused}");
        assert!(
            refused.contains("tenant `acme`'s memory for handlers is spent"),
            "{round}: {refused}"
        );
        let mut other = connect(plane.server.addr, "/chaos").await;
        assert_eq!(ask(&mut other, "fine").await, "fine");
        assert_eq!(ask(&mut first, "still served").await, "still served");
        other.close(None).await.expect("close");
        first.close(None).await.expect("close");
        drop(first);
        // The closed connection's memory comes back.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, tenants) = plane.api("GET", "/v1/tenants", b"").await;
            let acme = acme(&tenants);
            assert_eq!(acme["max_memory_total"], one + one / 2, "{round}");
            if acme["memory_used"] == 0 || Instant::now() > deadline {
                assert_eq!(acme["memory_used"], 0, "{round}: {tenants}");
                break;
            }
            tokio::task::yield_now().await;
        }
        first = connect(plane.server.addr, "/acme/echo").await;
        assert_eq!(ask(&mut first, "again").await, "again");
        first.close(None).await.expect("close");
        if round == "before a restart" {
            plane.stop().await;
            plane = Plane::start(&dir.0, 8 << 20).await;
            first = connect(plane.server.addr, "/acme/echo").await;
        }
    }
    plane.stop().await;
}

/// A tenant's `clock_resolution_ms` coarsens the clocks of all its
/// handlers (new connections), beyond their routes' 1 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_can_coarsen_its_handlers_clocks() {
    let dir = TempDir::new("tenant-clock");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let (status, v) = plane
        .api(
            "POST",
            "/v1/tenants/timing/modules/c/versions",
            &chaos_bytes(),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let settings = json!({"path_prefix": "/timing", "clock_resolution_ms": 1000}).to_string();
    let (status, v) = plane
        .api("PUT", "/v1/tenants/timing", settings.as_bytes())
        .await;
    assert_eq!(status, 200, "{v}");
    let bind = json!({"module": "c", "route": "/c"}).to_string();
    let (status, d) = plane
        .api("POST", "/v1/tenants/timing/deployments", bind.as_bytes())
        .await;
    assert_eq!(status, 200, "{d}");
    let wall_ns = |reply: String| -> u128 {
        reply
            .strip_prefix("wall:")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{reply}"))
    };
    let mut ws = connect(plane.server.addr, "/timing/c").await;
    for _ in 0..3 {
        let ns = wall_ns(ask(&mut ws, "!clock").await);
        assert_eq!(ns % 1_000_000_000, 0, "whole seconds: {ns}");
    }
    // The default tenant's route keeps its own resolution (1 ms): a
    // reading off the whole second shows up within a few tries.
    let mut other = connect(plane.server.addr, "/chaos").await;
    let mut fine = false;
    for _ in 0..20 {
        let ns = wall_ns(ask(&mut other, "!clock").await);
        assert_eq!(ns % 1_000_000, 0, "whole milliseconds: {ns}");
        fine |= ns % 1_000_000_000 != 0;
    }
    assert!(fine, "the other tenant's clock is not coarsened");
    ws.close(None).await.expect("close");
    other.close(None).await.expect("close");
    plane.stop().await;
}

/// Tenants declared in the config file: their routes live under their
/// prefix, their caps hold, the API lists them and refuses to change them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_tenants_have_namespaces_and_caps_and_are_read_only() {
    let dir = TempDir::new("config-tenants");
    let mut config = chaos_config("/chaos", test_limits());
    let mut route = config.routes[0].clone();
    route.tenant = "acme".into();
    route.pattern = RoutePattern::new("/acme/(?:chat)").unwrap();
    config.routes.push(route);
    config.tenants.push(wsbox::config::TenantConfig {
        name: "acme".into(),
        path_prefix: Some("/acme".into()),
        max_connections: Some(1),
        limits: Default::default(),
    });
    let plane = Plane::start_with(config, &dir.0, 8 << 20).await;
    let mut ws = connect(plane.server.addr, "/acme/chat").await;
    assert_eq!(ask(&mut ws, "in acme").await, "in acme");
    let refused = upgrade_answer(plane.server.addr, "/acme/chat").await;
    assert!(
        refused.contains("tenant `acme` is at its limit of 1 open connections"),
        "{refused}"
    );
    let (_, list) = plane.api("GET", "/v1/connections", b"").await;
    assert!(
        list["connections"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["tenant"] == "acme")),
        "{list}"
    );
    let (_, tenants) = plane.api("GET", "/v1/tenants", b"").await;
    let acme = tenants["tenants"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "acme").cloned())
        .expect("acme listed");
    assert_eq!(acme["from_config"], true, "{acme}");
    assert_eq!(acme["path_prefix"], "/acme");
    let (status, v) = plane
        .api("PUT", "/v1/tenants/acme", br#"{"path_prefix": "/other"}"#)
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("config file"),
        "{v}"
    );
    // Another tenant may not take a namespace inside it.
    let (status, v) = plane
        .api("PUT", "/v1/tenants/beta", br#"{"path_prefix": "/acme/b"}"#)
        .await;
    assert_eq!(status, 409, "{v}");
    ws.close(None).await.expect("close");
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_older_connections_with_1012_spread_over_the_window() {
    let dir = TempDir::new("drain");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let v1 = plane.upload("dr", &echo_bytes(), "old").await;
    plane.activate("dr", v1, "/dr").await;
    const OLD: usize = 4;
    let mut old = Vec::new();
    for _ in 0..OLD {
        let mut ws = connect(plane.server.addr, "/dr").await;
        assert_eq!(which(&mut ws).await, "echo");
        old.push(ws);
    }
    let v2 = plane.upload("dr", &chaos_bytes(), "new").await;
    let body = json!({"module": "dr", "version": v2, "drain": "2s"}).to_string();
    let started = Instant::now();
    let (status, d) = plane
        .api("POST", "/v1/tenants/default/deployments", body.as_bytes())
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["draining"], OLD, "{d}");
    // Each old connection gets 1012 and reconnects to the new version.
    let closes = old.into_iter().map(|mut ws| async move {
        let (code, reason) = expect_close(&mut ws).await;
        let at = Instant::now();
        (code, reason, at)
    });
    let mut results = futures_util::future::join_all(closes).await;
    results.sort_by_key(|r| r.2);
    for (code, reason, _) in &results {
        assert_eq!(*code, 1012, "{reason}");
        let mut again = connect(plane.server.addr, "/dr").await;
        assert_eq!(which(&mut again).await, "chaos");
        again.close(None).await.expect("close");
    }
    // Spread over the window (closes planned at 0.4 s, 0.8 s, 1.2 s and
    // 1.6 s), not all at once.
    let first = results[0].2.duration_since(started);
    let spread = results[OLD - 1].2.duration_since(results[0].2);
    assert!(
        first >= Duration::from_millis(350),
        "first close after {first:?}"
    );
    assert!(
        spread >= Duration::from_millis(900),
        "closes spread over {spread:?}"
    );
    let (status, v) = plane
        .api(
            "POST",
            "/v1/tenants/default/deployments",
            json!({"module": "dr", "drain": "soon"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    plane.stop().await;
}

/// A component that imports an interface wsbox does not grant.
fn component_importing_wasi_http() -> Vec<u8> {
    wat::parse_str(
        r#"(component
             (import "wasi:http/outgoing-handler@0.2.0" (instance))
           )"#,
    )
    .expect("valid component text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modules_are_refused_with_the_reason_and_change_nothing() {
    let dir = TempDir::new("bad");
    let plane = Plane::start(&dir.0, 1 << 20).await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("text", b"<!doctype html>oops".to_vec(), 422, "it is text"),
        (
            "core",
            b"\0asm\x01\0\0\0".to_vec(),
            422,
            "this is a core module, not a component: run `wasm-tools component new`",
        ),
        (
            "http",
            component_importing_wasi_http(),
            422,
            "imports wasi:http/outgoing-handler@0.2.0, which wsbox does not grant",
        ),
        (
            "empty-component",
            wat::parse_str("(component)").expect("valid"),
            422,
            "wsbox:websocket/handler",
        ),
        ("big", vec![0u8; (1 << 20) + 1], 413, "over the limit"),
    ];
    for (name, bytes, status, needle) in cases {
        let (got, v) = plane
            .api(
                "POST",
                &format!("/v1/tenants/default/modules/{name}/versions"),
                &bytes,
            )
            .await;
        let message = v["error"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{name}: {v}");
        assert!(message.contains(needle), "{name}: {message}");
        let (got, _) = plane
            .api(
                "GET",
                &format!("/v1/tenants/default/modules/{name}/versions"),
                b"",
            )
            .await;
        assert_eq!(got, 404, "{name} left no version behind");
    }
    // A bad route regex or an unknown version leaves the deployment alone.
    let good = plane.upload("good", &echo_bytes(), "ok").await;
    plane.activate("good", good, "/good").await;
    for (body, status, needle) in [
        (
            json!({"module": "good", "route": "/(unclosed"}),
            422,
            "not a valid regular expression",
        ),
        (
            json!({"module": "good", "version": 7}),
            404,
            "has no version 7",
        ),
        (json!({"module": "nothing"}), 404, "has no module `nothing`"),
        (json!({"modul": "typo"}), 400, "unknown field"),
    ] {
        let (got, v) = plane
            .api(
                "POST",
                "/v1/tenants/default/deployments",
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(got, status, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(needle),
            "{v}"
        );
    }
    let (got, v) = plane
        .api("POST", "/v1/tenants/Bad%20Name/modules/x/versions", b"x")
        .await;
    assert_eq!(got, 422, "{v}");
    let (_, deployments) = plane
        .api("GET", "/v1/tenants/default/deployments", b"")
        .await;
    assert_eq!(
        deployments["deployments"][0]["version"].as_u64(),
        Some(good)
    );
    assert_eq!(deployments["deployments"].as_array().map(Vec::len), Some(1));
    let blobs = std::fs::read_dir(dir.0.join("blobs"))
        .expect("blobs")
        .count();
    assert_eq!(blobs, 1, "only the good module's blob is stored");
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_operator_token() {
    let dir = TempDir::new("auth");
    let plane = Plane::start(&dir.0, 1 << 20).await;
    let addr = plane.admin.to_string();
    for token in [None, Some("wrong"), Some("")] {
        let (status, v) = http(&addr, "GET", "/v1/tenants", token, b"").await;
        assert_eq!(status, 401, "{token:?}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or_default()
                .contains("Authorization: Bearer")
        );
        let (status, _) = http(
            &addr,
            "POST",
            "/v1/tenants/default/modules/m/versions",
            token,
            &echo_bytes(),
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, v) = http(&addr, "GET", "/v1/tenants", Some(TOKEN), b"").await;
    assert_eq!(status, 200);
    assert_eq!(v["tenants"][0]["name"], "default");
    for open in ["/healthz", "/readyz"] {
        assert_eq!(http(&addr, "GET", open, None, b"").await.0, 200, "{open}");
    }
    // The OpenAPI document describes every endpoint the router answers.
    let (status, doc) = http(&addr, "GET", "/openapi.json", None, b"").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/tenants/{tenant}/modules/{module}/versions",
        "/v1/tenants/{tenant}/deployments",
        "/v1/tenants/{tenant}/modules/{module}/rollback",
        "/v1/connections",
        "/v1/connections/{id}/messages",
        "/v1/connections/{id}/close",
        "/v1/connections/{id}",
        "/v1/status",
    ] {
        assert!(paths.contains_key(p), "{p} described");
    }
    let (status, v) = http(&addr, "GET", "/v1/nothing", Some(TOKEN), b"").await;
    assert_eq!(status, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("openapi.json")
    );
    plane.stop().await;
}

/// A tenant's caps on message size and output apply over its routes':
/// a bigger message gets 1009, a handler writing more than the tenant's
/// output buffer gets 1011 "output limit exceeded".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_message_and_output_caps_apply_to_its_routes() {
    let dir = TempDir::new("tenant-caps");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let settings = json!({"path_prefix": "/acme", "max_message_size": 1024,
        "max_output_buffer": 16384, "memory_limit": 8 << 20, "cpu_time_per_event_ms": 100})
    .to_string();
    let (status, v) = plane
        .api("PUT", "/v1/tenants/acme", settings.as_bytes())
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["max_output_buffer"], 16384, "{v}");
    let (status, v) = plane
        .api(
            "POST",
            "/v1/tenants/acme/modules/c/versions",
            &chaos_bytes(),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let bind = json!({"module": "c", "route": "/c"}).to_string();
    let (status, v) = plane
        .api("POST", "/v1/tenants/acme/deployments", bind.as_bytes())
        .await;
    assert_eq!(status, 200, "{v}");

    let mut ws = connect(plane.server.addr, "/acme/c").await;
    assert_eq!(ask(&mut ws, &"s".repeat(1000)).await, "s".repeat(1000));
    futures_util::SinkExt::send(&mut ws, WsMessage::Text("b".repeat(2000).into()))
        .await
        .expect("send");
    assert_eq!(expect_close(&mut ws).await.0, 1009);

    let mut ws = connect(plane.server.addr, "/acme/c").await;
    futures_util::SinkExt::send(&mut ws, WsMessage::Text("!burst 100 1000".into()))
        .await
        .expect("send");
    let mut received = 0;
    let (code, reason) = loop {
        match next_message(&mut ws).await {
            WsMessage::Close(Some(frame)) => {
                break (u16::from(frame.code), frame.reason.to_string());
            }
            WsMessage::Text(_) => received += 1,
            _ => {}
        }
    };
    assert_eq!((code, reason.as_str()), (1011, "output limit exceeded"));
    assert!(
        received < 20,
        "{received} messages of 1000 bytes under a 16 KiB cap"
    );
    // Memory per instance: 32 MiB is over the tenant's 8 MiB.
    let mut ws = connect(plane.server.addr, "/acme/c").await;
    assert_eq!(ask(&mut ws, "!alloc 1").await, "alloc:1");
    futures_util::SinkExt::send(&mut ws, WsMessage::Text("!alloc 32".into()))
        .await
        .expect("send");
    assert_eq!(expect_close(&mut ws).await.0, 1011);
    // CPU time per event: an endless loop is stopped after the tenant's
    // 100 ms, not the route's.
    let mut ws = connect(plane.server.addr, "/acme/c").await;
    futures_util::SinkExt::send(&mut ws, WsMessage::Text("!loop".into()))
        .await
        .expect("send");
    assert_eq!(expect_close(&mut ws).await.0, 1011);
    let line = wait_for_log("exceeded its CPU time of 100ms").await;
    assert!(line.contains("route=/acme/(?:c)"), "{line}");
    // The default tenant's routes are not capped by acme's settings.
    let mut other = connect(plane.server.addr, "/chaos").await;
    let big = "d".repeat(4000);
    assert_eq!(ask(&mut other, &big).await, big);
    plane.stop().await;
}

/// `[admin] max_compile_time`: an upload that takes longer to compile is
/// refused with the reason and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_compile_time_cap_are_refused() {
    let dir = TempDir::new("compile-cap");
    let plane = Plane::start_admin(
        chaos_config("/chaos", test_limits()),
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.0.clone(),
            max_compile_time: Duration::from_micros(1),
            ..Default::default()
        },
    )
    .await;
    let (status, v) = plane
        .api(
            "POST",
            "/v1/tenants/default/modules/slow/versions",
            &echo_bytes(),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("max_compile_time"),
        "{v}"
    );
    let (status, v) = plane
        .api("GET", "/v1/tenants/default/modules/slow/versions", b"")
        .await;
    assert_eq!(status, 404, "nothing stored: {v}");
    plane.stop().await;
}

/// `[admin.tls]`: the admin API over https, reached by the CLI's client
/// with the server's certificate as CA; a plain http request gets no
/// answer, and a client that does not trust the certificate fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_serves_https_when_configured() {
    let dir = TempDir::new("admin-tls");
    let cert = wsbox::tls::write_dev_certificate(&dir.0.join("tls")).expect("dev certificate");
    init_logging();
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let config = AdminConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.0.join("data"),
        tls: Some(wsbox::config::TlsConfig {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
        }),
        ..Default::default()
    };
    let (admin, _plane) = wsbox::admin::start(
        server.handle.clone(),
        &config,
        wsbox::admin::Tokens::new(TOKEN),
    )
    .await
    .expect("control plane starts");
    assert_eq!(admin.scheme(), "https");
    let addr = admin.local_addr().expect("addr");
    let task = tokio::spawn(admin.run());

    let url = format!("https://{addr}");
    let (ca, token) = (cert.cert.clone(), TOKEN.to_string());
    let answer = tokio::task::spawn_blocking(move || {
        wsbox::admin::client::AdminClient::new(&url, Some(token), Some(&ca))?.request(
            "GET",
            "/v1/tenants",
            None,
            b"",
        )
    })
    .await
    .expect("client task")
    .expect("the https request succeeds");
    assert_eq!(answer["tenants"][0]["name"], "default");

    // Without the CA: the certificate is not trusted.
    let url = format!("https://{addr}");
    let refused = tokio::task::spawn_blocking(move || {
        wsbox::admin::client::AdminClient::new(&url, Some(TOKEN.into()), None)?.request(
            "GET",
            "/v1/tenants",
            None,
            b"",
        )
    })
    .await
    .expect("client task");
    let e = format!("{:#}", refused.expect_err("an untrusted certificate"));
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // Plain http to the TLS port: no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut out)).await;
    assert!(!out.starts_with(b"HTTP/1.1 200"), "answered plain http");
    task.abort();
}

/// `wsbox serve --watch`: a config route's module file rebuilt in place is
/// served to new connections once it settles; live connections keep
/// their build; a broken build is reported and the previous one kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_module_files_are_reloaded_for_new_connections() {
    let dir = TempDir::new("watch");
    let file = dir.0.join("handler.wasm");
    std::fs::write(&file, echo_bytes()).expect("write the module");
    let server = TestServer::start(wsbox_tests::module_config(
        "/watched",
        file.to_str().expect("utf-8"),
        test_limits(),
    ))
    .await;
    assert_eq!(
        server.handle.config_module_files(),
        std::slice::from_ref(&file)
    );
    let watcher = tokio::spawn(wsbox::server::watch::watch(
        server.handle.clone(),
        vec![file.clone()],
        Duration::from_millis(50),
    ));
    let mut before = connect(server.addr, "/watched").await;
    assert_eq!(which(&mut before).await, "echo");

    // A broken build: reported, the running one kept.
    std::fs::write(&file, b"not wasm").expect("write");
    let line = wait_for_log("still serving the previous build").await;
    assert!(line.contains("handler.wasm"), "{line}");
    let mut still = connect(server.addr, "/watched").await;
    assert_eq!(which(&mut still).await, "echo");

    std::fs::write(&file, chaos_bytes()).expect("write");
    let line = wait_for_log("module file changed: new connections get the new build").await;
    assert!(line.contains("routes=/watched"), "{line}");
    let mut after = connect(server.addr, "/watched").await;
    assert_eq!(which(&mut after).await, "chaos");
    assert_eq!(
        which(&mut before).await,
        "echo",
        "a live connection keeps its build"
    );
    watcher.abort();
}

/// Gradual rollout: a version gets its share of new connections beside
/// the active one, testers pin either with `wsbox-version`, the share can
/// change, it survives a restart, and a rollback or a full deploy ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_rollouts_share_new_connections_and_testers_pin_versions() {
    let dir = TempDir::new("split");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let v1 = plane.upload("sp", &echo_bytes(), "stable").await;
    plane.activate("sp", v1, "/sp").await;
    let v2 = plane.upload("sp", &chaos_bytes(), "canary").await;
    let split = |version: u64, percent: u8, pinning: bool| {
        json!({"module": "sp", "version": version, "split": percent, "pinning": pinning})
            .to_string()
    };
    let (status, d) = plane
        .api(
            "POST",
            "/v1/tenants/default/deployments",
            split(v2, 30, true).as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["version"].as_u64(), Some(v1), "v1 stays active");
    assert_eq!(
        d["rollout"],
        json!({"version": v2, "percent": 30, "pinning": true})
    );

    // 200 new connections: about 30% on v2. The bounds are ~7 standard
    // deviations wide: a correct split never misses them.
    async fn share_on_chaos(addr: SocketAddr, n: usize) -> usize {
        let mut on_chaos = 0;
        for _ in 0..n {
            let mut ws = connect(addr, "/sp").await;
            if which(&mut ws).await == "chaos" {
                on_chaos += 1;
            }
        }
        on_chaos
    }
    let n = share_on_chaos(plane.server.addr, 200).await;
    assert!((20..=100).contains(&n), "{n} of 200 on the 30% version");

    // Pinning, by query parameter and by header; another version is 400.
    for _ in 0..5 {
        let mut ws = connect(plane.server.addr, &format!("/sp?wsbox-version={v2}")).await;
        assert_eq!(which(&mut ws).await, "chaos");
        let mut ws = connect(plane.server.addr, &format!("/sp?wsbox-version={v1}")).await;
        assert_eq!(which(&mut ws).await, "echo");
    }
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/sp",
            plane.server.addr
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("wsbox-version", v2.to_string().parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(which(&mut ws).await, "chaos");
    let answer = upgrade_answer(plane.server.addr, "/sp?wsbox-version=9").await;
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains(&format!("versions {v1} and {v2}")),
        "{answer}"
    );

    // The share changes; without pinning, the parameter is just ignored.
    let (status, d) = plane
        .api(
            "POST",
            "/v1/tenants/default/deployments",
            split(v2, 95, false).as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    let n = share_on_chaos(plane.server.addr, 100).await;
    assert!(n >= 75, "{n} of 100 on the 95% version");
    let answer = upgrade_answer(plane.server.addr, "/sp?wsbox-version=9").await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");

    // Bad splits are refused with the reason.
    for (body, needle) in [
        (split(v2, 0, false), "1 to 99"),
        (split(v1, 10, false), "already the active version"),
        (split(77, 10, false), "no version 77"),
    ] {
        let (status, v) = plane
            .api("POST", "/v1/tenants/default/deployments", body.as_bytes())
            .await;
        assert!(status >= 400, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(needle),
            "{v}"
        );
    }

    // A restart keeps the rollout.
    plane.stop().await;
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let (_, list) = plane
        .api("GET", "/v1/tenants/default/deployments", b"")
        .await;
    let sp = list["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["module"] == "sp")
        .cloned()
        .expect("the sp deployment");
    assert_eq!(sp["rollout"]["percent"], 95, "{list}");
    let n = share_on_chaos(plane.server.addr, 40).await;
    assert!(n >= 25, "{n} of 40 on the 95% version after a restart");

    // Rollback ends the rollout: everyone on v1 again.
    let (status, d) = plane
        .api("POST", "/v1/tenants/default/modules/sp/rollback", b"")
        .await;
    assert_eq!(status, 200, "{d}");
    assert!(d.get("rollout").is_none(), "{d}");
    assert_eq!(share_on_chaos(plane.server.addr, 20).await, 0);
    // A full deploy promotes a version for all.
    plane
        .api(
            "POST",
            "/v1/tenants/default/deployments",
            split(v2, 50, false).as_bytes(),
        )
        .await;
    plane.activate("sp", v2, "/sp").await;
    assert_eq!(share_on_chaos(plane.server.addr, 20).await, 20);
    plane.stop().await;
}

/// A tenant token reaches its tenant's paths and connections: another
/// tenant's are 404, operator-only endpoints 403; it survives a restart
/// (stored hashed in the registry) and stops working when revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_reach_their_tenant_only() {
    let dir = TempDir::new("tenant-tokens");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let addr = plane.admin.to_string();
    let settings = json!({"path_prefix": "/acme"}).to_string();
    assert_eq!(
        plane
            .api("PUT", "/v1/tenants/acme", settings.as_bytes())
            .await
            .0,
        200
    );
    let ci = json!({"name": "ci"}).to_string();
    let (status, v) = plane
        .api("POST", "/v1/tenants/acme/tokens", ci.as_bytes())
        .await;
    assert_eq!(status, 201, "{v}");
    let token = v["token"].as_str().expect("the token").to_string();
    assert!(token.starts_with("wsbt_"), "{token}");
    let (status, v) = plane
        .api("POST", "/v1/tenants/acme/tokens", ci.as_bytes())
        .await;
    assert_eq!(status, 409, "same name twice: {v}");
    let (status, v) = plane
        .api("POST", "/v1/tenants/nope/tokens", ci.as_bytes())
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("PUT /v1/tenants/nope")
    );

    let acme = |method: &'static str, path: String, body: Vec<u8>| {
        let (addr, token) = (addr.clone(), token.clone());
        async move { http(&addr, method, &path, Some(&token), &body).await }
    };
    // Only its own tenant is listed.
    let (status, v) = acme("GET", "/v1/tenants".into(), vec![]).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme"]);
    // Operator-only endpoints: 403, saying what the token can reach.
    for (method, path, body) in [
        ("GET", "/v1/status", vec![]),
        ("GET", "/metrics", vec![]),
        ("PUT", "/v1/tenants/acme", settings.clone().into_bytes()),
        ("POST", "/v1/tenants/acme/tokens", ci.clone().into_bytes()),
    ] {
        let (status, v) = acme(method, path.into(), body).await;
        assert_eq!(status, 403, "{method} {path}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or_default()
                .contains("operator token"),
            "{v}"
        );
    }
    // Its own modules: upload (recorded as uploaded by acme/ci) and deploy.
    let (status, v) = acme(
        "POST",
        "/v1/tenants/acme/modules/echo/versions".into(),
        echo_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["uploaded_by"], "acme/ci");
    let bind = json!({"module": "echo", "route": "/echo"}).to_string();
    let (status, v) = acme(
        "POST",
        "/v1/tenants/acme/deployments".into(),
        bind.into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // Another tenant's: not found, as if it did not exist.
    for (method, path) in [
        ("POST", "/v1/tenants/default/modules/echo/versions"),
        ("GET", "/v1/tenants/default/deployments"),
        ("POST", "/v1/tenants/default/topics/t/messages"),
        ("GET", "/v1/tenants/default/tokens"),
    ] {
        let (status, v) = acme(method, path.into(), b"x".to_vec()).await;
        assert_eq!(status, 404, "{method} {path}: {v}");
    }
    // Connections: its own only.
    let mut own = connect(plane.server.addr, "/acme/echo").await;
    let mut other = connect(plane.server.addr, "/chaos").await;
    assert_eq!(ask(&mut own, "ping").await, "ping");
    let _ = which(&mut other).await;
    let (status, v) = acme("GET", "/v1/connections".into(), vec![]).await;
    assert_eq!(status, 200);
    let listed = v["connections"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{v}");
    assert_eq!(listed[0]["tenant"], "acme");
    let own_id = listed[0]["id"].as_u64().unwrap();
    let (_, all) = plane.api("GET", "/v1/connections", b"").await;
    let other_id = all["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenant"] == "default")
        .and_then(|c| c["id"].as_u64())
        .expect("the default tenant's connection");
    for id in [other_id, 999_999] {
        let (status, v) = acme(
            "POST",
            format!("/v1/connections/{id}/messages"),
            b"hi".to_vec(),
        )
        .await;
        assert_eq!(status, 404, "{v}");
        let (status, _) = acme("DELETE", format!("/v1/connections/{id}"), vec![]).await;
        assert_eq!(status, 404);
    }
    let (status, v) = acme(
        "POST",
        format!("/v1/connections/{own_id}/messages"),
        b"from the backend".to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        next_message(&mut own).await,
        WsMessage::Text("from the backend".into())
    );
    drop((own, other));

    // Stored hashed in the registry: it works after a restart.
    plane.stop().await;
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let addr = plane.admin.to_string();
    let (status, v) = http(&addr, "GET", "/v1/tenants/acme/tokens", Some(&token), b"").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["tokens"][0]["name"], "ci");
    assert!(
        v["tokens"][0].get("token").is_none(),
        "never shown again: {v}"
    );
    for file in ["registry.sqlite3", "registry.sqlite3-wal"] {
        let bytes = std::fs::read(dir.0.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token itself is not stored in {file}"
        );
    }
    // Revoked: refused at once.
    let (status, v) = http(
        &addr,
        "DELETE",
        "/v1/tenants/acme/tokens/ci",
        Some(&token),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = http(&addr, "GET", "/v1/tenants", Some(&token), b"").await;
    assert_eq!(status, 401);
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_sends_to_and_closes_connections() {
    let dir = TempDir::new("conns");
    let plane = Plane::start(&dir.0, 1 << 20).await;
    let mut ws = connect(plane.server.addr, "/chaos").await;
    assert_eq!(ask(&mut ws, "ping me").await, "ping me");
    // The task counts a write just after the kernel took it, so the echo
    // can reach us a moment before the count does: ask until it shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let c = loop {
        let (_, list) = plane.api("GET", "/v1/connections", b"").await;
        let conns = list["connections"].as_array().expect("list");
        assert_eq!(conns.len(), 1, "{list}");
        let c = conns[0].clone();
        if c["bytes_out"].as_u64().unwrap_or(0) > 0 || tokio::time::Instant::now() > deadline {
            break c;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(c["tenant"], "default");
    assert_eq!(c["route"], "/chaos");
    assert_eq!(c["version"], Value::Null, "a config-file module");
    assert!(
        c["bytes_in"].as_u64().unwrap_or(0) > 0 && c["bytes_out"].as_u64().unwrap_or(0) > 0,
        "{c}"
    );
    let id = c["id"].as_u64().expect("id");

    let (status, v) = plane
        .api(
            "POST",
            &format!("/v1/connections/{id}/messages"),
            "pushed by the API".as_bytes(),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        next_message(&mut ws).await,
        WsMessage::text("pushed by the API")
    );
    let (status, v) = plane
        .api(
            "POST",
            &format!("/v1/connections/{id}/messages"),
            &[0xff, 0xfe],
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("octet-stream")
    );

    let (status, v) = plane
        .api("POST", "/v1/connections/999999/messages", b"x")
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = plane
        .api(
            "DELETE",
            &format!("/v1/connections/{id}?code=999&reason=x"),
            b"",
        )
        .await;
    assert_eq!(status, 400, "an unsendable close code");
    let (status, v) = plane
        .api(
            "DELETE",
            &format!("/v1/connections/{id}?code=4001&reason=api%20says%20bye"),
            b"",
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        expect_close(&mut ws).await,
        (4001, "api says bye".to_string())
    );
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_by_tenant_route_module_version_and_pass_promtool() {
    if skip_peers(Peers::Promtool) {
        return;
    }
    let dir = TempDir::new("metrics");
    let plane = Plane::start(&dir.0, 8 << 20).await;
    let v = plane.upload("metered", &echo_bytes(), "m").await;
    plane.activate("metered", v, "/metered").await;
    let mut ws = connect(plane.server.addr, "/metered").await;
    assert_eq!(ask(&mut ws, "count me").await, "count me");
    assert_eq!(ask(&mut ws, "and me").await, "and me");
    // A handler that traps: counted by kind.
    let c = plane.upload("crashy", &chaos_bytes(), "c").await;
    plane.activate("crashy", c, "/crashy").await;
    let mut crashy = connect(plane.server.addr, "/crashy").await;
    futures_util::SinkExt::send(&mut crashy, WsMessage::Text("!trap".into()))
        .await
        .expect("send");
    assert_eq!(expect_close(&mut crashy).await.0, 1011);
    let _ = tokio::time::timeout(WAIT, async {
        // The WebSocket listener answers 404 in text, not JSON: read raw.
        let mut s = TcpStream::connect(plane.server.addr)
            .await
            .expect("connect");
        s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
    })
    .await;

    let (status, _) = http(&plane.admin.to_string(), "GET", "/metrics", None, b"").await;
    assert_eq!(status, 401, "metrics need the token");
    let text = metrics_text(plane.admin).await;
    let labels = format!(r#"{{tenant="default",route="/metered",module="metered",version="{v}"}}"#);
    for needle in [
        format!("wsbox_connections_open{labels} 1"),
        format!("wsbox_connections_accepted_total{labels} 1"),
        r#"wsbox_control_actions_total{tenant="default",module="metered",action="deploy"} 1"#
            .to_string(),
        r#"wsbox_control_actions_total{tenant="default",module="metered",action="upload"} 1"#
            .to_string(),
        r#"wsbox_http_responses_total{status="404"} 1"#.to_string(),
        "wsbox_module_compile_seconds_count 2".to_string(),
        "wsbox_module_compiles_total 2".to_string(),
        format!("wsbox_messages_received_total{labels} 2"),
        format!("wsbox_messages_sent_total{labels} 2"),
        format!("wsbox_instantiate_seconds_count{labels} 1"),
        format!(
            r#"wsbox_handler_failures_total{{tenant="default",route="/crashy",module="crashy",version="{c}",kind="trap"}} 1"#
        ),
        format!(
            r#"wsbox_handler_failures_total{{tenant="default",route="/metered",module="metered",version="{v}",kind="trap"}} 0"#
        ),
    ] {
        assert!(text.contains(&needle), "{needle} in:\n{text}");
    }
    let received = text
        .lines()
        .find(|l| l.starts_with(&format!("wsbox_received_bytes_total{labels}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("received bytes of the connection");
    assert!(received > "count me".len() as u64, "{received}");
    // on_open and the two messages (one call each, or fewer in a batch).
    let calls = text
        .lines()
        .find(|l| l.starts_with(&format!("wsbox_handler_cpu_seconds_count{labels}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("handler calls of the route");
    assert!((2..=3).contains(&calls), "{calls} calls");
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
    };
    // The metered connection's instance; the trapped one was dropped.
    assert_eq!(gauge("wsbox_pool_instances"), 1);
    assert_eq!(gauge("wsbox_pool_instances_max"), 64);

    promtool_check(&text);
    ws.close(None).await.expect("close");
    plane.stop().await;
}

/// `GET /metrics` with the token: the text exposition.
async fn metrics_text(admin: SocketAddr) -> String {
    let mut stream = TcpStream::connect(admin).await.expect("admin connect");
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

// ---- the real binary: zero-config serve, CLI, kill -9 ----

/// A `wsbox serve` process; killed when dropped.
struct Served {
    child: tokio::process::Child,
    ws: SocketAddr,
    admin: String,
    stdout: Vec<String>,
}

impl Served {
    /// Starts `wsbox serve ARGS` and waits for both listeners.
    async fn start(args: &[&str], token: Option<&str>, data_home: &Path) -> Served {
        let mut cmd = tokio::process::Command::new(wsbox_binary());
        cmd.arg("serve")
            .args(args)
            .env("RUST_LOG", "warn")
            .env("XDG_DATA_HOME", data_home)
            .env_remove("WSBOX_ADMIN_TOKEN")
            .env_remove("WSBOX_ADMIN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(t) = token {
            cmd.env("WSBOX_ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("start wsbox");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut stdout = Vec::new();
        let (mut ws, mut admin) = (None, None);
        while admin.is_none() {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("wsbox started in time")
                .expect("read stdout")
                .expect("wsbox exited before its admin API listened");
            if let Some(rest) = line.strip_prefix("wsbox listening on ws://") {
                ws = rest.split(',').next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("wsbox admin API on http://") {
                admin = rest.split(' ').next().map(str::to_string);
            }
            stdout.push(line);
        }
        // The token line follows the admin line.
        if let Ok(Ok(Some(line))) = tokio::time::timeout(WAIT, lines.next_line()).await {
            stdout.push(line);
        }
        // Keep draining stdout so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Served {
            child,
            ws: ws.expect("a ws:// address"),
            admin: admin.expect("an admin address"),
            stdout,
        }
    }

    async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Runs a `wsbox` CLI command; (success, stdout, stderr).
async fn cli(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(wsbox_binary());
    cmd.args(args)
        .env_remove("WSBOX_ADMIN_TOKEN")
        .env_remove("WSBOX_ADMIN")
        .env("XDG_DATA_HOME", "/nonexistent-wsbox-test");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the CLI finished in time")
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_serve_and_the_cli_deploy_and_reach_connections() {
    let home = TempDir::new("cli");
    // No config and no token: the demo, the admin API, a generated token
    // in the default data directory ($XDG_DATA_HOME/wsbox).
    let served = Served::start(
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        None,
        &home.0,
    )
    .await;
    let token_file = home.0.join("wsbox").join("admin-token");
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert!(
        served
            .stdout
            .iter()
            .any(|l| l.contains(&token_file.display().to_string())),
        "the server says where the token is: {:?}",
        served.stdout
    );
    let token = std::fs::read_to_string(&token_file)
        .expect("token")
        .trim()
        .to_string();
    let url = format!("http://{}", served.admin);
    let env = [
        ("WSBOX_ADMIN", url.as_str()),
        ("WSBOX_ADMIN_TOKEN", token.as_str()),
    ];

    let (ok, out, err) = cli(
        &[
            "deploy", CHAOS_WASM, "--tenant", "default", "--module", "my", "--route", "/my",
            "--note", "cli",
        ],
        &env,
    )
    .await;
    assert!(ok, "deploy: {out} {err}");
    assert!(out.contains("version 1") && out.contains("/my"), "{out}");

    // Served at once, no restart; the demo keeps serving too.
    let mut ws = connect(served.ws, "/my").await;
    assert_eq!(which(&mut ws).await, "chaos");
    let mut demo = connect(served.ws, "/echo").await;
    assert_eq!(ask(&mut demo, "still here").await, "still here");

    let (ok, out, _) = cli(&["versions", "--module", "my"], &env).await;
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains('*') && l.contains("cli")),
        "{out}"
    );
    let (ok, out, _) = cli(&["connections"], &env).await;
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("my@1"))
        .unwrap_or_else(|| panic!("the /my connection is listed: {out}"));
    let id = line.split_whitespace().next().expect("an id").to_string();
    let (ok, out, err) = cli(&["send", &id, "hello from the CLI"], &env).await;
    assert!(ok, "{out} {err}");
    assert_eq!(
        next_message(&mut ws).await,
        WsMessage::text("hello from the CLI")
    );
    let (ok, _, err) = cli(
        &["close", &id, "--code", "4002", "--reason", "cli bye"],
        &env,
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(expect_close(&mut ws).await, (4002, "cli bye".to_string()));

    // Failures: non-zero exit with the server's message.
    let text = home.0.join("notes.txt");
    std::fs::write(&text, "hello").expect("write");
    let (ok, _, err) = cli(
        &[
            "deploy",
            text.to_str().expect("utf-8"),
            "--module",
            "my",
            "--route",
            "/my",
        ],
        &env,
    )
    .await;
    assert!(
        !ok && err.contains("it is text") && err.contains("HTTP 422"),
        "{err}"
    );
    let (ok, _, err) = cli(&["rollback", "--module", "my"], &env).await;
    assert!(!ok && err.contains("only one active version"), "{err}");
    let (ok, _, err) = cli(&["connections", "--token", "wrong"], &env).await;
    assert!(!ok && err.contains("HTTP 401"), "{err}");
    let (ok, out, err) = cli(
        &["deploy", CHAOS_WASM, "--module", "my", "--drain", "100ms"],
        &env,
    )
    .await;
    assert!(
        ok && out.contains("draining 0 older connections"),
        "{out} {err}"
    );
    let (ok, out, err) = cli(&["rollback", "--module", "my"], &env).await;
    assert!(ok && out.contains("to version 1"), "{out} {err}");

    // A large upload reports its progress: a 2 MiB component (the chaos
    // handler with a custom section appended).
    let mut big = std::fs::read(CHAOS_WASM).expect("read");
    let name = b"padding";
    let payload = vec![0u8; 2 << 20];
    let mut len = name.len() + 1 + payload.len();
    big.push(0); // a custom section
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        big.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    big.push(name.len() as u8);
    big.extend_from_slice(name);
    big.extend_from_slice(&payload);
    let big_file = home.0.join("big.wasm");
    std::fs::write(&big_file, &big).expect("write");
    let (ok, out, err) = cli(
        &[
            "deploy",
            big_file.to_str().expect("utf-8"),
            "--module",
            "big",
        ],
        &env,
    )
    .await;
    assert!(ok, "{out} {err}");
    assert!(
        err.contains("sent 2.1 of 2.1 MiB; the server compiles it now")
            && err.contains("stored as version 1 in"),
        "{err}"
    );

    // A gradual rollout from the CLI, then promoted to all.
    let (ok, out, err) = cli(
        &[
            "deploy",
            CHAOS_WASM,
            "--module",
            "my",
            "--split",
            "50",
            "--pinning",
        ],
        &env,
    )
    .await;
    assert!(
        ok && out.contains("to 50% of new connections"),
        "{out} {err}"
    );
    let rolled = out
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .expect("the version rolled out")
        .to_string();
    let (ok, out, err) = cli(
        &["rollout", "--module", "my", "--version", &rolled, "100"],
        &env,
    )
    .await;
    assert!(ok && out.contains("active for all"), "{out} {err}");
    let (ok, _, err) = cli(
        &["deploy", CHAOS_WASM, "--module", "my", "--split", "0"],
        &env,
    )
    .await;
    assert!(
        !ok && err.contains("1..=99"),
        "refused before uploading: {err}"
    );

    // A bound route's hibernation settings from the CLI: the server checks
    // them (400 for a bad one), and the deploy shows them.
    let (ok, _, err) = cli(
        &[
            "deploy",
            CHAOS_WASM,
            "--module",
            "hib",
            "--hibernate-after",
            "10s",
        ],
        &env,
    )
    .await;
    assert!(
        !ok && err.contains("--route"),
        "refused before uploading: {err}"
    );
    let (ok, _, err) = cli(
        &[
            "deploy",
            CHAOS_WASM,
            "--module",
            "hib",
            "--route",
            "/hib",
            "--max-attachment",
            "2MiB",
        ],
        &env,
    )
    .await;
    assert!(
        !ok && err.contains("HTTP 400") && err.contains("`max_attachment`: must be at most 1MiB"),
        "{err}"
    );
    let (ok, out, err) = cli(
        &[
            "deploy",
            CHAOS_WASM,
            "--module",
            "hib",
            "--route",
            "/hib",
            "--hibernate-after",
            "10s",
            "--auto-response",
            "ping",
            "pong",
        ],
        &env,
    )
    .await;
    assert!(
        ok && out.contains(
            r#"route /hib: hibernate_after 10s, max_attachment 16KiB, auto_response "ping" -> "pong""#
        ),
        "{out} {err}"
    );

    // A tenant token from the CLI: it lists its tenant's versions, cannot
    // make tokens, and is refused once revoked.
    let (ok, out, err) = cli(&["token", "create", "--tenant", "default", "ci"], &env).await;
    assert!(ok && err.contains("shown once"), "{out} {err}");
    let tenant_token = out.trim().to_string();
    assert!(tenant_token.starts_with("wsbt_"), "{out}");
    let as_tenant = ["--token", tenant_token.as_str()];
    let (ok, out, err) = cli(
        &[&["versions", "--module", "my"][..], &as_tenant[..]].concat(),
        &env,
    )
    .await;
    assert!(ok && out.contains("UPLOADED_BY"), "{out} {err}");
    let (ok, _, err) = cli(
        &[
            &["token", "create", "--tenant", "default", "x"][..],
            &as_tenant[..],
        ]
        .concat(),
        &env,
    )
    .await;
    assert!(
        !ok && err.contains("HTTP 403") && err.contains("operator token"),
        "{err}"
    );
    let (ok, out, err) = cli(&["token", "list", "--tenant", "default"], &env).await;
    assert!(ok && out.starts_with("ci "), "{out} {err}");
    let (ok, _, err) = cli(&["token", "revoke", "--tenant", "default", "ci"], &env).await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &[&["versions", "--module", "my"][..], &as_tenant[..]].concat(),
        &env,
    )
    .await;
    assert!(!ok && err.contains("HTTP 401"), "{err}");
    demo.close(None).await.expect("close");
    served.kill().await;
}

/// A tiny xorshift: random kill moments without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_uploads_and_deploys_leaves_a_consistent_registry() {
    const ITERATIONS: usize = 60;
    let home = TempDir::new("kill");
    let data = home.0.join("data");
    let config = home.0.join("wsbox.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[runtime]\nmax_instances = 8\nmax_memory_per_instance = \"64MiB\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    let args = ["--config", config.to_str().expect("utf-8")];
    let echo = Arc::new(echo_bytes());
    let chaos = Arc::new(chaos_bytes());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed);
    // How long one upload + deploy took last (ms): kill moments are drawn
    // over one and a half of it, so they land in uploads and in deploys
    // whether the machine is idle or busy.
    let cycle_ms = Arc::new(AtomicU64::new(200));
    let mut kills = [0usize; 3];
    let started = Instant::now();
    // What the server acknowledged before each crash: never to be lost.
    let mut acked_versions = 0u64;
    let mut allowed_active = [0u64, 0];
    for i in 0..ITERATIONS {
        let served = Served::start(&args, Some(TOKEN), &home.0).await;
        let admin = served.admin.clone();

        // Consistency after the previous crash.
        let (status, view) = http(
            &admin,
            "GET",
            "/v1/tenants/default/modules/k/versions",
            Some(TOKEN),
            b"",
        )
        .await;
        if acked_versions > 0 {
            assert_eq!(status, 200, "iteration {i}: {view}");
        }
        let versions = view["versions"].as_array().cloned().unwrap_or_default();
        assert!(
            versions.len() as u64 >= acked_versions,
            "iteration {i}: an acknowledged version was lost: {view}"
        );
        for (n, v) in versions.iter().enumerate() {
            assert_eq!(
                v["version"].as_u64(),
                Some(n as u64 + 1),
                "versions are numbered without gaps"
            );
            let blob = std::fs::read(data.join("blobs").join(v["sha256"].as_str().unwrap_or("-")))
                .unwrap_or_else(|e| panic!("iteration {i}: version {} has no blob: {e}", n + 1));
            assert!(
                blob == *echo || blob == *chaos,
                "iteration {i}: a blob is whole"
            );
            assert_eq!(v["size"].as_u64(), Some(blob.len() as u64));
        }
        let active = view["active_version"].as_u64().unwrap_or(0);
        assert!(
            allowed_active.contains(&active),
            "iteration {i}: active {active}; the last acknowledged and the in-flight were {allowed_active:?}"
        );
        let (_, status_body) = http(&admin, "GET", "/v1/status", Some(TOKEN), b"").await;
        assert_eq!(
            status_body["recovery"]["missing_blobs"],
            json!([]),
            "{status_body}"
        );
        assert_eq!(
            status_body["compiles"], 0,
            "iteration {i}: restart loaded cached code: {status_body}"
        );
        if active > 0 {
            // It serves: the active version's handler answers on /k.
            let mut ws = connect(served.ws, "/k").await;
            let expected = if versions[active as usize - 1]["note"] == "chaos" {
                "chaos"
            } else {
                "echo"
            };
            assert_eq!(which(&mut ws).await, expected, "iteration {i}");
            ws.close(None).await.expect("close");
        }

        // Uploads, deploys and rollbacks, killed at a random moment.
        let state = Arc::new(KillState::new(acked_versions, active));
        let worker = {
            let (state, admin, echo, chaos, cycle_ms) = (
                Arc::clone(&state),
                admin.clone(),
                Arc::clone(&echo),
                Arc::clone(&chaos),
                Arc::clone(&cycle_ms),
            );
            tokio::spawn(async move {
                for step in 0u64.. {
                    let cycle = Instant::now();
                    let (bytes, note) = if (i as u64 + step).is_multiple_of(2) {
                        (&chaos, "chaos")
                    } else {
                        (&echo, "echo")
                    };
                    state.phase.store(PHASE_UPLOAD, Ordering::SeqCst);
                    let path = format!("/v1/tenants/default/modules/k/versions?note={note}");
                    let Ok((status, v)) = try_http(&admin, "POST", &path, bytes).await else {
                        return;
                    };
                    assert_eq!(status, 201, "{v}");
                    let version = v["version"].as_u64().unwrap_or(0);
                    state.versions.fetch_max(version, Ordering::SeqCst);
                    // Deploy it, roll back, deploy it again: three changes
                    // of the active version per upload.
                    let before = state.active.load(Ordering::SeqCst);
                    let deploy =
                        json!({"module": "k", "version": version, "route": "/k"}).to_string();
                    let changes: [(u8, &str, &[u8], u64); 3] = [
                        (
                            PHASE_DEPLOY,
                            "/v1/tenants/default/deployments",
                            deploy.as_bytes(),
                            version,
                        ),
                        (
                            PHASE_ROLLBACK,
                            "/v1/tenants/default/modules/k/rollback",
                            b"",
                            before,
                        ),
                        (
                            PHASE_DEPLOY,
                            "/v1/tenants/default/deployments",
                            deploy.as_bytes(),
                            version,
                        ),
                    ];
                    for (phase, path, body, target) in changes {
                        if phase == PHASE_ROLLBACK && before == 0 {
                            continue; // nothing to roll back to yet
                        }
                        state.phase.store(phase, Ordering::SeqCst);
                        state.pending.store(target, Ordering::SeqCst);
                        let Ok((status, v)) = try_http(&admin, "POST", path, body).await else {
                            return;
                        };
                        assert_eq!(status, 200, "{v}");
                        assert_eq!(v["version"].as_u64(), Some(target), "{v}");
                        state.active.store(target, Ordering::SeqCst);
                    }
                    cycle_ms.store(cycle.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
            })
        };
        let window = cycle_ms.load(Ordering::Relaxed).clamp(50, 2000) * 3 / 2;
        let delay = Duration::from_millis(rng.below(window));
        // The kill moment is a random delay: the point is to land anywhere.
        tokio::time::sleep(delay).await;
        served.kill().await;
        if let Err(e) = worker.await {
            std::panic::resume_unwind(e.into_panic());
        }
        kills[usize::from(state.phase.load(Ordering::SeqCst))] += 1;
        let versions_now = state.versions.load(Ordering::SeqCst);
        if versions_now == acked_versions {
            // Nothing completed before the kill: give the next one longer.
            let grown = (cycle_ms.load(Ordering::Relaxed) * 3 / 2).min(2000);
            cycle_ms.store(grown, Ordering::Relaxed);
        }
        acked_versions = versions_now;
        // After the restart the active version must be the last
        // acknowledged one, or the one a change in flight asked for.
        allowed_active = [
            state.active.load(Ordering::SeqCst),
            state.pending.load(Ordering::SeqCst),
        ];
    }
    // No temporary file survives a restart.
    let served = Served::start(&args, Some(TOKEN), &home.0).await;
    for sub in ["blobs", "compiled"] {
        for entry in std::fs::read_dir(data.join(sub)).expect("dir") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(!name.ends_with(".tmp"), "{sub}/{name} left behind");
        }
    }
    served.kill().await;
    eprintln!(
        "kill -9: {ITERATIONS} kills ({} during an upload, {} during a deploy, {} during a rollback), {acked_versions} versions \
         acknowledged and all kept, registry consistent after each restart, in {:.1} s",
        kills[0],
        kills[1],
        kills[2],
        started.elapsed().as_secs_f64()
    );
}

const PHASE_UPLOAD: u8 = 0;
const PHASE_DEPLOY: u8 = 1;
const PHASE_ROLLBACK: u8 = 2;

/// What the kill -9 test's worker had acknowledged, and what was in flight.
struct KillState {
    phase: std::sync::atomic::AtomicU8,
    /// The highest version whose upload was acknowledged.
    versions: AtomicU64,
    /// The active version as last acknowledged.
    active: AtomicU64,
    /// The version the change in flight (if any) activates.
    pending: AtomicU64,
}

impl KillState {
    fn new(versions: u64, active: u64) -> KillState {
        KillState {
            phase: std::sync::atomic::AtomicU8::new(PHASE_UPLOAD),
            versions: AtomicU64::new(versions),
            active: AtomicU64::new(active),
            pending: AtomicU64::new(active),
        }
    }
}

/// Like [`http`], but a connection the killed server drops is an `Err`.
async fn try_http(addr: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value), ()> {
    let mut stream = TcpStream::connect(addr).await.map_err(drop)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\
         Authorization: Bearer {TOKEN}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(drop)?;
    stream.write_all(body).await.map_err(drop)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(drop)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(())?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(())?;
    Ok((status, serde_json::from_str(body).map_err(drop)?))
}
