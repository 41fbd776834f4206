//! Costs of the per-connection instance model, on the bundled echo handler:
//! instantiate from the pool, a whole connection lifecycle (instantiate +
//! upgrade + open + close + drop), and one message round trip into wasm and
//! back (`on-message` → the guest's `write-message` → the engine's output),
//! and per message for a batch of 16 in one call (`on-messages` →
//! `write-messages`).
//!
//! Run: `cargo bench -p wsbox --bench instance` (criterion; add
//! `-- --warm-up-time 1 --measurement-time 2` for a quick pass).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsbox::config::{ModuleSource, RouteLimits, RuntimeConfig};
use wsbox::protocol::{Config as EngineConfig, Connection, Role};
use wsbox::runtime::{
    BatchMessage, CloseCause, CloseInfo, Effect, HandlerModule, InstanceLimits, Message,
    MessageBatch, MessageKind, MessageSpan, OpenInfo, Runtime, UpgradeRequest, to_socket_address,
};

fn request(id: u64) -> UpgradeRequest {
    UpgradeRequest {
        connection_id: id,
        path: "/echo".into(),
        query: String::new(),
        headers: vec![],
        positional_captures: vec![],
        named_captures: vec![],
        remote_address: to_socket_address(([127, 0, 0, 1], 1).into()),
        subprotocols: vec![],
        origin: None,
        origin_allowed: true,
    }
}

struct Setup {
    rt: tokio::runtime::Runtime,
    // Kept alive for the module's sake.
    _runtime: Runtime,
    module: std::sync::Arc<HandlerModule>,
    limits: InstanceLimits,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (runtime, module) = rt.block_on(async {
        let runtime = Runtime::new(&RuntimeConfig {
            max_instances: 1000,
            ..RuntimeConfig::default()
        })
        .expect("wasm runtime");
        let module = runtime
            .load_module(&ModuleSource::Bundled {
                name: "echo",
                bytes: wsbox::bundled::ECHO_WASM,
            })
            .expect("bundled echo module");
        (runtime, module)
    });
    let limits = InstanceLimits::for_route(&RouteLimits::default().sandbox(), Default::default());
    // Warm the pool's slots first.
    rt.block_on(async {
        for i in 0..200 {
            drop(module.instantiate(&limits, i).await.expect("instantiate"));
        }
    });
    Setup {
        rt,
        _runtime: runtime,
        module,
        limits,
    }
}

fn lifecycle(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("instance");
    g.throughput(Throughput::Elements(1));
    g.bench_function("instantiate", |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let t = Instant::now();
                    let inst = s
                        .module
                        .instantiate(&s.limits, i)
                        .await
                        .expect("instantiate");
                    total += t.elapsed();
                    // Dropping returns the slot to the pool; timed below.
                    drop(inst);
                }
                total
            })
        })
    });
    g.bench_function("instantiate_upgrade_open_close_drop", |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let t = Instant::now();
                for i in 0..iters {
                    let mut inst = s
                        .module
                        .instantiate(&s.limits, i)
                        .await
                        .expect("instantiate");
                    inst.upgrade(request(i)).await.expect("upgrade");
                    inst.set_connection(true, 0);
                    inst.on_open(&OpenInfo {
                        subprotocol: None,
                        extensions: String::new(),
                    })
                    .await
                    .expect("open");
                    inst.on_close(&CloseInfo {
                        code: Some(1000),
                        reason: String::new(),
                        cause: CloseCause::PeerClosed,
                    })
                    .await
                    .expect("close");
                    drop(inst);
                }
                t.elapsed()
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("instance/on_message_echo");
    let mut inst =
        s.rt.block_on(s.module.instantiate(&s.limits, 0))
            .expect("instantiate");
    let mut engine = Connection::new(EngineConfig::new(Role::Server));
    let mut effects = Vec::new();
    let batch = |kind: MessageKind, size: usize, count: usize| MessageBatch {
        data: vec![b'x'; size * count],
        spans: vec![
            MessageSpan {
                kind,
                len: size as u32
            };
            count
        ],
    };
    for size in [20usize, 4096, 65536] {
        for (name, kind, count) in [
            ("text", MessageKind::Text, 1),
            ("binary", MessageKind::Binary, 1),
            ("text_batch16", MessageKind::Text, 16),
        ] {
            // Per message, so that a batch compares with single calls.
            g.throughput(Throughput::Bytes(size as u64));
            let mut msgs = batch(kind, size, count);
            let single = match kind {
                MessageKind::Text => Message::Text("x".repeat(size)),
                MessageKind::Binary => Message::Binary(vec![b'x'; size]),
            };
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|iters| {
                    s.rt.block_on(async {
                        let mut done = 0u64;
                        let t = Instant::now();
                        while done < iters {
                            inst.set_connection(true, 0);
                            if count == 1 {
                                inst.on_message(single.clone()).await.expect("on_message");
                            } else {
                                inst.on_messages(&mut msgs).await.expect("on_messages");
                            }
                            // Applied as the connection task does.
                            inst.take_effects(&mut effects);
                            for effect in effects.drain(..) {
                                match effect {
                                    Effect::Write(Message::Text(t)) => {
                                        engine.send_text(&t).expect("open");
                                    }
                                    Effect::Write(Message::Binary(b)) => {
                                        engine.send_binary(&b).expect("open");
                                    }
                                    Effect::WriteBatch(batch) => {
                                        for m in batch.messages() {
                                            let _ = match m {
                                                BatchMessage::Text(t) => engine.send_text(t),
                                                BatchMessage::Binary(b) => engine.send_binary(b),
                                            };
                                        }
                                    }
                                    other => panic!("unexpected effect {other:?}"),
                                }
                            }
                            let n = engine.pending_output_len();
                            assert!(n >= size * count, "the echo was written");
                            engine.consume_output(n);
                            done += count as u64;
                        }
                        // Scaled to `iters` messages when a batch overshoots.
                        t.elapsed().mul_f64(iters as f64 / done as f64)
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
