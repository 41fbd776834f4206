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
        url: format!("ws://{addr}/echo"),
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
    let mut config = crate::config::Config::bundled_demo();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.runtime.max_instances = 16;
    let server = crate::server::Server::bind(&config).await.unwrap();
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
