//! A handler for end-to-end tests: it echoes every message, and misbehaves
//! on command. Text messages starting with `!` are commands:
//!
//! | command                           | effect (replies are text)                                     |
//! |-----------------------------------|---------------------------------------------------------------|
//! | `!trap`                           | panics (the instance traps)                                   |
//! | `!loop`                           | spins forever                                                 |
//! | `!close [<code>\|none [<reason>]]`| `close(code, reason)`; on error replies `close-error:<name>`  |
//! | `!close-then-write`               | `close(4000, "bye")`, then writes and closes again, logging   |
//! | `!write-after-close-result`       | `close(4001, "x")`, then writes; logs `write after close: ..` |
//! | `!ping <payload>`                 | pings; replies `ping-error:<name>` on error only              |
//! | `!bigping`                        | pings 126 bytes; replies `ping-error:<name>` or `ping-ok`     |
//! | `!events`                         | replies the events seen: `open,ping:<data>,pong:<data>`       |
//! | `!info`                           | replies the connection as a JSON object                       |
//! | `!nodelay on\|off`                | `set_nodelay`; replies `nodelay:on\|off`                      |
//! | `!alloc <MiB>`                    | allocates and keeps that many MiB; replies `alloc:<total>`    |
//! | `!print <text>`                   | prints to stdout; replies `printed`                           |
//! | `!log <level> <text>`             | logs at that level; replies `logged`                          |
//! | `!json`                           | replies `{"hello":"world","n":42}`                            |
//! | `!burst <n> <size>`               | writes n texts `burst-<i>:bbb..` of size bytes, then pings    |
//! | `!bad-batch [utf8]`               | raw `write-messages` with bad spans (or bad UTF-8): must trap |
//!
//! The upgrade obeys the query string: `reject=<status>`,
//! `subprotocol=<name>`, `origin=allow|deny` (only consulted when the client
//! sends an `Origin` header) and `header=<name>:<value>` (repeatable).

use serde::{Serialize, Serializer};
use wsbox_guest::log::{self, Level};
use wsbox_guest::{CloseInfo, Message, Reject, UpgradeRequest, WebSocketHandler, Ws};

const MIB: usize = 1 << 20;

#[derive(Default)]
struct Chaos {
    events: Vec<String>,
    held: Vec<Vec<u8>>,
    /// The upgrade request, for the upgrade phase's later methods.
    request: Option<UpgradeRequest>,
}

impl Chaos {
    /// The first value of query parameter `name` of this connection's request.
    fn query(&self, name: &str) -> Option<&str> {
        self.request.as_ref()?.query_param(name)
    }
}

fn reply(ws: &Ws, text: impl Into<String>) {
    if ws.write_message(text.into()).is_err() {
        log::debug("reply dropped: the connection is closed");
    }
}

impl WebSocketHandler for Chaos {
    fn prepare(&mut self, request: &UpgradeRequest) -> Result<(), Reject> {
        self.request = Some(request.clone());
        let query = |name| self.query(name);
        if let Some(secs) = query("sleep").and_then(|s| s.parse::<u64>().ok()) {
            // A handshake that never gets decided in time.
            std::thread::sleep(std::time::Duration::from_secs(secs));
        }
        match query("reject") {
            Some(status) => Err(Reject::new(
                status.parse().unwrap_or(400),
                match query("long-reason").and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) => "r".repeat(n),
                    None => "rejected by chaos".to_owned(),
                },
            )
            .header("www-authenticate", "Bearer realm=\"chaos\"")),
            None => Ok(()),
        }
    }

    fn check_origin(&mut self, _origin: &str, host_verdict: bool) -> bool {
        match self.query("origin") {
            Some("allow") => true,
            Some("deny") => false,
            _ => host_verdict,
        }
    }

    fn select_subprotocol(&mut self, _offered: &[String]) -> Option<String> {
        self.query("subprotocol").map(str::to_owned)
    }

    fn upgrade_headers(&mut self, request: &UpgradeRequest) -> Vec<(String, String)> {
        if let Some(n) = self
            .query("many-headers")
            .and_then(|n| n.parse::<usize>().ok())
        {
            return (0..n)
                .map(|i| (format!("x-many-{i}"), "v".repeat(100)))
                .collect();
        }
        request
            .query_pairs()
            .filter(|(name, _)| *name == "header")
            .filter_map(|(_, header)| header.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect()
    }

    fn open(&mut self, _ws: &Ws) {
        self.events.push("open".to_owned());
    }

    fn on_message(&mut self, ws: &Ws, message: Message) {
        match message {
            Message::Text(text) if text.starts_with('!') => self.command(ws, &text),
            message => {
                let _ = ws.write_message(message);
            }
        }
    }

    fn on_ping(&mut self, _ws: &Ws, data: &[u8]) {
        self.events
            .push(format!("ping:{}", String::from_utf8_lossy(data)));
    }

    fn on_pong(&mut self, _ws: &Ws, data: &[u8]) {
        self.events
            .push(format!("pong:{}", String::from_utf8_lossy(data)));
    }

    fn on_close(&mut self, _ws: &Ws, info: &CloseInfo) {
        let code = info.code.map_or("none".to_owned(), |code| code.to_string());
        log::info(format!(
            "chaos closed: code={code} reason={} cause={}",
            info.reason, info.cause
        ));
    }
}

