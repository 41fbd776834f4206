//! A failing handler hurts only its own connection.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use wsbox_tests::*;

#[tokio::test]
async fn a_trap_closes_only_its_connection_with_1011() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut victim = server.connect("/chaos").await;
    let mut bystander = server.connect("/chaos").await;
    assert_eq!(ask(&mut bystander, "before").await, "before");
    victim.send(Message::text("!trap")).await.unwrap();
    assert_eq!(expect_close(&mut victim).await.0, 1011);
    assert_eq!(ask(&mut bystander, "after").await, "after");
    // The module is still deployed: new connections work.
    let mut fresh = server.connect("/chaos").await;
    assert_eq!(ask(&mut fresh, "new").await, "new");
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_deadline_while_others_keep_echoing() {
    let limits = wsbox::config::RouteLimits {
        cpu_time_per_event: Duration::from_millis(800),
        ..test_limits()
    };
    let server = TestServer::start(chaos_config("/chaos", limits)).await;
    let mut looper = server.connect("/chaos").await;
    let mut bystander = server.connect("/chaos").await;
    let started = Instant::now();
    looper.send(Message::text("!loop")).await.unwrap();
    // While the loop burns its CPU budget, echoes keep flowing.
    let mut echoes = 0;
    let mut looper_closed = tokio::spawn(async move { expect_close(&mut looper).await });
    let close = loop {
        tokio::select! {
            close = &mut looper_closed => break close.expect("looper task"),
            reply = ask(&mut bystander, "ping-pong") => {
                assert_eq!(reply, "ping-pong");
                echoes += 1;
            }
        }
    };
    assert_eq!(close.0, 1011);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "stopped too early"
    );
    assert!(
        echoes >= 10,
        "only {echoes} echoes while the other handler looped"
    );
    wait_for_log("exceeded its CPU time").await;
    // An ask cut short by the close may have left one echo in flight.
    bystander.send(Message::text("after")).await.unwrap();
    loop {
        match next_message(&mut bystander).await {
            Message::Text(t) if t == "after" => break,
            Message::Text(t) if t == "ping-pong" => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn memory_over_the_limit_traps_only_that_connection() {
    let server = TestServer::start(chaos_config("/chaos", test_limits())).await;
    let mut hog = server.connect("/chaos").await;
    let mut bystander = server.connect("/chaos").await;
    assert_eq!(ask(&mut hog, "!alloc 4").await, "alloc:4");
    hog.send(Message::text("!alloc 64")).await.unwrap();
    assert_eq!(expect_close(&mut hog).await.0, 1011);
    assert_eq!(ask(&mut bystander, "fine").await, "fine");
}

/// A route whose output cap is small: twice 64 KiB plus 1 MiB.
fn small_output_config() -> wsbox::config::Config {
    chaos_config(
        "/chaos",
        wsbox::config::RouteLimits {
            max_message_size: 64 * 1024,
            ..test_limits()
        },
    )
}

#[tokio::test]
async fn write_and_ping_floods_are_closed_with_a_close_frame_that_says_why() {
    let server = TestServer::start(small_output_config()).await;
    let mut flooder = server.connect("/chaos").await;
    let mut bystander = server.connect("/chaos").await;
    // 3,000 messages of 1,000 bytes: over the ~1.1 MiB cap. The client
    // reads nothing until the handler is done writing.
    flooder
        .send(Message::text("!burst 3000 1000"))
        .await
        .unwrap();
    wait_for_log("burst: write failed").await;
    let mut received = 0;
    let close = loop {
        match next_message(&mut flooder).await {
            Message::Text(t) if t.starts_with("burst-") => received += 1,
            Message::Close(Some(frame)) => break (u16::from(frame.code), frame.reason.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close, (1011, "output limit exceeded".to_string()));
    assert!(
        received > 500 && received < 3000,
        "{received} messages arrived before the close"
    );
    // The handler learns why: the cause is `output-limit` (0.2.0).
    wait_for_log("chaos closed: code=1011 reason=output limit exceeded cause=output-limit").await;
    assert_eq!(ask(&mut bystander, "still here").await, "still here");

    // Pings count against the same cap (in this test, after the first
    // close was seen: both end with the same log line).
    let mut raw = raw_handshake(server.addr, "/chaos").await;
    // 50,000 pings of 100 bytes (5 MiB) while the client reads nothing.
    raw.write_all(&client_frame(
        true,
        0x1,
        b"!pingflood 50000",
        Some([1, 2, 3, 4]),
    ))
    .await
    .unwrap();
    let log = wait_for_log("pingflood: ping").await;
    assert!(log.contains("failed: closed"), "{log}");
    // Everything queued is pings, then the close frame.
    let mut pings = 0;
    loop {
        let (opcode, payload) = read_frame(&mut raw).await;
        match opcode {
            0x9 => pings += 1,
            0x8 => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1011);
                assert_eq!(&payload[2..], b"output limit exceeded");
                break;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert!(
        pings > 1000 && pings < 50_000,
        "{pings} pings before the close"
    );
}

/// SIGTERM ends the process within `drain_time` plus a small margin even
/// while one handler spins (with a CPU budget far beyond the drain time)
/// and another is blocked in a WASI sleep.
#[tokio::test]
async fn sigterm_exits_within_the_drain_time_whatever_the_handlers_do() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let WsboxProcess {
        mut child,
        addr,
        stderr,
    } = WsboxProcess::start("drain_time = \"1s\"", "cpu_time_per_event = \"120s\"").await;
    let mut stderr = BufReader::new(stderr).lines();

    let url = format!("ws://{addr}/chaos");
    // More spinners than worker threads, and a sleeper.
    let mut clients = Vec::new();
    for command in ["!loop loudly", "!loop loudly", "!loop loudly", "!sleep 600"] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        ws.send(Message::text(command)).await.unwrap();
        clients.push(ws);
    }
    let (mut spinning, mut sleeping) = (0, false);
    while !(spinning == 3 && sleeping) {
        let line = tokio::time::timeout(WAIT, stderr.next_line())
            .await
            .expect("the handlers started in time")
            .unwrap()
            .expect("wsbox exited early");
        spinning += usize::from(line.contains("chaos: spinning"));
        sleeping |= line.contains("chaos: sleeping 600 s");
    }
    // Keep reading stderr so a full pipe cannot block the server.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    let pid = child.id().expect("pid").to_string();
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    // drain_time 1 s + the 1 s margin; the rest is slack for a loaded machine.
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("wsbox exited within 20 s of SIGTERM")
        .unwrap();
    let took = sent.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900),
        "exited before the drain time: {took:?}"
    );
    drop(clients);
}

/// Other parts of the server reach a connection through its mailbox: a
/// message goes straight to the peer, a close reaches the peer and the
/// handler's `on_close`.
#[tokio::test]
async fn the_server_handle_sends_to_and_closes_one_connection() {
    let server = TestServer::start(chaos_config("/mailbox", test_limits())).await;
    let mut target = server.connect("/mailbox").await;
    assert_eq!(ask(&mut target, "first").await, "first");
    let ids = server.handle.connection_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0];
    let mut other = server.connect("/mailbox").await;
    assert_eq!(ask(&mut other, "other").await, "other");

    server
        .handle
        .send(id, wsbox::protocol::Message::Text("from the host".into()))
        .unwrap();
    server
        .handle
        .send(id, wsbox::protocol::Message::Binary(vec![1, 2, 3].into()))
        .unwrap();
    assert_eq!(
        next_message(&mut target).await,
        Message::text("from the host")
    );
    assert_eq!(
        next_message(&mut target).await,
        Message::binary(vec![1, 2, 3])
    );
    // Nothing else came: the next reply is the echo of what we send now.
    assert_eq!(ask(&mut target, "second").await, "second");

    assert!(matches!(
        server.handle.close(id, 1005, ""),
        Err(wsbox::server::ConnectionCommandError::InvalidClose(_))
    ));
    server
        .handle
        .close(id, 4001, "closed by the operator")
        .unwrap();
    assert_eq!(
        expect_close(&mut target).await,
        (4001, "closed by the operator".to_string())
    );
    wait_for_log("chaos closed: code=4001 reason=closed by the operator cause=closed-by-server")
        .await;
    // The other connection is untouched; the closed one is gone.
    assert_eq!(ask(&mut other, "still").await, "still");
    assert_eq!(
        server
            .handle
            .send(id, wsbox::protocol::Message::Text("late".into())),
        Err(wsbox::server::ConnectionCommandError::UnknownConnection(id))
    );
}

