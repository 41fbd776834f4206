//! The `wsbox` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wsbox::config::Config;
use wsbox::server::Server;

/// A WebSocket server whose handlers are WebAssembly components.
#[derive(Parser)]
#[command(name = "wsbox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve WebSocket routes (the default). Without --config, serves the
    /// bundled echo demo at ws://127.0.0.1:8080/echo.
    Serve(ServeArgs),
    /// Load-test a WebSocket server (scenarios: echo, connect, idle).
    Bench(wsbox::bench::BenchArgs),
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// A TOML config file (see README "Configuration").
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the config's (e.g. 127.0.0.1:9000).
    #[arg(short, long)]
    listen: Option<std::net::SocketAddr>,
    /// Override every route's max_message_size (e.g. 32MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_message_size: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    wsbox::config::parse_size_text(s)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::Bench(args) => wsbox::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::bundled_demo(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(size) = args.max_message_size {
        for route in &mut config.routes {
            route.limits.max_message_size = size;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let server = Server::bind(&config).await?;
        let addr = server.local_addr()?;
        let source = match &args.config {
            Some(path) => format!("config {}", path.display()),
            None => "the bundled demo (no --config given)".to_string(),
        };
        println!("wsbox listening on {addr}, serving {source}:");
        for (pattern, module) in server.describe() {
            println!("  route {pattern}  ->  module `{module}`");
        }
        if args.config.is_none() {
            println!("try: ws://{addr}/echo (echo) or ws://{addr}/echo/lobby (greets with its route capture)");
        }
        server
            .run_until(shutdown_signal(), config.server.drain_time)
            .await
    })
}