impl Chaos {
    fn command(&mut self, ws: &Ws, text: &str) {
        let (command, arg) = match text.split_once(' ') {
            Some((command, arg)) => (command, Some(arg)),
            None => (text, None),
        };
        match (command, arg) {
            ("!trap", _) => panic!("chaos: trap requested"),
            ("!sleep", Some(secs)) => {
                // Blocks in a WASI clock wait: no CPU time is used.
                let secs = secs.parse::<u64>().unwrap_or(1);
                log::info(format!("chaos: sleeping {secs} s"));
                std::thread::sleep(std::time::Duration::from_secs(secs));
                reply(ws, "slept");
            }
            ("!work", Some(ms)) => {
                // Busy for about MS milliseconds of CPU, then answers.
                let ms = ms.parse::<u64>().unwrap_or(1);
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                let mut spins = 0u64;
                while std::time::Instant::now() < until {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
                reply(ws, "worked");
            }
            ("!loop", arg) => {
                if arg == Some("loudly") {
                    log::info("chaos: spinning");
                }
                let mut spins = 0u64;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            ("!close", None) => close_or_reply(ws, None, None),
            ("!close", Some(arg)) => {
                let (code, reason) = match arg.split_once(' ') {
                    Some((code, reason)) => (code, Some(reason)),
                    None => (arg, None),
                };
                match code {
                    "none" => close_or_reply(ws, None, reason),
                    code => match code.parse() {
                        Ok(code) => close_or_reply(ws, Some(code), reason),
                        Err(_) => reply(ws, "close-error:invalid-code"),
                    },
                }
            }
            ("!close-then-write", _) => {
                if let Err(e) = ws.close(Some(4000), Some("bye")) {
                    log::error(format!("close-then-write: close failed: {e}"));
                }
                match ws.write_message("x") {
                    Ok(()) => log::info("close-then-write: write after close: write-ok"),
                    Err(_) => log::info("close-then-write: write after close: write-error:closed"),
                }
                match ws.close(None, None) {
                    Ok(()) => log::info("close-then-write: second close: ok"),
                    Err(e) => log::error(format!("close-then-write: second close failed: {e}")),
                }
            }
            ("!write-after-close-result", _) => {
                if let Err(e) = ws.close(Some(4001), Some("x")) {
                    log::error(format!("write-after-close-result: close failed: {e}"));
                }
                let result = match ws.write_message("after") {
                    Ok(()) => "write-ok",
                    Err(_) => "write-error:closed",
                };
                log::warn(format!("write after close: {result}"));
            }
            ("!ping", arg) => {
                if let Err(e) = ws.ping(arg.unwrap_or("")) {
                    reply(ws, format!("ping-error:{}", e.name()));
                }
            }
            ("!pingflood", Some(n)) => {
                // `!pingflood N`: N pings of 100 bytes in a row, until one fails.
                let n = n.parse::<usize>().unwrap_or(0);
                for i in 0..n {
                    if let Err(e) = ws.ping([b'f'; 100]) {
                        return log::warn(format!("pingflood: ping {i} failed: {}", e.name()));
                    }
                }
                log::warn(format!("pingflood: all {n} pings queued"));
            }
            ("!bigping", _) => match ws.ping([b'p'; 126]) {
                Ok(()) => reply(ws, "ping-ok"),
                Err(e) => reply(ws, format!("ping-error:{}", e.name())),
            },
            ("!burst", Some(arg)) => {
                // `!burst N SIZE`: N numbered text messages of SIZE bytes, then
                // a ping: all queued in the SDK's outbox, in order.
                let (n, size) = arg.split_once(' ').unwrap_or((arg, "16"));
                let (Ok(n), Ok(size)) = (n.parse::<usize>(), size.parse::<usize>()) else {
                    return reply(ws, "burst-error:bad-arguments");
                };
                for i in 0..n {
                    let mut text = format!("burst-{i}:");
                    text.extend(std::iter::repeat_n('b', size.saturating_sub(text.len())));
                    if ws.write_message(text).is_err() {
                        return log::warn("burst: write failed");
                    }
                }
                if let Err(e) = ws.ping("after-burst") {
                    log::warn(format!("burst: ping failed: {e}"));
                }
            }
            ("!bad-batch", arg) => {
                // Raw `write-messages` calls the SDK never makes.
                use wsbox_guest::__private::bindings::wsbox::websocket::types;
                let Some(conn) = ws.__host_connection() else {
                    return reply(ws, "bad-batch needs the host");
                };
                let (data, kind): (&[u8], _) = match arg {
                    Some("utf8") => (b"ok\xff", types::MessageKind::Text),
                    _ => (b"short", types::MessageKind::Binary),
                };
                let len = if arg == Some("utf8") { 3 } else { 99 };
                let spans = [types::MessageSpan { kind, len }];
                let result = conn.write_messages(types::MessageBatchParam {
                    data,
                    spans: &spans,
                });
                reply(ws, format!("bad-batch returned {result:?}"));
            }
            ("!events", _) => reply(ws, self.events.join(",")),
            ("!info", _) => {
                let remote_addr = ws.request().remote_addr.to_string();
                if let Err(e) = ws.write_json(&Info::new(ws, &remote_addr)) {
                    log::warn(format!("!info: {e}"));
                }
            }
            ("!nodelay", Some(on @ ("on" | "off"))) => {
                ws.set_nodelay(on == "on");
                reply(ws, format!("nodelay:{on}"));
            }
            ("!alloc", Some(mib)) => match mib.parse::<usize>() {
                Ok(mib) => {
                    // Filled with a non-zero byte so that every page is touched.
                    self.held.extend((0..mib).map(|_| vec![0xa5; MIB]));
                    reply(ws, format!("alloc:{}", self.held.len()));
                }
                Err(_) => reply(ws, "alloc-error:bad-size"),
            },
            ("!print", arg) => {
                println!("{}", arg.unwrap_or(""));
                reply(ws, "printed");
            }
            ("!log", Some(arg)) => {
                let (level, text) = arg.split_once(' ').unwrap_or((arg, ""));
                let level = match level {
                    "trace" => Level::Trace,
                    "debug" => Level::Debug,
                    "info" => Level::Info,
                    "warn" => Level::Warn,
                    "error" => Level::Error,
                    _ => return reply(ws, "log-error:unknown-level"),
                };
                log::log(level, text);
                reply(ws, "logged");
            }
            ("!logflood", Some(arg)) => {
                // `!logflood N SIZE TAG`: N log lines of SIZE bytes, then N
                // stdout lines, each starting with TAG.
                let mut parts = arg.splitn(3, ' ');
                let n = parts
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                let size = parts
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(10);
                let tag = parts.next().unwrap_or("flood");
                for i in 0..n {
                    let mut line = format!("{tag} log {i} ");
                    line.extend(std::iter::repeat_n('x', size.saturating_sub(line.len())));
                    log::info(line);
                }
                for i in 0..n {
                    println!("{tag} stdout {i}");
                }
                reply(ws, "flooded");
            }
            ("!clock", _) => {
                // The wall clock as the handler sees it, in ns since the epoch.
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                reply(ws, format!("wall:{}", wall.as_nanos()));
            }
            ("!json", _) => {
                if let Err(e) = ws.write_json(&Hello {
                    hello: "world",
                    n: 42,
                }) {
                    log::warn(format!("!json: {e}"));
                }
            }
            (command, _) => reply(ws, format!("unknown-command:{command}")),
        }
    }
}

fn close_or_reply(ws: &Ws, code: Option<u16>, reason: Option<&str>) {
    if let Err(e) = ws.close(code, reason) {
        reply(ws, format!("close-error:{}", e.name()));
    }
}

#[derive(Serialize)]
struct Hello {
    hello: &'static str,
    n: u32,
}

/// The `!info` reply. Field order is the JSON key order.
#[derive(Serialize)]
struct Info<'a> {
    path: &'a str,
    query: &'a str,
    args: &'a [String],
    kwargs: Kwargs<'a>,
    subprotocol: Option<&'a str>,
    origin: Option<&'a str>,
    remote_addr: &'a str,
    connection_id: u64,
}

impl<'a> Info<'a> {
    fn new(ws: &'a Ws, remote_addr: &'a str) -> Self {
        let request = ws.request();
        Self {
            path: &request.path,
            query: &request.query,
            args: &request.path_args,
            kwargs: Kwargs(&request.path_kwargs),
            subprotocol: ws.selected_subprotocol(),
            origin: request.origin.as_deref(),
            remote_addr,
            connection_id: request.connection_id,
        }
    }
}

/// Named captures as a JSON object, in the order received.
struct Kwargs<'a>(&'a [(String, String)]);

impl Serialize for Kwargs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

wsbox_guest::export_handler!(Chaos);