/// A failed instance is dropped at once, freeing its pool slot, even while
/// its connection still waits for the peer's close reply.
#[tokio::test]
async fn a_trapped_instance_frees_its_pool_slot_before_the_connection_ends() {
    let mut config = chaos_config("/slot", test_limits());
    config.runtime.max_instances = 1;
    let server = TestServer::start(config).await;
    let mut raw = raw_handshake(server.addr, "/slot").await;
    raw.write_all(&client_frame(true, 0x1, b"!trap", Some([9, 8, 7, 6])))
        .await
        .unwrap();
    // The 1011 close arrives; we do not answer it, so the connection
    // lingers in the closing handshake for seconds.
    assert_eq!(read_close_code(&mut raw).await, 1011);
    let mut next = server.connect("/slot").await;
    assert_eq!(ask(&mut next, "slot free").await, "slot free");
    drop(raw);
}

/// A handler blocked in a WASI wait uses no CPU, so only a wall-clock
/// bound stops it: the call is cancelled, its slot freed, the connection
/// closed with 1011; a blocked `upgrade` answers 503.
#[tokio::test]
async fn a_call_blocked_in_wasi_is_cancelled_at_its_wall_clock_bound() {
    let mut config = chaos_config(
        "/blocked",
        wsbox::config::RouteLimits {
            wall_time_per_call: Duration::from_millis(500),
            ..test_limits()
        },
    );
    config.runtime.max_instances = 2;
    let server = TestServer::start(config).await;
    let mut bystander = server.connect("/blocked").await;
    let mut sleeper = server.connect("/blocked").await;
    sleeper.send(Message::text("!sleep 600")).await.unwrap();
    let (code, _) = expect_close(&mut sleeper).await;
    assert_eq!(code, 1011);
    wait_for_log("did not return within its wall-clock time of 500ms").await;
    assert_eq!(ask(&mut bystander, "unaffected").await, "unaffected");
    // Its slot is free again: a second connection fits beside the bystander.
    let mut next = server.connect("/blocked").await;
    assert_eq!(ask(&mut next, "fits").await, "fits");
    drop(next);
    // The upgrade below needs that slot again.
    pool_holds_at_most(&server, 1).await;

    let resp = raw_request(
        server.addr,
        "GET /blocked?sleep=600 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(
        resp.contains("did not decide the upgrade within 500ms"),
        "{resp}"
    );
}

