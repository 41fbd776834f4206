//! A real browser: headless Chromium (Debian's `chromium`) opens WebSockets
//! to the bundled echo demo and round-trips text and binary messages; the
//! page reports back over HTTP to a small server of the test's.
//!
//! Two pages: the one the no-config server serves at `/` (same origin, the
//! default origin rule), and one from another port that a route allows.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wsbox::config::OriginConfig;
use wsbox::config::origin::OriginPolicy;
use wsbox_tests::*;

const PAGE: &str = r#"<!doctype html>
<html><body><pre id="log">running</pre><script>
const report = (result) => fetch('/result?data=' + encodeURIComponent(JSON.stringify(result)));
const params = new URLSearchParams(location.search);
const ws = new WebSocket(params.get('ws'));
ws.binaryType = 'arraybuffer';
const sizes = [10, 10 * 1024, 1024 * 1024];
const payloads = [];
for (const n of sizes) {
  payloads.push(('{"n": ' + n + ', "msg": "hello wsbox"} ').repeat(Math.ceil(n / 20)).slice(0, n));
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7) % 251;
  payloads.push(b.buffer);
}
const same = (a, b) => {
  if (typeof a === 'string') return a === b;
  if (!(b instanceof ArrayBuffer) || a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
};
let i = 0;
ws.onopen = () => ws.send(payloads[0]);
ws.onmessage = (ev) => {
  if (!same(payloads[i], ev.data)) { report({ok: false, error: 'mismatch at ' + i, extensions: ws.extensions}); ws.close(); return; }
  i += 1;
  if (i < payloads.length) { ws.send(payloads[i]); return; }
  report({ok: true, round_trips: i, extensions: ws.extensions});
  ws.close(1000, 'done');
};
ws.onerror = () => report({ok: false, error: 'websocket error', extensions: ws.extensions});
</script></body></html>"#;

/// Serves the page and receives the page's report.
async fn page_server() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = if let Some(q) = target.strip_prefix("/result?data=") {
                    let _ = tx.send(percent_decode(q)).await;
                    ("204 No Content", String::new())
                } else if target == "/" || target.starts_with("/?") {
                    ("200 OK", PAGE.to_string())
                } else {
                    ("404 Not Found", String::new())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, rx)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn chromium() -> String {
    debian_program(
        "/usr/bin/chromium",
        "chromium",
        "WSBOX_CHROMIUM",
        "chromium",
    )
}

/// Runs Chromium on `url` until the page reports (or 90 s pass).
async fn run_page(url: &str, results: &mut mpsc::Receiver<String>) -> String {
    let browser = chromium();
    let profile = std::env::temp_dir().join(format!(
        "wsbox-chromium-{}-{}",
        std::process::id(),
        PROFILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut child = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--remote-debugging-port=0")
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let report = tokio::time::timeout(Duration::from_secs(90), results.recv())
        .await
        .expect("the page reported within 90 s")
        .expect("report");
    let _ = child.kill().await;
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&profile);
    report
}

static PROFILES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[tokio::test]
async fn headless_chromium_round_trips_with_permessage_deflate() {
    if skip_peers(Peers::Chromium) {
        return;
    }
    let (page_port, mut results) = page_server().await;
    let mut config = demo_config();
    // The page comes from another port: a cross origin the route allows.
    config.routes[0].origin = OriginPolicy::new(&OriginConfig {
        allowed: vec![format!("http://127.0.0.1:{page_port}")],
        enforce: true,
    })
    .expect("origin policy");
    enable_compression(&mut config);
    let server = TestServer::start(config).await;
    let url = format!(
        "http://127.0.0.1:{page_port}/?ws=ws://127.0.0.1:{}/echo",
        server.addr.port()
    );
    let report = run_page(&url, &mut results).await;
    assert!(report.contains(r#""ok":true"#), "{report}");
    assert!(report.contains(r#""round_trips":6"#), "{report}");
    assert!(
        report.contains("permessage-deflate"),
        "compression not negotiated: {report}"
    );
}

/// The no-config server's own echo page (`/echo.html`; `/` is the chat's
/// since the chat demo), with its default origin rule.
#[tokio::test]
async fn the_demo_echo_page_round_trips_from_its_own_origin() {
    if skip_peers(Peers::Chromium) {
        return;
    }
    let (report_port, mut results) = page_server().await;
    let server = TestServer::start(demo_config()).await;
    let url = format!(
        "http://127.0.0.1:{}/echo.html?selftest=http://127.0.0.1:{report_port}/result",
        server.addr.port()
    );
    let report = run_page(&url, &mut results).await;
    assert!(report.contains(r#""ok":true"#), "{report}");
    assert!(report.contains(r#""round_trips":3"#), "{report}");
    assert!(
        report.contains("kwargs={room: selftest}"),
        "the greeting carries the route capture: {report}"
    );
    assert!(report.contains("permessage-deflate"), "{report}");
}

/// A Chromium process on one page, stopped with [`Chromium::stop`].
struct Chromium {
    child: tokio::process::Child,
    profile: std::path::PathBuf,
}

impl Chromium {
    fn start(url: &str) -> Chromium {
        let profile = std::env::temp_dir().join(format!(
            "wsbox-chromium-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let child = tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--remote-debugging-port=0")
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        Chromium { child, profile }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A query-string value, percent-encoded.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Reads the pages' reports (`{"nick", "line"}`) into `seen` until one
/// satisfies `done`; panics after 90 s.
async fn wait_for_line(
    results: &mut mpsc::Receiver<String>,
    seen: &mut Vec<(String, String)>,
    done: impl Fn(&str, &str) -> bool,
) {
    if seen.iter().any(|(n, l)| done(n, l)) {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let report = tokio::time::timeout_at(deadline, results.recv())
            .await
            .unwrap_or_else(|_| panic!("the pages did not report in time; seen: {seen:?}"))
            .expect("report");
        let v: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
        let nick = v["nick"].as_str().unwrap_or_default().to_string();
        let line = v["line"].as_str().unwrap_or_default().to_string();
        let hit = done(&nick, &line);
        seen.push((nick, line));
        if hit {
            return;
        }
    }
}

/// The chat page at `/` in three real browsers: alice and bob chat in
/// `lobby`, carol sits in `attic` and must see none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_chat_and_a_third_in_another_room_sees_nothing() {
    if skip_peers(Peers::Chromium) {
        return;
    }
    let (report_port, mut results) = page_server().await;
    let server = TestServer::start(demo_config()).await;
    let base = format!("http://127.0.0.1:{}/", server.addr.port());
    let report = query_value(&format!("http://127.0.0.1:{report_port}/result"));
    let mut seen = Vec::new();

    let carol = Chromium::start(&format!("{base}?bot=carol&room=attic&report={report}"));
    wait_for_line(&mut results, &mut seen, |n, l| {
        n == "carol" && l.starts_with("* carol joined attic")
    })
    .await;
    let alice = Chromium::start(&format!(
        "{base}?bot=alice&room=lobby&report={report}&expect={}&say={}",
        query_value("* bob joined"),
        query_value("hello bob")
    ));
    wait_for_line(&mut results, &mut seen, |n, l| {
        n == "alice" && l.starts_with("* alice joined lobby")
    })
    .await;
    let bob = Chromium::start(&format!(
        "{base}?bot=bob&room=lobby&report={report}&expect={}&say={}",
        query_value("alice: hello bob"),
        query_value("hello alice")
    ));
    wait_for_line(&mut results, &mut seen, |n, l| {
        n == "alice" && l == "bob: hello alice"
    })
    .await;
    // Each line is reported by its own request: bob's may come later.
    wait_for_line(&mut results, &mut seen, |n, l| {
        n == "bob" && l == "alice: hello bob"
    })
    .await;
    let carol_saw: Vec<&String> = seen
        .iter()
        .filter(|(n, _)| n == "carol")
        .map(|(_, l)| l)
        .collect();
    assert!(
        carol_saw
            .iter()
            .all(|l| !l.contains("alice") && !l.contains("bob")),
        "carol is in another room: {carol_saw:?}"
    );
    assert_eq!(server.handle.subscriber_count("default", "room:lobby"), 2);
    assert_eq!(server.handle.subscriber_count("default", "room:attic"), 1);
    for browser in [alice, bob, carol] {
        browser.stop().await;
    }
}
