//! The control plane: uploads into the [`ModuleRegistry`], deploys that
//! swap the server's route table, rollback, and the views the admin API
//! shows. Changes are serialised; compiling runs on blocking threads, a
//! bounded number at once, so live traffic never waits for Cranelift.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use crate::config::{
    AutoResponse, Hibernation, ModuleSource, RouteConfig, RoutePattern, TenantLimits,
};
use crate::registry::{self, ModuleRegistry, Recovery, RegistryError, TenantRecord, VersionRecord};
use crate::server::ServerHandle;
use crate::server::routes::{self, Canary, DEFAULT_TENANT, Deployed, Route, ServedModule};
use wsbox_io::units::{format_duration, format_size};

/// The deployed module versions (active, and rolling out), by (tenant,
/// module).
type Loaded = HashMap<(String, String), Deployed>;

/// The control plane of one server.
pub struct ControlPlane {
    registry: Arc<ModuleRegistry>,
    server: ServerHandle,
    /// Compilations running at once.
    compile_slots: Arc<Semaphore>,
    /// The longest an upload may take to compile (`[admin] max_compile_time`).
    max_compile_time: Duration,
    /// Held for the whole of a change, so that route tables are built from
    /// a consistent state and swapped in the order the changes commit.
    loaded: Mutex<Loaded>,
    max_module_size: u64,
    /// What opening the registry repaired.
    recovery: Recovery,
    /// Tenants' settings, by name; changed only while `loaded` is held.
    tenant_settings: std::sync::Mutex<HashMap<String, TenantRecord>>,
}

/// A deployment as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub tenant: String,
    pub module: String,
    pub version: u64,
    pub previous_version: Option<u64>,
    pub activated_at_ms: i64,
    /// The routes this module serves (bound through the API, and config
    /// routes of the same module name in the default tenant).
    pub routes: Vec<String>,
    /// The routes bound to this module through the API, as bound, with
    /// their hibernation settings.
    pub bound_routes: Vec<BoundRoute>,
    /// Connections of older versions being closed with 1012 (`drain`).
    pub draining: usize,
    /// A version rolling out to a share of new connections, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// A route to bind with a deploy: its path regex and hibernation
/// settings (validated: see [`Hibernation`]).
#[derive(Debug, Clone)]
pub struct RouteBinding {
    pub pattern: String,
    pub hibernation: Hibernation,
}

/// A route bound through the API as the API shows it: the settings in the
/// config file's names and units (`"10s"`, `"16KiB"`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BoundRoute {
    /// The path regex as bound (a tenant's is matched under its
    /// `path_prefix`, as `routes` shows).
    pub route: String,
    /// `None` (null): hibernation off.
    pub hibernate_after: Option<String>,
    pub max_attachment: String,
    pub auto_response: Option<AutoResponse>,
}

impl BoundRoute {
    fn new(pattern: &str, h: &Hibernation) -> BoundRoute {
        BoundRoute {
            route: pattern.to_string(),
            hibernate_after: h.after.map(format_duration),
            max_attachment: format_size(u64::try_from(h.max_attachment).unwrap_or(u64::MAX)),
            auto_response: h.auto_response.clone(),
        }
    }
}

/// The routes of `module` of `tenant` among the bound ones.
fn bound_routes_of(
    routes: &[registry::RouteRecord],
    tenant: &str,
    module: &str,
) -> Vec<BoundRoute> {
    routes
        .iter()
        .filter(|r| r.tenant == tenant && r.module == module)
        .map(|r| BoundRoute::new(&r.pattern, &r.hibernation))
        .collect()
}

/// A gradual rollout as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    pub version: u64,
    /// Percent of new connections it gets.
    pub percent: u8,
    /// Whether clients may pin a version with `wsbox-version`.
    pub pinning: bool,
}

/// A version with the number of live connections running it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    #[serde(flatten)]
    pub record: VersionRecord,
    pub active: bool,
    pub live_connections: usize,
}

/// A module's versions.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleView {
    pub tenant: String,
    pub module: String,
    pub active_version: Option<u64>,
    pub versions: Vec<VersionView>,
}

/// A tenant and its modules.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    pub name: String,
    pub path_prefix: Option<String>,
    pub max_connections: Option<u64>,
    #[serde(flatten)]
    pub limits: TenantLimits,
    /// Declared in the config file (changed there, not through the API).
    pub from_config: bool,
    /// Bytes of linear memory its instances use now.
    pub memory_used: u64,
    pub modules: Vec<String>,
    pub live_connections: usize,
}

/// Counters for `GET /v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub data_dir: String,
    /// Components compiled since start (uploads, and cache misses).
    pub compiles: u64,
    /// Components loaded from the compiled-code cache since start.
    pub compiled_cache_hits: u64,
    pub live_connections: usize,
    pub recovery: Recovery,
}

/// Runs blocking registry work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(RegistryError::Conflict(format!(
            "the registry task failed ({e}); nothing was changed"
        )))
    })
}

