//! Tornado's documented server behaviour: origin policies, keepalive,
//! timeouts and limits, set_nodelay, graceful shutdown.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wsbox::config::origin::OriginPolicy;
use wsbox::config::{Keepalive, OriginConfig};
use wsbox_tests::*;

fn upgrade_with_origin(path: &str, host: &str, origin: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\n\r\n"
    )
}

async fn status_for(addr: SocketAddr, path: &str, host: &str, origin: &str) -> u16 {
    let resp = raw_request(addr, &upgrade_with_origin(path, host, origin)).await;
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn allowed_origins_exact_wildcard_and_forgeries() {
    let mut config = chaos_config("/chaos", test_limits());
    config.routes[0].origin = OriginPolicy::new(&OriginConfig {
        allowed: vec![
            "https://app.example.com".into(),
            "https://*.example.org".into(),
        ],
        enforce: false,
    })
    .expect("origin policy");
    let server = TestServer::start(config).await;
    let (a, host) = (server.addr, "ws.internal:8080");
    assert_eq!(
        status_for(a, "/chaos", host, "https://app.example.com").await,
        101
    );
    assert_eq!(
        status_for(a, "/chaos", host, "https://APP.Example.com:443").await,
        101
    );
    assert_eq!(
        status_for(a, "/chaos", host, "https://a.b.example.org").await,
        101
    );
    assert_eq!(
        status_for(a, "/chaos", host, "https://example.org").await,
        403
    );
    assert_eq!(
        status_for(a, "/chaos", host, "https://example.org.evil.net").await,
        403
    );
    assert_eq!(
        status_for(a, "/chaos", host, "http://app.example.com").await,
        403
    );
    assert_eq!(
        status_for(a, "/chaos", host, "https://app.example.com:8443").await,
        403
    );
    assert_eq!(status_for(a, "/chaos", host, "null").await, 403);
    // Same origin, with case and default-port variations.
    assert_eq!(
        status_for(a, "/chaos", "WS.internal:8080", "http://ws.internal:8080").await,
        101
    );
    assert_eq!(
        status_for(a, "/chaos", "ws.internal", "http://ws.internal:80").await,
        101
    );
    assert_eq!(
        status_for(a, "/chaos", "ws.internal:8080", "http://ws.internal:8081").await,
        403
    );
    // The handler may override without a pinned policy.
    assert_eq!(
        status_for(a, "/chaos?origin=allow", host, "https://evil.net").await,
        101
    );
}

#[tokio::test]
async fn enforced_origin_policy_cannot_be_overridden() {
    let mut config = chaos_config("/chaos", test_limits());
    config.routes[0].origin = OriginPolicy::new(&OriginConfig {
        allowed: vec![],
        enforce: true,
    })
    .expect("origin policy");
    let server = TestServer::start(config).await;
    let host = server.addr.to_string();
    assert_eq!(
        status_for(
            server.addr,
            "/chaos?origin=allow",
            &host,
            "https://evil.net"
        )
        .await,
        403
    );
    assert_eq!(
        status_for(server.addr, "/chaos", &host, &format!("http://{host}")).await,
        101
    );
}

#[tokio::test]
async fn keepalive_pings_reach_the_client_and_pongs_reach_on_pong() {
    let mut config = chaos_config("/chaos", test_limits());
    config.routes[0].keepalive = Keepalive {
        ping_interval: Some(Duration::from_millis(100)),
        ping_timeout: None,
    };
    let server = TestServer::start(config).await;
    let mut ws = server.connect("/chaos").await;
    // tungstenite answers pings while we read; wait for two of them.
    let mut pings = 0;
    while pings < 2 {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if matches!(m, Message::Ping(_)) {
            pings += 1;
        }
    }
    ws.flush().await.unwrap();
    let events = ask(&mut ws, "!events").await;
    assert!(events.contains("pong:"), "{events}");
}

#[tokio::test]
async fn an_unanswered_ping_closes_the_connection_and_on_close_says_why() {
    let mut config = chaos_config("/chaos", test_limits());
    config.routes[0].keepalive = Keepalive {
        ping_interval: Some(Duration::from_millis(200)),
        ping_timeout: Some(Duration::from_millis(200)),
    };
    let server = TestServer::start(config).await;
    // A raw client that never reads, so never answers pings.
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    let started = Instant::now();
    // The server closes with 1011 after interval + timeout.
    assert_eq!(read_close_code(&mut raw).await, 1011);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350),
        "closed after only {elapsed:?}"
    );
    wait_for_log("cause=ping-timeout").await;
}

