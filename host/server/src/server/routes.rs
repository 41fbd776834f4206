//! The route table: path regexes whose captures reach the handler, as in
//! Tornado's URL specs.

use std::sync::Arc;

use anyhow::Result;

use crate::config::RouteConfig;
use wsbox_runtime::{HandlerModule, InstanceLimits, TenantShare};

pub use crate::config::{DEFAULT_TENANT, RoutePattern, anchor};

/// A compiled module as a route serves it: which tenant's module, which
/// version. Routes and live connections share it; an old version is freed
/// when the last connection that runs it closes.
pub struct ServedModule {
    pub handler: Arc<HandlerModule>,
    pub tenant: String,
    pub name: String,
    /// The registry version; `None` for a module named in the config file.
    pub version: Option<u64>,
}

impl ServedModule {
    /// A module from the config file, in the tenant of its route.
    pub fn from_config(handler: Arc<HandlerModule>, tenant: &str) -> Arc<ServedModule> {
        Arc::new(ServedModule {
            name: handler.name().to_string(),
            handler,
            tenant: tenant.to_string(),
            version: None,
        })
    }

    /// `name@version` (or `name@config`), for logs and listings.
    pub fn label(&self) -> String {
        match self.version {
            Some(v) => format!("{}@{v}", self.name),
            None => format!("{}@config", self.name),
        }
    }
}

/// A version deployed to a share of new connections beside the active one
/// (gradual rollout).
#[derive(Clone)]
pub struct Canary {
    pub module: Arc<ServedModule>,
    /// Percent of new connections it gets, 1 to 99.
    pub percent: u8,
    /// Whether a client may choose between the two versions with a
    /// `wsbox-version` header or query parameter (for testers).
    pub pinning: bool,
}

/// What serves one module of a tenant: its active version and, during a
/// gradual rollout, the version rolling out.
#[derive(Clone)]
pub struct Deployed {
    pub active: Arc<ServedModule>,
    pub canary: Option<Canary>,
}

impl Deployed {
    pub fn new(active: Arc<ServedModule>) -> Deployed {
        Deployed {
            active,
            canary: None,
        }
    }
}

/// The name of the header and query parameter that pin a version.
pub const PIN: &str = "wsbox-version";

/// One route, ready to serve.
pub struct Route {
    /// The module (and version) serving it.
    pub module: Arc<ServedModule>,
    /// A version rolling out to a share of new connections.
    pub canary: Option<Canary>,
    /// The route's settings as configured.
    pub config: RouteConfig,
    /// The sandbox limits of each connection's instance.
    pub instance_limits: InstanceLimits,
    /// What its hibernating connections need to find it again, shared by
    /// all of them.
    pub wake: Arc<super::hibernation::WakeRoute>,
}

impl Route {
    /// Builds a route for a module already compiled; its instances share
    /// `tenant` with the rest of their tenant.
    pub fn new(config: RouteConfig, module: Arc<ServedModule>, tenant: TenantShare) -> Route {
        Route {
            wake: Arc::new(super::hibernation::WakeRoute {
                pattern: config.pattern.as_str().to_string(),
                tenant: config.tenant.clone(),
                config: config.hibernation.clone(),
            }),
            module,
            canary: None,
            instance_limits: InstanceLimits::for_route(&config.limits.sandbox(), tenant),
            config,
        }
    }
}

impl Route {
    /// The pattern as configured.
    pub fn pattern(&self) -> &str {
        self.config.pattern.as_str()
    }

    /// Builds a route for a module's deployment (its active version and
    /// any version rolling out).
    pub fn deployed(config: RouteConfig, deployed: &Deployed, tenant: TenantShare) -> Route {
        let mut route = Route::new(config, Arc::clone(&deployed.active), tenant);
        route.canary = deployed.canary.clone();
        route
    }

    /// The module version a new connection gets: the version rolling out
    /// for its share of connections (`roll` is uniform in 0..100), else
    /// the active one. With pinning on, `pin` (a `wsbox-version` value)
    /// chooses one of the two; another value is an error that says which
    /// ones there are.
    pub fn choose(&self, pin: Option<&str>, roll: u8) -> Result<&Arc<ServedModule>, String> {
        let Some(canary) = &self.canary else {
            return Ok(&self.module);
        };
        if canary.pinning
            && let Some(pin) = pin
        {
            let wanted = pin.trim().parse::<u64>().ok();
            if wanted.is_some() && wanted == canary.module.version {
                return Ok(&canary.module);
            }
            if wanted.is_some() && wanted == self.module.version {
                return Ok(&self.module);
            }
            return Err(format!(
                "{PIN}: {pin} is not served here: module `{}` runs versions {} and {}",
                self.module.name,
                self.module.version.unwrap_or(0),
                canary.module.version.unwrap_or(0)
            ));
        }
        if roll < canary.percent {
            Ok(&canary.module)
        } else {
            Ok(&self.module)
        }
    }
}

/// A route that matched a path, with its captures.
pub struct RouteMatch<'a> {
    pub route: &'a Arc<Route>,
    /// Unnamed groups in order (Tornado's `path_args`); a group that did
    /// not take part in the match is an empty string.
    pub positional: Vec<String>,
    /// Named groups that took part in the match (Tornado's `path_kwargs`).
    pub named: Vec<(String, String)>,
}

/// The routes, in the order they are tried. Immutable: a deploy builds a
/// new table and swaps it in whole.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<Route>>) -> RouteTable {
        RouteTable { routes }
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The first route whose pattern matches the whole path.
    pub fn find(&self, path: &str) -> Option<RouteMatch<'_>> {
        self.routes.iter().find_map(|route| {
            let caps = route.config.pattern.regex().captures(path)?;
            let mut positional = Vec::new();
            let mut named = Vec::new();
            for (i, name) in route
                .config
                .pattern
                .regex()
                .capture_names()
                .enumerate()
                .skip(1)
            {
                let value = caps.get(i).map(|m| m.as_str().to_string());
                match name {
                    Some(name) => {
                        if let Some(v) = value {
                            named.push((name.to_string(), v));
                        }
                    }
                    None => positional.push(value.unwrap_or_default()),
                }
            }
            Some(RouteMatch {
                route,
                positional,
                named,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn anchoring_requires_a_whole_match() {
        let re = Regex::new(&anchor("/echo")).unwrap();
        assert!(re.is_match("/echo"));
        assert!(!re.is_match("/echo/extra"));
        assert!(!re.is_match("/x/echo"));
        let re = Regex::new(&anchor("/a|/b")).unwrap();
        assert!(re.is_match("/a") && re.is_match("/b") && !re.is_match("/a/b"));
    }
}
