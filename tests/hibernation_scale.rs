//! Hibernation at scale, in a wsbox process of its own (the clients' sockets
//! count against this process's descriptors, the server's against its own):
//! hold N hibernated connections (19,000 by default, under this machine's
//! hard limit of 20,000 descriptors), measure the server's user-space RSS
//! and memory mappings per hibernated connection, and the wake latency
//! against a live connection's reply latency.
//!
//! Ignored by default (it takes minutes); `.ci/run` runs it:
//! `cargo test -p wsbox-tests --test hibernation_scale -- --ignored --nocapture`.
//! `WSBOX_HIB_N` sets N; `WSBOX_HIB_DEFLATE=1` negotiates permessage-deflate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use wsbox_tests::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn mappings(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("proc maps")
        .lines()
        .count()
}

/// The kernel's TCP memory, in pages (`/proc/net/sockstat`, `TCP: ... mem`).
fn tcp_mem_pages() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("TCP:"))
                .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A raw client: handshake (offering permessage-deflate when `deflate`).
async fn open(addr: &str, path: &str, deflate: bool) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
    let extension = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n"
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    if deflate {
        assert!(head.contains("permessage-deflate"), "{head}");
    }
    stream
}

/// Opens `n` connections, `at_once` at a time, each with one round trip.
async fn open_many(
    addr: &str,
    path: &str,
    deflate: bool,
    n: usize,
    at_once: usize,
) -> Vec<TcpStream> {
    futures_util::stream::iter(0..n)
        .map(|_| async move {
            let mut s = open(addr, path, deflate).await;
            round_trip(&mut s).await;
            s
        })
        .buffer_unordered(at_once)
        .collect()
        .await
}

/// Sends `count` and reads the reply (uncompressed: the counter's replies
/// are under the route's compression threshold).
async fn round_trip(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    stream
        .write_all(&client_frame(true, 0x1, b"count", Some([7, 7, 7, 7])))
        .await
        .expect("write");
    loop {
        let (opcode, payload) = read_frame(stream).await;
        if opcode == 0x1 {
            assert!(payload.starts_with(b"count "), "{payload:?}");
            return started.elapsed();
        }
    }
}

/// What the server's allocator reported after a trim (`malloc trimmed`).
#[derive(Debug, Clone, Copy)]
struct Trim {
    in_use: u64,
    free: u64,
    /// Bytes in chunks malloc maps on their own (large tables).
    mmapped: u64,
    /// How many hibernations the log had reported before this trim.
    after_hibernations: usize,
}