/// A call still running when its peer goes away is cancelled then, not at
/// its wall-clock bound (ten minutes here): the slot is free for the next
/// connection while the sleep has most of its time to go.
#[tokio::test]
async fn a_call_is_cancelled_when_its_peer_goes_away() {
    let mut config = chaos_config(
        "/gone",
        wsbox::config::RouteLimits {
            wall_time_per_call: Duration::from_secs(600),
            ..test_limits()
        },
    );
    config.runtime.max_instances = 1;
    let server = TestServer::start(config).await;
    let mut sleeper = server.connect("/gone").await;
    sleeper.send(Message::text("!sleep 599")).await.unwrap();
    wait_for_log("chaos: sleeping 599 s").await;
    drop(sleeper);
    wait_for_log("the peer went away during a handler call; call cancelled").await;
    // The log line comes before the connection task frees the instance.
    pool_holds_at_most(&server, 0).await;
    let mut next = server.connect("/gone").await;
    assert_eq!(ask(&mut next, "slot free").await, "slot free");
}

/// `cpu_time_per_second` throttles a connection that keeps its handler
/// busy: at 10 ms/s, calls that spin for 100 ms of wall time spend the
/// 300 ms saved up within a few calls (however loaded the machine, each
/// uses some CPU time); the next call then waits for the debt to be earned
/// back, as long as the server says, while a bystander is served.
#[tokio::test]
async fn a_connection_over_its_cpu_time_per_second_waits_for_it() {
    let server = TestServer::start(chaos_config(
        "/allowance",
        wsbox::config::RouteLimits {
            cpu_time_per_second: Duration::from_millis(10),
            ..test_limits()
        },
    ))
    .await;
    let mut worker = server.connect("/allowance").await;
    let mut bystander = server.connect("/allowance").await;
    let throttled = |logs: String| {
        logs.lines()
            .find(|l| l.contains("route=/allowance") && l.contains("its next call waits"))
            .map(|l| {
                l.split("wait_ms=")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("wait_ms in the line")
            })
    };
    for _ in 0..60 {
        let started = Instant::now();
        assert_eq!(ask(&mut worker, "!work 100").await, "worked");
        let took = started.elapsed();
        assert_eq!(ask(&mut bystander, "meanwhile").await, "meanwhile");
        if let Some(wait_ms) = throttled(logs()) {
            assert!(
                took >= Duration::from_millis(wait_ms),
                "the call did not wait the {wait_ms} ms announced: {took:?}"
            );
            // And the metrics count it.
            let metrics = server.handle.encode_metrics(0, 0).expect("metrics");
            let line = metrics
                .lines()
                .find(|l| {
                    l.starts_with("wsbox_handler_throttled_total{") && l.contains("/allowance")
                })
                .unwrap_or_else(|| panic!("no throttled counter in {metrics}"));
            assert!(!line.ends_with(" 0"), "{line}");
            return;
        }
    }
    panic!("60 busy calls at 10 ms/s were never throttled");
}

