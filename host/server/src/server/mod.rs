//! The HTTP/1.1 listener: accepts TCP connections, answers the opening
//! handshake with the handler's decision, then hands each upgraded socket to
//! its own connection task.

pub mod cluster;
pub mod connection;
pub mod hibernation;
mod inbox;
pub mod mailbox;
mod memory;
pub use crate::config::origin;
mod pages;
mod peer_watch;
pub mod pubsub;
pub mod routes;
pub mod tenants;
mod traced;
mod upgrade;
pub mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServerConfig};
use routes::{Route, RouteTable, ServedModule};
use wsbox_runtime::Runtime;

/// What the control plane installed last (see `install_routes`).
#[derive(Default)]
struct Installed {
    routes: Vec<Arc<Route>>,
    loaded: std::collections::HashMap<(String, String), routes::Deployed>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a request needs, shared by all connections.
pub struct Shared {
    pub runtime: Runtime,
    /// The routes being served; a deploy swaps in a new table whole.
    pub routes: arc_swap::ArcSwap<RouteTable>,
    /// The config file's routes as compiled at start (or recompiled by
    /// `--watch`), which a rebuilt table keeps (with a newer module when
    /// one of the default tenant of the same name is deployed).
    config_routes: std::sync::Mutex<Vec<Arc<Route>>>,
    /// What the control plane installed last: its routes and deployed
    /// modules, to rebuild the table when a config route changes.
    installed: std::sync::Mutex<Installed>,
    /// The tenants the config file declares.
    config_tenants: Vec<crate::config::TenantConfig>,
    /// Static pages, answered to plain `GET`/`HEAD` requests.
    pages: Vec<pages::Page>,
    /// The live (upgraded) connections' mailboxes, by connection id.
    live: Arc<mailbox::Registry>,
    next_connection_id: AtomicU64,
    /// Cancelled on shutdown: every connection then closes with 1001.
    shutdown: CancellationToken,
    /// The upgraded connections' tasks, awaited on shutdown.
    connections: TaskTracker,
    settings: ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per-tenant connection caps.
    pub tenants: tenants::TenantGates,
    /// Topics and direct messages between a tenant's connections.
    pub pubsub: Arc<pubsub::Hub>,
    /// Told each time a connection hibernates (its instance freed): an
    /// upgrade waiting for room under pool pressure retries then.
    pub(crate) hibernations: tokio::sync::Notify,
}

impl Shared {
    fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A server bound to its address, with every module compiled.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Compiles the config's modules and binds its listen address.
    pub async fn bind(config: &Config) -> Result<Server> {
        let runtime = Runtime::new(&config.runtime)?;
        let mut compiled = std::collections::HashMap::new();
        let mut routes = Vec::new();
        let tenants = tenants::TenantGates::default();
        for t in &config.tenants {
            tenants.set_limits(&t.name, t.max_connections, &t.limits);
        }
        for route in &config.routes {
            let key = (route.tenant.clone(), route.module.clone());
            let module = match compiled.get(&key) {
                Some(m) => Arc::clone(m),
                None => {
                    let m = runtime
                        .load_module(&route.module)
                        .with_context(|| format!("route `{}`", route.pattern))?;
                    let m = ServedModule::from_config(m, &route.tenant);
                    compiled.insert(key, Arc::clone(&m));
                    m
                }
            };
            let share = tenants.share(&module.tenant);
            routes.push(Arc::new(Route::new(route.clone(), module, share)));
        }
        let pages = config
            .pages
            .iter()
            .map(pages::Page::load)
            .collect::<Result<Vec<_>>>()?;
        let tls = match &config.tls {
            Some(t) => Some(wsbox_io::tls::acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let hub = Arc::new(pubsub::Hub::new(
            Arc::clone(&metrics),
            config.pubsub.default_limits,
        ));
        for t in &config.tenants {
            hub.set_tenant_limits(&t.name, &t.limits);
        }
        let shutdown = CancellationToken::new();
        let mut first_connection_id = 1;
        if let Some(broker) = &config.pubsub.broker {
            let deliver: Arc<dyn cluster::Deliver> = Arc::clone(&hub) as _;
            let cluster = cluster::Cluster::start(
                broker,
                Arc::clone(&metrics),
                Arc::downgrade(&deliver),
                shutdown.clone(),
            );
            first_connection_id = cluster::first_connection_id(cluster.node());
            hub.attach_cluster(cluster);
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                runtime,
                routes: arc_swap::ArcSwap::from_pointee(RouteTable::new(routes.clone())),
                config_routes: std::sync::Mutex::new(routes),
                installed: std::sync::Mutex::default(),
                config_tenants: config.tenants.clone(),
                pages,
                live: Arc::default(),
                next_connection_id: AtomicU64::new(first_connection_id),
                shutdown,
                connections: TaskTracker::new(),
                settings: config.server.clone(),
                tls,
                metrics,
                tenants,
                pubsub: hub,
                hibernations: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Whether the listener speaks TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The routes being served, as `(pattern, module name)`.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.handle()
            .routes()
            .into_iter()
            .map(|(pattern, module)| (pattern, module.label()))
            .collect()
    }

    /// A handle to reach this server's live connections from elsewhere
    /// (send a message, close one), valid while the server runs.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The static pages being served, by request path.
    pub fn page_paths(&self) -> Vec<String> {
        self.shared.pages.iter().map(|p| p.path.clone()).collect()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) -> Result<()> {
        let drain = self.shared.settings.drain_time;
        self.run_until(std::future::pending(), drain).await
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops
    /// accepting, closes every connection with 1001 (going away) so that
    /// handlers see `on_close`, and waits up to `drain` for them to finish.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
        drain: Duration,
    ) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let trimmer = tokio::spawn(memory::trim_periodically());
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning; the
                    // connections already open carry on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let shared = Arc::clone(&self.shared);
            match shared.tls.clone() {
                None => {
                    tokio::spawn(serve_http(shared, stream, peer));
                }
                Some(acceptor) => {
                    tokio::spawn(async move {
                        // The TLS handshake shares the HTTP head's deadline.
                        let timeout = shared.settings.handshake_timeout;
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => serve_http(shared, tls, peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
        drop(self.listener);
        trimmer.abort();
        let open = self.shared.connections.len();
        tracing::info!(open, "shutting down: closing connections with 1001");
        self.shared.shutdown.cancel();
        self.shared.connections.close();
        if tokio::time::timeout(drain, self.shared.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.shared.connections.len(),
                "drain time over; dropping the remaining connections"
            );
        }
        Ok(())
    }
}

/// Reaches a running server's live connections. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

/// Why a command for a connection was refused. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionCommandError {
    /// No live connection has this id (it never existed, or it closed).
    #[error("no live connection with id {0}")]
    UnknownConnection(u64),
    /// The close code or reason cannot be sent.
    #[error(transparent)]
    InvalidClose(#[from] wsbox_protocol::CloseError),
}

/// A live connection, as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionSummary {
    pub id: u64,
    pub tenant: String,
    pub route: String,
    pub module: String,
    /// The registry version; `None` for a module from the config file.
    pub version: Option<u64>,
    pub remote_addr: String,
    pub age_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl ServerHandle {
    /// The wasm runtime (to compile and prepare modules for a deploy).
    pub fn runtime(&self) -> &Runtime {
        &self.shared.runtime
    }

    /// Sets a tenant's connection cap (for new connections) and the limits
    /// its instances share (routes built afterwards get a changed turns
    /// bound; memory and log limits apply at once).
    pub fn set_tenant_limits(
        &self,
        tenant: &str,
        max_connections: Option<u64>,
        limits: &crate::config::TenantLimits,
    ) {
        self.shared
            .tenants
            .set_limits(tenant, max_connections, limits);
        self.shared.pubsub.set_tenant_limits(tenant, limits);
    }

    /// The tenants the config file declares.
    pub fn config_tenants(&self) -> &[crate::config::TenantConfig] {
        &self.shared.config_tenants
    }

    /// What a tenant's instances share, for a route being built.
    pub fn tenant_share(&self, tenant: &str) -> wsbox_runtime::TenantShare {
        self.shared.tenants.share(tenant)
    }

    /// Bytes of handler memory a tenant's instances use now.
    pub fn tenant_memory_used(&self, tenant: &str) -> u64 {
        self.shared.tenants.memory_used(tenant)
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// The metrics exposition (Prometheus text format), with the live
    /// state read now.
    pub fn encode_metrics(&self, compiles: u64, compiled_cache_hits: u64) -> Result<String> {
        let connections = self
            .shared
            .live
            .entries()
            .into_iter()
            .map(|(_, entry)| crate::metrics::LiveConnection {
                labels: crate::metrics::ModuleLabels::new(
                    &entry.meta.route,
                    &entry.meta.module.load(),
                ),
                traffic: entry.mailbox.traffic(),
                hibernated: entry.mailbox.is_hibernated(),
            })
            .collect();
        Ok(self.shared.metrics.encode(crate::metrics::LiveState {
            connections,
            instance_memory_bytes: self.shared.runtime.memory_in_use(),
            pool: self.shared.runtime.pool_usage(),
            compiles,
            compiled_cache_hits,
        })?)
    }

    /// The routes being served now, in the order they are tried.
    pub fn routes(&self) -> Vec<(String, Arc<ServedModule>)> {
        self.shared
            .routes
            .load()
            .routes()
            .iter()
            .map(|r| (r.pattern().to_string(), Arc::clone(&r.module)))
            .collect()
    }

    /// Swaps in a new route table: `deployed` (routes bound through the
    /// admin API) first, then the config file's routes, each served by the
    /// deployed module of the same name in its tenant (`loaded`, by tenant
    /// and module) when there is one. New connections use it at once; live
    /// ones keep their module.
    pub fn install_routes(
        &self,
        deployed: Vec<Route>,
        loaded: &std::collections::HashMap<(String, String), routes::Deployed>,
    ) -> Result<()> {
        let mut installed = lock(&self.shared.installed);
        let next = Installed {
            routes: deployed.into_iter().map(Arc::new).collect(),
            loaded: loaded.clone(),
        };
        self.rebuild(&next)?;
        *installed = next;
        Ok(())
    }

    /// Builds the route table from what the control plane installed and
    /// the config file's routes, and swaps it in.
    fn rebuild(&self, installed: &Installed) -> Result<()> {
        let mut table = installed.routes.clone();
        for route in lock(&self.shared.config_routes).iter() {
            let key = (route.module.tenant.clone(), route.module.name.clone());
            match installed.loaded.get(&key) {
                Some(deployed) => table.push(Arc::new(Route::deployed(
                    route.config.clone(),
                    deployed,
                    self.tenant_share(&deployed.active.tenant),
                ))),
                None => table.push(Arc::clone(route)),
            }
        }
        self.shared.routes.store(Arc::new(RouteTable::new(table)));
        Ok(())
    }

    /// The module files the config's routes are served from.
    pub fn config_module_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<std::path::PathBuf> = lock(&self.shared.config_routes)
            .iter()
            .filter_map(|r| match &r.config.module {
                crate::config::ModuleSource::File(path) => Some(path.clone()),
                crate::config::ModuleSource::Bundled { .. } => None,
            })
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Compiles a config route's module file again and serves the new
    /// build on the config routes that name it (`wsbox serve --watch`).
    /// New connections get it; live ones keep their instance. Returns the
    /// routes that changed; on a compile error nothing changes.
    pub async fn reload_module_file(&self, path: &std::path::Path) -> Result<Vec<String>> {
        let source = crate::config::ModuleSource::File(path.to_path_buf());
        let uses = lock(&self.shared.config_routes)
            .iter()
            .any(|r| r.config.module == source);
        if !uses {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&self.shared);
        let compile_source = source.clone();
        let handler =
            tokio::task::spawn_blocking(move || shared.runtime.load_module(&compile_source))
                .await
                .context("the compile task failed")??;
        let installed = lock(&self.shared.installed);
        let mut changed = Vec::new();
        {
            let mut config_routes = lock(&self.shared.config_routes);
            for route in config_routes.iter_mut() {
                if route.config.module != source {
                    continue;
                }
                let module = ServedModule::from_config(Arc::clone(&handler), &route.config.tenant);
                let share = self.tenant_share(&module.tenant);
                *route = Arc::new(Route::new(route.config.clone(), module, share));
                changed.push(route.pattern().to_string());
            }
        }
        self.rebuild(&installed)?;
        Ok(changed)
    }

    /// The live connections, oldest first.
    pub fn connections(&self) -> Vec<ConnectionSummary> {
        let mut list: Vec<ConnectionSummary> = self
            .shared
            .live
            .entries()
            .into_iter()
            .map(|(id, entry)| {
                let (bytes_in, bytes_out) = entry.mailbox.traffic();
                let meta = &entry.meta;
                let module = meta.module.load();
                ConnectionSummary {
                    id,
                    tenant: module.tenant.clone(),
                    route: meta.route.to_string(),
                    module: module.name.clone(),
                    version: module.version,
                    remote_addr: meta.remote.to_string(),
                    age_ms: u64::try_from(meta.opened.elapsed().as_millis()).unwrap_or(u64::MAX),
                    bytes_in,
                    bytes_out,
                }
            })
            .collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// The ids of the live connections, in no particular order.
    pub fn connection_ids(&self) -> Vec<u64> {
        self.shared.live.ids()
    }

    /// Sends a message to one connection's peer without calling its
    /// handler, the way pub/sub's `send-to` does: framed once
    /// (uncompressed) and queued through its mailbox, unless the
    /// connection is over its route's `max_backpressure` (`Ok(false)`,
    /// counted as a drop; with `slow_consumer = "close"` it is closed with
    /// 1008). At most once: a connection that closes meanwhile drops it.
    pub fn send(
        &self,
        connection_id: u64,
        message: wsbox_protocol::Message,
    ) -> Result<bool, ConnectionCommandError> {
        self.shared
            .pubsub
            .send_to_connection(connection_id, &message)
            .ok_or(ConnectionCommandError::UnknownConnection(connection_id))
    }

    /// Closes one connection with a code and reason; its handler's
    /// `on_close` follows as for any close.
    pub fn close(
        &self,
        connection_id: u64,
        code: u16,
        reason: &str,
    ) -> Result<(), ConnectionCommandError> {
        wsbox_protocol::close::validate_outgoing(Some(code), reason)?;
        self.mailbox(connection_id)?.post(mailbox::Command::Close {
            code,
            reason: reason.to_string(),
        });
        Ok(())
    }

    /// Publishes a message to a tenant's topic from outside (a backend,
    /// through the admin API): framed once, queued on every subscriber of
    /// the tenant's topic on this server, without calling any handler.
    /// Not counted against the tenant's publish rate.
    pub fn publish(
        &self,
        tenant: &str,
        topic: &str,
        message: &wsbox_protocol::Message,
    ) -> Result<pubsub::PublishReport, pubsub::PubsubError> {
        let report = self.shared.pubsub.publish(tenant, topic, message)?;
        tracing::debug!(
            tenant,
            topic,
            delivered = report.delivered,
            skipped = report.skipped,
            "published from outside"
        );
        Ok(report)
    }

    /// With a broker (`[pubsub] backend`): this node's id and whether it
    /// is connected to the broker now.
    pub fn broker_status(&self) -> Option<(u16, bool)> {
        let cluster = self.shared.pubsub.cluster()?;
        Some((cluster.node(), cluster.is_connected()))
    }

    /// How many connections of a tenant subscribe to a topic.
    pub fn subscriber_count(&self, tenant: &str, topic: &str) -> u32 {
        self.shared.pubsub.subscriber_count(tenant, topic)
    }

    fn mailbox(&self, id: u64) -> Result<Arc<mailbox::Mailbox>, ConnectionCommandError> {
        self.shared
            .live
            .get(id)
            .ok_or(ConnectionCommandError::UnknownConnection(id))
    }
}

async fn serve_http<S: connection::Transport + 'static>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
) {
    let settings = shared.settings.clone();
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        // Boxed: the handshake future (instantiation and the `upgrade`
        // call) is several KB, and hyper would otherwise move it by value.
        async move {
            let metrics = Arc::clone(&shared.metrics);
            let resp = Box::pin(upgrade::handle(shared, req, peer)).await;
            metrics
                .http_responses
                .get_or_create(&crate::metrics::StatusLabels {
                    status: resp.status().as_u16(),
                })
                .inc();
            Ok::<_, Infallible>(resp)
        }
    });
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.handshake_timeout)
        .max_buf_size(settings.max_header_bytes)
        .max_header_size(settings.max_header_bytes)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}
