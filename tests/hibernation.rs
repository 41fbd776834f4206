//! Hibernation: an idle connection gives its instance back and keeps its
//! socket, subscriptions and state (the attachment); the next message wakes
//! it into a fresh instance of the route's active version.
//!
//! The tests wait for the host's log lines (`connection hibernated`,
//! `hibernated connection woke`) of one connection id, never for time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use wsbox::config::{AutoResponse, Config, ModuleSource, RouteConfig, RoutePattern};
use wsbox_tests::*;

/// Short enough for tests; the deadlines (`WAIT`) are generous.
const AFTER: Duration = Duration::from_millis(100);

/// One hibernating route at `pattern` (each test has its own: connection
/// ids restart at 1 in each test server, and the tests share one log).
fn hibernating(wasm: &str, pattern: &str) -> Config {
    let mut config = module_config(pattern, wasm, test_limits());
    config.routes[0].hibernation.after = Some(AFTER);
    config
}

/// The next frame of any kind, pings and pongs included.
async fn next_frame(ws: &mut Client) -> Message {
    use futures_util::StreamExt;
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame in time")
        .expect("stream not ended")
        .expect("no protocol error")
}

/// The connection id, from the counter's `id` command.
async fn counter_id(ws: &mut Client) -> u64 {
    let answer = ask(ws, "id").await;
    answer
        .strip_prefix("counter-id ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer to id: {answer}"))
}

/// What the log lines of connection `id` on route `pattern` start with.
fn span(pattern: &str, id: u64) -> String {
    format!("conn{{id={id} route={pattern} ")
}

async fn hibernated(pattern: &str, id: u64) {
    wait_for_log_all(&[&span(pattern, id), "connection hibernated"]).await;
}

fn wakes(pattern: &str, id: u64) -> usize {
    count_log_lines(&[&span(pattern, id), "hibernated connection woke"])
}

#[tokio::test]
async fn state_survives_hibernate_and_wake() {
    const P: &str = "/state-survives-hibernate";
    let server = TestServer::start(hibernating(HIBERNATE_WASM, "/state-survives-hibernate")).await;
    let mut ws = server.connect("/state-survives-hibernate").await;
    assert_eq!(ask(&mut ws, "count").await, "count 1 messages 1 wakes 0");
    let id = counter_id(&mut ws).await;
    hibernated(P, id).await;
    assert_eq!(wakes(P, id), 0);
    metrics_count_hibernated(&server, P, 1).await;
    assert_eq!(ask(&mut ws, "count").await, "count 2 messages 3 wakes 1");
    assert_eq!(wakes(P, id), 1);
    // And again: it hibernates once more after the next idle period, and
    // the close wakes it for `on_close`.
    wait_for_log_count(&[&span(P, id), "connection hibernated"], 2).await;
    ws.close(None).await.expect("close");
    wait_for_log_count(&[&span(P, id), "hibernated connection woke"], 2).await;
}