/// `route_cpu_time_per_second` bounds what all of a route's connections
/// use together: two connections taking turns with busy calls, each well
/// within its own allowance, get the route throttled (at 50 ms/s here),
/// for as long as the server says.
#[tokio::test]
async fn a_route_over_its_cpu_time_per_second_waits_for_it() {
    let server = TestServer::start(chaos_config(
        "/route-cpu",
        wsbox::config::RouteLimits {
            route_cpu_time_per_second: Some(Duration::from_millis(50)),
            cpu_time_per_second: Duration::from_secs(1),
            ..test_limits()
        },
    ))
    .await;
    let mut a = server.connect("/route-cpu").await;
    let mut b = server.connect("/route-cpu").await;
    let throttled = |logs: String| {
        logs.lines()
            .find(|l| {
                l.contains("route=/route-cpu") && l.contains("route over its CPU time per second")
            })
            .map(|l| {
                l.split("wait_ms=")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("wait_ms in the line")
            })
    };
    for round in 0..60 {
        let ws = if round % 2 == 0 { &mut a } else { &mut b };
        let started = Instant::now();
        assert_eq!(ask(ws, "!work 100").await, "worked");
        let took = started.elapsed();
        if let Some(wait_ms) = throttled(logs()) {
            assert!(
                took >= Duration::from_millis(wait_ms),
                "the call did not wait the {wait_ms} ms announced: {took:?}"
            );
            assert!(
                !logs().lines().any(|l| l.contains("route=/route-cpu")
                    && l.contains("handler over its CPU time per second")),
                "each connection stayed within its own allowance"
            );
            return;
        }
    }
    panic!("60 busy calls at 50 ms/s for the route were never throttled");
}

/// The client picks the batch size (by how many frames it writes at once),
/// so a batch must not multiply the handler's CPU budget: 16 spinning
/// messages in one write get one call's budget (300 ms here), not 16.
#[tokio::test]
async fn a_batch_gets_one_calls_cpu_budget_not_one_per_message() {
    let server = TestServer::start(chaos_config("/batch-spin", test_limits())).await;
    let mut raw = raw_handshake(server.addr, "/batch-spin").await;
    let mut frames = Vec::new();
    for i in 0..16u8 {
        frames.extend(client_frame(true, 0x1, b"!loop", Some([i, 1, 2, 3])));
    }
    let started = Instant::now();
    raw.write_all(&frames).await.unwrap();
    assert_eq!(read_close_code(&mut raw).await, 1011);
    // 16 x 300 ms would be 4.8 s of CPU at least; one budget is 0.3 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "killed after {took:?}");
    wait_for_log("exceeded its CPU time of 300ms for one call").await;
}

/// All instances together stay within `runtime.max_memory_total`: past it
/// a new connection gets 503 with a body that says why, the connections
/// already open carry on, and the memory comes back when they close.
#[tokio::test]
async fn the_process_memory_budget_refuses_new_instances_not_old_ones() {
    let mut config = chaos_config("/budget", test_limits());
    config.runtime.max_memory_total = 4 << 20;
    let server = TestServer::start(config).await;
    let mut open = Vec::new();
    let refused = loop {
        assert!(open.len() < 16, "16 instances fit in 4 MiB?");
        match tokio_tungstenite::connect_async(server.url("/budget")).await {
            Ok((ws, _)) => open.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 503);
                break String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                    .into_owned();
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(!open.is_empty(), "not even one instance fitted");
    assert!(
        refused.contains("memory for handlers is spent"),
        "{refused}"
    );
    for ws in &mut open {
        assert_eq!(ask(ws, "still served").await, "still served");
    }
    // Closing one gives its memory back: a new connection fits again.
    let mut first = open.remove(0);
    first
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "budget test bye".into(),
        }))
        .await
        .unwrap();
    let _ = expect_close(&mut first).await;
    wait_for_log("reason=budget test bye").await;
    // The memory comes back when the instance is dropped, just after that
    // line (and `on_close`): ask until a new connection fits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        match tokio_tungstenite::connect_async(server.url("/budget")).await {
            Ok((ws, _)) => break ws,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no room after a connection closed: {e}"),
        }
    };
    assert_eq!(ask(&mut again, "fits again").await, "fits again");
}

