//! One suite for the chat example of every guest language.
//!
//! Each language's chat (`examples/chat` in Rust, `examples/chat-python`,
//! ...) implements the behaviour written down in `examples/chat/src/lib.rs`
//! on the host's pub/sub, line for line: rooms, join and leave notices,
//! `/nick`, `/msg`, `/who`, the refusal of binary messages and the
//! publish-rate warning. Every scenario runs against every language; a
//! language's test fails listing the scenarios it failed. One scenario
//! puts the language's chat and the Rust one in the same room: topics
//! belong to the tenant, not to a module or a language.
//!
//! The chats are built like the echoes (`polyglot.rs`);
//! `WSBOX_SKIP_PEERS=polyglot` skips the languages other than Rust.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsbox::config::{Config, ModuleSource, RouteConfig, RoutePattern, TenantConfig, TenantLimits};
use wsbox_tests::*;

/// The tenant whose publish rate is tiny, for the rate scenario.
const SLOW_TENANT: &str = "slow";
/// Its publishes per second (join notices count too).
const SLOW_RATE: u32 = 5;

/// Routes: `/chat-<lang>/<room>` (the language's chat), `/chat-rust/<room>`
/// (the Rust chat, in the same tenant) and `/slow-<lang>/<room>` (the
/// language's chat in a tenant allowed [`SLOW_RATE`] publishes a second).
fn chat_config(module: ModuleSource, lang: &str) -> Config {
    let mut config = module_config("/unused", "unused.wasm", polyglot_limits());
    config.runtime.max_memory_per_instance = 128 << 20;
    let route = |pattern: String, tenant: &str, module: ModuleSource| RouteConfig {
        pattern: RoutePattern::new(&pattern).expect("route pattern"),
        tenant: tenant.to_string(),
        module,
        limits: polyglot_limits(),
        origin: Default::default(),
        keepalive: Default::default(),
        compression: None,
        hibernation: Default::default(),
    };
    let rust = ModuleSource::Bundled {
        name: "chat",
        bytes: wsbox::bundled::CHAT_WASM,
    };
    config.routes = vec![
        route(
            room_pattern(&format!("/chat-{lang}")),
            "default",
            module.clone(),
        ),
        route(room_pattern("/chat-rust"), "default", rust),
        route(room_pattern(&format!("/slow-{lang}")), SLOW_TENANT, module),
    ];
    config.tenants = vec![TenantConfig {
        name: SLOW_TENANT.to_string(),
        path_prefix: None,
        max_connections: None,
        limits: TenantLimits {
            max_publishes_per_second: Some(SLOW_RATE),
            ..TenantLimits::default()
        },
    }];
    config
}

fn room_pattern(prefix: &str) -> String {
    format!("{prefix}/(?P<room>[a-z]+)")
}

type ScenarioFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Scenario = fn(Arc<TestServer>, &'static str) -> ScenarioFuture;

/// Every scenario, by name. Each uses its own rooms and nicknames:
/// nicknames are topics shared by the whole tenant, and a closed client's
/// subscriptions may outlive the scenario by a moment.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("welcome and join notices count the room", |s, l| {
        Box::pin(welcome(s, l))
    }),
    ("a line reaches its room and no other", |s, l| {
        Box::pin(room_lines(s, l))
    }),
    ("/nick renames and refuses a bad name", |s, l| {
        Box::pin(nick(s, l))
    }),
    ("/msg reaches one user in any room", |s, l| {
        Box::pin(private(s, l))
    }),
    ("a guest name without ?nick", |s, l| {
        Box::pin(guest_name(s, l))
    }),
    ("binary messages are refused", |s, l| Box::pin(binary(s, l))),
    ("leaving is announced", |s, l| Box::pin(leaving(s, l))),
    ("over the publish rate the user is told", |s, l| {
        Box::pin(rate(s, l))
    }),
    ("the Rust chat shares the room", |s, l| {
        Box::pin(with_rust(s, l))
    }),
];