impl Trim {
    fn parse(line: &str) -> Option<Trim> {
        let field = |name: &str| -> Option<u64> {
            let rest = &line[line.find(&format!("{name}="))? + name.len() + 1..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        Some(Trim {
            in_use: field("heap_in_use")?,
            free: field("heap_free")?,
            mmapped: field("mmapped")?,
            after_hibernations: 0,
        })
    }
}

/// Slots of the server's instance pool (`max_instances` in its config).
const POOL_SLOTS: usize = 256;
/// Live connections held at once to use every pool slot (a few short of
/// all, so that no upgrade waits for room).
const POOL_WARM: usize = POOL_SLOTS - 8;
/// Hibernated connections opened before the measurement starts.
const WARM: usize = 64;

/// Closes with 1000 and waits for the server's answer and end of stream:
/// once the server has closed, its handler instance is gone.
async fn close_and_wait(stream: &mut TcpStream) {
    stream
        .write_all(&client_frame(true, 0x8, &[0x03, 0xe8], Some([1, 2, 3, 4])))
        .await
        .expect("write close");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long; .ci/run runs it"]
async fn hold_many_hibernated_connections() {
    let n = env_usize("WSBOX_HIB_N", 19_000);
    let wakes = env_usize("WSBOX_HIB_WAKES", 1_000).min(n);
    let deflate = std::env::var("WSBOX_HIB_DEFLATE").is_ok_and(|v| v == "1");
    let dir = std::env::temp_dir().join(format!("wsbox-hib-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let compression = if deflate { "[route.compression]\n" } else { "" };
    let config = dir.join("wsbox.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [runtime]\nmax_instances = {POOL_SLOTS}\nmax_memory_per_instance = \"64MiB\"\n\
             [[route]]\npath = \"/live\"\nmodule = {HIBERNATE_WASM:?}\nmemory_limit = \"32MiB\"\n\
             [[route]]\npath = \"/hib\"\nmodule = {HIBERNATE_WASM:?}\nmemory_limit = \"32MiB\"\n\
             hibernate_after = \"50ms\"\n{compression}"
        ),
    )
    .expect("config");
    let mut child = tokio::process::Command::new(wsbox_binary())
        .args(["serve", "--no-admin", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn,wsbox_server::server::connection=debug,wsbox_server::server::memory=debug,wsbox_server::server::upgrade=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start wsbox");
    let pid = child.id().expect("pid");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let addr = loop {
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("address in time")
            .expect("stdout")
            .expect("wsbox exited before listening");
        if let Some(rest) = line.strip_prefix("wsbox listening on ws://") {
            break rest.split(',').next().unwrap_or_default().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let _ = std::fs::remove_dir_all(&dir);
    // Count hibernations and allocator trims from the server's log.
    let hibernated = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let trims = Arc::new(std::sync::Mutex::new(Vec::<Trim>::new()));
    let trimmed = Arc::new(tokio::sync::Notify::new());
    {
        let hibernated = Arc::clone(&hibernated);
        let notify = Arc::clone(&notify);
        let trims = Arc::clone(&trims);
        let trimmed = Arc::clone(&trimmed);
        let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if line.contains("connection hibernated") {
                    hibernated.fetch_add(1, Ordering::Relaxed);
                    notify.notify_waiters();
                } else if line.contains("malloc trimmed") {
                    if let Some(mut trim) = Trim::parse(&line) {
                        trim.after_hibernations = hibernated.load(Ordering::Relaxed);
                        trims.lock().expect("trims").push(trim);
                        trimmed.notify_waiters();
                    }
                } else if line.contains("connection task") {
                    println!("server: {line}");
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("server: {line}");
                }
            }
        });
    }
    // The first allocator trim after `target` hibernations (each
    // hibernation asks for one; the server trims at most every 5 s): what
    // it reports, with RSS settled.
    let wait_trim = |target: usize| {
        let trims = Arc::clone(&trims);
        let trimmed = Arc::clone(&trimmed);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let woken = trimmed.notified();
                let found = trims
                    .lock()
                    .expect("trims")
                    .iter()
                    .find(|t| t.after_hibernations >= target)
                    .copied();
                if let Some(trim) = found {
                    return trim;
                }
                if tokio::time::timeout_at(deadline, woken).await.is_err() {
                    panic!("no allocator trim reported within 60 s");
                }
            }
        }
    };
    let wait_hibernated = |target: usize| {
        let hibernated = Arc::clone(&hibernated);
        let notify = Arc::clone(&notify);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            loop {
                let woken = notify.notified();
                if hibernated.load(Ordering::Relaxed) >= target {
                    return;
                }
                if tokio::time::timeout_at(deadline, woken).await.is_err() {
                    panic!(
                        "only {} of {target} hibernations",
                        hibernated.load(Ordering::Relaxed)
                    );
                }
            }
        }
    };

    let rss_start = rss_kib(pid);
    // Warm-up, first the pool: every instance slot used once, by as many
    // live connections at a time as there are slots. A freed slot's pages
    // stay resident for the next instance (`runtime.memory_keep_resident`,
    // fiber stacks), so without this the opening of N connections below,
    // dozens of them live at any moment, would first-touch up to all 256
    // slots and count those ~12 MB (bounded by `max_instances`, not by N)
    // as the hibernated connections' cost.
    for mut s in open_many(&addr, "/live", false, POOL_WARM, 64).await {
        close_and_wait(&mut s).await;
    }
    // Then the runtime's and allocator's per-thread state, which is not per
    // connection either.
    let mut warm = Vec::new();
    for _ in 0..WARM {
        let mut s = open(&addr, "/hib", deflate).await;
        round_trip(&mut s).await;
        warm.push(s);
    }
    wait_hibernated(WARM).await;
    let heap_before = wait_trim(WARM).await;
    let rss_before = rss_kib(pid);
    let maps_before = mappings(pid);
    let tcp_before = tcp_mem_pages();

    let started = Instant::now();
    let clients = open_many(&addr, "/hib", deflate, n, 32).await;
    let opened_in = started.elapsed();
    wait_hibernated(WARM + n).await;
    let heap_after = wait_trim(WARM + n).await;
    let rss_after = rss_kib(pid);
    let maps_after = mappings(pid);
    let tcp_after = tcp_mem_pages();

    let heap_per_conn = heap_after.in_use.saturating_sub(heap_before.in_use) as f64 / n as f64;
    let held_per_conn = (heap_after.in_use + heap_after.free)
        .saturating_sub(heap_before.in_use + heap_before.free) as f64
        / n as f64;
    let mmapped_per_conn = heap_after.mmapped.saturating_sub(heap_before.mmapped) as f64 / n as f64;
    println!(
        "HEAP N={n}: live heap {heap_per_conn:.0} B per hibernated connection; heap held (live + free in arenas) {held_per_conn:.0} B; \
         in chunks mapped on their own {mmapped_per_conn:.0} B; \
         before {heap_before:?}, after {heap_after:?}"
    );
    let per_conn_bytes = (rss_after.saturating_sub(rss_before) * 1024) as f64 / n as f64;
    let with_warmup_bytes = (rss_after.saturating_sub(rss_start) * 1024) as f64 / n as f64;
    let maps_per_conn = maps_after.saturating_sub(maps_before) as f64 / n as f64;
    let tcp_per_conn = (tcp_after.saturating_sub(tcp_before) * 4096) as f64 / n as f64;
    println!(
        "HIBERNATION N={n} deflate={deflate}: opened in {opened_in:?}; server RSS {rss_before} KiB -> {rss_after} KiB = {per_conn_bytes:.0} B per hibernated connection; \
         mappings {maps_before} -> {maps_after} ({maps_per_conn:.4} per connection); kernel TCP memory (both ends, loopback) {tcp_per_conn:.0} B per connection; \
         from before the warm-up ({rss_start} KiB: the pool's {POOL_WARM} slots first used, {} warm-up connections) {with_warmup_bytes:.0} B per connection",
        WARM
    );

    // Wake latency: message in -> reply out on a hibernated connection, vs
    // a live one.
    let mut clients = clients;
    let mut wake = Vec::with_capacity(wakes);
    for s in clients.iter_mut().take(wakes) {
        wake.push(round_trip(s).await);
    }
    // The live route has no compression: its reply latency is the baseline.
    let mut live_conn = open(&addr, "/live", false).await;
    round_trip(&mut live_conn).await;
    let mut live = Vec::with_capacity(wakes);
    for _ in 0..wakes {
        live.push(round_trip(&mut live_conn).await);
    }
    wake.sort();
    live.sort();
    println!(
        "WAKE LATENCY ({wakes} wakes): p50 {:?} p99 {:?}; LIVE reply: p50 {:?} p99 {:?}",
        percentile(&wake, 0.5),
        percentile(&wake, 0.99),
        percentile(&live, 0.5),
        percentile(&live, 0.99)
    );

    // Every connection is still held: the last ones answer too.
    for s in clients.iter_mut().rev().take(100) {
        round_trip(s).await;
    }
    assert_eq!(clients.len(), n);
    // No memory mapping per hibernated connection: what grows is bounded
    // by the pool (its slots' mappings split as they are first used, a few
    // per slot, 256 slots here), not by N.
    assert!(
        maps_after <= maps_before + 8 * POOL_SLOTS,
        "mappings grew from {maps_before} to {maps_after}"
    );
    let _ = child.kill().await;
}
