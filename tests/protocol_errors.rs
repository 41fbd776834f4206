//! Peers that break the protocol get the right close code, from raw frames.

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use wsbox::config::RouteLimits;
use wsbox_tests::*;

const KEY: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

#[tokio::test]
async fn oversized_message_gets_1009() {
    let limits = RouteLimits {
        max_message_size: 1024,
        ..test_limits()
    };
    let server = TestServer::start(chaos_config("/chaos", limits)).await;
    let mut ws = server.connect("/chaos").await;
    ws.send(Message::binary(vec![7u8; 1024])).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::binary(vec![7u8; 1024])
    );
    // One byte over the limit; tungstenite may see the close before or
    // after its write completes.
    let _ = ws.send(Message::binary(vec![7u8; 1025])).await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    wait_for_log("cause=message-too-big").await;
}

#[tokio::test]
async fn oversized_fragmented_message_gets_1009_before_it_is_complete() {
    let limits = RouteLimits {
        max_message_size: 1000,
        ..test_limits()
    };
    let server = TestServer::start(chaos_config("/chaos", limits)).await;
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    raw.write_all(&client_frame(false, 0x2, &[1u8; 600], KEY))
        .await
        .unwrap();
    raw.write_all(&client_frame(false, 0x0, &[1u8; 600], KEY))
        .await
        .unwrap();
    // No final fragment: the limit must be enforced while reading.
    assert_eq!(read_close_code(&mut raw).await, 1009);
}

#[tokio::test]
async fn invalid_utf8_text_gets_1007() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    raw.write_all(&client_frame(true, 0x1, b"ok \xff\xfe", KEY))
        .await
        .unwrap();
    assert_eq!(read_close_code(&mut raw).await, 1007);
}

#[tokio::test]
async fn invalid_utf8_in_a_first_fragment_fails_fast() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    // The message is not finished, yet the invalid byte must be refused now.
    raw.write_all(&client_frame(false, 0x1, b"abc\xc0\xaf", KEY))
        .await
        .unwrap();
    assert_eq!(read_close_code(&mut raw).await, 1007);
}

#[tokio::test]
async fn unmasked_client_frame_gets_1002() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    raw.write_all(&client_frame(true, 0x1, b"unmasked", None))
        .await
        .unwrap();
    assert_eq!(read_close_code(&mut raw).await, 1002);
}

#[tokio::test]
async fn malformed_frames_get_1002() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved opcode", client_frame(true, 0x3, b"", KEY)),
        ("rsv1 without extension", {
            let mut f = client_frame(true, 0x1, b"x", KEY);
            f[0] |= 0x40;
            f
        }),
        ("fragmented ping", client_frame(false, 0x9, b"", KEY)),
        (
            "continuation without start",
            client_frame(true, 0x0, b"x", KEY),
        ),
        (
            "close with 1-byte payload",
            client_frame(true, 0x8, b"\x03", KEY),
        ),
        (
            "close with code 1005",
            client_frame(true, 0x8, b"\x03\xed", KEY),
        ),
    ];
    for (name, frame) in cases {
        let mut raw = raw_handshake(server.addr, "/chaos").await;
        raw.write_all(&frame).await.unwrap();
        assert_eq!(read_close_code(&mut raw).await, 1002, "{name}");
    }
}

#[tokio::test]
async fn the_server_survives_garbage_and_keeps_serving() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    raw.write_all(&[0xff; 4096]).await.unwrap();
    let _ = read_close_code(&mut raw).await;
    let mut ws = server.connect("/chaos").await;
    assert_eq!(ask(&mut ws, "fine").await, "fine");
}
