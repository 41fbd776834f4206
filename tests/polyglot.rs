//! One conformance suite for the echo example of every guest language.
//!
//! Each language's echo (`examples/echo` in Rust, `examples/echo-python`,
//! ...) implements the same behaviour, written down in
//! `examples/echo/src/lib.rs`: greeting with the route captures, echo of
//! text and binary, `prepare` refusing a bad token with 401, subprotocol
//! selection, and `wsbox:` text commands for JSON, close, ping/pong hooks,
//! write after close and a trap. Every scenario below runs against every
//! language; a language's test fails listing the scenarios it failed.
//!
//! Languages other than Rust are built by their example's build script,
//! which installs the toolchain into `~/.cache/wsbox/toolchains` on first
//! use (one line on stderr) and writes the component under this build's
//! target directory. `WSBOX_SKIP_PEERS=polyglot` skips them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsbox::config::{Config, ModuleSource, RouteConfig, RoutePattern};
use wsbox_tests::*;

/// The echo routes: `/echo` (no captures: a pure echo) and
/// `/echo/<arg>/<room>` (one positional and one named capture), and
/// `/hib-<lang>`, which hibernates after 100 ms without messages (named
/// after the language: the tests share one log).
fn echo_config(module: ModuleSource, lang: &str) -> Config {
    let mut config = module_config("/echo", "unused.wasm", polyglot_limits());
    config.runtime.max_memory_per_instance = 128 << 20;
    let route = |pattern: &str| RouteConfig {
        pattern: RoutePattern::new(pattern).expect("route pattern"),
        tenant: "default".to_string(),
        module: module.clone(),
        limits: polyglot_limits(),
        origin: Default::default(),
        keepalive: Default::default(),
        compression: None,
        hibernation: Default::default(),
    };
    let mut hibernating = route(&hibernating_route(lang));
    hibernating.hibernation.after = Some(Duration::from_millis(100));
    config.routes = vec![
        route("/echo"),
        route("/echo/([a-z]+)/(?P<room>[a-z]+)"),
        hibernating,
    ];
    config
}

fn hibernating_route(lang: &str) -> String {
    format!("/hib-{lang}")
}

type ScenarioFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Scenario = fn(Arc<TestServer>, &'static str) -> ScenarioFuture;

/// Every scenario, by name.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("greeting with captures", |s, l| Box::pin(greeting(s, l))),
    ("text and binary echo", |s, l| {
        Box::pin(echo_text_binary(s, l))
    }),
    ("1 MiB messages", |s, l| Box::pin(one_mebibyte(s, l))),
    ("100 messages back to back", |s, l| {
        Box::pin(back_to_back(s, l))
    }),
    ("close code and reason reach on_close", |s, l| {
        Box::pin(close_reaches_on_close(s, l))
    }),
    ("handler closes with code and reason", |s, l| {
        Box::pin(handler_close(s, l))
    }),
    ("ping and pong hooks", |s, l| Box::pin(ping_pong(s, l))),
    ("prepare rejects with 401 and a header", |s, l| {
        Box::pin(reject_in_prepare(s, l))
    }),
    ("subprotocol selection", |s, l| Box::pin(subprotocol(s, l))),
    ("JSON write", |s, l| Box::pin(json_write(s, l))),
    ("write after close fails with closed", |s, l| {
        Box::pin(write_after_close(s, l))
    }),
    ("a trap closes only its connection with 1011", |s, l| {
        Box::pin(trap(s, l))
    }),
    ("state survives hibernate and wake", |s, l| {
        Box::pin(hibernate_and_wake(s, l))
    }),
];

/// Runs every scenario against `module`, each in its own task, and fails
/// listing those that failed.
async fn conformance(lang: &'static str, module: ModuleSource) {
    conformance_with_known_failures(lang, module, &[]).await;
}

