//! Echo, fragments, pings and close codes against a tokio-tungstenite client.
//! The echo tests run on the demo as built today and on its checked-in
//! build against contract 0.1.0.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use wsbox_tests::*;

#[tokio::test]
async fn text_and_binary_echo_on_the_bundled_demo() {
    for config in echo_configs() {
        let server = TestServer::start(config).await;
        let mut ws = server.connect("/echo").await;
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("hello"));
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Message::binary(vec![0u8, 1, 2, 255])
        );
        ws.send(Message::text("")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text(""));
    }
}

#[tokio::test]
async fn a_frame_sent_together_with_the_request_is_echoed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The frame arrives in the read that carries the request head, so hyper
    // holds it when the connection takes the socket over.
    for config in echo_configs() {
        let server = TestServer::start(config).await;
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut bytes = format!(
            "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        )
        .into_bytes();
        bytes.extend(client_frame(true, 0x1, b"early", Some([1, 2, 3, 4])));
        stream.write_all(&bytes).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
                .await
                .expect("101 in time")
                .unwrap();
            assert_eq!(n, 1, "closed during the handshake");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        assert_eq!(read_frame(&mut stream).await, (0x1, b"early".to_vec()));
    }
}

#[tokio::test]
async fn one_mebibyte_messages_round_trip() {
    for config in echo_configs() {
        let server = TestServer::start(config).await;
        let mut ws = server.connect("/echo").await;
        let text: String = (0..1 << 20)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text(text));
        let bin: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        ws.send(Message::binary(bin.clone())).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::binary(bin));
    }
}

#[tokio::test]
async fn a_message_in_100_fragments_with_pings_between() {
    for config in echo_configs() {
        let server = TestServer::start(config).await;
        let mut ws = server.connect("/echo").await;
        let mut expected = String::new();
        for i in 0..100 {
            // Multi-byte characters make fragments split inside UTF-8 sequences.
            let part = format!("fragment {i} é€😀 ");
            expected.push_str(&part);
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let bytes = part.into_bytes();
            // Split every fragment boundary mid-character on purpose.
            let frame = Frame::message(bytes, opcode, i == 99);
            ws.send(Message::Frame(frame)).await.unwrap();
            if i % 10 == 5 {
                ws.send(Message::Ping(format!("p{i}").into_bytes().into()))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(next_message(&mut ws).await, Message::text(expected));
    }
}

#[tokio::test]
async fn route_captures_arrive_in_open() {
    for config in echo_configs() {
        let server = TestServer::start(config).await;
        let mut ws = server.connect("/echo/lobby").await;
        assert_eq!(
            next_message(&mut ws).await,
            Message::text("hello from wsbox echo: args=[] kwargs={room: lobby}")
        );
    }
    // And the chaos guest reports positional and named captures.
    let server = TestServer::start(chaos_config(r"/c/(\d+)/(?P<name>\w+)", test_limits())).await;
    let mut ws = server.connect("/c/42/alice?x=1").await;
    let info = ask(&mut ws, "!info").await;
    assert!(info.contains(r#""args":["42"]"#), "{info}");
    assert!(info.contains(r#""kwargs":{"name":"alice"}"#), "{info}");
    assert!(info.contains(r#""query":"x=1""#), "{info}");
    assert!(info.contains(r#""path":"/c/42/alice""#), "{info}");
}

#[tokio::test]
async fn ping_gets_a_pong_with_the_same_payload_and_on_ping_sees_it() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut ws = server.connect("/chaos").await;
    ws.send(Message::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    let pong = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("pong in time")
            .expect("open")
            .expect("ok")
        {
            Message::Pong(p) => break p,
            Message::Ping(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"hello");
    let events = ask(&mut ws, "!events").await;
    assert!(events.contains("ping:hello"), "{events}");
}

#[tokio::test]
async fn handler_ping_reaches_the_client_and_its_pong_reaches_on_pong() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut ws = server.connect("/chaos").await;
    ws.send(Message::text("!ping abc")).await.unwrap();
    // tungstenite answers the ping by itself; on_pong must see the reply.
    let got = loop {
        let m = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("ping in time")
            .expect("open")
            .expect("ok");
        if let Message::Ping(p) = m {
            break p;
        }
    };
    assert_eq!(&got[..], b"abc");
    ws.flush().await.unwrap();
    let events = ask(&mut ws, "!events").await;
    assert!(events.contains("pong:abc"), "{events}");
    assert_eq!(
        ask(&mut ws, "!bigping").await,
        "ping-error:payload-too-long"
    );
}

#[tokio::test]
async fn client_close_code_and_reason_reach_the_handler_and_are_echoed() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut ws = server.connect("/chaos").await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(4321),
        reason: "client says bye".into(),
    })))
    .await
    .unwrap();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4321, "client says bye"));
    wait_for_log("chaos closed: code=4321 reason=client says bye cause=peer-closed").await;
}

#[tokio::test]
async fn handler_close_code_and_reason_reach_the_client() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut ws = server.connect("/chaos").await;
    ws.send(Message::text("!close 4000 handler says bye"))
        .await
        .unwrap();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4000, "handler says bye"));
    // tungstenite replies to the close; the handler then sees its own code.
    wait_for_log("chaos closed: code=4000 reason=handler says bye cause=handler-closed").await;

    let mut ws = server.connect("/chaos").await;
    ws.send(Message::text("!close")).await.unwrap();
    assert_eq!(expect_close(&mut ws).await.0, 1005);
}

