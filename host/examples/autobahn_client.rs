//! An echo client for the Autobahn testsuite's fuzzing server, built on
//! `wsbox::client` (the engine's client role, with permessage-deflate).
//!
//! usage: `autobahn_client ws://127.0.0.1:9002` (agent name from
//! `AUTOBAHN_AGENT`, default "wsbox"). `tests/autobahn.sh client` runs it.

use anyhow::{Context, Result, bail};
use wsbox::client::{ClientOptions, connect};
use wsbox::config::DeflateConfig;
use wsbox::protocol::Message;

fn options() -> ClientOptions {
    let mut options = ClientOptions::default().with_compression(DeflateConfig::default());
    // Cases 9.* send messages of up to 16 MiB.
    options.max_message_size = 64 << 20;
    options
}

async fn case_count(base: &str) -> Result<u32> {
    let mut ws = connect(&format!("{base}/getCaseCount"), ClientOptions::default())
        .await
        .context("asking the fuzzing server for its case count")?;
    match ws.read_message().await {
        Some(Message::Text(text)) => text.trim().parse().context("case count"),
        other => bail!("unexpected answer to getCaseCount: {other:?}"),
    }
}

async fn run_case(base: &str, case: u32, agent: &str) -> Result<()> {
    let url = format!("{base}/runCase?case={case}&agent={agent}");
    let mut ws = connect(&url, options()).await?;
    let handle = ws.handle();
    while let Some(message) = ws.read_message().await {
        // The connection may be closing: then the echo is simply dropped.
        let _ = handle.write_message(message).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let base = std::env::args()
        .nth(1)
        .context("usage: autobahn_client ws://127.0.0.1:PORT")?;
    let base = base.trim_end_matches('/').to_string();
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "wsbox".into());
    let count = case_count(&base).await?;
    eprintln!("autobahn_client: {count} cases");
    for case in 1..=count {
        if let Err(e) = run_case(&base, case, &agent).await {
            // A failed case is the report's business, not a reason to stop.
            eprintln!("autobahn_client: case {case}: {e:#}");
        }
    }
    let mut ws = connect(
        &format!("{base}/updateReports?agent={agent}"),
        ClientOptions::default(),
    )
    .await
    .context("asking the fuzzing server to write its reports")?;
    while ws.read_message().await.is_some() {}
    Ok(())
}
