//! Contract versions and optional interfaces: the host detects what a
//! component implements (0.2.3, 0.2.2, 0.2.1 or 0.2.0 with or without the
//! batch interface, with or without pubsub and hibernation, or 0.1.0),
//! says so in its log, and
//! runs each the way its contract says.

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use wsbox_tests::*;

#[tokio::test]
async fn the_host_says_which_contract_each_module_implements() {
    init_logging();
    let _basic = TestServer::start(module_config("/basic", BASIC_WASM, test_limits())).await;
    let line = wait_for_log("module=wsbox_test_guest_basic contract=").await;
    assert!(
        line.contains("contract=wsbox:websocket/websocket-handler@0.2.3"),
        "{line}"
    );
    assert!(
        !line.contains("pubsub") && !line.contains("hibernation"),
        "it does not import pubsub: {line}"
    );
    let _pubsub = TestServer::start(module_config("/pubsub", PUBSUB_WASM, test_limits())).await;
    let line = wait_for_log("module=wsbox_test_guest_pubsub contract=").await;
    assert!(
        line.contains("contract=wsbox:websocket/websocket-handler@0.2.3 + pubsub"),
        "{line}"
    );
    // Built against 0.2.2, before the hibernation export: linked to the
    // 0.2.3 host, and its pubsub calls work.
    let v022 = TestServer::start(module_config("/v022", PUBSUB_0_2_2_WASM, test_limits())).await;
    let line = wait_for_log("module=pubsub-wit-0.2.2 contract=").await;
    assert!(
        line.contains("contract=wsbox:websocket/websocket-handler@0.2.2 + pubsub"),
        "{line}"
    );
    assert!(!line.contains("hibernation"), "{line}");
    let mut a = v022.connect("/v022").await;
    let mut b = v022.connect("/v022").await;
    assert_eq!(ask(&mut a, "sub t").await, "subscribed");
    assert_eq!(ask(&mut b, "sub t").await, "subscribed");
    assert_eq!(ask(&mut a, "pubx t hi").await, "published 1 0");
    assert_eq!(next_message(&mut b).await, Message::Text("hi".into()));
    // Built against 0.2.1, before publish-with-broker-report: linked to
    // the 0.2.3 host, and its pubsub calls work.
    let v021 = TestServer::start(module_config("/old", PUBSUB_0_2_1_WASM, test_limits())).await;
    let line = wait_for_log("module=pubsub-wit-0.2.1 contract=").await;
    assert!(
        line.contains("contract=wsbox:websocket/websocket-handler@0.2.1 + pubsub"),
        "{line}"
    );
    let mut a = v021.connect("/old").await;
    let mut b = v021.connect("/old").await;
    assert_eq!(ask(&mut a, "sub t").await, "subscribed");
    assert_eq!(ask(&mut b, "sub t").await, "subscribed");
    assert_eq!(ask(&mut a, "pubx t hi").await, "published 1 0");
    assert_eq!(next_message(&mut b).await, Message::Text("hi".into()));
    // Built against 0.2.0, before pubsub: linked and found through
    // wasmtime's semver-compatible lookup, with no adapter.
    let _v020 = TestServer::start(echo_0_2_0_config()).await;
    let line = wait_for_log("module=echo-wit-0.2.0 contract=").await;
    assert!(
        line.contains("contract=wsbox:websocket/websocket-batch-handler@0.2.0"),
        "{line}"
    );
    assert!(!line.contains("pubsub"), "{line}");
    let _chaos = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let line = wait_for_log("module=wsbox_test_guest_chaos contract=").await;
    assert!(
        line.contains("contract=wsbox:websocket/websocket-batch-handler@0.2.3 + hibernation"),
        "{line}"
    );
    let _old = TestServer::start(echo_0_1_0_config()).await;
    let line = wait_for_log("module=echo-wit-0.1.0 contract=").await;
    assert!(
        line.contains("contract=wsbox:websocket/websocket-handler@0.1.0 (adapted)"),
        "{line}"
    );
}