fn not_found_module(tenant: &str, module: &str) -> RegistryError {
    RegistryError::NotFound(format!(
        "tenant `{tenant}` has no module `{module}`: upload one with \
         POST /v1/tenants/{tenant}/modules/{module}/versions"
    ))
}

impl ControlPlane {
    /// Opens the control plane over a running server: restores the active
    /// deployments from the registry (compiled code from the cache) and
    /// swaps in their routes.
    pub async fn start(
        registry: ModuleRegistry,
        recovery: Recovery,
        server: ServerHandle,
        max_module_size: u64,
        max_compile_time: Duration,
    ) -> Result<Arc<ControlPlane>, RegistryError> {
        // Compiling is CPU-bound and Cranelift already uses several
        // threads per module: half the cores leaves room for traffic.
        let slots = std::thread::available_parallelism()
            .map(|n| (n.get() / 2).max(1))
            .unwrap_or(1);
        let plane = Arc::new(ControlPlane {
            registry: Arc::new(registry),
            server,
            compile_slots: Arc::new(Semaphore::new(slots)),
            max_compile_time,
            loaded: Mutex::new(HashMap::new()),
            max_module_size,
            recovery,
            tenant_settings: std::sync::Mutex::default(),
        });
        plane.restore().await?;
        Ok(plane)
    }

