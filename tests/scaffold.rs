//! `wsbox new` and `wsbox build` end to end, for every language: make a
//! project in a temporary directory (outside any checkout), build it with
//! the `wsbox` binary alone, serve it with the command `wsbox build`
//! prints, and talk to it over a real WebSocket: the greeting with the
//! route's capture, text and binary echo.
//!
//! The toolchains come from `~/.cache/wsbox/toolchains` (installed on
//! first use, as for `tests/polyglot.rs`); `WSBOX_SKIP_PEERS=polyglot`
//! skips every language but Rust. The Rust build uses a target directory
//! kept between runs (`<target>/scaffold-rust`), so only the first run
//! compiles the SDK's dependencies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsbox_tests::*;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("wsbox-scaffold-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the wsbox binary in `dir` with `args`, its stderr shown, and
/// returns its stdout; panics (with it) unless it succeeds.
fn wsbox(dir: &Path, args: &[&str], env: &[(&str, PathBuf)]) -> String {
    let mut command = Command::new(wsbox_binary());
    command
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run wsbox");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wsbox {args:?} failed ({}): {stdout}",
        output.status
    );
    stdout
}

/// The target directory the Rust project builds into: kept between runs.
fn rust_target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("scaffold-rust")
}

async fn new_build_serve(lang: &'static str) {
    if lang != "rust" && skip_peers(Peers::Polyglot) {
        return;
    }
    init_logging();
    let name = format!("hello-{lang}");
    let root = TempDir::new(lang);
    let project = new_project(&root, lang, &name);
    let (mut server, addr) = build_and_serve(lang, &project, &name).await;

    let mut ws = connect(&addr, format!("/{name}/lobby")).await;
    assert_eq!(
        text(&mut ws).await,
        format!("hello from {name}: args=[] kwargs={{room: lobby}}")
    );
    assert_eq!(ask(&mut ws, "héllo ✓").await, "héllo ✓");
    let bytes = vec![0u8, 1, 2, 255];
    ws.send(WsMessage::binary(bytes.clone()))
        .await
        .expect("send");
    assert_eq!(next_message(&mut ws).await, WsMessage::binary(bytes));
    // Without a capture, no greeting: the first answer is the echo.
    let mut ws = connect(&addr, format!("/{name}")).await;
    assert_eq!(ask(&mut ws, "first").await, "first");

    let _ = server.kill().await;
}

/// `wsbox new --lang LANG NAME` in `root`: the project's directory.
fn new_project(root: &TempDir, lang: &str, name: &str) -> PathBuf {
    let printed = wsbox(&root.0, &["new", "--lang", lang, name], &[]);
    assert!(
        printed.contains("wsbox build") && printed.contains("wsbox serve --config wsbox.toml"),
        "`wsbox new` says how to build and serve: {printed}"
    );
    let project = root.0.join(name);
    assert!(project.join("wsbox.toml").is_file());
    project
}

/// `wsbox build` in `project` (the binary alone: no checkout), then the
/// serve command it prints, on a free port: the server and its address.
async fn build_and_serve(
    lang: &str,
    project: &Path,
    name: &str,
) -> (tokio::process::Child, String) {
    let started = Instant::now();
    let env = if lang == "rust" {
        vec![("CARGO_TARGET_DIR", rust_target_dir())]
    } else {
        Vec::new()
    };
    let dir = project.to_path_buf();
    let printed = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, PathBuf)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        wsbox(&dir, &["build"], &env)
    })
    .await
    .expect("build task");
    let wasm = project.join(format!("{name}.wasm"));
    announce(&format!(
        "scaffold {lang}: built {name} in {:.1}s ({} bytes)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)
    ));
    assert!(wasm.is_file(), "{} was built", wasm.display());
    if lang == "rust" {
        let bytes = std::fs::read(&wasm).expect("read the component");
        assert_packed_layout(name, &bytes);
    }
    let serve = printed
        .lines()
        .find_map(|l| l.strip_prefix("serve it: "))
        .unwrap_or_else(|| panic!("`wsbox build` prints how to serve: {printed}"))
        .to_string();

    let mut words = serve.split_whitespace();
    assert_eq!(words.next(), Some("wsbox"), "{serve}");
    let mut server = tokio::process::Command::new(wsbox_binary())
        .current_dir(project)
        .args(words)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start wsbox serve");
    let mut stdout = BufReader::new(server.stdout.take().expect("piped")).lines();
    // A large module's first compile takes a while on a loaded machine.
    let addr = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let line = stdout
                .next_line()
                .await
                .expect("read stdout")
                .expect("wsbox serve exited before listening");
            if let Some(rest) = line.strip_prefix("wsbox listening on ws://") {
                break rest.split(',').next().unwrap_or_default().to_string();
            }
        }
    })
    .await
    .expect("wsbox serve listens in time");
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (server, addr)
}