/// [`conformance`] for a language that fails some scenarios for a known
/// reason (written beside the call): the test fails if they pass (so the
/// list is kept true) as well as if any other scenario fails.
async fn conformance_with_known_failures(lang: &'static str, module: ModuleSource, known: &[&str]) {
    let started = Instant::now();
    let server = Arc::new(TestServer::start(echo_config(module, lang)).await);
    announce(&format!(
        "polyglot {lang}: server up in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let mut failed = Vec::new();
    for (name, scenario) in SCENARIOS {
        let t = Instant::now();
        let result = tokio::spawn(scenario(server.clone(), lang)).await;
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        announce(&format!(
            "polyglot {lang}: {name} ... {verdict} ({:.2}s)",
            t.elapsed().as_secs_f64()
        ));
        if result.is_err() {
            failed.push(*name);
        }
    }
    if failed != known {
        // The host's account of what went wrong (traps, refusals), with
        // the lines that continue a multi-line error.
        let logs = logs();
        let lines: Vec<&str> = logs.lines().collect();
        let mut shown = 0;
        for (i, line) in lines.iter().enumerate() {
            if shown >= 40 {
                break;
            }
            if line.contains("WARN") || line.contains("ERROR") {
                announce(&format!("polyglot {lang}: host log: {line}"));
                shown += 1;
                for more in lines[i + 1..]
                    .iter()
                    .take_while(|l| !l.starts_with("20"))
                    .take(30)
                {
                    announce(&format!("polyglot {lang}: host log:     {more}"));
                    shown += 1;
                }
            }
        }
    }
    assert!(
        failed == known,
        "{lang} echo failed {} of {} conformance scenarios: {failed:?} (known failures: {known:?})",
        failed.len(),
        SCENARIOS.len()
    );
}

/// The SDK's hibernation: the echo's count survives a hibernation (the
/// host's log and metrics say it happened) and comes back on the wake.
async fn hibernate_and_wake(server: Arc<TestServer>, lang: &'static str) {
    let route = hibernating_route(lang);
    let span = format!("route={route} ");
    let mut ws = server.connect(&route).await;
    assert_eq!(ask(&mut ws, "one").await, "one");
    assert_eq!(ask(&mut ws, "two").await, "two");
    wait_for_log_all(&[&span, "connection hibernated"]).await;
    // The connection task flags it on its next turn after the
    // `connection hibernated` line.
    metrics_count_hibernated(&server, &route, 1).await;
    let woken = count_log_lines(&[&span, "hibernated connection woke"]);
    // A fresh instance answers, with the count the hibernated one had.
    assert_eq!(ask(&mut ws, "wsbox:count").await, "echoed 2");
    assert!(
        count_log_lines(&[&span, "hibernated connection woke"]) > woken,
        "the count came from a woken instance"
    );
}

async fn greeting(server: Arc<TestServer>, _lang: &'static str) {
    let mut ws = server.connect("/echo/alpha/lobby").await;
    assert_eq!(
        text(&mut ws).await,
        "hello from wsbox echo: args=[alpha] kwargs={room: lobby}"
    );
    // Without captures there is no greeting: the first answer is the echo.
    let mut ws = server.connect("/echo").await;
    assert_eq!(ask(&mut ws, "first").await, "first");
}

async fn echo_text_binary(server: Arc<TestServer>, _lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    assert_eq!(ask(&mut ws, "héllo ✓").await, "héllo ✓");
    let bytes = vec![0u8, 1, 2, 255, 254];
    ws.send(WsMessage::binary(bytes.clone()))
        .await
        .expect("send");
    assert_eq!(next_message(&mut ws).await, WsMessage::binary(bytes));
    ws.send(WsMessage::text("")).await.expect("send");
    assert_eq!(next_message(&mut ws).await, WsMessage::text(""));
}

async fn one_mebibyte(server: Arc<TestServer>, _lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    let text_payload: String = (0..1 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    ws.send(WsMessage::text(text_payload.clone()))
        .await
        .expect("send");
    match next_message(&mut ws).await {
        WsMessage::Text(t) => assert!(t.as_str() == text_payload, "1 MiB text came back changed"),
        other => panic!("expected text, got {:?}", kind(&other)),
    }
    let binary: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(WsMessage::binary(binary.clone()))
        .await
        .expect("send");
    match next_message(&mut ws).await {
        WsMessage::Binary(b) => assert!(b[..] == binary[..], "1 MiB binary came back changed"),
        other => panic!("expected binary, got {:?}", kind(&other)),
    }
}

fn kind(message: &WsMessage) -> &'static str {
    match message {
        WsMessage::Text(_) => "text",
        WsMessage::Binary(_) => "binary",
        WsMessage::Close(_) => "close",
        _ => "control",
    }
}

async fn back_to_back(server: Arc<TestServer>, _lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    for i in 0..100 {
        ws.feed(WsMessage::text(format!("m{i}")))
            .await
            .expect("feed");
    }
    ws.flush().await.expect("flush");
    for i in 0..100 {
        assert_eq!(text(&mut ws).await, format!("m{i}"), "message {i} in order");
    }
}

async fn close_reaches_on_close(server: Arc<TestServer>, lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    assert_eq!(ask(&mut ws, "before close").await, "before close");
    let reason = format!("bye-{lang}");
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: reason.clone().into(),
    }))
    .await
    .expect("close");
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 4000, "the server echoes the close code");
    wait_for_log(&format!("echo closed: code=4000 reason={reason}")).await;
}

