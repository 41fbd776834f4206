//! Independent Python clients (`websockets` and `tornado.websocket`, with
//! compression on) against the bundled echo handler.

use std::time::Duration;

use wsbox_tests::*;

async fn run_client(lib: &str) -> String {
    let mut config = demo_config();
    enable_compression(&mut config);
    let server = TestServer::start(config).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/interop_client.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(script)
            .arg(lib)
            .arg(server.url("/echo"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("client finished in time")
    .expect("client ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{lib} client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The server saw the extension negotiated too.
    wait_for_log("extensions=permessage-deflate").await;
    stdout
}

#[tokio::test]
async fn python_websockets_client_with_compression() {
    if skip_peers(Peers::Python) {
        return;
    }
    let out = run_client("websockets").await;
    assert!(out.contains(r#""ok": true"#), "{out}");
    assert!(out.contains(r#""round_trips": 6"#), "{out}");
    assert!(out.contains("permessage-deflate"), "{out}");
}

#[tokio::test]
async fn tornado_client_with_compression() {
    if skip_peers(Peers::Python) {
        return;
    }
    let out = run_client("tornado").await;
    assert!(out.contains(r#""ok": true"#), "{out}");
    assert!(out.contains(r#""round_trips": 6"#), "{out}");
    assert!(out.contains("permessage-deflate"), "{out}");
}
