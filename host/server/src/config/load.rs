//! Loading a config file: TOML in, validated [`Config`] out, every error
//! located at `file:line: key: message`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use wsbox_io::units::{DurationValue, SizeValue, parse_duration, parse_size};

use super::raw::*;
use super::*;

impl Config {
    /// The built-in default: the bundled demos on `127.0.0.1:8080`.
    ///
    /// The route `/echo` is a plain echo; `/echo/<room>` also greets with
    /// its capture, to show route captures reaching the handler.
    /// `/chat/<room>` is the chat demo (pub/sub). The page at `/` is the
    /// chat's, the echo's is at `/echo.html`.
    pub fn bundled_demo() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            server: ServerConfig::default(),
            tls: None,
            runtime: RuntimeConfig::default(),
            routes: vec![
                RouteConfig {
                    pattern: RoutePattern::new(r"/echo(?:/(?P<room>[^/]+))?")
                        .expect("the demo's pattern compiles"),
                    tenant: DEFAULT_TENANT.to_string(),
                    module: ModuleSource::Bundled {
                        name: "echo",
                        bytes: crate::bundled::ECHO_WASM,
                    },
                    limits: RouteLimits::default(),
                    origin: origin::OriginPolicy::default(),
                    keepalive: Keepalive::default(),
                    // The demo shows off compression: browsers always offer it.
                    compression: Some(DeflateConfig::default()),
                    hibernation: Hibernation::default(),
                },
                RouteConfig {
                    pattern: RoutePattern::new(r"/chat/(?P<room>[A-Za-z0-9_-]{1,32})")
                        .expect("the demo's pattern compiles"),
                    tenant: DEFAULT_TENANT.to_string(),
                    module: ModuleSource::Bundled {
                        name: "chat",
                        bytes: crate::bundled::CHAT_WASM,
                    },
                    limits: RouteLimits::default(),
                    origin: origin::OriginPolicy::default(),
                    keepalive: Keepalive::default(),
                    compression: Some(DeflateConfig::default()),
                    hibernation: Hibernation::default(),
                },
            ],
            pages: vec![
                PageConfig {
                    path: "/".to_string(),
                    source: PageSource::Bundled(crate::bundled::CHAT_PAGE),
                },
                PageConfig {
                    path: "/echo.html".to_string(),
                    source: PageSource::Bundled(crate::bundled::ECHO_PAGE),
                },
            ],
            tenants: Vec::new(),
            admin: Some(AdminConfig::default()),
            pubsub: PubsubConfig::default(),
        }
    }

    /// Reads and validates a config file. Relative module paths are taken
    /// from the config file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used in errors and to
    /// resolve relative module paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let located = Locator { text, path };

        let listen = match &raw.listen {
            None => Config::bundled_demo().listen,
            Some(s) => s.get_ref().parse().map_err(|e| {
                located.error(
                    s.span().start,
                    "listen",
                    format!(
                        "`{}` is not an address like 127.0.0.1:8080: {e}",
                        s.get_ref()
                    ),
                )
            })?,
        };

        let mut server = ServerConfig::default();
        if let Some(sv) = &raw.server {
            if let Some(d) = &sv.handshake_timeout {
                server.handshake_timeout = located.duration(d, "server.handshake_timeout")?;
                if server.handshake_timeout.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        "server.handshake_timeout",
                        "must be greater than zero",
                    ));
                }
            }
            if let Some(size) = &sv.max_header_bytes {
                let n = located.size(size, "server.max_header_bytes")?;
                // hyper needs room for at least a minimal request.
                if n < 8192 {
                    return Err(located.error(
                        size.span().start,
                        "server.max_header_bytes",
                        "must be at least 8KiB",
                    ));
                }
                server.max_header_bytes = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(d) = &sv.drain_time {
                server.drain_time = located.duration(d, "server.drain_time")?;
            }
        }

        let existing_file = |value: &Spanned<String>, key: &str| {
            let path = base.join(value.get_ref());
            if path.is_file() {
                Ok(path)
            } else {
                Err(located.error(
                    value.span().start,
                    key,
                    format!(
                        "no such file: {} (`wsbox cert --dev` writes a self-signed pair)",
                        path.display()
                    ),
                ))
            }
        };
        let tls = match &raw.tls {
            None => None,
            Some(t) => Some(TlsConfig {
                cert: existing_file(&t.cert, "tls.cert")?,
                key: existing_file(&t.key, "tls.key")?,
            }),
        };

        let mut runtime = RuntimeConfig::default();
        if let Some(rt) = &raw.runtime {
            if let Some(n) = &rt.max_instances {
                if *n.get_ref() == 0 {
                    return Err(located.error(
                        n.span().start,
                        "runtime.max_instances",
                        "must be at least 1",
                    ));
                }
                runtime.max_instances = *n.get_ref();
            }
            if let Some(size) = &rt.max_memory_per_instance {
                runtime.max_memory_per_instance =
                    located.size(size, "runtime.max_memory_per_instance")?;
            }
            if let Some(size) = &rt.max_memory_total {
                runtime.max_memory_total = located.size(size, "runtime.max_memory_total")?;
                if runtime.max_memory_total == 0 {
                    return Err(located.error(
                        size.span().start,
                        "runtime.max_memory_total",
                        "must be greater than zero",
                    ));
                }
            }
            for (value, key, field) in [
                (
                    &rt.max_core_instances_per_component,
                    "runtime.max_core_instances_per_component",
                    &mut runtime.max_core_instances_per_component,
                ),
                (
                    &rt.max_memories_per_component,
                    "runtime.max_memories_per_component",
                    &mut runtime.max_memories_per_component,
                ),
                (
                    &rt.max_tables_per_component,
                    "runtime.max_tables_per_component",
                    &mut runtime.max_tables_per_component,
                ),
            ] {
                if let Some(n) = value {
                    if *n.get_ref() == 0 {
                        return Err(located.error(n.span().start, key, "must be at least 1"));
                    }
                    *field = *n.get_ref();
                }
            }
            if let Some(dir) = &rt.compiled_cache {
                runtime.compiled_cache = if dir.get_ref().is_empty() {
                    None
                } else {
                    Some(base.join(dir.get_ref()))
                };
            }
            if let Some(size) = &rt.compiled_cache_max_size {
                runtime.compiled_cache_max_size =
                    located.size(size, "runtime.compiled_cache_max_size")?;
            }
            if let Some(size) = &rt.memory_keep_resident {
                runtime.memory_keep_resident =
                    located.size(size, "runtime.memory_keep_resident")?;
            }
            if let Some(tick) = &rt.epoch_tick {
                runtime.epoch_tick = located.duration(tick, "runtime.epoch_tick")?;
                if runtime.epoch_tick.is_zero() {
                    return Err(located.error(
                        tick.span().start,
                        "runtime.epoch_tick",
                        "must be greater than zero",
                    ));
                }
            }
        }

        if let Some(build) = &raw.build {
            let language = build::Language::parse(build.language.get_ref())
                .map_err(|e| located.error(build.language.span().start, "build.language", e))?;
            build::check_name(build.name.get_ref())
                .map_err(|e| located.error(build.name.span().start, "build.name", e))?;
            if let Some(world) = &build.world {
                build::check_world(language, world.get_ref())
                    .map_err(|e| located.error(world.span().start, "build.world", e))?;
            }
        }

        let admin = match &raw.admin {
            None => None,
            Some(a) => {
                let mut admin = AdminConfig::default();
                if let Some(l) = &a.listen {
                    admin.listen = l.get_ref().parse().map_err(|e| {
                        located.error(
                            l.span().start,
                            "admin.listen",
                            format!(
                                "`{}` is not an address like 127.0.0.1:9090: {e}",
                                l.get_ref()
                            ),
                        )
                    })?;
                }
                if let Some(d) = &a.data_dir {
                    admin.data_dir = base.join(d.get_ref());
                }
                if let Some(size) = &a.max_module_size {
                    admin.max_module_size = located.size(size, "admin.max_module_size")?;
                }
                if let Some(t) = &a.max_compile_time {
                    admin.max_compile_time = located.duration(t, "admin.max_compile_time")?;
                    if admin.max_compile_time.is_zero() {
                        return Err(located.error(
                            t.span().start,
                            "admin.max_compile_time",
                            "must be greater than zero",
                        ));
                    }
                }
                if let Some(t) = &a.tls {
                    admin.tls = Some(TlsConfig {
                        cert: existing_file(&t.cert, "admin.tls.cert")?,
                        key: existing_file(&t.key, "admin.tls.key")?,
                    });
                }
                Some(admin)
            }
        };

        // With a control plane, routes can come from deploys instead.
        if raw.route.is_empty() && admin.is_none() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: "no routes: add at least one [[route]] with `path` and `module`, or an [admin] section to deploy routes through the admin API"
                    .to_string(),
            });
        }
        let tenants = located.tenants(&raw.tenant)?;
        let mut routes = Vec::with_capacity(raw.route.len());
        for (i, r) in raw.route.iter().enumerate() {
            let key = |k: &str| format!("route[{i}].{k}");
            let pattern = r.path.get_ref().clone();
            let tenant = match &r.tenant {
                None => DEFAULT_TENANT.to_string(),
                Some(t) => {
                    let declared = tenants.iter().find(|d| &d.name == t.get_ref());
                    match declared {
                        Some(d) if d.path_prefix.is_some() => d.name.clone(),
                        Some(_) => {
                            return Err(located.error(
                                t.span().start,
                                &key("tenant"),
                                format!(
                                    "tenant `{}` has no path_prefix: give it one, its routes are matched under it",
                                    t.get_ref()
                                ),
                            ));
                        }
                        None if t.get_ref() == DEFAULT_TENANT => t.get_ref().clone(),
                        None => {
                            return Err(located.error(
                                t.span().start,
                                &key("tenant"),
                                format!(
                                    "no tenant `{}`: declare it with a [[tenant]] section (name, path_prefix)",
                                    t.get_ref()
                                ),
                            ));
                        }
                    }
                }
            };
            // A tenant's route is matched under its namespace, as the
            // admin API binds them.
            let prefix = tenants
                .iter()
                .find(|d| d.name == tenant)
                .and_then(|d| d.path_prefix.as_deref());
            let pattern = match prefix {
                None => pattern,
                Some(prefix) => namespaced(prefix, &pattern).ok_or_else(|| {
                    located.error(
                        r.path.span().start,
                        &key("path"),
                        format!("`{pattern}` must start with `/`: a tenant's routes are matched under its path_prefix"),
                    )
                })?,
            };
            let pattern = RoutePattern::new(pattern).map_err(|e| {
                located.error(
                    r.path.span().start,
                    &key("path"),
                    format!("invalid regular expression: {e}"),
                )
            })?;
            let module_path = base.join(r.module.get_ref());
            if !module_path.is_file() {
                return Err(located.error(
                    r.module.span().start,
                    &key("module"),
                    format!("no such file: {}", module_path.display()),
                ));
            }
            let mut limits = RouteLimits::default();
            if let Some(s) = &r.max_message_size {
                limits.max_message_size = located.size(s, &key("max_message_size"))?;
                if limits.max_message_size == 0 {
                    return Err(located.error(
                        s.span().start,
                        &key("max_message_size"),
                        "must be greater than zero",
                    ));
                }
                if limits.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
                    return Err(located.error(
                        s.span().start,
                        &key("max_message_size"),
                        "must be at most 1GiB: a message has to fit in the handler's 32-bit memory",
                    ));
                }
            }
            if let Some(s) = &r.memory_limit {
                limits.memory_limit = located.size(s, &key("memory_limit"))?;
                if limits.memory_limit > runtime.max_memory_per_instance {
                    return Err(located.error(
                        s.span().start,
                        &key("memory_limit"),
                        format!(
                            "{} bytes is more than runtime.max_memory_per_instance ({} bytes)",
                            limits.memory_limit, runtime.max_memory_per_instance
                        ),
                    ));
                }
            } else {
                limits.memory_limit = limits.memory_limit.min(runtime.max_memory_per_instance);
            }
            if let Some(d) = &r.cpu_time_per_event {
                limits.cpu_time_per_event = located.duration(d, &key("cpu_time_per_event"))?;
                if limits.cpu_time_per_event.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("cpu_time_per_event"),
                        "must be greater than zero",
                    ));
                }
            }
            if let Some(d) = &r.cpu_time_per_second {
                limits.cpu_time_per_second = located.duration(d, &key("cpu_time_per_second"))?;
                if limits.cpu_time_per_second.is_zero()
                    || limits.cpu_time_per_second > Duration::from_secs(1)
                {
                    return Err(located.error(
                        d.span().start,
                        &key("cpu_time_per_second"),
                        "must be greater than zero and at most 1s (one core)",
                    ));
                }
            }
            if let Some(d) = &r.route_cpu_time_per_second {
                let v = located.duration(d, &key("route_cpu_time_per_second"))?;
                if v.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("route_cpu_time_per_second"),
                        "must be greater than zero (\"1s\" is one core)",
                    ));
                }
                limits.route_cpu_time_per_second = Some(v);
            }
            if let Some(d) = &r.wall_time_per_call {
                limits.wall_time_per_call = located.duration(d, &key("wall_time_per_call"))?;
                if limits.wall_time_per_call.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("wall_time_per_call"),
                        "must be greater than zero",
                    ));
                }
            }
            if let Some(n) = &r.log_lines_per_second {
                if *n.get_ref() == 0 {
                    return Err(located.error(
                        n.span().start,
                        &key("log_lines_per_second"),
                        "must be at least 1 (guest logs cannot be switched off here; lower RUST_LOG instead)",
                    ));
                }
                limits.log_lines_per_second = *n.get_ref();
            }
            if let Some(n) = &r.log_bytes_per_second {
                limits.log_bytes_per_second = located.size(n, &key("log_bytes_per_second"))?;
                if limits.log_bytes_per_second == 0 {
                    return Err(located.error(
                        n.span().start,
                        &key("log_bytes_per_second"),
                        "must be at least 1 (guest logs cannot be switched off here; lower RUST_LOG instead)",
                    ));
                }
            }
            if let Some(d) = &r.clock_resolution {
                limits.clock_resolution = located.duration(d, &key("clock_resolution"))?;
                if limits.clock_resolution > Duration::from_secs(1) {
                    return Err(located.error(
                        d.span().start,
                        &key("clock_resolution"),
                        "must be at most 1s (0 gives handlers the host's own resolution)",
                    ));
                }
            }
            if let Some(n) = &r.max_concurrent_calls {
                if *n.get_ref() == 0 {
                    return Err(located.error(
                        n.span().start,
                        &key("max_concurrent_calls"),
                        "must be at least 1",
                    ));
                }
                limits.max_concurrent_calls = Some(*n.get_ref());
            }
            if let Some(s) = &r.max_backpressure {
                let n = located.size(s, &key("max_backpressure"))?;
                if n < 1024 {
                    return Err(located.error(
                        s.span().start,
                        &key("max_backpressure"),
                        "must be at least 1KiB",
                    ));
                }
                limits.max_backpressure = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(policy) = &r.slow_consumer {
                limits.slow_consumer = match policy.get_ref().as_str() {
                    "drop" => SlowConsumerPolicy::Drop,
                    "close" => SlowConsumerPolicy::Close,
                    other => {
                        return Err(located.error(
                            policy.span().start,
                            &key("slow_consumer"),
                            format!("`{other}` is not a policy: use \"drop\" (the default: skip messages for it while it is over max_backpressure) or \"close\" (close it with 1008)"),
                        ));
                    }
                };
            }
            if let Some(fanout) = &r.pubsub_fanout {
                limits.pubsub_fanout = match fanout.get_ref().as_str() {
                    "shared" => Fanout::Shared,
                    "per_connection" => Fanout::PerConnection,
                    other => {
                        return Err(located.error(
                            fanout.span().start,
                            &key("pubsub_fanout"),
                            format!("`{other}` is not a fan-out: use \"shared\" (the default: encode and compress once for every subscriber) or \"per_connection\" (each connection compresses itself; a benchmark baseline)"),
                        ));
                    }
                };
            }
            let mut origin = OriginConfig::default();
            if let Some(list) = &r.allowed_origins {
                for o in list.get_ref() {
                    if let Err(m) = origin::validate_allowed(o) {
                        return Err(located.error(list.span().start, &key("allowed_origins"), m));
                    }
                    origin.allowed.push(o.clone());
                }
            }
            if let Some(policy) = &r.origin_policy {
                origin.enforce = match policy.get_ref().as_str() {
                    "enforce" => true,
                    "handler" => false,
                    other => {
                        return Err(located.error(
                            policy.span().start,
                            &key("origin_policy"),
                            format!("`{other}` is not a policy: use \"handler\" (the default: the handler may override the host's verdict) or \"enforce\""),
                        ));
                    }
                };
            }
            let origin = origin::OriginPolicy::new(&origin).map_err(|m| {
                let at = r.allowed_origins.as_ref().map_or(0, |l| l.span().start);
                located.error(at, &key("allowed_origins"), m)
            })?;
            let mut keepalive = Keepalive::default();
            if let Some(d) = &r.ping_interval {
                let v = located.duration(d, &key("ping_interval"))?;
                // 0 disables pings, as in Tornado.
                keepalive.ping_interval = (!v.is_zero()).then_some(v);
            }
            if let Some(d) = &r.ping_timeout {
                let v = located.duration(d, &key("ping_timeout"))?;
                if v.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("ping_timeout"),
                        "must be greater than zero (leave it out to use ping_interval)",
                    ));
                }
                match keepalive.ping_interval {
                    None => {
                        return Err(located.error(
                            d.span().start,
                            &key("ping_timeout"),
                            "needs ping_interval: without pings there is nothing to time out",
                        ));
                    }
                    Some(interval) if v > interval => {
                        return Err(located.error(
                            d.span().start,
                            &key("ping_timeout"),
                            format!(
                                "{v:?} is longer than ping_interval ({interval:?}); like Tornado 6.5, the timeout may not exceed the interval"
                            ),
                        ));
                    }
                    Some(_) => keepalive.ping_timeout = Some(v),
                }
            }
            let compression = match &r.compression {
                None => None,
                Some(c) => Some(located.compression(c, &key("compression"))?),
            };
            let mut hibernation = Hibernation::default();
            if let Some(d) = &r.hibernate_after {
                hibernation.after = Hibernation::parse_after(d.get_ref())
                    .map_err(|m| located.error(d.span().start, &key("hibernate_after"), m))?;
            }
            if let Some(s) = &r.max_attachment {
                hibernation.max_attachment = Hibernation::parse_max_attachment(s.get_ref())
                    .map_err(|m| located.error(s.span().start, &key("max_attachment"), m))?;
            }
            if let Some(a) = &r.auto_response {
                hibernation.auto_response = Some(
                    AutoResponse::new(&a.request, &a.response).map_err(|(k, m)| {
                        located.error(r.path.span().start, &key(&format!("auto_response.{k}")), m)
                    })?,
                );
            }
            routes.push(RouteConfig {
                pattern,
                tenant,
                module: ModuleSource::File(module_path),
                limits,
                origin,
                keepalive,
                compression,
                hibernation,
            });
        }
        let mut pages: Vec<PageConfig> = Vec::with_capacity(raw.page.len());
        for (i, p) in raw.page.iter().enumerate() {
            let key = |k: &str| format!("page[{i}].{k}");
            let page_path = p.path.get_ref();
            if !page_path.starts_with('/') || page_path.contains(['?', '#']) {
                return Err(located.error(
                    p.path.span().start,
                    &key("path"),
                    format!("`{page_path}` is not a request path like \"/\" or \"/chat.html\""),
                ));
            }
            if pages.iter().any(|other| &other.path == page_path) {
                return Err(located.error(
                    p.path.span().start,
                    &key("path"),
                    format!("`{page_path}` is already served by an earlier [[page]]"),
                ));
            }
            let file = base.join(p.file.get_ref());
            if !file.is_file() {
                return Err(located.error(
                    p.file.span().start,
                    &key("file"),
                    format!("no such file: {}", file.display()),
                ));
            }
            pages.push(PageConfig {
                path: page_path.clone(),
                source: PageSource::File(file),
            });
        }
        let mut pubsub = PubsubConfig::default();
        if let Some(raw_pubsub) = &raw.pubsub {
            let own = RawPubsubLimits {
                max_subscriptions_per_connection: raw_pubsub
                    .max_subscriptions_per_connection
                    .clone(),
                max_publishes_per_second: raw_pubsub.max_publishes_per_second.clone(),
            };
            pubsub.default_limits =
                located.pubsub_limits(&own, PubsubLimits::default(), "pubsub")?;
            pubsub.broker = located.broker(raw_pubsub)?;
        }
        Ok(Config {
            listen,
            server,
            tls,
            runtime,
            routes,
            tenants,
            pages,
            admin,
            pubsub,
        })
    }
}