async fn handler_close(server: Arc<TestServer>, lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    ws.send(WsMessage::text(format!("wsbox:close 4002 done-{lang}")))
        .await
        .expect("send");
    assert_eq!(expect_close(&mut ws).await, (4002, format!("done-{lang}")));
}

async fn ping_pong(server: Arc<TestServer>, _lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    assert_eq!(ask(&mut ws, "wsbox:hooks").await, "hooks on");
    ws.send(WsMessage::Ping(b"from-client".to_vec().into()))
        .await
        .expect("ping");
    assert_eq!(text(&mut ws).await, "on_ping: from-client");
    // The handler pings; the client answers with a pong (tungstenite does
    // so while reading), which reaches on_pong.
    ws.send(WsMessage::text("wsbox:ping from-handler"))
        .await
        .expect("send");
    assert_eq!(text(&mut ws).await, "on_pong: from-handler");
}

async fn reject_in_prepare(server: Arc<TestServer>, _lang: &'static str) {
    let err = tokio_tungstenite::connect_async(server.url("/echo?token=wrong"))
        .await
        .expect_err("a bad token is refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 401);
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
            let body = response.body().as_deref().unwrap_or_default();
            assert!(
                String::from_utf8_lossy(body).contains("bad token"),
                "the reason is the body: {body:?}"
            );
        }
        other => panic!("expected an HTTP 401, got {other}"),
    }
    let mut ws = server.connect("/echo?token=letmein").await;
    assert_eq!(ask(&mut ws, "in").await, "in");
}

async fn subprotocol(server: Arc<TestServer>, _lang: &'static str) {
    let mut request = server.url("/echo").into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "chat.v9, echo.v1".parse().expect("header"),
    );
    let (mut ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("in time")
        .expect("handshake");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"echo.v1"[..])
    );
    assert_eq!(ask(&mut ws, "sub").await, "sub");
    // Not offered: none selected (tungstenite refuses that answer, so
    // the handshake goes by hand).
    let response = raw_request(
        server.addr,
        &format!(
            "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat.v9\r\n\r\n",
            server.addr
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(
        !response
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol"),
        "{response}"
    );
}

async fn json_write(server: Arc<TestServer>, _lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    let answer = ask(&mut ws, "wsbox:json").await;
    let value: serde_json::Value =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:?}"));
    assert_eq!(value, serde_json::json!({"echo": "json", "n": [1, 2]}));
}

