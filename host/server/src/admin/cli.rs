//! `wsbox deploy`, `rollback`, `versions`, `connections`, `tenants`,
//! `send`, `close` and `publish`: the admin API from the command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::auth::{TOKEN_ENV, TOKEN_FILE};
use super::client::AdminClient;

/// The environment variable with the admin API's URL.
pub const ADMIN_ENV: &str = "WSBOX_ADMIN";
/// The admin API's URL when neither `--admin` nor `WSBOX_ADMIN` is set.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9090";

/// Where the admin API is and how to authenticate.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminTarget {
    /// The admin API's URL [env: WSBOX_ADMIN; default: http://127.0.0.1:9090].
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// The operator token [env: WSBOX_ADMIN_TOKEN; default: the admin-token
    /// file in the default data directory].
    #[arg(long)]
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for an https:// admin URL, e.g. the
    /// server's self-signed one [env: WSBOX_ADMIN_CA].
    #[arg(long, value_name = "FILE")]
    pub admin_ca: Option<PathBuf>,
}

impl AdminTarget {
    fn client(&self) -> Result<AdminClient> {
        let url = self
            .admin
            .clone()
            .or_else(|| std::env::var(ADMIN_ENV).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string());
        let token = match self
            .token
            .clone()
            .or_else(|| std::env::var(TOKEN_ENV).ok().filter(|s| !s.is_empty()))
        {
            Some(t) => Some(t),
            None => {
                let path = crate::config::default_data_dir().join(TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .ok()
                    .map(|t| t.trim().to_string())
            }
        };
        let ca = self
            .admin_ca
            .clone()
            .or_else(|| std::env::var_os("WSBOX_ADMIN_CA").map(PathBuf::from));
        AdminClient::new(&url, token, ca.as_deref())
    }
}

fn encode(part: &str) -> String {
    url::form_urlencoded::byte_serialize(part.as_bytes()).collect()
}

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The handler component (.wasm).
    pub file: PathBuf,
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// The module name [default: the file's stem].
    #[arg(long)]
    pub module: Option<String>,
    /// Bind this path regex to the module (matched whole, like config routes).
    #[arg(long, value_name = "REGEX")]
    pub route: Option<String>,
    /// A note stored with the version.
    #[arg(long)]
    pub note: Option<String>,
    /// Close the older versions' connections with 1012 (Service Restart)
    /// spread over this window (e.g. 30s), so clients reconnect to the new
    /// version; by default they stay on their version until they close.
    #[arg(long, value_name = "DURATION")]
    pub drain: Option<String>,
    /// Roll the new version out to this percent (1-99) of new connections
    /// beside the active one, instead of activating it for all; change
    /// the share with `wsbox rollout`.
    #[arg(long, value_name = "PCT", conflicts_with_all = ["drain", "route"],
          value_parser = clap::value_parser!(u8).range(1..=99))]
    pub split: Option<u8>,
    /// With --split: let clients pin a version with a `wsbox-version`
    /// header or query parameter (for testers).
    #[arg(long, requires = "split")]
    pub pinning: bool,
    /// With --route: hibernate the route's connections after this long
    /// without messages (e.g. 10s; 0 = off), when their handler exports
    /// `hibernation` and agrees, like a config route's `hibernate_after`.
    /// A binding is replaced whole: binding a route again without it turns
    /// hibernation off.
    #[arg(long, value_name = "DURATION", requires = "route")]
    pub hibernate_after: Option<String>,
    /// With --route: the largest attachment a hibernated connection keeps
    /// (e.g. 16KiB, the default; at most 1MiB).
    #[arg(long, value_name = "SIZE", requires = "route")]
    pub max_attachment: Option<String>,
    /// With --route: a text message the host answers itself with RESPONSE,
    /// without a handler call and without waking a hibernated connection.
    #[arg(long, num_args = 2, value_names = ["REQUEST", "RESPONSE"], requires = "route")]
    pub auto_response: Option<Vec<String>>,
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[arg(long, default_value = "default")]
    pub tenant: String,
    #[arg(long)]
    pub module: String,
    /// The version rolling out.
    #[arg(long)]
    pub version: u64,
    /// Its share of new connections: 1-99, or 100 to make it the active
    /// version for all (ending the rollout).
    pub percent: u8,
    /// Let clients pin a version with `wsbox-version` (for testers).
    #[arg(long)]
    pub pinning: bool,
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Args, Debug)]
pub struct ModuleArgs {
    #[arg(long, default_value = "default")]
    pub tenant: String,
    #[arg(long)]
    pub module: String,
    #[command(flatten)]
    pub target: AdminTarget,
}