async fn chat_suite(lang: &'static str, module: ModuleSource) {
    let started = Instant::now();
    let server = Arc::new(TestServer::start(chat_config(module, lang)).await);
    announce(&format!(
        "polyglot chat {lang}: server up in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let mut failed = Vec::new();
    for (name, scenario) in SCENARIOS {
        let t = Instant::now();
        let result = tokio::spawn(scenario(server.clone(), lang)).await;
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        announce(&format!(
            "polyglot chat {lang}: {name} ... {verdict} ({:.2}s)",
            t.elapsed().as_secs_f64()
        ));
        if result.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        for line in logs()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(40)
        {
            announce(&format!("polyglot chat {lang}: host log: {line}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{lang} chat failed {} of {} scenarios: {failed:?}",
        failed.len(),
        SCENARIOS.len()
    );
}

/// Joins `room` on `/<prefix>/<room>` as `nick` (or with no `?nick=`),
/// checks the welcome line and the own join notice with the count, and
/// returns the client.
async fn enter(server: &TestServer, prefix: &str, room: &str, nick: &str, here: u32) -> Client {
    let mut ws = server
        .connect(&format!("/{prefix}/{room}?nick={nick}"))
        .await;
    assert_eq!(text(&mut ws).await, welcome_line(room, nick));
    assert_eq!(text(&mut ws).await, joined(nick, room, here));
    ws
}

fn welcome_line(room: &str, nick: &str) -> String {
    format!("welcome to {room}, {nick}: /nick <name>, /msg <name> <text>, /who")
}

fn joined(nick: &str, room: &str, here: u32) -> String {
    format!("* {nick} joined {room} ({here} here)")
}

async fn say(ws: &mut Client, line: &str) {
    ws.send(WsMessage::text(line)).await.expect("send");
}

/// `/who`'s answer is the next message: nothing else came before it.
async fn who(ws: &mut Client, room: &str, here: u32) {
    say(ws, "/who").await;
    assert_eq!(text(ws).await, format!("* {here} here in {room}"));
}

fn chat(lang: &str) -> String {
    format!("chat-{lang}")
}

async fn welcome(server: Arc<TestServer>, lang: &'static str) {
    let mut ann = enter(&server, &chat(lang), "arrive", "ann", 1).await;
    let mut ben = enter(&server, &chat(lang), "arrive", "ben", 2).await;
    assert_eq!(text(&mut ann).await, joined("ben", "arrive", 2));
    who(&mut ann, "arrive", 2).await;
    who(&mut ben, "arrive", 2).await;
}

async fn room_lines(server: Arc<TestServer>, lang: &'static str) {
    let mut cid = enter(&server, &chat(lang), "talk", "cid", 1).await;
    let mut dee = enter(&server, &chat(lang), "talk", "dee", 2).await;
    assert_eq!(text(&mut cid).await, joined("dee", "talk", 2));
    let mut eve = enter(&server, &chat(lang), "elsewhere", "eve", 1).await;
    // The sender subscribes to its room: its line comes back to it too.
    say(&mut cid, "héllo ✓").await;
    assert_eq!(text(&mut cid).await, "cid: héllo ✓");
    assert_eq!(text(&mut dee).await, "cid: héllo ✓");
    // Lines are trimmed; blank ones are dropped.
    say(&mut dee, "  spaced out  ").await;
    say(&mut dee, "   ").await;
    assert_eq!(text(&mut dee).await, "dee: spaced out");
    assert_eq!(text(&mut cid).await, "dee: spaced out");
    who(&mut dee, "talk", 2).await;
    who(&mut eve, "elsewhere", 1).await;
}

async fn nick(server: Arc<TestServer>, lang: &'static str) {
    let mut fay = enter(&server, &chat(lang), "names", "fay", 1).await;
    let mut gus = enter(&server, &chat(lang), "names", "gus", 2).await;
    assert_eq!(text(&mut fay).await, joined("gus", "names", 2));
    say(&mut fay, "/nick fayette").await;
    assert_eq!(text(&mut fay).await, "* fay is now known as fayette");
    assert_eq!(text(&mut gus).await, "* fay is now known as fayette");
    say(&mut fay, "/nick bad name!").await;
    assert_eq!(
        text(&mut fay).await,
        "! a nickname is 1 to 24 letters, digits, _ or -"
    );
    // Taking the name one has keeps it.
    say(&mut fay, "/nick fayette").await;
    assert_eq!(text(&mut fay).await, "* fayette is now known as fayette");
    assert_eq!(text(&mut gus).await, "* fayette is now known as fayette");
    // The private topic moved with the name.
    say(&mut gus, "/msg fayette hi").await;
    assert_eq!(text(&mut fay).await, "[private] gus: hi");
    assert_eq!(text(&mut gus).await, "[to fayette] hi");
    say(&mut gus, "/msg fay hi").await;
    assert_eq!(text(&mut gus).await, "! nobody here goes by fay");
    // Lines carry the new name.
    say(&mut fay, "renamed").await;
    assert_eq!(text(&mut gus).await, "fayette: renamed");
}

async fn private(server: Arc<TestServer>, lang: &'static str) {
    let mut hal = enter(&server, &chat(lang), "one", "hal", 1).await;
    let mut ida = enter(&server, &chat(lang), "two", "ida", 1).await;
    say(&mut hal, "/msg ida psst, a secret").await;
    assert_eq!(text(&mut ida).await, "[private] hal: psst, a secret");
    assert_eq!(text(&mut hal).await, "[to ida] psst, a secret");
    say(&mut hal, "/msg ida").await;
    assert_eq!(text(&mut hal).await, "! usage: /msg <name> <text>");
    say(&mut hal, "/msg nobody hello").await;
    assert_eq!(text(&mut hal).await, "! nobody here goes by nobody");
    // Nothing else reached ida.
    who(&mut ida, "two", 1).await;
}

async fn guest_name(server: Arc<TestServer>, lang: &'static str) {
    // One room per query: the first guest's leaving may still be on its
    // way when the second one joins.
    for (room, query) in [("guests", ""), ("strangers", "?nick=not%20valid!")] {
        let mut ws = server
            .connect(&format!("/{}/{room}{query}", chat(lang)))
            .await;
        let welcome = text(&mut ws).await;
        let nick = welcome
            .strip_prefix(&format!("welcome to {room}, "))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("unexpected welcome {welcome:?}"))
            .to_string();
        let digits = nick.strip_prefix("guest").unwrap_or("");
        assert!(
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
            "a guest name is guest<connection id>: {nick:?} (query {query:?})"
        );
        assert_eq!(welcome, welcome_line(room, &nick));
        assert_eq!(text(&mut ws).await, joined(&nick, room, 1));
        ws.close(None).await.expect("close");
    }
}

async fn binary(server: Arc<TestServer>, lang: &'static str) {
    let mut jo = enter(&server, &chat(lang), "bytes", "jo", 1).await;
    jo.send(WsMessage::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(text(&mut jo).await, "! binary messages are not chat");
    who(&mut jo, "bytes", 1).await;
}

async fn leaving(server: Arc<TestServer>, lang: &'static str) {
    let mut kai = enter(&server, &chat(lang), "leave", "kai", 1).await;
    let mut lu = enter(&server, &chat(lang), "leave", "lu", 2).await;
    assert_eq!(text(&mut kai).await, joined("lu", "leave", 2));
    lu.close(None).await.expect("close");
    assert_eq!(text(&mut kai).await, "* lu left");
    who(&mut kai, "leave", 1).await;
}

/// The tenant may publish [`SLOW_RATE`] messages a second: lines sent
/// faster than that are refused with the chat's warning. Sent until the
/// warning comes (a slow machine may spread the first ones over more than
/// a second), at most 50.
async fn rate(server: Arc<TestServer>, lang: &'static str) {
    let mut mo = server.connect(&format!("/slow-{lang}/rate?nick=mo")).await;
    assert_eq!(text(&mut mo).await, welcome_line("rate", "mo"));
    // The join notice itself may already be over the rate.
    let mut warned = false;
    for i in 0..50 {
        say(&mut mo, &format!("line {i}")).await;
        loop {
            let got = text(&mut mo).await;
            if got == "! slow down: the server is over its message rate" {
                warned = true;
                break;
            }
            if got == format!("mo: line {i}") {
                break;
            }
            assert!(
                got.starts_with("* mo joined rate") || got.starts_with("mo: line "),
                "unexpected {got:?}"
            );
        }
        if warned {
            break;
        }
    }
    assert!(warned, "50 lines went out without the rate warning");
}

async fn with_rust(server: Arc<TestServer>, lang: &'static str) {
    let mut rusty = enter(&server, "chat-rust", "mixed", "rusty", 1).await;
    let mut poly = enter(&server, &chat(lang), "mixed", "poly", 2).await;
    assert_eq!(text(&mut rusty).await, joined("poly", "mixed", 2));
    say(&mut poly, "hi from the other language").await;
    assert_eq!(text(&mut poly).await, "poly: hi from the other language");
    assert_eq!(text(&mut rusty).await, "poly: hi from the other language");
    say(&mut rusty, "/msg poly psst").await;
    assert_eq!(text(&mut poly).await, "[private] rusty: psst");
    assert_eq!(text(&mut rusty).await, "[to poly] psst");
    poly.close(None).await.expect("close");
    assert_eq!(text(&mut rusty).await, "* poly left");
}

// ---- the languages ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_chat_passes_the_chat_suite() {
    chat_suite(
        "rust",
        ModuleSource::Bundled {
            name: "chat",
            bytes: wsbox::bundled::CHAT_WASM,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chat_passes_the_chat_suite() {
    let Some(wasm) = built_example("chat-python", "python").await else {
        return;
    };
    chat_suite("python", ModuleSource::File(wasm)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_chat_passes_the_chat_suite() {
    let Some(wasm) = built_example("chat-js", "javascript").await else {
        return;
    };
    chat_suite("javascript", ModuleSource::File(wasm)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_chat_passes_the_chat_suite() {
    let Some(wasm) = built_example("chat-go", "go").await else {
        return;
    };
    chat_suite("go", ModuleSource::File(wasm)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_chat_passes_the_chat_suite() {
    let Some(wasm) = built_example("chat-c", "c").await else {
        return;
    };
    chat_suite("c", ModuleSource::File(wasm)).await;
}
