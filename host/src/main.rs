//! The `wsbox` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wsbox::admin::cli;
use wsbox::config::{AdminConfig, Config};
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
    /// Make a handler project in NAME/: a working echo in rust, python,
    /// javascript, go or c, with a wsbox.toml to build and serve it.
    New(wsbox::scaffold::NewArgs),
    /// Build the handler project in this directory (its wsbox.toml says
    /// the language) into NAME.wasm, installing the toolchain on first use.
    Build(wsbox::scaffold::BuildArgs),
    /// Write a self-signed certificate and key for 127.0.0.1/localhost, to
    /// try `wss://` locally.
    Cert(CertArgs),
    /// Load-test a WebSocket server (scenarios: echo, connect, idle).
    Bench(wsbox::bench::BenchArgs),
    /// Connect to a WebSocket server: stdin lines go out as text messages,
    /// messages received are printed (like websocat).
    Connect(wsbox::client::cli::ConnectArgs),
    /// Upload a handler component to a running server's registry and
    /// activate it (admin API).
    Deploy(cli::DeployArgs),
    /// Activate the version that was active before the current one, or end
    /// a gradual rollout.
    Rollback(cli::ModuleArgs),
    /// Change a gradual rollout's share of new connections (100: make its
    /// version active for all).
    Rollout(cli::RolloutArgs),
    /// List a module's versions.
    Versions(cli::ModuleArgs),
    /// List the live connections.
    Connections(cli::TargetArgs),
    /// List the tenants and their modules.
    Tenants(cli::TargetArgs),
    /// Create or change a tenant: namespace, connection cap and the limits
    /// its instances share.
    Tenant(cli::TenantArgs),
    /// Make, list or revoke tenant tokens: admin API tokens that reach one
    /// tenant only.
    Token(cli::TokenArgs),
    /// Send a text message to one live connection's client.
    Send(cli::SendArgs),
    /// Close one live connection.
    Close(cli::CloseArgs),
    /// Publish a text message to a tenant's topic (every subscribed
    /// connection's client gets it; no handler is called).
    Publish(cli::PublishArgs),
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
    /// Serve the admin API here (default 127.0.0.1:9090; on by default
    /// without --config, or with an [admin] section).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<std::net::SocketAddr>,
    /// The module registry's data directory (default
    /// $XDG_DATA_HOME/wsbox, else ~/.local/share/wsbox).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Serve no admin API (and use no registry).
    #[arg(long, conflicts_with_all = ["admin_listen", "data_dir"])]
    no_admin: bool,
    /// Watch the config routes' module files and serve a file's new build
    /// to new connections when it changes (the local edit-build loop).
    #[arg(long, requires = "config")]
    watch: bool,
}

fn parse_message_size(s: &str) -> Result<u64, String> {
    match wsbox::io::units::parse_size_text(s)? {
        0 => Err("must be greater than zero".into()),
        n if n > wsbox::config::MAX_MESSAGE_SIZE_LIMIT => {
            Err("must be at most 1GiB: a message has to fit in the handler's 32-bit memory".into())
        }
        n => Ok(n),
    }
}

