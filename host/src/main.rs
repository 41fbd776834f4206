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
    /// Write a self-signed certificate and key for 127.0.0.1/localhost, to
    /// try `wss://` locally.
    Cert(CertArgs),
    /// Load-test a WebSocket server (scenarios: echo, connect, idle).
    Bench(wsbox::bench::BenchArgs),
    /// Connect to a WebSocket server: stdin lines go out as text messages,
    /// messages received are printed (like websocat).
    Connect(wsbox::client::cli::ConnectArgs),
}

#[derive(clap::Args)]
struct CertArgs {
    /// Write a development certificate (self-signed; for local use only).
    #[arg(long, required = true)]
    dev: bool,
    /// Where to write wsbox-dev-cert.pem and wsbox-dev-key.pem.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// A TOML config file (see README "Configuration").
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the config's (e.g. 127.0.0.1:9000).
    #[arg(short, long)]
    listen: Option<std::net::SocketAddr>,
    /// Override every route's max_message_size (e.g. 32MiB; at most 1GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_message_size)]
    max_message_size: Option<u64>,
}

fn parse_message_size(s: &str) -> Result<u64, String> {
    match wsbox::config::parse_size_text(s)? {
        0 => Err("must be greater than zero".into()),
        n if n > wsbox::config::MAX_MESSAGE_SIZE_LIMIT => {
            Err("must be at most 1GiB: a message has to fit in the handler's 32-bit memory".into())
        }
        n => Ok(n),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::Cert(args) => cert(args),
        Command::Bench(args) => wsbox::bench::run(args),
        Command::Connect(args) => wsbox::client::cli::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cert(args: CertArgs) -> anyhow::Result<()> {
    let _ = args.dev; // required flag: only development certificates exist
    let dev = wsbox::tls::write_dev_certificate(&args.out_dir)?;
    println!("wrote {} and {}", dev.cert.display(), dev.key.display());
    println!("serve wss:// with, in your config:");
    println!(
        "  [tls]\n  cert = \"{}\"\n  key = \"{}\"",
        dev.cert.display(),
        dev.key.display()
    );
    println!(
        "clients must trust {} as a CA, e.g. `wsbox connect --ca {} wss://127.0.0.1:8080/echo`",
        dev.cert.display(),
        dev.cert.display()
    );
    Ok(())
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
        let scheme = if server.is_tls() { "wss" } else { "ws" };
        let source = match &args.config {
            Some(path) => format!("config {}", path.display()),
            None => "the bundled demo (no --config given)".to_string(),
        };
        println!("wsbox listening on {scheme}://{addr}, serving {source}:");
        for (pattern, module) in server.describe() {
            println!("  route {pattern}  ->  module `{module}`");
        }
        if args.config.is_none() {
            println!("try: {scheme}://{addr}/echo (echo) or {scheme}://{addr}/echo/lobby (greets with its route capture)");
        }
        server
            .run_until(shutdown_signal(), config.server.drain_time)
            .await
    })
}
