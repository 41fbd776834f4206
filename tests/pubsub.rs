//! `wsbox:websocket/pubsub` end to end: topics scoped to a tenant, the
//! publisher's report, exclude-self, direct messages, limits and typed
//! errors, subscriptions ending with their connection, slow consumers
//! (drop and close), and publishing from outside (admin API and CLI).
//!
//! The handler is `tests/guests/pubsub`: every text message is a command
//! (`sub T`, `pub T text`, `count T`...) answered with its result.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsbox::config::{Config, PubsubLimits, RouteLimits, RoutePattern, SlowConsumerPolicy};
use wsbox_tests::*;

const TOKEN: &str = "pubsub-test-token";

fn limits() -> RouteLimits {
    test_limits()
}

/// The pubsub guest at `/p/<topic>` (the capture is subscribed to on open)
/// and `/p`, in the default tenant.
fn pubsub_config(limits: RouteLimits) -> Config {
    module_config("/p(?:/(?P<topic>[a-z0-9]+))?", PUBSUB_WASM, limits)
}

/// Adds a route of tenant `acme` at `/acme/<topic>` serving the same guest.
fn add_acme_route(server: &TestServer) {
    add_tenant_route(
        server,
        "acme",
        "/acme(?:/(?P<topic>[a-z0-9]+))?",
        PUBSUB_WASM,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_reach_their_tenants_subscribers_only_with_counts_and_exclude_self() {
    let server = TestServer::start(pubsub_config(limits())).await;
    add_acme_route(&server);
    let (mut a1, a1_id) = join(&server, "/p/room").await;
    let (mut a2, _) = join(&server, "/p/room").await;
    let (mut b1, b1_id) = join(&server, "/acme/room").await;

    assert_eq!(ask(&mut a1, "count room").await, "count 2");
    assert_eq!(
        ask(&mut b1, "count room").await,
        "count 1",
        "acme's own room"
    );

    // The publisher subscribes too: it gets its own message after the
    // call's answer.
    assert_eq!(ask(&mut a1, "pub room hello").await, "published 2 0");
    assert_eq!(text(&mut a1).await, "hello");
    assert_eq!(text(&mut a2).await, "hello");

    assert_eq!(ask(&mut a1, "pubx room no echo").await, "published 1 0");
    assert_eq!(text(&mut a2).await, "no echo");

    // acme publishes to its own `room`: only b1 has it.
    assert_eq!(ask(&mut b1, "pubx room from acme").await, "published 0 0");
    assert_eq!(ask(&mut b1, "pub room from acme").await, "published 1 0");
    assert_eq!(text(&mut b1).await, "from acme");

    // Direct messages stay within the tenant too.
    assert_eq!(
        ask(&mut b1, &format!("send {a1_id} psst")).await,
        "error unknown-connection"
    );
    assert_eq!(
        ask(&mut a1, &format!("send {b1_id} psst")).await,
        "error unknown-connection"
    );
    assert_eq!(
        ask(&mut a2, &format!("send {a1_id} psst")).await,
        "sent true"
    );
    assert_eq!(text(&mut a1).await, "psst");

    // Nothing else reached a1 or b1: the next thing each gets is the
    // answer to its next command.
    assert_eq!(ask(&mut a1, "unsub room").await, "unsubscribed true");
    assert_eq!(ask(&mut a1, "unsub room").await, "unsubscribed false");
    assert_eq!(ask(&mut b1, "count room").await, "count 1");
    assert_eq!(server.handle.subscriber_count("default", "room"), 1);
    assert_eq!(server.handle.subscriber_count("acme", "room"), 1);

    let metrics = server.handle.encode_metrics(0, 0).expect("metrics");
    assert!(
        metrics.contains("wsbox_pubsub_deliveries_total{tenant=\"default\"} 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topics_and_tenant_limits_are_typed_errors() {
    let mut config = pubsub_config(limits());
    config.pubsub.default_limits = PubsubLimits {
        max_subscriptions_per_connection: 2,
        max_publishes_per_second: 1_000,
    };
    config.tenants.push(wsbox::config::TenantConfig {
        name: "acme".to_string(),
        path_prefix: Some("/acme".to_string()),
        max_connections: None,
        limits: wsbox::config::TenantLimits {
            max_publishes_per_second: Some(3),
            ..Default::default()
        },
    });
    let server = TestServer::start(config).await;
    add_acme_route(&server);
    let (mut a, _) = join(&server, "/p").await;
    assert_eq!(ask(&mut a, "sub").await, "error empty-topic");
    assert_eq!(
        ask(&mut a, &format!("sub {}", "x".repeat(257))).await,
        "error topic-too-long"
    );
    assert_eq!(
        ask(&mut a, &format!("sub {}", "x".repeat(256))).await,
        "subscribed"
    );
    assert_eq!(ask(&mut a, "sub two").await, "subscribed");
    assert_eq!(ask(&mut a, "sub two").await, "subscribed", "already has it");
    assert_eq!(
        ask(&mut a, "sub three").await,
        "error too-many-subscriptions"
    );
    assert_eq!(ask(&mut a, "pub").await, "error empty-topic");
    assert_eq!(ask(&mut a, "send 0 x").await, "error unknown-connection");

    // acme may publish 3 times a second: 5 publishes in one call (well
    // within a second), 2 refused.
    let (mut b, _) = join(&server, "/acme").await;
    assert_eq!(ask(&mut b, "flood nobody 5 1").await, "flooded 0 0 2");
    // The default tenant's rate is its own.
    assert_eq!(ask(&mut a, "flood nobody 5 1").await, "flooded 0 0 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_end_when_their_connection_closes() {
    let server = TestServer::start(pubsub_config(limits())).await;
    let (mut stays, _) = join(&server, "/p/t").await;
    let (mut leaves, _) = join(&server, "/p/t").await;
    assert_eq!(ask(&mut leaves, "tag leaver-7f3a").await, "tagged");
    assert_eq!(ask(&mut stays, "count t").await, "count 2");
    leaves.close(None).await.expect("close");
    // `on-close` runs after the subscriptions ended: it counts 1.
    wait_for_log("pubsub guest closed: leaver-7f3a (t has 1)").await;
    assert_eq!(ask(&mut stays, "count t").await, "count 1");
    assert_eq!(ask(&mut stays, "pubx t anyone").await, "published 0 0");
}

/// Opens a raw connection that subscribes to `topic` and then never reads.
async fn silent_subscriber(addr: SocketAddr, topic: &str) -> TcpStream {
    let mut raw = raw_handshake(addr, "/p").await;
    raw.write_all(&client_frame(
        true,
        0x1,
        format!("sub {topic}").as_bytes(),
        Some([1, 2, 3, 4]),
    ))
    .await
    .expect("send sub");
    let (opcode, payload) = read_frame(&mut raw).await;
    assert_eq!((opcode, payload.as_slice()), (0x1, &b"subscribed"[..]));
    raw
}

/// The CPU time the flooding handler may take for one call: 2,000
/// publishes of 16 KiB, each lowered into the host, take longer than the
/// tests' usual 300 ms in a debug build on a busy machine, and the flood
/// tests are about backpressure, not the CPU limit.
const FLOOD_CPU_TIME: Duration = Duration::from_secs(10);

/// Parses `flooded <delivered> <skipped> <errors>`.
fn flooded(answer: &str) -> (u32, u32, u32) {
    let n: Vec<u32> = answer
        .strip_prefix("flooded ")
        .unwrap_or_else(|| panic!("unexpected answer: {answer}"))
        .split(' ')
        .map(|n| n.parse().expect("a count"))
        .collect();
    (n[0], n[1], n[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_skipped_under_drop_and_the_publisher_is_told() {
    let server = TestServer::start(pubsub_config(RouteLimits {
        max_backpressure: 64 * 1024,
        slow_consumer: SlowConsumerPolicy::Drop,
        cpu_time_per_event: FLOOD_CPU_TIME,
        ..limits()
    }))
    .await;
    let mut silent = silent_subscriber(server.addr, "firehose").await;
    let (mut publisher, _) = join(&server, "/p").await;
    // 2,000 × 16 KiB: far more than the silent subscriber's socket buffers
    // and its 64 KiB bound.
    let (delivered, skipped, errors) =
        flooded(&ask(&mut publisher, "flood firehose 2000 16384").await);
    assert_eq!(errors, 0);
    assert_eq!(delivered + skipped, 2000);
    assert!(delivered > 0 && skipped > 0, "{delivered} {skipped}");
    // Still open: once it reads, it gets what was delivered, then answers.
    silent
        .write_all(&client_frame(
            true,
            0x1,
            b"count firehose",
            Some([5, 6, 7, 8]),
        ))
        .await
        .expect("send count");
    let mut binaries = 0;
    loop {
        let (opcode, payload) = read_frame(&mut silent).await;
        if opcode == 0x2 {
            binaries += 1;
            continue;
        }
        assert_eq!((opcode, payload.as_slice()), (0x1, &b"count 1"[..]));
        break;
    }
    assert_eq!(
        binaries, delivered,
        "every delivered message arrived, no skipped one"
    );
    let metrics = server.handle.encode_metrics(0, 0).expect("metrics");
    let drops = metrics
        .lines()
        .find(|l| l.starts_with("wsbox_pubsub_drops_total{tenant=\"default\"}"))
        .unwrap_or_else(|| panic!("no drops counted: {metrics}"));
    assert!(
        drops.ends_with(&format!(" {skipped}")),
        "{drops} vs {skipped}"
    );
    if !skip_peers(Peers::Promtool) {
        promtool_check(&wsbox::metrics::to_prometheus_text(&metrics));
    }
    assert!(
        !metrics.contains("wsbox_pubsub_slow_consumer_closes_total{tenant=\"default\"} 1"),
        "drop does not close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_1008_under_close() {
    let server = TestServer::start(pubsub_config(RouteLimits {
        max_backpressure: 64 * 1024,
        slow_consumer: SlowConsumerPolicy::Close,
        cpu_time_per_event: FLOOD_CPU_TIME,
        ..limits()
    }))
    .await;
    let mut silent = silent_subscriber(server.addr, "firehose").await;
    let (mut publisher, _) = join(&server, "/p").await;
    let (delivered, skipped, _) = flooded(&ask(&mut publisher, "flood firehose 2000 16384").await);
    assert!(delivered > 0 && skipped > 0, "{delivered} {skipped}");
    // Once it reads, it finds what was queued before the bound, then the close.
    assert_eq!(read_close_code(&mut silent).await, 1008);
    let metrics = server.handle.encode_metrics(0, 0).expect("metrics");
    assert!(
        metrics.contains("wsbox_pubsub_slow_consumer_closes_total{tenant=\"default\"} 1"),
        "{metrics}"
    );
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "wsbox-pubsub-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request to the admin API: the status and the JSON answer.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("admin connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("admin answer in time")
        .expect("read answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, serde_json::from_str(body).expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_the_cli_publish_to_a_tenants_topic() {
    let dir = TempDir::new("admin");
    let server = TestServer::start(pubsub_config(limits())).await;
    let config = wsbox::config::AdminConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.0.clone(),
        max_module_size: 1 << 20,
        ..Default::default()
    };
    let (admin_addr, admin_task) = start_admin(&server, &config, TOKEN).await;
    // After the control plane: starting, it installs its (empty) registry's
    // routes.
    add_acme_route(&server);

    let (mut a, _) = join(&server, "/p/news").await;
    let (mut b, _) = join(&server, "/acme/news").await;

    let (status, v) = http(
        admin_addr,
        "POST",
        "/v1/tenants/default/topics/news/messages",
        b"from the backend",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["delivered"].as_u64(), v["skipped"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(text(&mut a).await, "from the backend");
    let (status, v) = http(admin_addr, "GET", "/v1/tenants/acme/topics/news", b"").await;
    assert_eq!((status, v["subscribers"].as_u64()), (200, Some(1)), "{v}");
    let (status, v) = http(
        admin_addr,
        "POST",
        &format!("/v1/tenants/default/topics/{}/messages", "y".repeat(300)),
        b"x",
    )
    .await;
    assert_eq!(status, 422, "{v}");

    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(wsbox_binary())
            .args([
                "publish",
                "--admin",
                &format!("http://{admin_addr}"),
                "--token",
                TOKEN,
                "--tenant",
                "acme",
                "news",
                "from the CLI",
            ])
            .env_remove("WSBOX_ADMIN_TOKEN")
            .env_remove("WSBOX_ADMIN")
            .output(),
    )
    .await
    .expect("the CLI finished in time")
    .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("delivered to 1, skipped 0"), "{stdout}");
    assert_eq!(text(&mut b).await, "from the CLI");
    // The default tenant's `news` did not get acme's message.
    assert_eq!(ask(&mut a, "count news").await, "count 1");

    admin_task.abort();
    let _ = admin_task.await;
    server.shut_down().await;
}

/// Asks `text` of a wsbox client and returns the text answer.
async fn client_ask(ws: &mut wsbox::client::WebSocketClient, text: &str) -> String {
    ws.write_text(text).await.expect("write");
    client_text(ws).await
}

async fn client_text(ws: &mut wsbox::client::WebSocketClient) -> String {
    match tokio::time::timeout(WAIT, ws.read_message()).await {
        Ok(Some(wsbox::client::Message::Text(t))) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// With permessage-deflate (context takeover on both sides), published
/// frames go out uncompressed between the subscriber's compressed
/// answers, and the peer's inflater follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_frames_reach_compressed_connections_uncompressed_and_intact() {
    let mut config = pubsub_config(limits());
    enable_compression(&mut config);
    let server = TestServer::start(config).await;
    let options = || {
        wsbox::client::ClientOptions::default()
            .with_compression(wsbox::protocol::deflate::DeflateConfig::default())
    };
    let url = server.url("/p/zipped");
    let mut sub = tokio::time::timeout(WAIT, wsbox::client::connect(&url, options()))
        .await
        .expect("connect in time")
        .expect("connect");
    assert!(sub.is_compressed());
    let mut publisher =
        tokio::time::timeout(WAIT, wsbox::client::connect(&server.url("/p"), options()))
            .await
            .expect("connect in time")
            .expect("connect");
    assert!(client_ask(&mut sub, "id").await.starts_with("id "));
    for round in 0..3 {
        // Long, repetitive texts: the handler's answers are compressed.
        let text = format!("round {round} ").repeat(200);
        assert_eq!(
            client_ask(&mut publisher, &format!("pub zipped {text}")).await,
            "published 1 0"
        );
        assert_eq!(client_text(&mut sub).await, text);
        assert_eq!(client_ask(&mut sub, "count zipped").await, "count 1");
        // A compressed answer after the uncompressed published frame.
        let echo = format!("echo {round} ").repeat(100);
        assert_eq!(client_ask(&mut sub, &format!("echo {echo}")).await, echo);
    }
}

/// Subscribers whose server-side compressor resets per message
/// (`server_no_context_takeover`) get the message compressed once for all
/// of them; context-takeover subscribers get it uncompressed; both read it
/// intact, between the handler's own compressed answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_context_takeover_subscribers_share_one_compressed_frame() {
    let mut config = pubsub_config(limits());
    config.routes[0].compression = Some(wsbox::protocol::deflate::DeflateConfig {
        server_no_context_takeover: true,
        ..Default::default()
    });
    let mut takeover = config.routes[0].clone();
    takeover.pattern = RoutePattern::new("/q(?:/(?P<topic>[a-z0-9]+))?").unwrap();
    takeover.compression = Some(Default::default());
    config.routes.push(takeover);
    let server = TestServer::start(config).await;
    let options = || {
        wsbox::client::ClientOptions::default()
            .with_compression(wsbox::protocol::deflate::DeflateConfig::default())
    };
    let connect = |path: &str| {
        let url = server.url(path);
        let options = options();
        async move {
            tokio::time::timeout(WAIT, wsbox::client::connect(&url, options))
                .await
                .expect("connect in time")
                .expect("connect")
        }
    };
    let mut resetting = [connect("/p/shared").await, connect("/p/shared").await];
    let mut keeping = connect("/q/shared").await;
    let mut publisher = connect("/p").await;
    for ws in resetting.iter_mut().chain([&mut keeping]) {
        assert!(ws.is_compressed());
        assert!(client_ask(ws, "id").await.starts_with("id "));
    }
    let before: Vec<u64> = server
        .handle
        .connections()
        .iter()
        .map(|c| c.bytes_out)
        .collect();
    let text = "all the news that fits ".repeat(2000); // 46 KB, very repetitive
    assert_eq!(
        client_ask(&mut publisher, &format!("pub shared {text}")).await,
        "published 3 0"
    );
    for ws in resetting.iter_mut().chain([&mut keeping]) {
        assert_eq!(client_text(ws).await, text);
        let echo = "compressed answer ".repeat(50);
        assert_eq!(client_ask(ws, &format!("echo {echo}")).await, echo);
    }
    let after = server.handle.connections();
    let sent: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(c, b)| c.bytes_out - b)
        .collect();
    // Connections are listed by id: the two resetting ones first.
    assert!(sent[0] < 2_000 && sent[1] < 2_000, "compressed: {sent:?}");
    assert!(sent[2] > text.len() as u64, "uncompressed: {sent:?}");
}
