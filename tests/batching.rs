//! Messages cross into the handler in batches (`on-messages`) and its
//! writes come back in batches (`write-messages`): order, replies before
//! pongs and closes, and malformed batches.

use tokio::io::AsyncWriteExt;
use wsbox_tests::*;

const KEY: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

fn text(payload: &str) -> Vec<u8> {
    client_frame(true, 0x1, payload.as_bytes(), KEY)
}

#[tokio::test]
async fn many_messages_in_one_write_are_echoed_in_order() {
    let server = TestServer::start(demo_config()).await;
    let mut raw = raw_handshake(server.addr, "/echo").await;
    // Small and large, text and binary: batches split on count and on bytes.
    let messages: Vec<(u8, Vec<u8>)> = (0..600u32)
        .map(|i| {
            let size = match i % 100 {
                7 => 70_000,
                8 => 3_000,
                _ => (i % 40) as usize,
            };
            let opcode = if i % 3 == 0 { 0x2 } else { 0x1 };
            let mut payload = format!("{i}:").into_bytes();
            payload.resize(size.max(payload.len()), b'm');
            (opcode, payload)
        })
        .collect();
    let stream: Vec<u8> = messages
        .iter()
        .flat_map(|(opcode, payload)| client_frame(true, *opcode, payload, KEY))
        .collect();
    raw.write_all(&stream).await.unwrap();
    for (i, (opcode, payload)) in messages.iter().enumerate() {
        let (got_opcode, got) = read_frame(&mut raw).await;
        assert_eq!(
            (got_opcode, got.len()),
            (*opcode, payload.len()),
            "message {i}"
        );
        assert_eq!(&got, payload, "message {i}");
    }
}

#[tokio::test]
async fn replies_to_gathered_messages_go_out_before_the_pong_and_the_close_reply() {
    let server = TestServer::start(demo_config()).await;
    let mut raw = raw_handshake(server.addr, "/echo").await;
    let stream = [
        text("a"),
        text("b"),
        client_frame(true, 0x9, b"p", KEY),
        client_frame(true, 0x2, b"c", KEY),
        text("d"),
        client_frame(true, 0x8, &[0x03, 0xe8], KEY),
    ]
    .concat();
    raw.write_all(&stream).await.unwrap();
    let mut frames = Vec::new();
    for _ in 0..6 {
        frames.push(read_frame(&mut raw).await);
    }
    assert_eq!(
        frames,
        [
            (0x1, b"a".to_vec()),
            (0x1, b"b".to_vec()),
            (0xA, b"p".to_vec()),
            (0x2, b"c".to_vec()),
            (0x1, b"d".to_vec()),
            (0x8, vec![0x03, 0xe8]),
        ]
    );
}

#[tokio::test]
async fn replies_to_gathered_messages_go_out_before_an_error_close() {
    let server = TestServer::start(demo_config()).await;
    let mut raw = raw_handshake(server.addr, "/echo").await;
    // An unmasked frame after two good messages: 1002, after both echoes.
    let stream = [text("one"), text("two"), vec![0x81, 0x01, b'x']].concat();
    raw.write_all(&stream).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, (0x1, b"one".to_vec()));
    assert_eq!(read_frame(&mut raw).await, (0x1, b"two".to_vec()));
    assert_eq!(read_close_code(&mut raw).await, 1002);
}

#[tokio::test]
async fn messages_after_the_handlers_close_in_the_same_batch_get_no_reply() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    let stream = [text("before"), text("!close 4000 bye"), text("after")].concat();
    raw.write_all(&stream).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, (0x1, b"before".to_vec()));
    // The close, with no echo of "after" in front of it.
    assert_eq!(read_close_code(&mut raw).await, 4000);
}

#[tokio::test]
async fn a_burst_of_writes_keeps_its_order_and_the_ping_comes_after_it() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    // 300 x 1000 B: the SDK hands its outbox over several times (64 KiB each).
    raw.write_all(&text("!burst 300 1000")).await.unwrap();
    for i in 0..300 {
        let (opcode, payload) = read_frame(&mut raw).await;
        assert_eq!(opcode, 0x1);
        assert_eq!(payload.len(), 1000);
        let prefix = format!("burst-{i}:");
        assert!(
            payload.starts_with(prefix.as_bytes()),
            "message {i} out of order"
        );
    }
    assert_eq!(read_frame(&mut raw).await, (0x9, b"after-burst".to_vec()));
}

#[tokio::test]
async fn a_malformed_write_batch_traps_the_handler_with_1011() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut spans = raw_handshake(server.addr, "/chaos").await;
    spans.write_all(&text("!bad-batch")).await.unwrap();
    assert_eq!(read_close_code(&mut spans).await, 1011);
    wait_for_log("spans do not add up").await;

    let mut utf8 = raw_handshake(server.addr, "/chaos").await;
    utf8.write_all(&text("!bad-batch utf8")).await.unwrap();
    assert_eq!(read_close_code(&mut utf8).await, 1011);
    wait_for_log("text span 0 is not valid UTF-8").await;

    // The module is still deployed and other connections work.
    let mut fresh = server.connect("/chaos").await;
    assert_eq!(ask(&mut fresh, "still here").await, "still here");
}