#[tokio::test]
async fn pings_are_answered_while_hibernated_without_waking() {
    const P: &str = "/pings-are-answered-while";
    let mut config = hibernating(HIBERNATE_WASM, "/pings-are-answered-while");
    // Keepalive pings go out while hibernated, and the client's pongs
    // (tungstenite answers them) keep the connection open.
    config.routes[0].keepalive.ping_interval = Some(Duration::from_millis(300));
    config.routes[0].keepalive.ping_timeout = Some(Duration::from_secs(5));
    let server = TestServer::start(config).await;
    let mut ws = server.connect("/pings-are-answered-while").await;
    let id = counter_id(&mut ws).await;
    hibernated(P, id).await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    // The server's keepalive pings and our pong arrive in some order.
    let mut pong = false;
    let mut server_pings = 0;
    while !pong || server_pings < 2 {
        match next_frame(&mut ws).await {
            Message::Pong(data) => {
                assert_eq!(&data[..], b"are you there");
                pong = true;
            }
            Message::Ping(_) => server_pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wakes(P, id), 0, "pings and pongs do not wake the handler");
    assert_eq!(ask(&mut ws, "count").await, "count 1 messages 2 wakes 1");
}

#[tokio::test]
async fn keepalive_is_enforced_while_hibernated() {
    const P: &str = "/keepalive-is-enforced-wh";
    let mut config = hibernating(HIBERNATE_WASM, "/keepalive-is-enforced-wh");
    config.routes[0].keepalive.ping_interval = Some(Duration::from_secs(2));
    config.routes[0].keepalive.ping_timeout = Some(Duration::from_secs(1));
    let server = TestServer::start(config).await;
    // A raw client that never answers pings.
    let mut stream = raw_handshake(server.addr, "/keepalive-is-enforced-wh").await;
    stream
        .write_all(&client_frame(true, 0x1, b"id", Some([1, 2, 3, 4])))
        .await
        .expect("write");
    let (opcode, payload) = read_frame(&mut stream).await;
    assert_eq!(opcode, 0x1);
    let text = String::from_utf8(payload).expect("text");
    let id: u64 = text
        .strip_prefix("counter-id ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {text}"));
    hibernated(P, id).await;
    let code = tokio::time::timeout(WAIT, read_close_code(&mut stream))
        .await
        .expect("closed within the wait");
    assert_eq!(code, 1011, "keepalive timeout closes with 1011");
    wait_for_log_all(&[&span(P, id), "keepalive ping not answered"]).await;
}

#[tokio::test]
async fn subscriptions_and_send_to_reach_a_hibernated_connection_without_waking_it() {
    const P: &str = "/subscriptions-and-send-t";
    let server = TestServer::start(hibernating(HIBERNATE_WASM, "/subscriptions-and-send-t")).await;
    let mut a = server.connect("/subscriptions-and-send-t").await;
    assert_eq!(ask(&mut a, "sub room").await, "subscribed room");
    let a_id = counter_id(&mut a).await;
    hibernated(P, a_id).await;

    let mut b = server.connect("/subscriptions-and-send-t").await;
    assert_eq!(ask(&mut b, "pub room hello").await, "published 1");
    assert_eq!(next_message(&mut a).await, Message::Text("hello".into()));
    assert_eq!(
        ask(&mut b, &format!("send {a_id} direct")).await,
        "sent true"
    );
    assert_eq!(next_message(&mut a).await, Message::Text("direct".into()));
    assert_eq!(wakes(P, a_id), 0, "deliveries do not wake the handler");
    // Its handler got only its own three messages: sub, id and this one.
    assert_eq!(ask(&mut a, "count").await, "count 1 messages 3 wakes 1");
    // Its subscription survived hibernation.
    assert_eq!(ask(&mut b, "pub room again").await, "published 1");
    assert_eq!(next_message(&mut a).await, Message::Text("again".into()));
}

#[tokio::test]
async fn the_auto_response_is_answered_without_waking() {
    const P: &str = "/the-auto-response-is-ans";
    let mut config = hibernating(HIBERNATE_WASM, "/the-auto-response-is-ans");
    config.routes[0].hibernation.auto_response = Some(AutoResponse {
        request: "ping?".into(),
        response: "pong!".into(),
    });
    let server = TestServer::start(config).await;
    let mut ws = server.connect("/the-auto-response-is-ans").await;
    let id = counter_id(&mut ws).await;
    hibernated(P, id).await;
    assert_eq!(ask(&mut ws, "ping?").await, "pong!");
    assert_eq!(ask(&mut ws, "ping?").await, "pong!");
    assert_eq!(wakes(P, id), 0);
    // The handler never saw them: two messages (id, count), one wake.
    assert_eq!(ask(&mut ws, "count").await, "count 1 messages 2 wakes 1");
    // Awake, the host answers it too.
    assert_eq!(ask(&mut ws, "ping?").await, "pong!");
    assert_eq!(ask(&mut ws, "count").await, "count 2 messages 3 wakes 1");
}