#[tokio::test]
async fn handler_output_rules_give_errors_not_broken_frames() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut ws = server.connect("/chaos").await;
    assert_eq!(
        ask(&mut ws, "!close 999 nope").await,
        "close-error:invalid-code"
    );
    assert_eq!(
        ask(&mut ws, "!close 1005 reserved").await,
        "close-error:invalid-code"
    );
    let long = "x".repeat(124);
    assert_eq!(
        ask(&mut ws, &format!("!close 4000 {long}")).await,
        "close-error:reason-too-long"
    );
    // Still open and echoing after all those refused closes.
    assert_eq!(ask(&mut ws, "still here").await, "still here");
    ws.send(Message::text("!close-then-write")).await.unwrap();
    assert_eq!(expect_close(&mut ws).await, (4000, "bye".to_string()));
}

#[tokio::test]
async fn json_and_print_reach_their_destinations() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut ws = server.connect("/chaos").await;
    assert_eq!(ask(&mut ws, "!json").await, r#"{"hello":"world","n":42}"#);
    assert_eq!(
        ask(&mut ws, "!print guest stdout line 8c1f").await,
        "printed"
    );
    wait_for_log("guest stdout line 8c1f").await;
}

/// Guest logging is bounded: lines are cut at 4 KiB with a marker, and a
/// connection over its rate (`log_lines_per_second`) has lines dropped,
/// counted and reported, while the connection itself carries on.
#[tokio::test]
async fn a_log_flood_is_cut_and_rate_limited() {
    // Lines are what this test counts: bytes get room for all of them.
    let limits = wsbox::config::RouteLimits {
        log_lines_per_second: 5,
        log_bytes_per_second: 1 << 30,
        ..test_limits()
    };
    let server = TestServer::start(chaos_config("/chaos", limits)).await;
    let mut ws = server.connect("/chaos").await;
    assert_eq!(ask(&mut ws, "!logflood 300 10000 f7d2").await, "flooded");
    // Still served, and the drops are reported when the next line gets through.
    assert_eq!(ask(&mut ws, "still served").await, "still served");
    drop(ws);
    wait_for_log("guest log lines dropped over the rate limit on this connection").await;
    let logs = logs();
    let kept: Vec<&str> = logs.lines().filter(|l| l.contains("f7d2 ")).collect();
    // The burst (100 lines) plus what 5 lines/s refill meanwhile.
    assert!(
        (100..250).contains(&kept.len()),
        "{} of 600 lines kept",
        kept.len()
    );
    let first = kept
        .iter()
        .find(|l| l.contains("f7d2 log 0 "))
        .expect("first line kept");
    assert!(first.contains("[cut: 10000 bytes in all]"), "{first}");
    assert!(first.len() < 4096 + 512, "{} bytes", first.len());
}

/// Log bytes are budgeted beside lines: with lines to spare, 300 lines of
/// 10 KB (each counted as its 4 KiB cut) get through the default 16 KiB/s
/// only as far as its 64 KiB burst (and refill) goes.
#[tokio::test]
async fn a_log_byte_flood_is_rate_limited() {
    let limits = wsbox::config::RouteLimits {
        log_lines_per_second: 100_000,
        ..test_limits()
    };
    let server = TestServer::start(chaos_config("/chaos", limits)).await;
    let mut ws = server.connect("/chaos").await;
    // The lines are logged before the reply.
    assert_eq!(ask(&mut ws, "!logflood 300 10000 b8e1").await, "flooded");
    assert_eq!(ask(&mut ws, "still served").await, "still served");
    let logs = logs();
    let kept = logs.lines().filter(|l| l.contains("b8e1 log ")).count();
    assert!((8..=40).contains(&kept), "{kept} of 300 long lines kept");
}

/// Handlers see clocks coarsened to the route's `clock_resolution` (1 ms
/// by default); zero gives them the host's own.
#[tokio::test]
async fn handler_clocks_are_coarsened_to_the_route_resolution() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut ws = server.connect("/chaos").await;
    for _ in 0..5 {
        let reply = ask(&mut ws, "!clock").await;
        let nanos: u128 = reply.trim_start_matches("wall:").parse().unwrap();
        assert!(nanos.is_multiple_of(1_000_000), "{reply}");
    }
    let fine = TestServer::start(chaos_config(
        "/chaos",
        wsbox::config::RouteLimits {
            clock_resolution: std::time::Duration::ZERO,
            ..test_limits()
        },
    ))
    .await;
    let mut ws = fine.connect("/chaos").await;
    let mut sub_ms = 0;
    for _ in 0..5 {
        let reply = ask(&mut ws, "!clock").await;
        let nanos: u128 = reply.trim_start_matches("wall:").parse().unwrap();
        sub_ms += usize::from(!nanos.is_multiple_of(1_000_000));
    }
    assert!(
        sub_ms > 0,
        "five full-resolution readings all on a millisecond"
    );
}
