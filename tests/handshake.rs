//! The opening handshake: versions, origins, non-upgrade requests, rejects.

use wsbox_tests::*;

fn upgrade_request(path: &str, host: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn version_8_gets_426_with_the_supported_version() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let host = server.addr.to_string();
    let resp = raw_request(
        server.addr,
        &upgrade_request("/chaos", &host, "Sec-WebSocket-Version: 8\r\n"),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{resp}"
    );
}

#[tokio::test]
async fn malformed_key_gets_400() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let req = format!(
        "GET /chaos HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: too-short\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let resp = raw_request(server.addr, &req).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test]
async fn cross_origin_browser_handshake_gets_403_same_origin_is_accepted() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let host = server.addr.to_string();
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let resp = raw_request(
        server.addr,
        &upgrade_request(
            "/chaos",
            &host,
            &format!("{v13}Origin: http://evil.example\r\n"),
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("Cross origin websockets not allowed"),
        "{resp}"
    );

    let resp = raw_request(
        server.addr,
        &upgrade_request("/chaos", &host, &format!("{v13}Origin: http://{host}\r\n")),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");

    // A non-browser client (no Origin) is allowed.
    let resp = raw_request(server.addr, &upgrade_request("/chaos", &host, v13)).await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");

    // The handler may override the host's verdict either way.
    let resp = raw_request(
        server.addr,
        &upgrade_request(
            "/chaos?origin=allow",
            &host,
            &format!("{v13}Origin: http://evil.example\r\n"),
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    let resp = raw_request(
        server.addr,
        &upgrade_request(
            "/chaos?origin=deny",
            &host,
            &format!("{v13}Origin: http://{host}\r\n"),
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
}

#[tokio::test]
async fn plain_http_to_a_websocket_route_gets_426_and_unknown_paths_404() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let resp = raw_request(
        server.addr,
        &format!("GET /chaos HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(resp.contains("WebSocket endpoint"), "{resp}");
    let resp = raw_request(
        server.addr,
        &format!("GET /nowhere HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[tokio::test]
async fn handler_can_reject_select_a_subprotocol_and_add_headers() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let host = server.addr.to_string();
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let resp = raw_request(
        server.addr,
        &upgrade_request("/chaos?reject=401", &host, v13),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{resp}"
    );
    assert!(resp.contains("rejected by chaos"), "{resp}");

    let resp = raw_request(
        server.addr,
        &upgrade_request(
            "/chaos?subprotocol=b&header=x-extra:yes&header=upgrade:nope",
            &host,
            &format!("{v13}Sec-WebSocket-Protocol: a, b\r\n"),
        ),
    )
    .await;
    let lower = resp.to_ascii_lowercase();
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    assert!(lower.contains("sec-websocket-protocol: b\r\n"), "{resp}");
    assert!(lower.contains("x-extra: yes"), "{resp}");
    assert!(
        lower.contains("upgrade: websocket") && !lower.contains("nope"),
        "{resp}"
    );

    // Selecting a subprotocol the client did not offer: no subprotocol.
    let resp = raw_request(
        server.addr,
        &upgrade_request(
            "/chaos?subprotocol=zzz",
            &host,
            &format!("{v13}Sec-WebSocket-Protocol: a\r\n"),
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    assert!(
        !resp.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{resp}"
    );
}

/// A handler cannot make the host send a huge upgrade answer: extra
/// headers and a reject's body have caps.
#[tokio::test]
async fn handler_upgrade_answers_are_capped() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let host = server.addr.to_string();
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let resp = raw_request(
        server.addr,
        &upgrade_request("/chaos?many-headers=1000", &host, v13),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    let extra = resp.matches("x-many-").count();
    assert!((1..=32).contains(&extra), "{extra} extra headers");

    let resp = raw_request(
        server.addr,
        &upgrade_request("/chaos?reject=403&long-reason=100000", &host, v13),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{}", &resp[..200]);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.len() <= 4 * 1024 + 1 && body.len() > 1000,
        "{} byte body",
        body.len()
    );
}
