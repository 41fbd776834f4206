//! `wss://`: the listener with a certificate from config, a client (over
//! rustls, tokio-tungstenite on top) trusting the dev certificate.

use futures_util::SinkExt;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsbox::config::TlsConfig;
use wsbox_tests::*;

/// A temp dir for the dev certificate, removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    TempDir(std::env::temp_dir().join(format!("wsbox-{name}-{}", std::process::id())))
}

#[tokio::test]
async fn wss_echo_with_the_dev_certificate() {
    let dir = temp_dir("tls-echo");
    let dev = wsbox::tls::write_dev_certificate(&dir.0).unwrap();
    let mut config = chaos_config("/chaos", test_limits());
    config.tls = Some(TlsConfig {
        cert: dev.cert.clone(),
        key: dev.key.clone(),
    });
    let server = TestServer::start(config).await;

    let connector = wsbox::tls::connector(Some(&dev.cert)).unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake with the dev certificate");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let url = format!("wss://127.0.0.1:{}/chaos", server.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(ask(&mut ws, "over tls").await, "over tls");
    ws.send(Message::binary(vec![9u8; 100_000])).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::binary(vec![9u8; 100_000])
    );
    // set_nodelay reaches the TCP socket under TLS too.
    assert_eq!(ask(&mut ws, "!nodelay on").await, "nodelay:on");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_plain_ws_gets_no_upgrade() {
    let dir = temp_dir("tls-untrusted");
    let dev = wsbox::tls::write_dev_certificate(&dir.0).unwrap();
    let mut config = chaos_config("/chaos", test_limits());
    config.tls = Some(TlsConfig {
        cert: dev.cert.clone(),
        key: dev.key.clone(),
    });
    let server = TestServer::start(config).await;

    // Web PKI roots only: the self-signed certificate is not trusted.
    let connector = wsbox::tls::connector(None).unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let result = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await;
    assert!(result.is_err(), "untrusted certificate accepted");

    // A plain-text handshake to a TLS listener does not get a 101.
    let resp = raw_request(
        server.addr,
        "GET /chaos HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(!resp.contains("101"), "{resp}");

    // wsbox's own client says what is wrong: the URL should be wss://.
    let url = format!("ws://127.0.0.1:{}/chaos", server.addr.port());
    let Err(err) = wsbox::client::connect(&url, Default::default()).await else {
        panic!("ws:// to a TLS listener must fail");
    };
    assert!(err.to_string().contains("wss://"), "{err}");

    // And the server still serves TLS clients afterwards.
    let connector = wsbox::tls::connector(Some(&dev.cert)).unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/chaos", server.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(ask(&mut ws, "still").await, "still");
}
