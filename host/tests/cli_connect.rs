//! `wsbox connect`, the command-line client, run as a subprocess against an
//! in-process wsbox server and small tokio-tungstenite servers.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsbox::config::{Config, RuntimeConfig};
use wsbox::server::Server;

/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(30);

/// The bundled echo demo on an ephemeral port, as `wsbox serve` runs it.
async fn echo_server() -> SocketAddr {
    let mut config = Config::bundled_demo();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.runtime = RuntimeConfig {
        max_instances: 16,
        max_memory_per_instance: 64 << 20,
        epoch_tick: Duration::from_millis(5),
        ..RuntimeConfig::default()
    };
    let server = Server::bind(&config).await.expect("server binds");
    let addr = server.local_addr().expect("local addr");
    tokio::spawn(server.run_until(std::future::pending::<()>(), config.server.drain_time));
    addr
}

/// A one-connection tokio-tungstenite server that sends `messages`, then
/// closes with `code` and `reason`.
async fn scripted_server(messages: Vec<Message>, code: u16, reason: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        for message in messages {
            ws.send(message).await.expect("send");
        }
        ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
        .await
        .expect("close");
        while let Some(Ok(_)) = ws.next().await {}
    });
    addr
}

fn wsbox_connect(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wsbox"))
        .arg("connect")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start wsbox connect")
}

async fn finish(child: Child) -> Output {
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("wsbox connect exits in time")
        .expect("wait for wsbox connect")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn stdin_lines_are_echoed_and_eof_closes_cleanly() {
    let addr = echo_server().await;
    let mut child = wsbox_connect(&[&format!("ws://{addr}/echo")]);
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all("hello\nwörld\n".as_bytes())
        .await
        .expect("write stdin");
    drop(stdin); // EOF: close 1000
    let output = finish(child).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    assert_eq!(stdout, "hello\nwörld\n", "stderr: {stderr}");
    assert!(stderr.contains("connected to"), "{stderr}");
}

#[tokio::test]
async fn an_abnormal_close_code_exits_non_zero_with_code_and_reason() {
    let addr = scripted_server(vec![Message::text("before the close")], 4000, "custom bye").await;
    let mut child = wsbox_connect(&[&format!("ws://{addr}/")]);
    let stdin = child.stdin.take(); // kept open: the server ends the session
    let output = finish(child).await;
    drop(stdin);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        !output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout, "before the close\n");
    assert!(stderr.contains("4000"), "{stderr}");
    assert!(stderr.contains("custom bye"), "{stderr}");
}

#[tokio::test]
async fn binary_messages_print_as_hex_or_base64() {
    for (flags, expected) in [(&[][..], "0001abff\n"), (&["--base64"][..], "AAGr/w==\n")] {
        let addr = scripted_server(vec![Message::binary(vec![0u8, 1, 0xab, 0xff])], 1000, "").await;
        let url = format!("ws://{addr}/");
        let mut args = vec![url.as_str()];
        args.extend_from_slice(flags);
        let mut child = wsbox_connect(&args);
        let stdin = child.stdin.take();
        let output = finish(child).await;
        drop(stdin);
        let stderr = text(&output.stderr);
        assert!(
            output.status.success(),
            "a 1000 close is normal; stderr: {stderr}"
        );
        assert_eq!(text(&output.stdout), expected, "flags {flags:?}");
    }
}

#[tokio::test]
async fn connection_failures_and_bad_arguments_exit_non_zero() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let output = finish(wsbox_connect(&[&format!("ws://{addr}/")])).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("connecting to ws://{addr}/")),
        "{stderr}"
    );

    let output = finish(wsbox_connect(&[
        "ws://127.0.0.1:9/",
        "--ping-interval",
        "1",
        "--ping-timeout",
        "2",
    ]))
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("must not exceed ping_interval"), "{stderr}");
}