fn main() -> ExitCode {
    // Logs go through a thread of their own: a slow or stuck stderr (a full
    // pipe nobody reads) drops lines instead of blocking a worker thread.
    let (log_writer, _log_flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("wsbox-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::New(args) => wsbox::scaffold::new(args),
        Command::Build(args) => wsbox::scaffold::build(args),
        Command::Cert(args) => cert(args),
        Command::Bench(args) => wsbox::bench::run(args),
        Command::Connect(args) => wsbox::client::cli::run(args),
        Command::Deploy(args) => cli::deploy(args),
        Command::Rollback(args) => cli::rollback(args),
        Command::Rollout(args) => cli::rollout(args),
        Command::Versions(args) => cli::versions(args),
        Command::Connections(args) => cli::connections(args),
        Command::Tenants(args) => cli::tenants(args),
        Command::Tenant(args) => cli::tenant(args),
        Command::Token(args) => cli::token(args),
        Command::Send(args) => cli::send(args),
        Command::Close(args) => cli::close(args),
        Command::Publish(args) => cli::publish(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsbox: {}", error_report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without a cause
/// the message before it already quotes (an I/O error inside a message that
/// embeds it would otherwise read "refused: refused").
fn error_report(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) || out.contains(&format!("{text}: ")) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
        "clients must trust {} as a CA, e.g. `wsbox connect --ca {} wss://127.0.0.1:8080/echo` (with `listen = \"127.0.0.1:8080\"`, the default)",
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

/// How often `--watch` looks at the module files.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(300);

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
    if args.no_admin {
        config.admin = None;
    } else if args.admin_listen.is_some() || args.data_dir.is_some() {
        let admin = config.admin.get_or_insert_with(AdminConfig::default);
        if let Some(listen) = args.admin_listen {
            admin.listen = listen;
        }
        if let Some(dir) = &args.data_dir {
            admin.data_dir = dir.clone();
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(async {
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
        let http = if server.is_tls() { "https" } else { "http" };
        for path in server.page_paths() {
            println!("  page  {http}://{addr}{path}");
        }
        if args.config.is_none() {
            println!("open {http}://{addr}/ in a browser (a chat: {scheme}://{addr}/chat/<room>), or connect to {scheme}://{addr}/echo (echo) or {scheme}://{addr}/echo/lobby (greets with its route capture)");
        }
        let admin_task = match &config.admin {
            None => None,
            Some(admin_config) => {
                let (tokens, source) = wsbox::admin::Tokens::load(&admin_config.data_dir)?;
                let (admin, plane) =
                    wsbox::admin::start(server.handle(), admin_config, tokens).await?;
                let admin_addr = admin.local_addr()?;
                println!(
                    "wsbox admin API on {}://{admin_addr} (data dir {})",
                    admin.scheme(),
                    admin_config.data_dir.display()
                );
                match source {
                    wsbox::admin::TokenSource::Env => {
                        println!("  operator token: from WSBOX_ADMIN_TOKEN")
                    }
                    wsbox::admin::TokenSource::File { path, created } => println!(
                        "  operator token: {} ({}; owner-only)",
                        path.display(),
                        if created { "generated now" } else { "kept from before" }
                    ),
                }
                for (pattern, module) in plane.server().routes() {
                    if module.version.is_some() {
                        println!("  route {pattern}  ->  module `{}` (deployed)", module.label());
                    }
                }
                Some(tokio::spawn(admin.run()))
            }
        };
        let watch_task = if args.watch {
            let files = server.handle().config_module_files();
            for file in &files {
                println!("  watching {}", file.display());
            }
            Some(tokio::spawn(wsbox::server::watch::watch(
                server.handle(),
                files,
                WATCH_INTERVAL,
            )))
        } else {
            None
        };
        let result = server
            .run_until(shutdown_signal(), config.server.drain_time)
            .await;
        if let Some(task) = watch_task {
            task.abort();
        }
        if let Some(task) = admin_task {
            task.abort();
        }
        result
    });
    // Handlers still running after the drain time (a call blocked in WASI,
    // a spin the stopped epoch can no longer interrupt) must not keep the
    // process alive: give the workers a moment, then exit regardless.
    rt.shutdown_timeout(SHUTDOWN_MARGIN);
    result
}

/// How long shutdown waits, after the drain time, for worker threads that
/// are still busy before the process exits anyway.
const SHUTDOWN_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::error_report;

    #[derive(Debug, thiserror::Error)]
    #[error("connecting to 127.0.0.1:1 failed: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = io.to_string();
        let e = anyhow::Error::new(Quoting { source: io }).context("wsbox connect");
        let report = error_report(&e);
        assert_eq!(report.matches(&text).count(), 1, "{report}");
        assert!(
            report.starts_with("wsbox connect: connecting to"),
            "{report}"
        );
        // Causes that add something are kept.
        let e = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_report(&e), "outer: inner cause");
    }
}
