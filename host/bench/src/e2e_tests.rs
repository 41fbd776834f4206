//! End-to-end tests of the load generator against small in-process servers
//! (tokio-tungstenite), including a faulty one whose bad echoes must be
//! counted as `mismatch` errors.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use super::client::Target;
use super::*;

/// How the test server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    Echo,
    /// Flips a byte of every 50th message.
    CorruptSome,
    /// Never answers.
    Silent,
}

async fn server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut n = 0u64;
                while let Some(Ok(msg)) = ws.next().await {
                    if !(msg.is_text() || msg.is_binary()) {
                        continue;
                    }
                    n += 1;
                    let reply = match (behaviour, msg) {
                        (Behaviour::Silent, _) => continue,
                        (Behaviour::CorruptSome, Message::Binary(b)) if n.is_multiple_of(50) => {
                            let mut v = b.to_vec();
                            v[0] ^= 1;
                            Message::binary(v)
                        }
                        (_, m) => m,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn common(addr: SocketAddr) -> CommonArgs {
    CommonArgs {
        url: Some(format!("ws://{addr}/echo")),
        json: true,
        threads: 1,
        quiet: true,
        label: None,
    }
}

fn echo_args(addr: SocketAddr, binary: bool) -> EchoArgs {
    EchoArgs {
        common: common(addr),
        connections: 4,
        in_flight: 8,
        size: 100,
        duration: Duration::from_millis(400),
        messages: None,
        warmup: Duration::from_millis(100),
        binary,
        compress: false,
    }
}

fn target(addr: SocketAddr) -> Target {
    Target::parse(&format!("ws://{addr}/echo")).unwrap()
}

fn num(r: &Report, key: &str) -> f64 {
    r.fields.get(key).and_then(Value::as_f64).unwrap_or(-1.0)
}

#[tokio::test]
async fn echo_counts_and_verifies() {
    let addr = server(Behaviour::Echo).await;
    let r = echo::run(target(addr), echo_args(addr, false))
        .await
        .unwrap();
    assert_eq!(num(&r, "errors"), 0.0, "{:?}", r.fields);
    assert!(num(&r, "events") > 0.0);
    assert!(num(&r, "messages_per_s") > 0.0);
    assert!(r.fields["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(num(&r, "connected"), 4.0);
}

#[tokio::test]
async fn compressed_echo_through_wsbox_engine_client_counts_and_verifies() {
    // `--compress` runs on wsbox's own client engine and needs a server
    // that accepts permessage-deflate: the bundled demo does.
    let mut config = wsbox_server::config::Config::bundled_demo();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.runtime.max_instances = 16;
    let server = wsbox_server::server::Server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let drain = config.server.drain_time;
    tokio::spawn(server.run_until(std::future::pending(), drain));
    let mut args = echo_args(addr, false);
    args.compress = true;
    let r = echo::run(target(addr), args).await.unwrap();
    assert_eq!(num(&r, "errors"), 0.0, "{:?}", r.fields);
    assert!(num(&r, "events") > 0.0);
    assert_eq!(num(&r, "connected"), 4.0);
    assert_eq!(r.fields["compress"], Value::Bool(true));
}

#[tokio::test]
async fn echo_message_limit_stops_the_run() {
    let addr = server(Behaviour::Echo).await;
    let mut args = echo_args(addr, true);
    args.messages = Some(500);
    args.duration = Duration::from_secs(30);
    let started = std::time::Instant::now();
    let r = echo::run(target(addr), args).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(num(&r, "events"), 500.0);
    assert_eq!(num(&r, "errors"), 0.0);
}

#[tokio::test]
async fn bad_echoes_are_mismatches() {
    let addr = server(Behaviour::CorruptSome).await;
    let r = echo::run(target(addr), echo_args(addr, true))
        .await
        .unwrap();
    let mismatches = r.fields["errors_by_kind"]["mismatch"].as_u64().unwrap_or(0);
    assert!(mismatches > 0, "{:?}", r.fields);
    assert_eq!(num(&r, "errors"), mismatches as f64);
}

#[tokio::test]
async fn missing_echoes_are_unanswered_within_the_drain_time() {
    let addr = server(Behaviour::Silent).await;
    let mut args = echo_args(addr, false);
    args.connections = 2;
    let started = std::time::Instant::now();
    let r = echo::run(target(addr), args).await.unwrap();
    // 2 connections x 8 in flight, never answered.
    assert_eq!(r.fields["errors_by_kind"]["unanswered"], 16);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn nobody_listening_is_fatal_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let r = echo::run(target(addr), echo_args(addr, false))
        .await
        .unwrap();
    assert!(r.fatal());
    assert_eq!(r.fields["errors_by_kind"]["connect"], 4);
}

#[tokio::test]
async fn connect_churn() {
    let addr = server(Behaviour::Echo).await;
    let r = connect::run(
        target(addr),
        ConnectArgs {
            common: common(addr),
            connections: 2,
            size: 20,
            duration: Duration::from_millis(300),
            messages: None,
            warmup: Duration::from_millis(50),
            binary: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(num(&r, "errors"), 0.0, "{:?}", r.fields);
    assert!(num(&r, "connections_per_s") > 0.0);
}

#[tokio::test]
async fn idle_reads_rss_of_a_pid() {
    let addr = server(Behaviour::Echo).await;
    let r = idle::run(
        target(addr),
        IdleArgs {
            common: common(addr),
            connections: 20,
            duration: Duration::from_millis(100),
            pid: Some(std::process::id()),
            open_concurrency: 8,
            settle: Duration::from_millis(10),
            size: 20,
        },
    )
    .await
    .unwrap();
    assert_eq!(num(&r, "held"), 20.0);
    assert_eq!(num(&r, "closed_cleanly"), 20.0);
    assert_eq!(num(&r, "errors"), 0.0, "{:?}", r.fields);
    assert!(r.fields["memory_after"]["rss_kib"].as_u64().unwrap() > 0);
    assert!(r.fields.contains_key("rss_per_connection_kib"));
}

fn broadcast_args(url: String, subscribers: u32) -> BroadcastArgs {
    BroadcastArgs {
        common: CommonArgs {
            url: Some(url.clone()),
            ..common(SocketAddr::from(([127, 0, 0, 1], 0)))
        },
        subscribers,
        publishers: 1,
        rate: 200,
        size: 64,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        open_concurrency: 8,
        compress: false,
        server_no_context_takeover: false,
    }
}

/// An in-process wsbox serving `examples/broadcast` at `/broadcast`, with
/// permessage-deflate, shared fan-out or per connection.
async fn wsbox_broadcast_server(fanout: wsbox_server::config::Fanout) -> SocketAddr {
    let mut config = wsbox_server::config::Config::bundled_demo();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.runtime.max_instances = 32;
    config.admin = None;
    config.pages.clear();
    let mut route = config.routes.remove(0);
    route.pattern = wsbox_server::config::RoutePattern::new("/broadcast").unwrap();
    route.module = wsbox_server::config::ModuleSource::Bundled {
        name: "broadcast",
        bytes: wsbox_server::bundled::BROADCAST_WASM,
    };
    route.limits.pubsub_fanout = fanout;
    config.routes = vec![route];
    let server = wsbox_server::server::Server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let drain = config.server.drain_time;
    tokio::spawn(server.run_until(std::future::pending(), drain));
    addr
}

#[tokio::test]
async fn broadcast_through_wsbox_counts_every_delivery() {
    let addr = wsbox_broadcast_server(wsbox_server::config::Fanout::Shared).await;
    let url = format!("ws://{addr}/broadcast");
    let r = broadcast::run(Target::parse(&url).unwrap(), broadcast_args(url, 5))
        .await
        .unwrap();
    assert_eq!(num(&r, "errors"), 0.0, "{:?}", r.fields);
    assert_eq!(num(&r, "drops"), 0.0, "{:?}", r.fields);
    assert_eq!(num(&r, "ready"), 5.0);
    assert!(num(&r, "published") > 0.0);
    // Every measured message reached all 5 (give or take the window edges).
    assert!(num(&r, "events") > 0.0, "{:?}", r.fields);
    assert!(r.fields["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert!(!r.fatal());
}

#[tokio::test]
async fn compressed_broadcast_through_wsbox_shared_and_per_connection() {
    for fanout in [
        wsbox_server::config::Fanout::Shared,
        wsbox_server::config::Fanout::PerConnection,
    ] {
        for no_context_takeover in [false, true] {
            let addr = wsbox_broadcast_server(fanout).await;
            let url = format!("ws://{addr}/broadcast");
            let mut args = broadcast_args(url.clone(), 3);
            args.size = 1024;
            args.compress = true;
            args.server_no_context_takeover = no_context_takeover;
            let r = broadcast::run(Target::parse(&url).unwrap(), args)
                .await
                .unwrap();
            let what = format!("{fanout:?} {no_context_takeover}: {:?}", r.fields);
            assert_eq!(num(&r, "errors"), 0.0, "{what}");
            assert_eq!(num(&r, "drops"), 0.0, "{what}");
            assert!(num(&r, "events") > 0.0, "{what}");
        }
    }
}

/// A tokio-tungstenite broadcast server (the native peer's design); with
/// `skip_every`, every n-th message is not sent to the first subscriber
/// (sending a corrupted copy instead with `corrupt`).
async fn broadcast_server(skip_every: Option<u64>, corrupt: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = tokio::sync::broadcast::channel::<(u64, Message)>(4096);
    tokio::spawn(async move {
        let mut next_id = 0u64;
        while let Ok((tcp, _)) = listener.accept().await {
            let (id, tx) = (next_id, tx.clone());
            next_id += 1;
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                let mut rx = tx.subscribe();
                let mut n = 0u64;
                loop {
                    tokio::select! {
                        m = stream.next() => match m {
                            Some(Ok(m)) if m.is_binary() || m.is_text() => { let _ = tx.send((id, m)); }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                        m = rx.recv() => {
                            let Ok((from, m)) = m else { break };
                            if from == id { continue; }
                            n += 1;
                            let m = match skip_every {
                                // Connection 0 is the first subscriber.
                                Some(k) if id == 0 && n.is_multiple_of(k) => {
                                    if !corrupt { continue; }
                                    let mut v = m.into_data().to_vec();
                                    let last = v.len() - 1;
                                    v[last] ^= 1;
                                    Message::binary(v)
                                }
                                _ => m,
                            };
                            if sink.send(m).await.is_err() { break; }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn broadcast_against_a_native_server() {
    let addr = broadcast_server(None, false).await;
    let url = format!("ws://{addr}/broadcast");
    let r = broadcast::run(Target::parse(&url).unwrap(), broadcast_args(url, 4))
        .await
        .unwrap();
    assert_eq!(num(&r, "errors"), 0.0, "{:?}", r.fields);
    assert_eq!(num(&r, "drops"), 0.0, "{:?}", r.fields);
    assert!(num(&r, "deliveries_per_s") > 0.0);
}

#[tokio::test]
async fn broadcast_counts_missing_messages_as_drops() {
    let addr = broadcast_server(Some(7), false).await;
    let url = format!("ws://{addr}/broadcast");
    let r = broadcast::run(Target::parse(&url).unwrap(), broadcast_args(url, 3))
        .await
        .unwrap();
    assert!(num(&r, "drops") > 0.0, "{:?}", r.fields);
}

#[tokio::test]
async fn broadcast_counts_corrupted_messages_as_mismatches() {
    let addr = broadcast_server(Some(7), true).await;
    let url = format!("ws://{addr}/broadcast");
    let r = broadcast::run(Target::parse(&url).unwrap(), broadcast_args(url, 3))
        .await
        .unwrap();
    let mismatches = r.fields["errors_by_kind"]["mismatch"].as_u64().unwrap_or(0);
    assert!(mismatches > 0, "{:?}", r.fields);
    // A corrupted delivery is not counted, so it is a gap too.
    assert!(num(&r, "drops") > 0.0, "{:?}", r.fields);
}