/// Turns byte offsets into `file:line` errors.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn error(&self, offset: usize, key: &str, message: impl Into<String>) -> ConfigError {
        let line = self
            .text
            .get(..offset)
            .map(|before| before.matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The `[[tenant]]` sections: names valid and unique, namespaces that
    /// do not nest, limits of at least 1.
    fn tenants(&self, raw: &[RawTenant]) -> Result<Vec<TenantConfig>, ConfigError> {
        let mut tenants: Vec<TenantConfig> = Vec::with_capacity(raw.len());
        for (i, t) in raw.iter().enumerate() {
            let key = |k: &str| format!("tenant[{i}].{k}");
            let name = t.name.get_ref().clone();
            if let Err(e) = crate::registry::check_name("tenant", &name) {
                return Err(self.error(t.name.span().start, &key("name"), e.to_string()));
            }
            if tenants.iter().any(|o| o.name == name) {
                return Err(self.error(
                    t.name.span().start,
                    &key("name"),
                    format!("tenant `{name}` is declared twice"),
                ));
            }
            let path_prefix = match &t.path_prefix {
                None => None,
                Some(p) => {
                    let prefix = p.get_ref();
                    if name == DEFAULT_TENANT {
                        return Err(self.error(
                            p.span().start,
                            &key("path_prefix"),
                            "the default tenant has no namespace: its routes are matched as written",
                        ));
                    }
                    check_path_prefix(prefix)
                        .map_err(|m| self.error(p.span().start, &key("path_prefix"), m))?;
                    if let Some(o) = tenants.iter().find(|o| {
                        o.path_prefix
                            .as_deref()
                            .is_some_and(|q| prefixes_overlap(q, prefix))
                    }) {
                        return Err(self.error(
                            p.span().start,
                            &key("path_prefix"),
                            format!("{prefix} overlaps tenant `{}`'s namespace: namespaces must not nest", o.name),
                        ));
                    }
                    Some(prefix.clone())
                }
            };
            let at_least_1 =
                |v: Option<u64>, span: Option<std::ops::Range<usize>>, k: &str| match (v, span) {
                    (Some(0), Some(span)) => Err(self.error(
                        span.start,
                        &key(k),
                        "must be at least 1 (leave it out for no limit)",
                    )),
                    _ => Ok(v),
                };
            let size =
                |v: &Option<Spanned<SizeValue>>, k: &str| -> Result<Option<u64>, ConfigError> {
                    match v {
                        None => Ok(None),
                        Some(v) => at_least_1(Some(self.size(v, &key(k))?), Some(v.span()), k),
                    }
                };
            let max_connections = at_least_1(
                t.max_connections.as_ref().map(|v| *v.get_ref()),
                t.max_connections.as_ref().map(|v| v.span()),
                "max_connections",
            )?;
            let small = |v: &Option<Spanned<u32>>, k: &str| {
                at_least_1(
                    v.as_ref().map(|v| u64::from(*v.get_ref())),
                    v.as_ref().map(|v| v.span()),
                    k,
                )
                .map(|v| v.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
            };
            let limits = TenantLimits {
                max_memory_total: size(&t.max_memory_total, "max_memory_total")?,
                max_concurrent_calls: small(&t.max_concurrent_calls, "max_concurrent_calls")?,
                log_lines_per_second: small(&t.log_lines_per_second, "log_lines_per_second")?,
                log_bytes_per_second: size(&t.log_bytes_per_second, "log_bytes_per_second")?,
                clock_resolution_ms: t.clock_resolution_ms.as_ref().map(|v| *v.get_ref()),
                max_subscriptions_per_connection: small(
                    &t.max_subscriptions_per_connection,
                    "max_subscriptions_per_connection",
                )?,
                max_publishes_per_second: small(
                    &t.max_publishes_per_second,
                    "max_publishes_per_second",
                )?,
                max_message_size: size(&t.max_message_size, "max_message_size")?,
                max_output_buffer: size(&t.max_output_buffer, "max_output_buffer")?,
                memory_limit: size(&t.memory_limit, "memory_limit")?,
                cpu_time_per_event_ms: at_least_1(
                    t.cpu_time_per_event_ms.as_ref().map(|v| *v.get_ref()),
                    t.cpu_time_per_event_ms.as_ref().map(|v| v.span()),
                    "cpu_time_per_event_ms",
                )?,
            };
            tenants.push(TenantConfig {
                name,
                path_prefix,
                max_connections,
                limits,
            });
        }
        Ok(tenants)
    }

    fn size(&self, value: &Spanned<SizeValue>, key: &str) -> Result<u64, ConfigError> {
        parse_size(value.get_ref()).map_err(|m| self.error(value.span().start, key, m))
    }

    fn compression(&self, raw: &RawCompression, key: &str) -> Result<DeflateConfig, ConfigError> {
        let mut c = DeflateConfig::default();
        let in_range = |v: &Spanned<i64>, name: &str, lo: i64, hi: i64| {
            let n = *v.get_ref();
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(self.error(
                    v.span().start,
                    &format!("{key}.{name}"),
                    format!("{n} is out of range: use {lo} to {hi}"),
                ))
            }
        };
        if let Some(v) = &raw.compression_level {
            c.compression_level = in_range(v, "compression_level", 0, 9)? as u32;
        }
        if let Some(v) = &raw.mem_level {
            c.mem_level = in_range(v, "mem_level", 1, 9)? as u8;
        }
        if let Some(v) = &raw.server_max_window_bits {
            c.server_max_window_bits = in_range(v, "server_max_window_bits", 8, 15)? as u8;
        }
        if let Some(v) = &raw.client_max_window_bits {
            c.client_max_window_bits = in_range(v, "client_max_window_bits", 8, 15)? as u8;
        }
        if let Some(v) = raw.server_no_context_takeover {
            c.server_no_context_takeover = v;
        }
        if let Some(v) = raw.client_no_context_takeover {
            c.client_no_context_takeover = v;
        }
        if let Some(v) = &raw.min_size {
            c.min_compress_size =
                usize::try_from(self.size(v, &format!("{key}.min_size"))?).unwrap_or(usize::MAX);
        }
        Ok(c)
    }

    fn pubsub_limits(
        &self,
        raw: &RawPubsubLimits,
        defaults: PubsubLimits,
        key: &str,
    ) -> Result<PubsubLimits, ConfigError> {
        let mut limits = defaults;
        let at_least_one = |v: &Spanned<u32>, name: &str| {
            if *v.get_ref() == 0 {
                Err(self.error(
                    v.span().start,
                    &format!("{key}.{name}"),
                    "must be at least 1",
                ))
            } else {
                Ok(*v.get_ref())
            }
        };
        if let Some(v) = &raw.max_subscriptions_per_connection {
            limits.max_subscriptions_per_connection =
                at_least_one(v, "max_subscriptions_per_connection")?;
        }
        if let Some(v) = &raw.max_publishes_per_second {
            limits.max_publishes_per_second = at_least_one(v, "max_publishes_per_second")?;
        }
        Ok(limits)
    }

    fn broker(&self, raw: &RawPubsub) -> Result<Option<BrokerConfig>, ConfigError> {
        let backend = match &raw.backend {
            Some(b) => parse_backend(b.get_ref())
                .map_err(|m| self.error(b.span().start, "pubsub.backend", m))?,
            None => None,
        };
        let Some((kind, url)) = backend else {
            for (span, name) in [
                (raw.node_id.as_ref().map(|v| v.span()), "node_id"),
                (
                    raw.channel_prefix.as_ref().map(|v| v.span()),
                    "channel_prefix",
                ),
            ] {
                if let Some(span) = span {
                    return Err(self.error(
                        span.start,
                        &format!("pubsub.{name}"),
                        "only means something with a broker: set `backend` to a redis:// or nats:// URL",
                    ));
                }
            }
            return Ok(None);
        };
        let node_id = match &raw.node_id {
            Some(v) => match u16::try_from(*v.get_ref()) {
                Ok(id) if id > 0 => Some(id),
                _ => {
                    return Err(self.error(
                        v.span().start,
                        "pubsub.node_id",
                        "must be 1 to 65535, and different on every node",
                    ));
                }
            },
            None => None,
        };
        let channel_prefix = match &raw.channel_prefix {
            Some(p) => {
                let prefix = p.get_ref();
                let ok = !prefix.is_empty()
                    && prefix.len() <= 64
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
                if !ok {
                    return Err(self.error(
                        p.span().start,
                        "pubsub.channel_prefix",
                        "must be 1 to 64 letters, digits, `-` or `_`",
                    ));
                }
                prefix.clone()
            }
            None => DEFAULT_CHANNEL_PREFIX.to_string(),
        };
        Ok(Some(BrokerConfig {
            kind,
            url,
            node_id,
            channel_prefix,
        }))
    }

    fn duration(&self, value: &Spanned<DurationValue>, key: &str) -> Result<Duration, ConfigError> {
        parse_duration(value.get_ref()).map_err(|m| self.error(value.span().start, key, m))
    }
}
