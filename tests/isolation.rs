//! A failing handler hurts only its own connection.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
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