async fn connect(addr: &str, path: String) -> Client {
    let url = format!("ws://{addr}{path}");
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("handshake succeeds")
        .0
}

/// A project whose `[build] world` is `websocket-pubsub-handler`, with the
/// language's chat example as its handler: `wsbox build` builds against
/// the pub/sub world and the chat works.
async fn pubsub_project(lang: &'static str, example: &str, source: &str) {
    if skip_peers(Peers::Polyglot) {
        return;
    }
    init_logging();
    let name = format!("chat-{lang}");
    let root = TempDir::new(&format!("pubsub-{lang}"));
    let project = new_project(&root, lang, &name);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    std::fs::copy(
        workspace.join("examples").join(example),
        project.join(source),
    )
    .expect("copy the chat");
    let file = project.join("wsbox.toml");
    let config = std::fs::read_to_string(&file).expect("read wsbox.toml");
    let named = format!("name = \"{name}\"\n");
    assert!(config.contains(&named), "{config}");
    let config = config.replacen(
        &named,
        &format!("{named}world = \"websocket-pubsub-handler\"\n"),
        1,
    );
    std::fs::write(&file, config).expect("write wsbox.toml");
    let (mut server, addr) = build_and_serve(lang, &project, &name).await;

    let mut ann = connect(&addr, format!("/{name}/lobby?nick=ann")).await;
    assert_eq!(
        text(&mut ann).await,
        "welcome to lobby, ann: /nick <name>, /msg <name> <text>, /who"
    );
    assert_eq!(text(&mut ann).await, "* ann joined lobby (1 here)");
    let mut bo = connect(&addr, format!("/{name}/lobby?nick=bo")).await;
    assert_eq!(
        text(&mut bo).await.split(':').next(),
        Some("welcome to lobby, bo")
    );
    assert_eq!(text(&mut ann).await, "* bo joined lobby (2 here)");
    ann.send(WsMessage::text("hi")).await.expect("send");
    assert_eq!(text(&mut bo).await, "* bo joined lobby (2 here)");
    assert_eq!(text(&mut bo).await, "ann: hi");

    let _ = server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_project_builds_and_echoes() {
    new_build_serve("rust").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_project_builds_and_echoes() {
    new_build_serve("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_project_builds_and_echoes() {
    new_build_serve("javascript").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_project_builds_and_echoes() {
    new_build_serve("go").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_project_builds_and_echoes() {
    new_build_serve("c").await;
}

/// The command's errors, as a user sees them (the unit tests in
/// host/src/scaffold/ check each case; this checks the CLI reports them).
#[test]
fn new_and_build_explain_their_errors() {
    let root = TempDir::new("errors");
    let run = |args: &[&str]| {
        let output = Command::new(wsbox_binary())
            .current_dir(&root.0)
            .args(args)
            .output()
            .expect("run wsbox");
        assert!(!output.status.success(), "wsbox {args:?} must fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let e = run(&["new", "--lang", "cobol", "x"]);
    assert!(
        e.contains("unknown language `cobol`: wsbox supports rust, python, javascript, go, c"),
        "{e}"
    );
    std::fs::create_dir_all(root.0.join("taken")).expect("mkdir");
    std::fs::write(root.0.join("taken/file"), "x").expect("write");
    let e = run(&["new", "--lang", "c", "taken"]);
    assert!(e.contains("already exists and is not empty"), "{e}");
    let e = run(&["build"]);
    assert!(
        e.contains("no wsbox project here: looked for") && e.contains("wsbox.toml"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_project_builds_against_the_pubsub_world() {
    pubsub_project("python", "chat-python/app.py", "app.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_project_builds_against_the_pubsub_world() {
    pubsub_project("javascript", "chat-js/chat.js", "handler.js").await;
}

/// The guests this workspace builds (the bundled demos, the test guests)
/// are linked with the same packed layout as `wsbox build`'s
/// (`host/server/guest_build.rs`).
#[test]
fn workspace_guests_are_linked_with_the_packed_memory_layout() {
    assert_packed_layout("bundled echo", wsbox::bundled::ECHO_WASM);
    assert_packed_layout("bundled chat", wsbox::bundled::CHAT_WASM);
    assert_packed_layout("bundled broadcast", wsbox::bundled::BROADCAST_WASM);
    for path in [
        ECHO_HIBERNATE_WASM,
        CHAOS_WASM,
        BASIC_WASM,
        PUBSUB_WASM,
        HIBERNATE_WASM,
    ] {
        let bytes = std::fs::read(path).expect("a built test guest");
        assert_packed_layout(path, &bytes);
    }
}