async fn write_after_close(server: Arc<TestServer>, lang: &'static str) {
    let mut ws = server.connect("/echo").await;
    let tag = format!("wac-{lang}");
    ws.send(WsMessage::text(format!("wsbox:write-after-close {tag}")))
        .await
        .expect("send");
    assert_eq!(expect_close(&mut ws).await, (4001, "closing".to_string()));
    wait_for_log(&format!("write after close {tag}: closed")).await;
}

async fn trap(server: Arc<TestServer>, _lang: &'static str) {
    let mut bystander = server.connect("/echo").await;
    assert_eq!(ask(&mut bystander, "still here?").await, "still here?");
    let mut victim = server.connect("/echo").await;
    victim
        .send(WsMessage::text("wsbox:trap"))
        .await
        .expect("send");
    assert_eq!(expect_close(&mut victim).await.0, 1011);
    assert_eq!(ask(&mut bystander, "still here").await, "still here");
    // A new connection gets a fresh instance.
    let mut fresh = server.connect("/echo").await;
    assert_eq!(ask(&mut fresh, "fresh").await, "fresh");
}

// ---- the languages ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_echo_passes_the_conformance_suite() {
    // With the `hibernate` feature: the bundled echo does not hibernate.
    conformance(
        "rust",
        ModuleSource::File(PathBuf::from(ECHO_HIBERNATE_WASM)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_echo_passes_the_conformance_suite() {
    let Some(wasm) = built_example("echo-python", "python").await else {
        return;
    };
    conformance("python", ModuleSource::File(wasm)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_echo_passes_the_conformance_suite() {
    let Some(wasm) = built_example("echo-js", "javascript").await else {
        return;
    };
    conformance("javascript", ModuleSource::File(wasm)).await;
}

/// componentize-py's `--stub-wasi` build (38 core instances, no WASI
/// imports) loads with the default per-component pool limits and echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_wasi_python_build_fits_the_default_pool_limits() {
    let Some(wasm) = tokio::task::spawn_blocking(|| {
        build_example_with("echo-python", "python", Some(("WSBOX_STUB_WASI", "1")))
    })
    .await
    .expect("build task") else {
        return;
    };
    let server =
        TestServer::start(echo_config(ModuleSource::File(wasm.clone()), "python-stub")).await;
    // The second load of the same large module takes its compiled code
    // from the cache (when the test runtime has one: by default it does).
    if server.handle.runtime().compiled_cache().is_some() {
        server
            .handle
            .runtime()
            .load_module(&ModuleSource::File(wasm))
            .expect("the module loads again");
        wait_for_log("loaded from the compiled-code cache module=echo-python-wsbox_stub_wasi ")
            .await;
    }
    let mut ws = server.connect("/echo/stub/wasi").await;
    assert_eq!(
        text(&mut ws).await,
        "hello from wsbox echo: args=[stub] kwargs={room: wasi}"
    );
    assert_eq!(ask(&mut ws, "stubbed").await, "stubbed");
}

/// The committed C bindings were generated from this WIT: the hash
/// recorded beside them is the WIT's. When `wit-bindgen` is at hand
/// (`WIT_BINDGEN`, or on the PATH), they are also regenerated and
/// compared file by file.
#[test]
fn the_committed_c_bindings_match_the_wit() {
    let (workspace, bindings, Some(wit_bindgen)) = checked_bindings("c", "C") else {
        return;
    };
    let out = std::env::temp_dir().join(format!("wsbox-c-bindings-{}", std::process::id()));
    let status = std::process::Command::new(&wit_bindgen)
        .args(["c", "--world", "websocket-host", "--out-dir"])
        .arg(&out)
        .arg(workspace.join("wit"))
        .status()
        .expect("run wit-bindgen");
    assert!(status.success(), "wit-bindgen c failed");
    let names = [
        "websocket_host.c",
        "websocket_host.h",
        "websocket_host_component_type.o",
    ];
    let fresh: Vec<Vec<u8>> = names
        .iter()
        .map(|name| std::fs::read(out.join(name)).unwrap_or_default())
        .collect();
    let _ = std::fs::remove_dir_all(&out);
    for (name, fresh) in names.iter().zip(fresh) {
        let committed = std::fs::read(bindings.join(name)).expect("committed file");
        assert!(
            without_producers(&fresh) == without_producers(&committed),
            "guest-sdk/c/bindings/{name} differs from what wit-bindgen generates: run `sh guest-sdk/c/regen.sh`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_echo_passes_the_conformance_suite() {
    let Some(wasm) = built_example("echo-c", "c").await else {
        return;
    };
    conformance("c", ModuleSource::File(wasm)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_echo_passes_the_conformance_suite() {
    let Some(wasm) = built_example("echo-go", "go").await else {
        return;
    };
    conformance("go", ModuleSource::File(wasm.clone())).await;
    go_garbage_is_collected_between_events(wasm).await;
}

/// The Go SDK turns Go's automatic GC off (an allocation in `cabi_realloc`
/// must not run a collection: it reads the clock, an import the component
/// model forbids there) and collects at the end of events instead. Fifty
/// 1 MiB messages, text and binary, echo one by one under a 32 MiB
/// `memory_limit`: without those collections their garbage (at least the
/// 50 MiB the host lowers into the instance) would outgrow the limit and
/// the instance would trap (1011).
async fn go_garbage_is_collected_between_events(wasm: PathBuf) {
    let mut config = echo_config(ModuleSource::File(wasm), "go-gc");
    for route in &mut config.routes {
        route.limits.memory_limit = 32 << 20;
    }
    let server = TestServer::start(config).await;
    let started = Instant::now();
    let mut ws = server.connect("/echo").await;
    for i in 0..50u32 {
        let sent = if i % 2 == 0 {
            WsMessage::text(
                char::from(b'a' + (i % 26) as u8)
                    .to_string()
                    .repeat(1 << 20),
            )
        } else {
            WsMessage::binary(vec![i as u8; 1 << 20])
        };
        ws.send(sent.clone()).await.expect("send");
        let got = next_message(&mut ws).await;
        assert!(
            got == sent,
            "1 MiB message {i} under a 32 MiB memory_limit: expected its echo ({}), got {} (a close here means the instance ran out of memory: garbage not collected)",
            kind(&sent),
            kind(&got)
        );
    }
    announce(&format!(
        "polyglot go: 50 x 1 MiB under a 32 MiB memory_limit ... ok ({:.2}s)",
        started.elapsed().as_secs_f64()
    ));
}

/// The committed Go bindings were generated from this WIT: the hash
/// recorded beside them is the WIT's, and with `wit-bindgen` at hand (of
/// the version that generated them) they are regenerated and compared.
#[test]
fn the_committed_go_bindings_match_the_wit() {
    let (workspace, bindings, Some(wit_bindgen)) = checked_bindings("go", "Go") else {
        return;
    };
    let out = std::env::temp_dir().join(format!("wsbox-go-bindings-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    let status = std::process::Command::new(&wit_bindgen)
        .args(["go", "-w", "websocket-host"])
        .arg(workspace.join("wit"))
        .current_dir(&out)
        .status()
        .expect("run wit-bindgen");
    let mut generated = Vec::new();
    collect_files(&out, &out, &mut generated);
    let _ = std::fs::remove_dir_all(&out);
    assert!(status.success(), "wit-bindgen go failed");
    assert!(!generated.is_empty(), "wit-bindgen go wrote nothing");
    for (name, fresh) in generated {
        let committed = std::fs::read(bindings.join(&name)).unwrap_or_default();
        assert!(
            fresh == committed,
            "guest-sdk/go/bindings/{name} differs from what wit-bindgen generates: run `sh guest-sdk/go/regen.sh`"
        );
    }
}

/// Checks that the committed `guest-sdk/<dir>/bindings` were generated
/// from this WIT (the hash recorded beside them), and returns the
/// workspace, the bindings directory and, when one of the version that
/// generated them is at hand, the `wit-bindgen` to regenerate them with.
/// The bytes before the `producers` section the component-type object
/// ends with: it names the wit-component version of the `wit-bindgen`
/// build (0.258.0 from one `cargo install`, 0.258.3 from another), which
/// says nothing about the bindings.
fn without_producers(bytes: &[u8]) -> &[u8] {
    let needle = b"producers";
    match bytes.windows(needle.len()).rposition(|w| w == needle) {
        Some(at) => &bytes[..at],
        None => bytes,
    }
}

fn checked_bindings(dir: &str, language: &str) -> (PathBuf, PathBuf, Option<String>) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf();
    let bindings = workspace.join(format!("guest-sdk/{dir}/bindings"));
    let recorded = std::fs::read_to_string(bindings.join("WIT_SHA256"))
        .unwrap_or_else(|e| panic!("guest-sdk/{dir}/bindings/WIT_SHA256 is committed: {e}"));
    let actual = wsbox::registry::sha256_hex(
        &std::fs::read(workspace.join("wit/websocket.wit")).expect("read the WIT"),
    );
    assert_eq!(
        recorded.trim(),
        actual,
        "wit/websocket.wit changed since the {language} bindings were generated: run \
         `sh guest-sdk/{dir}/regen.sh` (needs wit-bindgen: `cargo install wit-bindgen-cli --version 0.61.1`) \
         and commit guest-sdk/{dir}/bindings"
    );
    let wit_bindgen = std::env::var("WIT_BINDGEN").unwrap_or_else(|_| "wit-bindgen".into());
    let Ok(version) = std::process::Command::new(&wit_bindgen)
        .arg("--version")
        .output()
    else {
        announce(&format!(
            "the {language} bindings match the WIT's hash; wit-bindgen is absent, so they were not regenerated"
        ));
        return (workspace, bindings, None);
    };
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let generated_by = std::fs::read_to_string(bindings.join("GENERATED_BY")).unwrap_or_default();
    if generated_by.trim() != version {
        announce(&format!(
            "the {language} bindings were generated by {}, not {version}: not regenerated",
            generated_by.trim()
        ));
        return (workspace, bindings, None);
    }
    (workspace, bindings, Some(wit_bindgen))
}

/// Every file under `dir`, by its path relative to `root`, with its bytes.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push((
                rel.to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap_or_default(),
            ));
        }
    }
}

/// The compiled-code cache stays under `compiled_cache_max_size`: after
/// compiling a large module (1 MiB and more) into it, the least recently
/// used entries go, never the one just written.
#[test]
fn the_compiled_code_cache_keeps_under_its_cap() {
    let dir = std::env::temp_dir().join(format!("wsbox-cache-cap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.join("compiled");
    std::fs::create_dir_all(&cache).expect("cache dir");
    // Two old entries (the cap admits one of them beside the new one) and
    // a file that is not an entry.
    let aged = |name: &str, len: usize, age: u64| {
        let path = cache.join(name);
        std::fs::write(&path, vec![0u8; len]).expect("write entry");
        std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(age)))
            .expect("age entry");
        path
    };
    let oldest = aged("oldest.cwasm", 3 << 20, 300);
    let older = aged("older.cwasm", 3 << 20, 200);
    let other = aged("README", 10 << 20, 1000);
    // A component over 1 MiB (a core module with a 1.5 MiB data segment):
    // not a handler, but it is compiled, and cached, before that is checked.
    let data = "a".repeat(1536 << 10);
    let wat = format!("(component (core module (memory 32) (data (i32.const 0) \"{data}\")))");
    let module = dir.join("large.wasm");
    std::fs::write(&module, wat::parse_str(&wat).expect("wat")).expect("write module");
    let runtime = wsbox::runtime::Runtime::new(&wsbox::config::RuntimeConfig {
        max_instances: 4,
        compiled_cache: Some(cache.clone()),
        compiled_cache_max_size: 6 << 20,
        ..wsbox::config::RuntimeConfig::default()
    })
    .expect("runtime");
    let refused = runtime.load_module(&ModuleSource::File(module));
    assert!(refused.is_err(), "not a handler");
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .expect("read cache")
        .map(|e| e.expect("entry").path())
        .collect();
    let new: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm") && **p != oldest && **p != older)
        .collect();
    assert_eq!(new.len(), 1, "the new entry was written: {entries:?}");
    assert!(!oldest.exists(), "the least recently used entry went");
    assert!(
        older.exists(),
        "the cache fits the cap without removing more"
    );
    assert!(other.exists(), "files that are not entries stay");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wake latency with a large module: message in -> reply out on a
/// hibernated connection of the Python echo (~18 MB component) and of the
/// Rust one (~100 KB), against a live connection's reply, in one server.
/// Ignored by default (about a minute):
/// `cargo test -p wsbox-tests --test polyglot wake_latency -- --ignored --nocapture`
/// (`WSBOX_WAKE_N` wakes per module, 100 by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run by hand"]
async fn wake_latency_python_and_rust_against_live() {
    let Some(python) = built_example("echo-python", "python").await else {
        return;
    };
    let n: usize = std::env::var("WSBOX_WAKE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rust = ModuleSource::File(PathBuf::from(ECHO_HIBERNATE_WASM));
    let mut config = echo_config(ModuleSource::File(python.clone()), "wake-bench");
    let route = |pattern: &str, module: ModuleSource, hibernate: bool| {
        let mut route = config.routes[0].clone();
        route.pattern = RoutePattern::new(pattern).expect("route pattern");
        route.module = module;
        route.hibernation.after = hibernate.then_some(Duration::from_millis(100));
        route
    };
    config.routes = vec![
        route("/wake-python", ModuleSource::File(python.clone()), true),
        route("/wake-rust", rust.clone(), true),
        route("/live-python", ModuleSource::File(python), false),
        route("/live-rust", rust, false),
    ];
    let server = TestServer::start(config).await;
    let mut rows = Vec::new();
    for lang in ["python", "rust"] {
        // N connections, one message each, then all hibernated...
        let path = format!("/wake-{lang}");
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut ws = server.connect(&path).await;
            assert_eq!(ask(&mut ws, &format!("m{i}")).await, format!("m{i}"));
            clients.push(ws);
        }
        wait_for_log_count(&[&format!("route={path} "), "connection hibernated"], n).await;
        // ...then one round trip on each: a wake.
        let mut wake = Vec::with_capacity(n);
        for ws in &mut clients {
            let started = Instant::now();
            assert_eq!(ask(ws, "wsbox:count").await, "echoed 1");
            wake.push(started.elapsed());
        }
        // The live baseline: the same module, never hibernated.
        let mut ws = server.connect(&format!("/live-{lang}")).await;
        assert_eq!(ask(&mut ws, "warm").await, "warm");
        let mut live = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            assert_eq!(ask(&mut ws, &format!("l{i}")).await, format!("l{i}"));
            live.push(started.elapsed());
        }
        rows.push((lang, wake, live));
    }
    for (lang, mut wake, mut live) in rows {
        wake.sort();
        live.sort();
        let at = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        println!(
            "WAKE {lang} ({n} wakes): p50 {:?} p99 {:?}; LIVE {lang}: p50 {:?} p99 {:?}",
            at(&wake, 0.5),
            at(&wake, 0.99),
            at(&live, 0.5),
            at(&live, 0.99)
        );
    }
}