/// Messages that arrive together reach a handler without the batch
/// interface one `on-message` call each, in order.
#[tokio::test]
async fn a_handler_without_the_batch_interface_gets_one_call_per_message() {
    let server = TestServer::start(module_config("/basic", BASIC_WASM, test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/basic").await;
    let mut burst = Vec::new();
    for i in 0..50 {
        burst.extend(client_frame(
            true,
            0x1,
            format!("m{i}").as_bytes(),
            Some([9, 8, 7, 6]),
        ));
    }
    burst.extend(client_frame(true, 0x1, b"!calls", Some([9, 8, 7, 6])));
    // One write: the host reads them together.
    raw.write_all(&burst).await.unwrap();
    for i in 0..50 {
        assert_eq!(
            read_frame(&mut raw).await,
            (0x1, format!("m{i}").into_bytes())
        );
    }
    assert_eq!(read_frame(&mut raw).await, (0x1, b"calls:50".to_vec()));
}

/// `connection.request` gives the request again, header values as the
/// bytes received (not UTF-8 here), the remote address typed.
#[tokio::test]
async fn a_0_2_handler_reads_its_request_from_the_connection() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start(module_config("/basic", BASIC_WASM, test_limits())).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut head = format!(
        "GET /basic HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Bytes: caf",
        server.addr
    )
    .into_bytes();
    head.extend_from_slice(b"\xe9\r\n\r\n");
    stream.write_all(&head).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 101"));
    stream
        .write_all(&client_frame(true, 0x1, b"!request", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    let (_, reply) = read_frame(&mut stream).await;
    assert_eq!(
        String::from_utf8(reply).unwrap(),
        "request:/basic 127.0.0.1 [99, 97, 102, 233]"
    );
    stream
        .write_all(&client_frame(true, 0x1, b"!id", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    let (_, reply) = read_frame(&mut stream).await;
    assert!(String::from_utf8(reply).unwrap().starts_with("id:"));
}

/// The 0.1.0 echo build still gets its close code and reason echoed, and
/// messages in a batch, through the adapter.
#[tokio::test]
async fn the_0_1_0_echo_build_handles_batches_and_closes() {
    let server = TestServer::start(echo_0_1_0_config()).await;
    let mut raw = raw_handshake(server.addr, "/echo").await;
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.extend(client_frame(true, 0x2, &[i; 3], Some([1, 1, 1, 1])));
    }
    raw.write_all(&burst).await.unwrap();
    for i in 0..20 {
        assert_eq!(read_frame(&mut raw).await, (0x2, vec![i; 3]));
    }
    let mut ws = server.connect("/echo").await;
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("x"));
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4321.into(),
        reason: "old contract".into(),
    }))
    .await
    .unwrap();
    assert_eq!(
        expect_close(&mut ws).await,
        (4321, "old contract".to_string())
    );
    wait_for_log("echo closed: code=4321 reason=\"old contract\" echoed=1 messages").await;
}

/// A module that imports an interface wsbox does not grant is refused at
/// load with the import named.
#[tokio::test]
async fn a_module_with_an_import_the_host_does_not_grant_is_named() {
    let runtime = wsbox::runtime::Runtime::new(&test_runtime()).unwrap();
    let bytes =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#)
            .unwrap();
    let component = runtime.compile(&bytes).unwrap();
    let err = runtime
        .prepare("http-client".into(), &component)
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(
        err.contains("imports wasi:http/outgoing-handler@0.2.0, which wsbox does not grant"),
        "{err}"
    );
}

/// A component built against a version of the contract this host does not
/// speak is refused with the versions it does.
#[tokio::test]
async fn a_module_for_an_unsupported_contract_version_names_the_supported_ones() {
    let runtime = wsbox::runtime::Runtime::new(&test_runtime()).unwrap();
    let bytes =
        wat::parse_str(r#"(component (import "wsbox:websocket/connection@0.3.0" (instance)))"#)
            .unwrap();
    let component = runtime.compile(&bytes).unwrap();
    let err = runtime
        .prepare("future".into(), &component)
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(
        err.contains("built against wsbox:websocket@0.3.0, which this wsbox does not support")
            && err.contains("supports 0.1.0, 0.2.0, 0.2.1, 0.2.2, 0.2.3"),
        "{err}"
    );
}

/// The per-component pool limits are config keys, and a component over
/// one is refused with the key to raise.
#[tokio::test]
async fn a_component_over_a_pool_limit_names_the_config_key() {
    let mut config = test_runtime();
    config.max_core_instances_per_component = 2;
    let runtime = wsbox::runtime::Runtime::new(&config).unwrap();
    let bytes = wat::parse_str(
        r#"(component
            (core module $m)
            (core instance (instantiate $m))
            (core instance (instantiate $m))
            (core instance (instantiate $m)))"#,
    )
    .unwrap();
    let err = runtime
        .compile(&bytes)
        .err()
        .map(|e| format!("{e:#}"))
        .expect("3 core instances over a limit of 2 are refused");
    assert!(
        err.contains("raise `max_core_instances_per_component` (now 2)"),
        "{err}"
    );
    // The default admits it.
    let runtime = wsbox::runtime::Runtime::new(&test_runtime()).unwrap();
    runtime.compile(&bytes).expect("the default limit admits 3");

    let mut config = test_runtime();
    config.max_memories_per_component = 1;
    let runtime = wsbox::runtime::Runtime::new(&config).unwrap();
    let bytes = wat::parse_str(
        r#"(component
            (core module $m (memory 1))
            (core instance (instantiate $m))
            (core instance (instantiate $m)))"#,
    )
    .unwrap();
    let err = match runtime.compile(&bytes) {
        Err(e) => format!("{e:#}"),
        Ok(component) => runtime
            .prepare("two-memories".into(), &component)
            .err()
            .map(|e| format!("{e:#}"))
            .expect("2 memories over a limit of 1 are refused"),
    };
    assert!(err.contains("max_memories_per_component"), "{err}");
}