/// A route at `/hib` serving `wasm` as version `version` of module `counter`.
fn deployed_route(server: &TestServer, wasm: &str, version: u64) -> wsbox::server::routes::Route {
    let handler = server
        .handle
        .runtime()
        .load_module(&ModuleSource::File(PathBuf::from(wasm)))
        .expect("the module loads");
    let module = Arc::new(wsbox::server::routes::ServedModule {
        name: "counter".to_string(),
        handler,
        tenant: "default".to_string(),
        version: Some(version),
    });
    let mut config = RouteConfig {
        pattern: RoutePattern::new("/hib").unwrap(),
        tenant: "default".to_string(),
        module: ModuleSource::File(PathBuf::from(wasm)),
        limits: test_limits(),
        origin: Default::default(),
        keepalive: Default::default(),
        compression: None,
        hibernation: Default::default(),
    };
    config.hibernation.after = Some(AFTER);
    wsbox::server::routes::Route::new(config, module, server.handle.tenant_share("default"))
}

#[tokio::test]
async fn a_deploy_while_hibernated_wakes_into_the_new_version() {
    const P: &str = "/hib";
    let server = TestServer::start(module_config("/other", BASIC_WASM, test_limits())).await;
    let v1 = deployed_route(&server, HIBERNATE_WASM, 1);
    server
        .handle
        .install_routes(vec![v1], &std::collections::HashMap::new())
        .expect("v1 installed");
    let mut ws = server.connect(P).await;
    assert_eq!(ask(&mut ws, "count").await, "count 1 messages 1 wakes 0");
    let id = counter_id(&mut ws).await;
    hibernated(P, id).await;
    // Version 2 is another handler: the pubsub guest answers `id` with
    // `id <n>`, where the counter says `counter-id <n>`.
    let v2 = deployed_route(&server, PUBSUB_WASM, 2);
    server
        .handle
        .install_routes(vec![v2], &std::collections::HashMap::new())
        .expect("v2 installed");
    assert_eq!(ask(&mut ws, "id").await, format!("id {id}"));
    let line = wait_for_log_all(&[&span(P, id), "hibernated connection woke"]).await;
    assert!(line.contains("version=Some(2)"), "{line}");
    // The registry (admin API, metrics) learns the version it woke into;
    // it is told right after the call that answered, so poll briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let version = server
            .handle
            .connections()
            .into_iter()
            .find(|c| c.id == id)
            .and_then(|c| c.version);
        if version == Some(2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the registry still says version {version:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_attachment_over_the_limit_keeps_the_handler_awake_and_tells_it() {
    const P: &str = "/an-attachment-over-the-l";
    let mut config = hibernating(HIBERNATE_WASM, "/an-attachment-over-the-l");
    config.routes[0].hibernation.max_attachment = 1024;
    let server = TestServer::start(config).await;
    let mut ws = server.connect("/an-attachment-over-the-l").await;
    assert_eq!(ask(&mut ws, "big 4000").await, "big 4000");
    let id = counter_id(&mut ws).await;
    let told = text(&mut ws).await;
    let size: usize = told
        .strip_prefix("too large ")
        .and_then(|rest| rest.strip_suffix(" > 1024"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message {told}"));
    assert!(size > 4000, "{size}");
    wait_for_log_all(&[&span(P, id), "attachment too large"]).await;
    assert_eq!(
        count_log_lines(&[&span(P, id), "connection hibernated"]),
        0,
        "it stayed awake"
    );
    // Awake with its state: no wake happened.
    assert_eq!(ask(&mut ws, "count").await, "count 1 messages 3 wakes 0");
}

#[tokio::test]
async fn a_trap_during_wake_closes_with_1011() {
    const P: &str = "/a-trap-during-wake-close";
    let server = TestServer::start(hibernating(HIBERNATE_WASM, "/a-trap-during-wake-close")).await;
    let mut ws = server.connect("/a-trap-during-wake-close").await;
    assert_eq!(ask(&mut ws, "trap-on-wake").await, "armed");
    let id = counter_id(&mut ws).await;
    hibernated(P, id).await;
    ws.send(Message::Text("count".into())).await.expect("send");
    let (code, _reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1011);
}

#[tokio::test]
async fn a_handler_that_declines_or_lacks_the_interface_is_never_hibernated() {
    // An SDK handler that does not opt in exports the interface and
    // declines each time.
    let mut config = hibernating(CHAOS_WASM, "/a-handler-that-declines-");
    config.routes[0].pattern = RoutePattern::new("/chaos-hib").unwrap();
    let server = TestServer::start(config).await;
    let mut ws = server.connect("/chaos-hib").await;
    ws.send(Message::Text("hello".into())).await.expect("send");
    let _ = next_message(&mut ws).await;
    wait_for_log_all(&["route=/chaos-hib", "handler declined to hibernate"]).await;
    assert_eq!(
        count_log_lines(&["route=/chaos-hib", "connection hibernated"]),
        0
    );
    // Each refusal doubles the wait before the next ask (100, 200, 400 ms
    // ...), and a message starts it over at one period.
    wait_for_log_all(&[
        "route=/chaos-hib",
        "handler declined to hibernate",
        "declined=3",
    ])
    .await;
    ws.send(Message::Text("again".into())).await.expect("send");
    let _ = next_message(&mut ws).await;
    wait_for_log_count(
        &[
            "route=/chaos-hib",
            "handler declined to hibernate",
            "declined=1",
        ],
        2,
    )
    .await;

    // A 0.2.2 component has no hibernation export: the host never asks it.
    // The server's keepalive ping, sent well after `hibernate_after`, is
    // the witness that the hibernation deadline has come and gone.
    let mut config = hibernating(PUBSUB_0_2_2_WASM, "/old");
    config.routes[0].keepalive.ping_interval = Some(Duration::from_millis(500));
    let server = TestServer::start(config).await;
    let (mut old, id) = join(&server, "/old").await;
    loop {
        if let Message::Ping(_) = next_frame(&mut old).await {
            break;
        }
    }
    assert_eq!(
        count_log_lines(&[&span("/old", id), "connection hibernated"]),
        0
    );
    assert_eq!(
        count_log_lines(&[&span("/old", id), "declined to hibernate"]),
        0
    );
    assert_eq!(ask(&mut old, "id").await, format!("id {id}"));
}

/// The answer to a WebSocket upgrade of `path`, as raw HTTP.
async fn upgrade_answer(server: &TestServer, path: &str) -> String {
    raw_request(
        server.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        ),
    )
    .await
}

#[tokio::test]
async fn pool_pressure_hibernates_the_least_recently_active_instead_of_refusing() {
    const P: &str = "/pool-pressure-hibernates";
    let mut config = hibernating(HIBERNATE_WASM, "/pool-pressure-hibernates");
    // Never on their own within the test: only pool pressure hibernates.
    config.routes[0].hibernation.after = Some(Duration::from_secs(3600));
    config.runtime.max_instances = 2;
    let server = TestServer::start(config).await;
    let mut first = server.connect(P).await;
    let first_id = counter_id(&mut first).await;
    let mut second = server.connect(P).await;
    let second_id = counter_id(&mut second).await;
    // The pool is full; the third is admitted by hibernating the first.
    let mut third = server.connect(P).await;
    let third_id = counter_id(&mut third).await;
    hibernated(P, first_id).await;
    assert_eq!(
        count_log_lines(&[&span(P, second_id), "connection hibernated"]),
        0
    );
    // The first wakes with its state, making room the same way (the
    // second is now the least recently active).
    assert_eq!(ask(&mut first, "count").await, "count 1 messages 2 wakes 1");
    hibernated(P, second_id).await;
    assert_eq!(
        count_log_lines(&[&span(P, third_id), "connection hibernated"]),
        0
    );
    assert_eq!(ask(&mut third, "count").await, "count 1 messages 2 wakes 0");
}

#[tokio::test]
async fn a_full_pool_with_nothing_to_hibernate_refuses_with_503() {
    // The route does not hibernate: nothing can make room.
    let mut config = module_config("/full", HIBERNATE_WASM, test_limits());
    config.runtime.max_instances = 1;
    let server = TestServer::start(config).await;
    let mut first = server.connect("/full").await;
    assert_eq!(ask(&mut first, "count").await, "count 1 messages 1 wakes 0");
    let refused = upgrade_answer(&server, "/full").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
}