/// A stderr nobody reads (a full pipe) must not stall the server: log
/// lines are dropped instead of blocking the worker that logs them.
#[tokio::test]
async fn a_stuck_stderr_does_not_stall_the_server() {
    // Its stderr is a pipe this test never reads: it fills after 64 KiB.
    let mut wsbox = WsboxProcess::start("", "log_lines_per_second = 100000").await;
    let addr = wsbox.addr.clone();
    let url = format!("ws://{addr}/chaos");
    let (mut flooder, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut bystander, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Megabytes of log at once, far more than the pipe holds.
    assert_eq!(
        ask(&mut flooder, "!logflood 3000 4000 stuck").await,
        "flooded"
    );
    for i in 0..50 {
        let text = format!("echo {i}");
        assert_eq!(ask(&mut bystander, &text).await, text);
    }
    assert_eq!(
        ask(&mut flooder, "!logflood 3000 4000 stuck").await,
        "flooded"
    );
    let _ = wsbox.child.kill().await;
}

/// One route full of spinning handlers takes at most its share of the
/// workers (`max_concurrent_calls`): a handler on another route keeps
/// echoing while they burn their budgets.
#[tokio::test]
async fn spinners_on_one_route_leave_workers_for_another() {
    let spin_limits = wsbox::config::RouteLimits {
        cpu_time_per_event: Duration::from_millis(400),
        max_concurrent_calls: Some(1),
        ..test_limits()
    };
    let mut config = chaos_config("/spin", spin_limits);
    let mut echo_route = chaos_config("/calm", test_limits()).routes.remove(0);
    echo_route.limits.max_concurrent_calls = Some(1);
    config.routes.push(echo_route);
    let server = TestServer::start(config).await;
    let mut bystander = server.connect("/calm").await;
    let mut spinners = Vec::new();
    let started = Instant::now();
    for _ in 0..6 {
        let mut ws = server.connect("/spin").await;
        ws.send(Message::text("!loop")).await.unwrap();
        spinners.push(tokio::spawn(async move { expect_close(&mut ws).await }));
    }
    let mut echoes = 0;
    while spinners.iter().any(|s| !s.is_finished()) {
        assert_eq!(ask(&mut bystander, "calm").await, "calm");
        echoes += 1;
    }
    for s in spinners {
        assert_eq!(s.await.unwrap().0, 1011);
    }
    // 6 x 400 ms of CPU through one turn at a time take at least 2.4 s
    // (two workers side by side would need half that).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2300),
        "spinners done in {took:?}"
    );
    assert!(echoes >= 20, "only {echoes} echoes while the spinners ran");
}

/// A call blocked in a WASI wait holds no turn: with one turn for the
/// route, the route's other connections are still served meanwhile.
#[tokio::test]
async fn a_sleeping_handler_does_not_hold_its_routes_turn() {
    let limits = wsbox::config::RouteLimits {
        max_concurrent_calls: Some(1),
        ..test_limits()
    };
    let server = TestServer::start(chaos_config("/nap", limits)).await;
    let mut sleeper = server.connect("/nap").await;
    let mut neighbour = server.connect("/nap").await;
    sleeper.send(Message::text("!sleep 3")).await.unwrap();
    wait_for_log("chaos: sleeping 3 s").await;
    for i in 0..5 {
        let text = format!("while it sleeps {i}");
        assert_eq!(ask(&mut neighbour, &text).await, text);
    }
    // Served while it slept: had the neighbour waited for the sleeper's
    // turn, the sleeper's reply (written first) would be here by now.
    let early = tokio::time::timeout(Duration::from_millis(50), next_message(&mut sleeper)).await;
    assert!(
        early.is_err(),
        "the neighbour was served only after the sleep"
    );
    assert_eq!(next_message(&mut sleeper).await, Message::text("slept"));
}
