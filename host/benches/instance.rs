//! Costs of the per-connection instance model, on the bundled echo handler:
//! instantiate from the pool, a whole connection lifecycle, and one message
//! round trip into wasm and back.
//!
//! Run: `cargo bench -p wsbox --bench instance`

use std::time::{Duration, Instant};

use wsbox::config::{ModuleSource, RouteLimits, RuntimeConfig};
use wsbox::protocol::{Config as EngineConfig, Connection, Role};
use wsbox::runtime::{
    CloseCause, CloseInfo, ConnectionInfo, InstanceLimits, Message, Runtime, UpgradeRequest,
};

fn request(id: u64) -> UpgradeRequest {
    UpgradeRequest {
        connection_id: id,
        path: "/echo".into(),
        query: String::new(),
        headers: vec![],
        positional_captures: vec![],
        named_captures: vec![],
        remote_addr: "127.0.0.1:1".into(),
        subprotocols: vec![],
        origin: None,
        origin_allowed: true,
    }
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name:<44} n={:<6} median {:>8.2} µs   p99 {:>8.2} µs",
        samples.len(),
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let runtime = Runtime::new(&RuntimeConfig {
            max_instances: 1000,
            ..RuntimeConfig::default()
        })?;
        let module = runtime.load_module(&ModuleSource::Bundled {
            name: "echo",
            bytes: wsbox::bundled::ECHO_WASM,
        })?;
        let limits = InstanceLimits::for_route(&RouteLimits::default());
        const N: usize = 3000;

        // Warm the pool's slots first.
        for i in 0..200 {
            drop(module.instantiate(&limits, i).await?);
        }

        let mut samples = Vec::with_capacity(N);
        for i in 0..N as u64 {
            let t = Instant::now();
            let inst = module.instantiate(&limits, i).await?;
            samples.push(t.elapsed());
            drop(inst);
        }
        report("instantiate (pooled, Store + WASI ctx)", samples);

        let mut samples = Vec::with_capacity(N);
        for i in 0..N as u64 {
            let t = Instant::now();
            let mut inst = module.instantiate(&limits, i).await?;
            inst.upgrade(&request(i)).await?;
            inst.attach_engine(Connection::new(EngineConfig::new(Role::Server)));
            inst.on_open(&ConnectionInfo {
                request: request(i),
                subprotocol: None,
                extensions: String::new(),
            })
            .await?;
            inst.on_close(&CloseInfo {
                code: Some(1000),
                reason: String::new(),
                cause: CloseCause::PeerClosed,
            })
            .await?;
            drop(inst);
            samples.push(t.elapsed());
        }
        report("instantiate + upgrade + open + close + drop", samples);

        let mut inst = module.instantiate(&limits, 0).await?;
        inst.attach_engine(Connection::new(EngineConfig::new(Role::Server)));
        let msg = Message::Text("x".repeat(32));
        let mut samples = Vec::with_capacity(N * 10);
        for _ in 0..N * 10 {
            let t = Instant::now();
            inst.on_message(&msg).await?;
            let engine = inst.engine_mut().expect("engine attached");
            let n = engine.pending_output().len();
            engine.consume_output(n);
            samples.push(t.elapsed());
        }
        report("on-message 32 B -> write-message (echo)", samples);
        anyhow::Ok(())
    })
}