    async fn restore(&self) -> Result<(), RegistryError> {
        let mut loaded = self.loaded.lock().await;
        let registry = Arc::clone(&self.registry);
        let settings = blocking(move || Ok(registry.db().tenant_settings()?)).await?;
        // The config file's tenants are the server's; settings stored for
        // the same name earlier through the API give way to them.
        for t in self.server.config_tenants() {
            self.settings().insert(
                t.name.clone(),
                TenantRecord {
                    name: t.name.clone(),
                    path_prefix: t.path_prefix.clone(),
                    max_connections: t.max_connections,
                    limits: t.limits.clone(),
                    from_config: true,
                },
            );
        }
        for t in settings {
            if self.settings().contains_key(&t.name) {
                tracing::warn!(
                    tenant = %t.name,
                    "tenant declared in the config file: its settings stored through the API are not used"
                );
                continue;
            }
            self.server
                .set_tenant_limits(&t.name, t.max_connections, &t.limits);
            self.settings().insert(t.name.clone(), t);
        }
        let registry = Arc::clone(&self.registry);
        let active = blocking(move || Ok(registry.db().active()?)).await?;
        for record in active {
            let Some(version) = self
                .version_record(&record.tenant, &record.module, record.version)
                .await?
            else {
                continue;
            };
            if self.recovery.missing_blobs.contains(&version.sha256) {
                tracing::error!(
                    tenant = %record.tenant, module = %record.module, version = record.version,
                    "the active version's blob is missing from the data directory; not serving it"
                );
                continue;
            }
            let module = self.load(&version).await?;
            tracing::info!(
                tenant = %record.tenant, module = %record.module, version = record.version,
                "deployment restored"
            );
            loaded.insert((record.tenant, record.module), Deployed::new(module));
        }
        let registry = Arc::clone(&self.registry);
        let canaries = blocking(move || Ok(registry.db().canaries()?)).await?;
        for c in canaries {
            let key = (c.tenant.clone(), c.module.clone());
            let Some(version) = self.version_record(&c.tenant, &c.module, c.version).await? else {
                continue;
            };
            if !loaded.contains_key(&key) || self.recovery.missing_blobs.contains(&version.sha256) {
                continue;
            }
            let module = self.load(&version).await?;
            tracing::info!(
                tenant = %c.tenant, module = %c.module, version = c.version, percent = c.percent,
                "rollout restored"
            );
            if let Some(d) = loaded.get_mut(&key) {
                d.canary = Some(Canary {
                    module,
                    percent: c.percent,
                    pinning: c.pinning,
                });
            }
        }
        self.install(&loaded).await
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantRecord>> {
        self.tenant_settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The pattern a tenant's route is matched with: under its namespace
    /// (`/acme` + `/chat` → `/acme/(?:chat)`), or as is for `default`.
    fn effective_pattern(&self, tenant: &str, pattern: &str) -> Option<String> {
        if tenant == DEFAULT_TENANT {
            return Some(pattern.to_string());
        }
        let prefix = self.settings().get(tenant)?.path_prefix.clone()?;
        crate::config::namespaced(&prefix, pattern)
    }

    /// Creates or changes a tenant: its namespace (`path_prefix`, which its
    /// API-bound routes live under), its connection cap and the limits its
    /// instances share.
    pub async fn set_tenant(
        &self,
        name: &str,
        path_prefix: Option<String>,
        max_connections: Option<u64>,
        limits: TenantLimits,
        by: &str,
    ) -> Result<TenantRecord, RegistryError> {
        registry::check_name("tenant", name)?;
        let loaded = self.loaded.lock().await;
        if self.settings().get(name).is_some_and(|t| t.from_config) {
            return Err(RegistryError::Conflict(format!(
                "tenant `{name}` is declared in the config file: change its [[tenant]] section there and restart"
            )));
        }
        if let Some(prefix) = &path_prefix {
            if name == DEFAULT_TENANT {
                return Err(RegistryError::Invalid(
                    "the default tenant has no namespace: its routes are matched as bound".into(),
                ));
            }
            check_prefix(prefix)?;
            for (other, t) in self.settings().iter() {
                if let Some(q) = &t.path_prefix
                    && other != name
                    && (q == prefix
                        || prefix.starts_with(&format!("{q}/"))
                        || q.starts_with(&format!("{prefix}/")))
                {
                    return Err(RegistryError::Conflict(format!(
                        "path prefix {prefix} overlaps tenant `{other}`'s {q}: namespaces must not nest"
                    )));
                }
            }
        }
        for (key, zero) in [
            ("max_connections", max_connections == Some(0)),
            ("max_memory_total", limits.max_memory_total == Some(0)),
            (
                "max_concurrent_calls",
                limits.max_concurrent_calls == Some(0),
            ),
            (
                "log_lines_per_second",
                limits.log_lines_per_second == Some(0),
            ),
            (
                "log_bytes_per_second",
                limits.log_bytes_per_second == Some(0),
            ),
            (
                "max_subscriptions_per_connection",
                limits.max_subscriptions_per_connection == Some(0),
            ),
            (
                "max_publishes_per_second",
                limits.max_publishes_per_second == Some(0),
            ),
            ("max_message_size", limits.max_message_size == Some(0)),
            ("max_output_buffer", limits.max_output_buffer == Some(0)),
            ("memory_limit", limits.memory_limit == Some(0)),
            (
                "cpu_time_per_event_ms",
                limits.cpu_time_per_event_ms == Some(0),
            ),
        ] {
            if zero {
                return Err(RegistryError::Invalid(format!(
                    "{key} must be at least 1 (leave it out for no limit)"
                )));
            }
        }
        let record = TenantRecord {
            name: name.to_string(),
            path_prefix,
            max_connections,
            limits,
            from_config: false,
        };
        let registry = Arc::clone(&self.registry);
        let r = record.clone();
        blocking(move || Ok(registry.db().put_tenant(&r)?)).await?;
        let previous = self.settings().insert(name.to_string(), record.clone());
        self.server
            .set_tenant_limits(name, max_connections, &record.limits);
        // Routes carry the tenant's turns bound and clock resolution:
        // rebuild them when either changes.
        let shape = |r: &TenantRecord| {
            (
                r.path_prefix.clone(),
                r.limits.max_concurrent_calls,
                r.limits.clock_resolution_ms,
            )
        };
        if previous.as_ref().map(shape) != Some(shape(&record)) {
            self.install(&loaded).await?;
        }
        tracing::info!(
            audit = "tenant",
            tenant = %name,
            path_prefix = record.path_prefix.as_deref().unwrap_or(""),
            max_connections = record.max_connections,
            max_memory_total = record.limits.max_memory_total,
            max_concurrent_calls = record.limits.max_concurrent_calls,
            log_lines_per_second = record.limits.log_lines_per_second,
            log_bytes_per_second = record.limits.log_bytes_per_second,
            clock_resolution_ms = record.limits.clock_resolution_ms,
            by = %by,
            "tenant settings changed"
        );
        Ok(record)
    }

    /// Makes a token for one tenant, stored as its hash and accepted by
    /// `tokens` from now on. Returns the token: it is shown only once.
    pub async fn create_token(
        &self,
        tenant: &str,
        name: &str,
        tokens: &crate::admin::Tokens,
        by: &str,
    ) -> Result<String, RegistryError> {
        registry::check_name("token", name)?;
        if !self.tenants().await?.iter().any(|t| t.name == tenant) {
            return Err(RegistryError::NotFound(format!(
                "no tenant `{tenant}`: create it first with PUT /v1/tenants/{tenant} (wsbox tenant {tenant})"
            )));
        }
        let token = crate::admin::auth::generate("wsbt_");
        let hash = crate::admin::auth::digest(token.as_bytes());
        let registry = Arc::clone(&self.registry);
        let (t, n, b) = (tenant.to_string(), name.to_string(), by.to_string());
        let inserted = blocking(move || Ok(registry.db().insert_token(&t, &n, &hash, &b)?)).await?;
        if !inserted {
            return Err(RegistryError::Conflict(format!(
                "tenant `{tenant}` already has a token named `{name}`: revoke it first, or choose another name"
            )));
        }
        tokens.add_tenant_token(hash, tenant, name);
        tracing::info!(
            audit = "token",
            tenant,
            token = name,
            by,
            "tenant token created"
        );
        Ok(token)
    }

    /// Revokes a tenant's token at once.
    pub async fn revoke_token(
        &self,
        tenant: &str,
        name: &str,
        tokens: &crate::admin::Tokens,
        by: &str,
    ) -> Result<(), RegistryError> {
        let registry = Arc::clone(&self.registry);
        let (t, n) = (tenant.to_string(), name.to_string());
        let deleted = blocking(move || Ok(registry.db().delete_token(&t, &n)?)).await?;
        if !deleted {
            return Err(RegistryError::NotFound(format!(
                "tenant `{tenant}` has no token named `{name}` (GET /v1/tenants/{tenant}/tokens lists them)"
            )));
        }
        tokens.remove_tenant_token(tenant, name);
        tracing::info!(
            audit = "token",
            tenant,
            token = name,
            by,
            "tenant token revoked"
        );
        Ok(())
    }

    /// A tenant's tokens (names and when they were made, never the tokens).
    pub async fn tokens(
        &self,
        tenant: &str,
    ) -> Result<Vec<crate::registry::db::TokenRecord>, RegistryError> {
        let registry = Arc::clone(&self.registry);
        let tenant = tenant.to_string();
        blocking(move || {
            Ok(registry
                .db()
                .tokens()?
                .into_iter()
                .filter(|t| t.tenant == tenant)
                .collect())
        })
        .await
    }

    /// The registry (for its statistics).
    pub fn registry(&self) -> &ModuleRegistry {
        &self.registry
    }

    /// The server this plane controls.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    async fn version_record(
        &self,
        tenant: &str,
        module: &str,
        version: u64,
    ) -> Result<Option<VersionRecord>, RegistryError> {
        let registry = Arc::clone(&self.registry);
        let (t, m) = (tenant.to_string(), module.to_string());
        blocking(move || Ok(registry.db().version(&t, &m, version)?)).await
    }

    /// A stored version, or an error that says how to list them.
    async fn existing_version(
        &self,
        tenant: &str,
        module: &str,
        version: u64,
    ) -> Result<VersionRecord, RegistryError> {
        self.version_record(tenant, module, version)
            .await?
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "module `{module}` of tenant `{tenant}` has no version {version}: \
                     GET /v1/tenants/{tenant}/modules/{module}/versions lists them"
                ))
            })
    }

    /// One of the bounded compile slots (compiles and cache loads run off
    /// the serving threads, a few at once).
    async fn compile_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, RegistryError> {
        self.compile_slots
            .acquire()
            .await
            .map_err(|_| RegistryError::Conflict("the server is shutting down".into()))
    }

    /// Loads a stored version (compiled code from the cache) and links it.
    async fn load(&self, version: &VersionRecord) -> Result<Arc<ServedModule>, RegistryError> {
        let _slot = self.compile_slot().await?;
        let registry = Arc::clone(&self.registry);
        let server = self.server.clone();
        let v = version.clone();
        blocking(move || {
            let component = registry.load_component(server.runtime(), &v.sha256)?;
            let handler = server
                .runtime()
                .prepare(v.module.clone(), &component)
                .map_err(|e| RegistryError::Invalid(format!("{e:#}")))?;
            Ok(Arc::new(ServedModule {
                handler,
                tenant: v.tenant,
                name: v.module,
                version: Some(v.version),
            }))
        })
        .await
    }

    /// Builds and swaps in the route table for `loaded`.
    async fn install(&self, loaded: &Loaded) -> Result<(), RegistryError> {
        let registry = Arc::clone(&self.registry);
        let bound = blocking(move || Ok(registry.db().routes()?)).await?;
        let mut table = Vec::with_capacity(bound.len());
        for route in bound {
            let Some(deployed) = loaded.get(&(route.tenant.clone(), route.module.clone())) else {
                continue; // its module's blob is missing (logged at restore)
            };
            let Some(pattern) = self.effective_pattern(&route.tenant, &route.pattern) else {
                tracing::warn!(
                    tenant = %route.tenant, route = %route.pattern,
                    "route not served: its tenant has no namespace (path_prefix)"
                );
                continue;
            };
            let pattern = RoutePattern::new(pattern).map_err(|e| {
                RegistryError::Invalid(format!(
                    "route `{}` is not a valid regular expression: {e}",
                    route.pattern
                ))
            })?;
            let config = RouteConfig {
                pattern,
                tenant: route.tenant.clone(),
                module: ModuleSource::File(
                    self.registry.blob_path(
                        &self
                            .version_record(
                                &route.tenant,
                                &route.module,
                                deployed.active.version.unwrap_or(0),
                            )
                            .await?
                            .map(|v| v.sha256)
                            .unwrap_or_default(),
                    ),
                ),
                limits: Default::default(),
                origin: Default::default(),
                keepalive: Default::default(),
                compression: None,
                // Its connections hibernate and wake as a config route's.
                hibernation: route.hibernation.clone(),
            };
            let share = self.server.tenant_share(&deployed.active.tenant);
            table.push(Route::deployed(config, deployed, share));
        }
        self.server
            .install_routes(table, loaded)
            .map_err(|e| RegistryError::Invalid(format!("{e:#}")))
    }

    /// Validates and stores a new version of `module`. A module that is
    /// not a handler this host can run is refused with the reason, and
    /// nothing is stored.
    pub async fn upload(
        &self,
        tenant: &str,
        module: &str,
        bytes: Bytes,
        uploaded_by: &str,
        note: Option<String>,
    ) -> Result<VersionRecord, RegistryError> {
        registry::check_name("tenant", tenant)?;
        registry::check_name("module", module)?;
        if bytes.len() as u64 > self.max_module_size {
            return Err(RegistryError::TooLarge(format!(
                "the module is {} bytes; the limit is {} ([admin] max_module_size)",
                bytes.len(),
                self.max_module_size
            )));
        }
        // The slot goes with the compile: a compile past the cap still holds
        // it until it ends, so the bound on compiles at once holds.
        let slot = Arc::clone(&self.compile_slots)
            .acquire_owned()
            .await
            .map_err(|_| RegistryError::Conflict("the server is shutting down".into()))?;
        let registry = Arc::clone(&self.registry);
        let server = self.server.clone();
        let (t, m, by) = (
            tenant.to_string(),
            module.to_string(),
            uploaded_by.to_string(),
        );
        let started = std::time::Instant::now();
        let to_compile = bytes.clone();
        let name = m.clone();
        let compile = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let runtime = server.runtime();
            let component = registry.compile_upload(runtime, &to_compile)?;
            // Checks the world and names any import wsbox does not grant.
            runtime
                .prepare(name, &component)
                .map_err(|e| RegistryError::Invalid(format!("{e:#}")))?;
            Ok::<_, RegistryError>(component)
        });
        let component = match tokio::time::timeout(self.max_compile_time, compile).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => {
                return Err(RegistryError::Conflict(format!(
                    "the compile task failed ({e}); nothing was stored"
                )));
            }
            Err(_) => {
                tracing::warn!(
                    tenant,
                    module,
                    cap_ms = self.max_compile_time.as_millis() as u64,
                    "upload refused: compiling took longer than the cap"
                );
                return Err(RegistryError::Invalid(format!(
                    "compiling the module took longer than {:?} ([admin] max_compile_time); \
                     nothing was stored. Raise the cap for large components",
                    self.max_compile_time
                )));
            }
        };
        let registry = Arc::clone(&self.registry);
        let record = blocking(move || {
            registry.store_version(&t, &m, &bytes, &component, &by, note.as_deref())
        })
        .await?;
        let metrics = self.server.metrics();
        metrics
            .compile_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics
            .control_actions
            .get_or_create(&crate::metrics::DeployLabels {
                tenant: record.tenant.clone(),
                module: record.module.clone(),
                action: "upload".into(),
            })
            .inc();
        tracing::info!(
            audit = "upload",
            tenant = %record.tenant,
            module = %record.module,
            version = record.version,
            sha256 = %record.sha256,
            size = record.size,
            by = %record.uploaded_by,
            compile_ms = started.elapsed().as_millis() as u64,
            "module version uploaded"
        );
        Ok(record)
    }

    /// Makes a version (the latest when `None`) serve the module's routes,
    /// and binds `route` to the module when given, with its hibernation
    /// settings (replacing those of an earlier binding of the pattern;
    /// the module's other routes keep theirs).
    pub async fn activate(
        &self,
        tenant: &str,
        module: &str,
        version: Option<u64>,
        route: Option<RouteBinding>,
        by: &str,
    ) -> Result<Deployment, RegistryError> {
        registry::check_name("tenant", tenant)?;
        registry::check_name("module", module)?;
        if let Some(RouteBinding { pattern, .. }) = &route {
            RoutePattern::new(pattern.as_str()).map_err(|e| {
                RegistryError::Invalid(format!(
                    "route `{pattern}` is not a valid regular expression: {e}"
                ))
            })?;
        }
        let mut loaded = self.loaded.lock().await;
        if let Some(RouteBinding { pattern, .. }) = &route
            && tenant != DEFAULT_TENANT
        {
            let has_prefix = self
                .settings()
                .get(tenant)
                .is_some_and(|t| t.path_prefix.is_some());
            if !has_prefix {
                return Err(RegistryError::Conflict(format!(
                    "tenant `{tenant}` has no namespace for its routes: PUT /v1/tenants/{tenant} \
                     with {{\"path_prefix\": \"/{tenant}\"}} first"
                )));
            }
            if !pattern.starts_with('/') {
                return Err(RegistryError::Invalid(format!(
                    "route `{pattern}` must start with `/`: it is matched under tenant `{tenant}`'s path prefix"
                )));
            }
        }
        let version = match version {
            Some(v) => v,
            None => {
                let registry = Arc::clone(&self.registry);
                let (t, m) = (tenant.to_string(), module.to_string());
                let versions = blocking(move || Ok(registry.db().versions(&t, &m)?)).await?;
                versions
                    .last()
                    .map(|v| v.version)
                    .ok_or_else(|| not_found_module(tenant, module))?
            }
        };
        self.switch(&mut loaded, tenant, module, version, route, "deploy", by)
            .await
    }

    /// Closes the live connections of `module` that run another version
    /// than `version` with 1012 (Service Restart), spread evenly over
    /// `window` so that their clients reconnect (to the new version)
    /// without a stampede. Returns how many will be closed.
    pub fn drain(&self, tenant: &str, module: &str, version: u64, window: Duration) -> usize {
        let ids: Vec<u64> = self
            .server
            .connections()
            .into_iter()
            .filter(|c| c.tenant == tenant && c.module == module && c.version != Some(version))
            .map(|c| c.id)
            .collect();
        let n = ids.len();
        if n == 0 {
            return 0;
        }
        tracing::info!(
            audit = "drain",
            tenant = %tenant,
            module = %module,
            version,
            connections = n,
            window_ms = window.as_millis() as u64,
            "closing older versions' connections with 1012"
        );
        let server = self.server.clone();
        let start = tokio::time::Instant::now();
        tokio::spawn(async move {
            for (i, id) in ids.into_iter().enumerate() {
                // The i-th of n closes at (i+1)/(n+1) of the window.
                let at = start + window.mul_f64((i + 1) as f64 / (n + 1) as f64);
                tokio::time::sleep_until(at).await;
                // A connection that closed meanwhile is simply gone.
                let _ = server.close(id, 1012, "service restart: a new version is deployed");
            }
        });
        n
    }

    /// Rolls `version` out to `percent` (1 to 99) of the module's new
    /// connections beside its active version; again with another percent
    /// to raise or lower it. A full deploy of a version ends the rollout.
    #[allow(clippy::too_many_arguments)]
    pub async fn roll_out(
        &self,
        tenant: &str,
        module: &str,
        version: u64,
        percent: u8,
        pinning: bool,
        by: &str,
    ) -> Result<Deployment, RegistryError> {
        registry::check_name("tenant", tenant)?;
        registry::check_name("module", module)?;
        if !(1..=99).contains(&percent) {
            return Err(RegistryError::Invalid(format!(
                "split {percent}: a rollout gets 1 to 99 percent of new connections; deploy without a split for all of them"
            )));
        }
        let mut loaded = self.loaded.lock().await;
        let key = (tenant.to_string(), module.to_string());
        let Some(active) = loaded.get(&key).map(|d| Arc::clone(&d.active)) else {
            return Err(RegistryError::Conflict(format!(
                "module `{module}` of tenant `{tenant}` has no active version to split new connections with: deploy one without a split first"
            )));
        };
        if active.version == Some(version) {
            return Err(RegistryError::Conflict(format!(
                "version {version} is already the active version of `{module}`"
            )));
        }
        let record = self.existing_version(tenant, module, version).await?;
        let served = self.load(&record).await?;
        let canary = routes::Canary {
            module: served,
            percent,
            pinning,
        };
        let stored = crate::registry::db::CanaryRecord {
            tenant: tenant.to_string(),
            module: module.to_string(),
            version,
            percent,
            pinning,
        };
        let registry = Arc::clone(&self.registry);
        blocking(move || Ok(registry.db().set_canary(&stored)?)).await?;
        let previous = loaded.get_mut(&key).and_then(|d| d.canary.replace(canary));
        if let Err(e) = self.install(&loaded).await {
            if let Some(d) = loaded.get_mut(&key) {
                d.canary = previous;
            }
            return Err(e);
        }
        self.count_action(tenant, module, "rollout");
        tracing::info!(
            audit = "rollout",
            tenant = %tenant,
            module = %module,
            version,
            percent,
            pinning,
            active_version = active.version,
            by = %by,
            "version rolling out to a share of new connections"
        );
        self.deployment_view(tenant, module, &loaded).await
    }

    async fn end_rollout(
        &self,
        loaded: &mut Loaded,
        tenant: &str,
        module: &str,
        canary: Canary,
        by: &str,
    ) -> Result<Deployment, RegistryError> {
        let registry = Arc::clone(&self.registry);
        let (t, m) = (tenant.to_string(), module.to_string());
        blocking(move || Ok(registry.db().clear_canary(&t, &m)?)).await?;
        let key = (tenant.to_string(), module.to_string());
        if let Some(d) = loaded.get_mut(&key) {
            d.canary = None;
        }
        if let Err(e) = self.install(loaded).await {
            if let Some(d) = loaded.get_mut(&key) {
                d.canary = Some(canary);
            }
            return Err(e);
        }
        self.count_action(tenant, module, "rollback");
        tracing::info!(
            audit = "rollback",
            tenant = %tenant,
            module = %module,
            version = canary.module.version,
            by = %by,
            "rollout ended: the active version takes all new connections again"
        );
        self.deployment_view(tenant, module, loaded).await
    }

    fn count_action(&self, tenant: &str, module: &str, action: &str) {
        self.server
            .metrics()
            .control_actions
            .get_or_create(&crate::metrics::DeployLabels {
                tenant: tenant.to_string(),
                module: module.to_string(),
                action: action.into(),
            })
            .inc();
    }

    /// The deployment of one module as it is now.
    async fn deployment_view(
        &self,
        tenant: &str,
        module: &str,
        loaded: &Loaded,
    ) -> Result<Deployment, RegistryError> {
        let registry = Arc::clone(&self.registry);
        let (t, m) = (tenant.to_string(), module.to_string());
        let (active, bound) = blocking(move || {
            let db = registry.db();
            Ok((db.active_of(&t, &m)?, db.routes()?))
        })
        .await?;
        let active = active.ok_or_else(|| not_found_module(tenant, module))?;
        let rollout = loaded
            .get(&(tenant.to_string(), module.to_string()))
            .and_then(|d| d.canary.as_ref())
            .map(|c| Rollout {
                version: c.module.version.unwrap_or(0),
                percent: c.percent,
                pinning: c.pinning,
            });
        Ok(Deployment {
            tenant: tenant.to_string(),
            module: module.to_string(),
            version: active.version,
            previous_version: active.previous_version,
            activated_at_ms: active.activated_at_ms,
            routes: self.routes_of(tenant, module),
            bound_routes: bound_routes_of(&bound, tenant, module),
            draining: 0,
            rollout,
        })
    }

    /// Activates the version that was active before the current one.
    pub async fn rollback(
        &self,
        tenant: &str,
        module: &str,
        by: &str,
    ) -> Result<Deployment, RegistryError> {
        registry::check_name("tenant", tenant)?;
        registry::check_name("module", module)?;
        let mut loaded = self.loaded.lock().await;
        let key = (tenant.to_string(), module.to_string());
        if let Some(canary) = loaded.get(&key).and_then(|d| d.canary.clone()) {
            // Rolling back a rollout ends it: the active version takes all
            // new connections again.
            return self
                .end_rollout(&mut loaded, tenant, module, canary, by)
                .await;
        }
        let registry = Arc::clone(&self.registry);
        let (t, m) = (tenant.to_string(), module.to_string());
        let active = blocking(move || Ok(registry.db().active_of(&t, &m)?))
            .await?
            .ok_or_else(|| {
                RegistryError::Conflict(format!(
                    "module `{module}` of tenant `{tenant}` has no active version to roll back from"
                ))
            })?;
        let previous = active.previous_version.ok_or_else(|| {
            RegistryError::Conflict(format!(
                "module `{module}` of tenant `{tenant}` has had only one active version ({});                  deploy another version instead",
                active.version
            ))
        })?;
        self.switch(&mut loaded, tenant, module, previous, None, "rollback", by)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn switch(
        &self,
        loaded: &mut Loaded,
        tenant: &str,
        module: &str,
        version: u64,
        route: Option<RouteBinding>,
        action: &'static str,
        by: &str,
    ) -> Result<Deployment, RegistryError> {
        let record = self.existing_version(tenant, module, version).await?;
        // Loaded before the commit: a version that cannot be served is
        // never made active.
        let served = self.load(&record).await?;
        let registry = Arc::clone(&self.registry);
        let (t, m, r) = (tenant.to_string(), module.to_string(), route.clone());
        let (active, bound) = blocking(move || {
            let mut db = registry.db();
            let active = db.activate(
                &t,
                &m,
                version,
                r.as_ref().map(|r| (r.pattern.as_str(), &r.hibernation)),
            )?;
            Ok((active, db.routes()?))
        })
        .await?;
        let previous = loaded.insert(
            (tenant.to_string(), module.to_string()),
            Deployed::new(served),
        );
        if let Err(e) = self.install(loaded).await {
            // Committed but not swapped in: put the old module back in
            // memory; a restart serves what was committed.
            match previous {
                Some(p) => loaded.insert((tenant.to_string(), module.to_string()), p),
                None => loaded.remove(&(tenant.to_string(), module.to_string())),
            };
            return Err(e);
        }
        self.count_action(tenant, module, action);
        let hibernation = route.as_ref().map(|r| &r.hibernation);
        tracing::info!(
            audit = action,
            tenant = %tenant,
            module = %module,
            version,
            previous_version = active.previous_version,
            route = route.as_ref().map(|r| r.pattern.as_str()).unwrap_or(""),
            hibernate_after = hibernation
                .and_then(|h| h.after)
                .map(|d| tracing::field::display(format_duration(d))),
            max_attachment = hibernation.map(|h| h.max_attachment),
            auto_response = hibernation.is_some_and(|h| h.auto_response.is_some()),
            by = %by,
            "module version activated"
        );
        Ok(Deployment {
            tenant: tenant.to_string(),
            module: module.to_string(),
            version,
            previous_version: active.previous_version,
            activated_at_ms: active.activated_at_ms,
            routes: self.routes_of(tenant, module),
            bound_routes: bound_routes_of(&bound, tenant, module),
            draining: 0,
            rollout: None,
        })
    }

    /// The route patterns that `module` of `tenant` serves now.
    fn routes_of(&self, tenant: &str, module: &str) -> Vec<String> {
        self.server
            .routes()
            .into_iter()
            .filter(|(_, m)| m.tenant == tenant && m.name == module)
            .map(|(pattern, _)| pattern)
            .collect()
    }

    /// A module's versions, with which is active and how many live
    /// connections run each.
    pub async fn versions(&self, tenant: &str, module: &str) -> Result<ModuleView, RegistryError> {
        registry::check_name("tenant", tenant)?;
        registry::check_name("module", module)?;
        let registry = Arc::clone(&self.registry);
        let (t, m) = (tenant.to_string(), module.to_string());
        let (versions, active) = blocking(move || {
            let db = registry.db();
            Ok((db.versions(&t, &m)?, db.active_of(&t, &m)?))
        })
        .await?;
        if versions.is_empty() {
            return Err(not_found_module(tenant, module));
        }
        let mut live: HashMap<u64, usize> = HashMap::new();
        for c in self.server.connections() {
            if c.tenant == tenant
                && c.module == module
                && let Some(v) = c.version
            {
                *live.entry(v).or_default() += 1;
            }
        }
        let active_version = active.map(|a| a.version);
        Ok(ModuleView {
            tenant: tenant.to_string(),
            module: module.to_string(),
            active_version,
            versions: versions
                .into_iter()
                .map(|record| VersionView {
                    active: Some(record.version) == active_version,
                    live_connections: live.get(&record.version).copied().unwrap_or(0),
                    record,
                })
                .collect(),
        })
    }

    /// The active deployments of a tenant.
    pub async fn deployments(&self, tenant: &str) -> Result<Vec<Deployment>, RegistryError> {
        registry::check_name("tenant", tenant)?;
        let registry = Arc::clone(&self.registry);
        let (active, canaries, bound) = blocking(move || {
            let db = registry.db();
            Ok((db.active()?, db.canaries()?, db.routes()?))
        })
        .await?;
        Ok(active
            .into_iter()
            .filter(|a| a.tenant == tenant)
            .map(|a| Deployment {
                rollout: canaries
                    .iter()
                    .find(|c| c.tenant == a.tenant && c.module == a.module)
                    .map(|c| Rollout {
                        version: c.version,
                        percent: c.percent,
                        pinning: c.pinning,
                    }),
                routes: self.routes_of(&a.tenant, &a.module),
                bound_routes: bound_routes_of(&bound, &a.tenant, &a.module),
                tenant: a.tenant,
                module: a.module,
                version: a.version,
                previous_version: a.previous_version,
                activated_at_ms: a.activated_at_ms,
                draining: 0,
            })
            .collect())
    }

    /// Every tenant: `default`, and those that uploaded modules.
    pub async fn tenants(&self) -> Result<Vec<TenantView>, RegistryError> {
        let registry = Arc::clone(&self.registry);
        let configured: Vec<String> = self
            .server
            .config_tenants()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let listed = blocking(move || {
            let db = registry.db();
            let mut names = db.tenants()?;
            for name in configured {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            names.sort();
            if !names.iter().any(|n| n == DEFAULT_TENANT) {
                names.insert(0, DEFAULT_TENANT.to_string());
            }
            names
                .into_iter()
                .map(|name| Ok((db.modules(&name)?, name)))
                .collect::<Result<Vec<_>, RegistryError>>()
        })
        .await?;
        let connections = self.server.connections();
        Ok(listed
            .into_iter()
            .map(|(modules, name)| {
                let settings = self.settings().get(&name).cloned().unwrap_or_default();
                TenantView {
                    live_connections: connections.iter().filter(|c| c.tenant == name).count(),
                    path_prefix: settings.path_prefix,
                    max_connections: settings.max_connections,
                    limits: settings.limits,
                    from_config: settings.from_config,
                    memory_used: self.server.tenant_memory_used(&name),
                    name,
                    modules,
                }
            })
            .collect())
    }

    /// Counters and what startup repaired.
    pub fn status(&self) -> Status {
        Status {
            data_dir: self.registry.dir().display().to_string(),
            compiles: self.registry.stats.compiles(),
            compiled_cache_hits: self.registry.stats.cache_hits(),
            live_connections: self.server.connection_ids().len(),
            recovery: self.recovery.clone(),
        }
    }
}

/// A namespace: `/` and then path segments of safe characters.
fn check_prefix(prefix: &str) -> Result<(), RegistryError> {
    crate::config::check_path_prefix(prefix).map_err(RegistryError::Invalid)
}