/// A tenant's settings; what is left out is unbounded (the settings are
/// replaced whole, like the API's PUT).
#[derive(clap::Args, Debug)]
pub struct TenantArgs {
    /// The tenant's name.
    pub name: String,
    /// The path prefix its API-bound routes live under (e.g. /acme).
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Connections it may have open at once (503 beyond).
    #[arg(long)]
    pub max_connections: Option<u64>,
    /// Memory all its instances may use together (e.g. 512MiB).
    #[arg(long, value_parser = wsbox_io::units::parse_size_text)]
    pub max_memory_total: Option<u64>,
    /// Its handler calls that may run past an epoch tick at once.
    #[arg(long)]
    pub max_concurrent_calls: Option<u32>,
    /// Guest log lines per second for all its connections together.
    #[arg(long)]
    pub log_lines_per_second: Option<u32>,
    /// Guest log bytes per second for all its connections together (e.g. 1MiB).
    #[arg(long, value_parser = wsbox_io::units::parse_size_text)]
    pub log_bytes_per_second: Option<u64>,
    /// Coarsen the clocks its handlers see to this many milliseconds.
    #[arg(long)]
    pub clock_resolution_ms: Option<u64>,
    /// Topics one of its connections may subscribe to.
    #[arg(long)]
    pub max_subscriptions_per_connection: Option<u32>,
    /// Publishes and send-to messages per second for all its connections.
    #[arg(long)]
    pub max_publishes_per_second: Option<u32>,
    /// The largest message its connections may receive (e.g. 64KiB), when
    /// smaller than their routes'.
    #[arg(long, value_parser = wsbox_io::units::parse_size_text)]
    pub max_message_size: Option<u64>,
    /// The most bytes that may wait to be sent on one of its connections
    /// (e.g. 1MiB), when smaller than their routes'.
    #[arg(long, value_parser = wsbox_io::units::parse_size_text)]
    pub max_output_buffer: Option<u64>,
    /// The most memory one of its instances may grow to (e.g. 32MiB), when
    /// less than their routes'.
    #[arg(long, value_parser = wsbox_io::units::parse_size_text)]
    pub memory_limit: Option<u64>,
    /// The CPU time one call of its handlers may take, in milliseconds,
    /// when shorter than their routes'.
    #[arg(long)]
    pub cpu_time_per_event_ms: Option<u64>,
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// The connection id (see `wsbox connections`).
    pub id: u64,
    /// The text to send.
    pub message: String,
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenAction {
    /// Make a token that reaches one tenant only (operator token needed);
    /// it is printed once.
    Create {
        /// The tenant it is for.
        #[arg(long)]
        tenant: String,
        /// A name for it (in audit lines and `uploaded_by`), e.g. `ci`.
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// List a tenant's tokens (names only).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Revoke a tenant's token at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// The tenant whose topic it is (`default` for routes from the config
    /// file and the implicit tenant).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// The topic (1 to 256 bytes).
    pub topic: String,
    /// The text to publish.
    pub message: String,
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Args, Debug)]
pub struct CloseArgs {
    /// The connection id (see `wsbox connections`).
    pub id: u64,
    #[arg(long, default_value_t = 1000)]
    pub code: u16,
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub target: AdminTarget,
}

/// Uploads a component, then activates it (binding `--route`).
/// Uploads at least this large report their progress.
const PROGRESS_MIN_BYTES: usize = 1024 * 1024;

pub fn deploy(args: DeployArgs) -> Result<()> {
    let client = args.target.client()?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let module = match args.module {
        Some(m) => m,
        None => args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("cannot name the module after the file: give --module")?,
    };
    eprintln!(
        "uploading {} ({} bytes) as {}/{module}; the server validates and compiles it...",
        args.file.display(),
        bytes.len(),
        args.tenant
    );
    let mut path = format!(
        "/v1/tenants/{}/modules/{}/versions",
        encode(&args.tenant),
        encode(&module)
    );
    if let Some(note) = &args.note {
        path.push_str(&format!("?note={}", encode(note)));
    }
    let started = std::time::Instant::now();
    let total = bytes.len();
    let mut next_report = 0;
    let mut progress = |sent: usize| {
        // Large modules: a line per quarter, then one while it compiles.
        if total < PROGRESS_MIN_BYTES || (sent < next_report && sent < total) {
            return;
        }
        next_report = sent + total / 4;
        eprintln!(
            "  sent {:.1} of {:.1} MiB{}",
            sent as f64 / 1048576.0,
            total as f64 / 1048576.0,
            if sent == total {
                "; the server compiles it now (large components take a while)..."
            } else {
                ""
            }
        );
    };
    let version = client.request_with_progress(
        "POST",
        &path,
        Some("application/wasm"),
        &bytes,
        &mut progress,
    )?;
    let number = version["version"].as_u64().unwrap_or(0);
    eprintln!(
        "  stored as version {number} in {:.1} s (upload, validation, compile)",
        started.elapsed().as_secs_f64()
    );
    let mut request = json!({"module": module, "version": number, "route": args.route,
        "drain": args.drain, "split": args.split, "pinning": args.pinning});
    // Sent as written: the server reads them as the config file does.
    if let Some(after) = &args.hibernate_after {
        request["hibernate_after"] = json!(after);
    }
    if let Some(size) = &args.max_attachment {
        request["max_attachment"] = json!(size);
    }
    if let Some([req, resp]) = args.auto_response.as_deref() {
        request["auto_response"] = json!({"request": req, "response": resp});
    }
    let deployment = post_deployment(&client, &args.tenant, &request)?;
    match args.split {
        Some(percent) => println!(
            "rolling {}/{module} version {number} (sha256 {}) out to {percent}% of new connections \
             beside version {}; raise it with `wsbox rollout --module {module} --version {number} PCT`",
            args.tenant,
            version["sha256"].as_str().unwrap_or("?"),
            deployment["version"]
        ),
        None => println!(
            "deployed {}/{module} version {number} (sha256 {}), serving routes: {}",
            args.tenant,
            version["sha256"].as_str().unwrap_or("?"),
            join(&deployment["routes"])
        ),
    }
    if let Some(route) = &args.route {
        let bound = deployment["bound_routes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["route"].as_str() == Some(route.as_str()));
        if let Some(b) = bound {
            println!("route {route}: {}", hibernation_summary(b));
        }
    }
    if let Some(window) = &args.drain {
        println!(
            "draining {} older connections with 1012 over {window}",
            deployment["draining"]
        );
    }
    Ok(())
}

/// A bound route's hibernation settings in a line.
fn hibernation_summary(bound: &Value) -> String {
    let mut line = match bound["hibernate_after"].as_str() {
        Some(after) => format!(
            "hibernate_after {after}, max_attachment {}",
            bound["max_attachment"].as_str().unwrap_or("?")
        ),
        None => "no hibernation".to_string(),
    };
    if let Some(a) = bound["auto_response"].as_object() {
        line.push_str(&format!(
            ", auto_response {} -> {}",
            a.get("request").unwrap_or(&Value::Null),
            a.get("response").unwrap_or(&Value::Null)
        ));
    }
    line
}

/// `POST /v1/tenants/{t}/deployments`.
fn post_deployment(client: &AdminClient, tenant: &str, request: &Value) -> Result<Value> {
    client.request(
        "POST",
        &format!("/v1/tenants/{}/deployments", encode(tenant)),
        Some("application/json"),
        request.to_string().as_bytes(),
    )
}

/// Changes a rollout's share, or (100%) makes its version the active one.
pub fn rollout(args: RolloutArgs) -> Result<()> {
    let client = args.target.client()?;
    let split = (args.percent < 100).then_some(args.percent);
    let request = json!({"module": args.module, "version": args.version,
        "split": split, "pinning": args.pinning});
    let deployment = post_deployment(&client, &args.tenant, &request)?;
    match split {
        Some(p) => println!(
            "{}/{} version {} now gets {p}% of new connections (version {} the rest)",
            args.tenant, args.module, args.version, deployment["version"]
        ),
        None => println!(
            "{}/{} version {} is active for all new connections",
            args.tenant, args.module, args.version
        ),
    }
    Ok(())
}

fn join(list: &Value) -> String {
    let items: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    if items.is_empty() {
        "(none: give --route)".to_string()
    } else {
        items.join(", ")
    }
}

pub fn rollback(args: ModuleArgs) -> Result<()> {
    let client = args.target.client()?;
    let d = client.request(
        "POST",
        &format!(
            "/v1/tenants/{}/modules/{}/rollback",
            encode(&args.tenant),
            encode(&args.module)
        ),
        None,
        b"",
    )?;
    println!(
        "rolled back {}/{} to version {} (was {})",
        args.tenant, args.module, d["version"], d["previous_version"]
    );
    Ok(())
}

pub fn versions(args: ModuleArgs) -> Result<()> {
    let client = args.target.client()?;
    let m = client.request(
        "GET",
        &format!(
            "/v1/tenants/{}/modules/{}/versions",
            encode(&args.tenant),
            encode(&args.module)
        ),
        None,
        b"",
    )?;
    println!("VERSION  ACTIVE  LIVE  SIZE      SHA256        UPLOADED_BY  NOTE");
    for v in m["versions"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:<7} {:<5} {:<9} {:<13} {:<12} {}",
            v["version"],
            if v["active"].as_bool() == Some(true) {
                "*"
            } else {
                ""
            },
            v["live_connections"],
            v["size"],
            v["sha256"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            v["uploaded_by"].as_str().unwrap_or(""),
            v["note"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub fn connections(args: TargetArgs) -> Result<()> {
    let client = args.target.client()?;
    let list = client.request("GET", "/v1/connections", None, b"")?;
    println!(
        "ID      TENANT     MODULE@VERSION       ROUTE                REMOTE                 AGE_MS    IN/OUT"
    );
    for c in list["connections"].as_array().into_iter().flatten() {
        let version = match c["version"].as_u64() {
            Some(v) => v.to_string(),
            None => "config".to_string(),
        };
        println!(
            "{:<7} {:<10} {:<20} {:<20} {:<22} {:<9} {}/{}",
            c["id"],
            c["tenant"].as_str().unwrap_or(""),
            format!("{}@{version}", c["module"].as_str().unwrap_or("")),
            c["route"].as_str().unwrap_or(""),
            c["remote_addr"].as_str().unwrap_or(""),
            c["age_ms"],
            c["bytes_in"],
            c["bytes_out"]
        );
    }
    Ok(())
}

pub fn tenants(args: TargetArgs) -> Result<()> {
    let client = args.target.client()?;
    let list = client.request("GET", "/v1/tenants", None, b"")?;
    for t in list["tenants"].as_array().into_iter().flatten() {
        println!(
            "{}  ({} live connections)  modules: {}",
            t["name"].as_str().unwrap_or(""),
            t["live_connections"],
            join(&t["modules"])
        );
    }
    Ok(())
}

pub fn tenant(args: TenantArgs) -> Result<()> {
    let client = args.target.client()?;
    let body = serde_json::json!({
        "path_prefix": args.path_prefix,
        "max_connections": args.max_connections,
        "max_memory_total": args.max_memory_total,
        "max_concurrent_calls": args.max_concurrent_calls,
        "log_lines_per_second": args.log_lines_per_second,
        "log_bytes_per_second": args.log_bytes_per_second,
        "clock_resolution_ms": args.clock_resolution_ms,
        "max_subscriptions_per_connection": args.max_subscriptions_per_connection,
        "max_message_size": args.max_message_size,
        "max_output_buffer": args.max_output_buffer,
        "memory_limit": args.memory_limit,
        "cpu_time_per_event_ms": args.cpu_time_per_event_ms,
        "max_publishes_per_second": args.max_publishes_per_second,
    });
    let t = client.request(
        "PUT",
        &format!("/v1/tenants/{}", encode(&args.name)),
        Some("application/json"),
        body.to_string().as_bytes(),
    )?;
    println!("tenant {} set: {t}", args.name);
    Ok(())
}

pub fn token(args: TokenArgs) -> Result<()> {
    match args.action {
        TokenAction::Create {
            tenant,
            name,
            target,
        } => {
            let body = json!({ "name": name }).to_string();
            let answer = target.client()?.request(
                "POST",
                &format!("/v1/tenants/{}/tokens", encode_segment(&tenant)),
                Some("application/json"),
                body.as_bytes(),
            )?;
            eprintln!("token `{name}` of tenant {tenant} (shown once; keep it secret):");
            println!("{}", answer["token"].as_str().unwrap_or(""));
        }
        TokenAction::List { tenant, target } => {
            let answer = target.client()?.request(
                "GET",
                &format!("/v1/tenants/{}/tokens", encode_segment(&tenant)),
                None,
                b"",
            )?;
            for t in answer["tokens"].as_array().into_iter().flatten() {
                println!(
                    "{}  created by {} at {} ms",
                    t["name"].as_str().unwrap_or(""),
                    t["created_by"].as_str().unwrap_or(""),
                    t["created_at_ms"]
                );
            }
        }
        TokenAction::Revoke {
            tenant,
            name,
            target,
        } => {
            target.client()?.request(
                "DELETE",
                &format!(
                    "/v1/tenants/{}/tokens/{}",
                    encode_segment(&tenant),
                    encode_segment(&name)
                ),
                None,
                b"",
            )?;
            println!("token `{name}` of tenant {tenant} revoked");
        }
    }
    Ok(())
}

pub fn send(args: SendArgs) -> Result<()> {
    let client = args.target.client()?;
    client.request(
        "POST",
        &format!("/v1/connections/{}/messages", args.id),
        Some("text/plain; charset=utf-8"),
        args.message.as_bytes(),
    )?;
    println!(
        "sent {} bytes to connection {}",
        args.message.len(),
        args.id
    );
    Ok(())
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn publish(args: PublishArgs) -> Result<()> {
    let client = args.target.client()?;
    let answer = client.request(
        "POST",
        &format!(
            "/v1/tenants/{}/topics/{}/messages",
            encode_segment(&args.tenant),
            encode_segment(&args.topic)
        ),
        Some("text/plain; charset=utf-8"),
        args.message.as_bytes(),
    )?;
    println!(
        "published {} bytes to topic {} of tenant {}: delivered to {}, skipped {}",
        args.message.len(),
        args.topic,
        args.tenant,
        answer["delivered"],
        answer["skipped"]
    );
    if let Some(message) = answer.get("message").and_then(|m| m.as_str()) {
        anyhow::bail!("{message}");
    }
    Ok(())
}

pub fn close(args: CloseArgs) -> Result<()> {
    let client = args.target.client()?;
    let body = json!({"code": args.code, "reason": args.reason}).to_string();
    client.request(
        "POST",
        &format!("/v1/connections/{}/close", args.id),
        Some("application/json"),
        body.as_bytes(),
    )?;
    println!("closing connection {} with {}", args.id, args.code);
    Ok(())
}
