//! Pub/sub across nodes through a real broker: Debian's `redis-server`
//! and `nats-server`, started here on free loopback ports (installed with
//! apt-get on first use), with three wsbox nodes in this process.
//!
//! - topics reach every node's subscribers, within their tenant only;
//! - `send-to` reaches a connection on another node, within its tenant;
//! - the admin publish reaches other nodes;
//! - broker faults: with the broker killed, clients stay connected, local
//!   delivery goes on, messages for other nodes fail and are counted; when
//!   it is back, the nodes reconnect and subscribe again by themselves.
//!
//! The handler is `tests/guests/pubsub` (text commands, see its docs).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsbox::config::{BrokerConfig, BrokerKind, Config};
use wsbox_tests::*;

/// A broker process on a fixed loopback port; killed when dropped.
struct Broker {
    kind: BrokerKind,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    /// `None` (with a SKIPPED line) when `WSBOX_SKIP_PEERS` says so.
    fn start(kind: BrokerKind) -> Option<Broker> {
        let peer = match kind {
            BrokerKind::Redis => Peers::Redis,
            BrokerKind::Nats => Peers::Nats,
        };
        if skip_peers(peer) {
            return None;
        }
        let mut broker = Broker {
            kind,
            port: free_port(),
            child: None,
        };
        broker.spawn();
        Some(broker)
    }

    fn program(&self) -> String {
        match self.kind {
            BrokerKind::Redis => debian_program(
                "/usr/bin/redis-server",
                "redis-server",
                "WSBOX_REDIS_SERVER",
                "redis",
            ),
            BrokerKind::Nats => debian_program(
                "/usr/sbin/nats-server",
                "nats-server",
                "WSBOX_NATS_SERVER",
                "nats",
            ),
        }
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new(self.program());
        match self.kind {
            BrokerKind::Redis => command.args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ]),
            BrokerKind::Nats => command.args(["-a", "127.0.0.1", "-p", &port]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker starts");
        self.child = Some(child);
        // Ready when it accepts connections.
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{:?} did not listen on {}",
                self.kind,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.kind.as_str(), self.port)
    }

    /// Kills it at once (SIGKILL: no goodbye to its clients).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node: the pubsub guest at `/p/<topic>` (default tenant) and at
/// `/acme/<topic>` (tenant `acme`), pub/sub through `broker`.
async fn node(broker: &Broker, node_id: u16) -> TestServer {
    let mut config: Config =
        module_config("/p(?:/(?P<topic>[a-z0-9]+))?", PUBSUB_WASM, test_limits());
    config.pubsub.broker = Some(BrokerConfig {
        kind: broker.kind,
        url: broker.url(),
        node_id: Some(node_id),
        channel_prefix: format!("wsbox-test-{}", broker.port),
    });
    let server = TestServer::start(config).await;
    add_tenant_route(
        &server,
        "acme",
        "/acme(?:/(?P<topic>[a-z0-9]+))?",
        PUBSUB_WASM,
    );
    server
}

/// Waits until a node says it is (or is not) connected to its broker.
async fn until_broker(server: &TestServer, connected: bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, now) = server.handle.broker_status().expect("a clustered node");
        if now == connected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not become {}",
            if connected {
                "connected"
            } else {
                "disconnected"
            }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the nodes of `tos` (each subscribed to `topic`) get what
/// `from` publishes to it: `from` (not subscribed to it) publishes
/// numbered probes until each of them got one, then each takes the rest
/// (a broker channel keeps its order), so nothing is left in flight.
async fn until_routed(from: &mut Client, tos: &mut [&mut Client], topic: &str) {
    let deadline = Instant::now() + WAIT;
    let mut firsts: Vec<Option<u32>> = vec![None; tos.len()];
    let mut sent = 0u32;
    while firsts.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "probes on {topic} did not reach every node"
        );
        sent += 1;
        let answer = ask(from, &format!("pubx {topic} probe {sent}")).await;
        assert!(answer.starts_with("published"), "{answer}");
        for (to, first) in tos.iter_mut().zip(firsts.iter_mut()) {
            if first.is_some() {
                continue;
            }
            if let Ok(message) =
                tokio::time::timeout(Duration::from_millis(200), next_message(to)).await
            {
                *first = Some(probe_number(&message));
            }
        }
    }
    for (to, first) in tos.iter_mut().zip(firsts) {
        for n in first.unwrap_or(sent) + 1..=sent {
            assert_eq!(text(to).await, format!("probe {n}"));
        }
    }
}