#[tokio::test]
async fn silent_and_slowloris_clients_are_dropped() {
    let mut config = chaos_config("/chaos", test_limits());
    config.server.handshake_timeout = Duration::from_millis(500);
    let server = TestServer::start(config).await;

    // Opens TCP and sends nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("dropped in time");
    // Either closed outright or answered 408 and closed.
    match n {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(buf[..n].starts_with(b"HTTP/1.1 408"), "{:?}", &buf[..n]),
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // Sends its headers one byte at a time, forever.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let dropped = tokio::time::timeout(WAIT, async {
        let head = b"GET /chaos HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for b in head.iter().chain(std::iter::repeat(&b'a')) {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            // Trickle: one byte every 50 ms.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut probe = [0u8; 64];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
            {
                let _ = n;
                return; // a response (408) or EOF: dropped
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "slowloris client was never dropped");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Meanwhile the server still serves.
    let mut ws = server.connect("/chaos").await;
    assert_eq!(ask(&mut ws, "ok").await, "ok");
}

#[tokio::test]
async fn oversized_request_headers_get_431() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let big = "a".repeat(100 * 1024);
    let req = format!(
        "GET /chaos HTTP/1.1\r\nHost: {}\r\nX-Big: {big}\r\nUpgrade: websocket\r\n\r\n",
        server.addr
    );
    let resp = raw_request(server.addr, &req).await;
    assert!(
        resp.starts_with("HTTP/1.1 431"),
        "{}",
        &resp[..resp.len().min(200)]
    );
}

#[tokio::test]
async fn max_message_size_default_is_tornados_10_mib() {
    let server = TestServer::start(demo_config()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        server.url("/echo"),
        Some(WebSocketConfig::default().max_message_size(Some(64 << 20))),
        false,
    )
    .await
    .unwrap();
    let at_limit = vec![1u8; 10 * 1024 * 1024];
    ws.send(Message::binary(at_limit.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::binary(at_limit));
    let _ = ws
        .send(Message::binary(vec![1u8; 10 * 1024 * 1024 + 1]))
        .await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
}

/// The server's socket for the connection whose client side is `client`,
/// found among this process's own descriptors (the server runs in-process).
fn server_side_nodelay(client: &TcpStream) -> bool {
    let client_local = client.local_addr().unwrap();
    let server_addr = client.peer_addr().unwrap();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if fd == client.as_raw_fd() {
            continue;
        }
        // SAFETY: the descriptor belongs to this process and is only borrowed
        // for the two getsockopt calls below; the server task owns it and the
        // test keeps the connection open meanwhile.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&borrowed);
        let (Ok(local), Ok(peer)) = (sock.local_addr(), sock.peer_addr()) else {
            continue;
        };
        if local.as_socket() == Some(server_addr) && peer.as_socket() == Some(client_local) {
            return sock.tcp_nodelay().unwrap();
        }
    }
    panic!("server-side socket not found");
}

#[tokio::test]
async fn set_nodelay_really_sets_tcp_nodelay_on_the_server_socket() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let (mut ws, _) = tokio_tungstenite::client_async(
        server.url("/chaos"),
        tokio_tungstenite::MaybeTlsStream::Plain(TcpStream::connect(server.addr).await.unwrap()),
    )
    .await
    .unwrap();
    let tcp = |ws: &tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<TcpStream>,
    >| match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => server_side_nodelay(s),
        _ => unreachable!("plain TCP"),
    };
    assert!(!tcp(&ws), "off by default");
    assert_eq!(ask(&mut ws, "!nodelay on").await, "nodelay:on");
    // The reply was written after the option was applied.
    assert!(tcp(&ws));
    assert_eq!(ask(&mut ws, "!nodelay off").await, "nodelay:off");
    assert!(!tcp(&ws));
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001_and_handlers_see_on_close() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut a = server.connect("/chaos").await;
    let mut b = server.connect("/chaos?marker=shutdown-test").await;
    assert_eq!(ask(&mut a, "x").await, "x");
    assert_eq!(ask(&mut b, "y").await, "y");
    let addr = server.addr;
    let closing = tokio::spawn(async move {
        let ca = expect_close(&mut a).await;
        let cb = expect_close(&mut b).await;
        (ca, cb)
    });
    let started = Instant::now();
    server.shut_down().await;
    let (ca, cb) = closing.await.unwrap();
    assert_eq!(ca.0, 1001);
    assert_eq!(cb.0, 1001);
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_for_log("cause=going-away").await;
    // No longer accepting.
    assert!(TcpStream::connect(addr).await.is_err());
}