fn probe_number(message: &WsMessage) -> u32 {
    match message {
        WsMessage::Text(t) => t
            .strip_prefix("probe ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("expected a probe, got {t}")),
        other => panic!("expected a probe, got {other:?}"),
    }
}

/// `ws` (connection `id`) got nothing so far: it sends itself a marker,
/// and the answer and the marker are the next two messages.
async fn nothing_yet(ws: &mut Client, id: u64) {
    assert_eq!(
        ask(ws, &format!("send {id} marker")).await,
        "sent true",
        "an earlier message leaked in"
    );
    assert_eq!(text(ws).await, "marker", "an earlier message leaked in");
}

async fn topics_and_direct_messages_cross_nodes(kind: BrokerKind) {
    let Some(broker) = Broker::start(kind) else {
        return;
    };
    let n1 = node(&broker, 1).await;
    let n2 = node(&broker, 2).await;
    let n3 = node(&broker, 3).await;
    for n in [&n1, &n2, &n3] {
        until_broker(n, true).await;
    }
    let (mut a, a_id) = join(&n1, "/p/room").await;
    let (mut b, b_id) = join(&n2, "/p/room").await;
    let (mut c, _) = join(&n3, "/p").await;
    let (mut acme, acme_id) = join(&n3, "/acme/room").await;
    assert_eq!(a_id >> 36, 1, "ids carry their node: {a_id}");
    assert_eq!(b_id >> 36, 2, "ids carry their node: {b_id}");

    until_routed(&mut c, &mut [&mut a, &mut b], "room").await;

    // A publish on node 1 reaches node 2; the report counts node 1 only.
    assert_eq!(ask(&mut a, "pubx room hello").await, "published 0 0");
    assert_eq!(text(&mut b).await, "hello");
    assert_eq!(ask(&mut b, "pub room both").await, "published 1 0");
    assert_eq!(text(&mut b).await, "both");
    assert_eq!(text(&mut a).await, "both");
    // acme's `room` on node 3 is another topic: it got none of them.
    nothing_yet(&mut acme, acme_id).await;

    // Direct messages: node 2 to node 1's connection, and back.
    assert_eq!(ask(&mut b, &format!("send {a_id} psst")).await, "sent true");
    assert_eq!(text(&mut a).await, "psst");
    assert_eq!(ask(&mut a, &format!("send {b_id} back")).await, "sent true");
    assert_eq!(text(&mut b).await, "back");
    // Another tenant's connection on another node is out of reach: the
    // broker takes it, node 1 drops it.
    assert_eq!(
        ask(&mut acme, &format!("send {a_id} intruder")).await,
        "sent true"
    );
    nothing_yet(&mut a, a_id).await;

    // The operator publishes on node 3: node 1 and node 2 deliver.
    let report = n3
        .handle
        .publish(
            wsbox::server::routes::DEFAULT_TENANT,
            "room",
            &wsbox::protocol::Message::Text("from the backend".into()),
        )
        .expect("publish");
    assert_eq!((report.delivered, report.broker_error), (0, None));
    assert_eq!(text(&mut a).await, "from the backend");
    assert_eq!(text(&mut b).await, "from the backend");
    // And sends to another node's connection.
    assert_eq!(
        n3.handle
            .send(a_id, wsbox::protocol::Message::Text("operator".into())),
        Ok(true)
    );
    assert_eq!(text(&mut a).await, "operator");

    let metrics = n1.handle.encode_metrics(0, 0).expect("metrics");
    assert!(
        metrics.contains("wsbox_pubsub_broker_connected 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wsbox_pubsub_broker_received_total{tenant=\"default\"}"),
        "{metrics}"
    );
}

async fn broker_faults(kind: BrokerKind) {
    let Some(mut broker) = Broker::start(kind) else {
        return;
    };
    let n1 = node(&broker, 11).await;
    let n2 = node(&broker, 12).await;
    until_broker(&n1, true).await;
    until_broker(&n2, true).await;
    let (mut a, a_id) = join(&n1, "/p/room").await;
    let (mut a2, _) = join(&n1, "/p/room").await;
    let (mut b, b_id) = join(&n2, "/p/room").await;
    let (mut probe2, _) = join(&n2, "/p").await;
    until_routed(&mut probe2, &mut [&mut a, &mut a2, &mut b], "room").await;

    broker.kill();
    until_broker(&n1, false).await;
    until_broker(&n2, false).await;

    // Clients stay connected and local delivery goes on.
    // The handler learns that the other nodes did not get it.
    assert_eq!(
        ask(&mut a, "pubx room local only").await,
        "published 1 0 unavailable"
    );
    assert_eq!(text(&mut a2).await, "local only");
    assert_eq!(ask(&mut b, "id").await, format!("id {b_id}"));
    // Messages for the other node fail, and say so where they can.
    assert_eq!(
        ask(&mut b, &format!("send {a_id} lost")).await,
        "sent false"
    );
    let report = n1
        .handle
        .publish(
            wsbox::server::routes::DEFAULT_TENANT,
            "room",
            &wsbox::protocol::Message::Text("backend, local".into()),
        )
        .expect("publish");
    assert_eq!(report.delivered, 2);
    assert_eq!(
        report.broker_error,
        Some(wsbox::server::cluster::BrokerError::Unavailable)
    );
    assert_eq!(text(&mut a).await, "backend, local");
    assert_eq!(text(&mut a2).await, "backend, local");
    let metrics = n1.handle.encode_metrics(0, 0).expect("metrics");
    assert!(
        metrics.contains("wsbox_pubsub_broker_connected 0"),
        "{metrics}"
    );
    // The handler's publish and the backend's: two on node 1.
    assert!(
        metrics.contains("wsbox_pubsub_broker_errors_total{tenant=\"default\"} 2"),
        "{metrics}"
    );

    // The broker returns: both nodes reconnect and subscribe again.
    broker.restart();
    until_broker(&n1, true).await;
    until_broker(&n2, true).await;
    until_routed(&mut probe2, &mut [&mut a, &mut a2, &mut b], "room").await;
    assert_eq!(ask(&mut a, "pubx room welcome back").await, "published 1 0");
    assert_eq!(text(&mut b).await, "welcome back");
    assert_eq!(text(&mut a2).await, "welcome back");
    assert_eq!(
        ask(&mut b, &format!("send {a_id} found")).await,
        "sent true"
    );
    assert_eq!(text(&mut a).await, "found");
    let metrics = n1.handle.encode_metrics(0, 0).expect("metrics");
    assert!(
        metrics.contains("wsbox_pubsub_broker_connects_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_topics_and_direct_messages_cross_nodes() {
    topics_and_direct_messages_cross_nodes(BrokerKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_topics_and_direct_messages_cross_nodes() {
    topics_and_direct_messages_cross_nodes(BrokerKind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_broker_faults_keep_clients_and_local_delivery() {
    broker_faults(BrokerKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_broker_faults_keep_clients_and_local_delivery() {
    broker_faults(BrokerKind::Nats).await;
}
