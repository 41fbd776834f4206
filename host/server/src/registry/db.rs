//! The registry's metadata in SQLite: module versions, which version of
//! each module is active, and the routes bound through the admin API (with
//! their hibernation settings).
//!
//! Every change is one transaction in WAL mode with `synchronous=FULL`: a
//! crash leaves the state before or after it, never in between.
//!
//! The schema is versioned with SQLite's `user_version`: [`SCHEMA`] creates
//! the tables as the first release had them, and [`migrate`] brings any
//! older database up to date, one step per version, each in a transaction
//! of its own. Columns are only ever added (nullable), so an older wsbox
//! can still read and write a migrated database.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

pub use crate::config::TenantLimits;
use crate::config::{AutoResponse, DEFAULT_MAX_ATTACHMENT, Hibernation};

/// One uploaded, immutable version of a module.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionRecord {
    pub tenant: String,
    pub module: String,
    pub version: u64,
    /// SHA-256 of the component's bytes, in hex: the blob's name.
    pub sha256: String,
    pub size: u64,
    /// The name of the token that uploaded it.
    pub uploaded_by: String,
    /// Milliseconds since the Unix epoch.
    pub uploaded_at_ms: i64,
    pub note: Option<String>,
}

/// Which version of a module serves its routes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ActiveRecord {
    pub tenant: String,
    pub module: String,
    pub version: u64,
    /// The version active before this one: what `rollback` goes back to.
    pub previous_version: Option<u64>,
    pub activated_at_ms: i64,
}

/// A route bound to a module through the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub tenant: String,
    /// The path regex as bound (a tenant's is matched under its prefix).
    pub pattern: String,
    pub module: String,
    /// `hibernate_after`, `max_attachment` and `auto_response`, as a
    /// config route's (the defaults, hibernation off, for routes bound
    /// before they could be set).
    pub hibernation: Hibernation,
}

/// A tenant's settings, set through the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct TenantRecord {
    pub name: String,
    /// The path prefix its API-bound routes live under (`/acme`); `None`
    /// for `default`, whose routes are not prefixed.
    pub path_prefix: Option<String>,
    /// The most connections it may have open at once.
    pub max_connections: Option<u64>,
    /// What all its instances share.
    #[serde(flatten)]
    pub limits: TenantLimits,
    /// Declared in the config file (`[[tenant]]`): changed there, not
    /// through the API, and not stored in the registry.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_config: bool,
}

/// A version rolling out to a share of a module's new connections.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CanaryRecord {
    pub tenant: String,
    pub module: String,
    pub version: u64,
    pub percent: u8,
    pub pinning: bool,
}

/// A tenant token as stored: its SHA-256, never the token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRecord {
    pub tenant: String,
    pub name: String,
    #[serde(skip)]
    pub sha256: [u8; 32],
    pub created_by: String,
    pub created_at_ms: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    path_prefix TEXT UNIQUE,
    max_connections INTEGER
);
CREATE TABLE IF NOT EXISTS versions (
    tenant TEXT NOT NULL,
    module TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at_ms INTEGER NOT NULL,
    note TEXT,
    PRIMARY KEY (tenant, module, version)
);
CREATE TABLE IF NOT EXISTS active (
    tenant TEXT NOT NULL,
    module TEXT NOT NULL,
    version INTEGER NOT NULL,
    previous_version INTEGER,
    activated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, module),
    FOREIGN KEY (tenant, module, version) REFERENCES versions (tenant, module, version)
);
CREATE TABLE IF NOT EXISTS canaries (
    tenant TEXT NOT NULL,
    module TEXT NOT NULL,
    version INTEGER NOT NULL,
    percent INTEGER NOT NULL,
    pinning INTEGER NOT NULL,
    PRIMARY KEY (tenant, module),
    FOREIGN KEY (tenant, module, version) REFERENCES versions (tenant, module, version)
);
CREATE TABLE IF NOT EXISTS tokens (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 BLOB NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS routes (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    pattern TEXT NOT NULL,
    module TEXT NOT NULL,
    UNIQUE (tenant, pattern)
);
";

/// The open metadata database.
pub struct Db {
    conn: Connection,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The schema version [`migrate`] brings a database to.
pub const SCHEMA_VERSION: i64 = 2;

/// Brings a database written by an older wsbox up to date, one step per
/// `user_version`:
///
/// 1. `tenants.limits`: tenants' shared limits, as JSON.
/// 2. `routes.hibernate_after_ns`, `max_attachment`,
///    `auto_response_request`, `auto_response_response`: the hibernation
///    settings of routes bound through the API. NULL (every route bound
///    before) means the defaults: hibernation off, a 16 KiB attachment
///    limit, no auto-response.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        // Tenants' shared limits, as JSON (a `TenantLimits`).
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE tenants ADD COLUMN limits TEXT;
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 {
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE routes ADD COLUMN hibernate_after_ns INTEGER;
             ALTER TABLE routes ADD COLUMN max_attachment INTEGER;
             ALTER TABLE routes ADD COLUMN auto_response_request TEXT;
             ALTER TABLE routes ADD COLUMN auto_response_response TEXT;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "registry schema migrated: routes bound through the API can hibernate"
        );
    }
    Ok(())
}

impl Db {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        let conn = Connection::open(path)?;
        // WAL: a commit is one append to the log; readers never see a half
        // transaction. FULL: the commit is on disk when it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(Db { conn })
    }

    /// Records a new version, numbered one past the module's last.
    pub fn insert_version(
        &mut self,
        tenant: &str,
        module: &str,
        sha256: &str,
        size: u64,
        uploaded_by: &str,
        note: Option<&str>,
    ) -> rusqlite::Result<VersionRecord> {
        let tx = self.conn.transaction()?;
        let last: Option<i64> = tx.query_row(
            "SELECT MAX(version) FROM versions WHERE tenant = ?1 AND module = ?2",
            params![tenant, module],
            |r| r.get(0),
        )?;
        let version = to_u64(last.unwrap_or(0)) + 1;
        let at = now_ms();
        tx.execute(
            "INSERT INTO versions (tenant, module, version, sha256, size, uploaded_by, uploaded_at_ms, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![tenant, module, to_i64(version), sha256, to_i64(size), uploaded_by, at, note],
        )?;
        tx.commit()?;
        Ok(VersionRecord {
            tenant: tenant.into(),
            module: module.into(),
            version,
            sha256: sha256.into(),
            size,
            uploaded_by: uploaded_by.into(),
            uploaded_at_ms: at,
            note: note.map(str::to_string),
        })
    }

    /// A module's versions, oldest first.
    pub fn versions(&self, tenant: &str, module: &str) -> rusqlite::Result<Vec<VersionRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT tenant, module, version, sha256, size, uploaded_by, uploaded_at_ms, note
             FROM versions WHERE tenant = ?1 AND module = ?2 ORDER BY version",
        )?;
        stmt.query_map(params![tenant, module], version_row)?
            .collect()
    }

    /// One version, if it exists.
    pub fn version(
        &self,
        tenant: &str,
        module: &str,
        version: u64,
    ) -> rusqlite::Result<Option<VersionRecord>> {
        self.conn
            .query_row(
                "SELECT tenant, module, version, sha256, size, uploaded_by, uploaded_at_ms, note
                 FROM versions WHERE tenant = ?1 AND module = ?2 AND version = ?3",
                params![tenant, module, to_i64(version)],
                version_row,
            )
            .optional()
    }

    /// The SHA-256 of every version, for the blob check at startup.
    pub fn all_hashes(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT DISTINCT sha256 FROM versions")?;
        stmt.query_map([], |r| r.get(0))?.collect()
    }

    /// Every active deployment.
    pub fn active(&self) -> rusqlite::Result<Vec<ActiveRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT tenant, module, version, previous_version, activated_at_ms
             FROM active ORDER BY tenant, module",
        )?;
        stmt.query_map([], active_row)?.collect()
    }

    /// The active deployment of one module.
    pub fn active_of(&self, tenant: &str, module: &str) -> rusqlite::Result<Option<ActiveRecord>> {
        active_of(&self.conn, tenant, module)
    }

    /// Every route bound through the API, in binding order.
    pub fn routes(&self) -> rusqlite::Result<Vec<RouteRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT tenant, pattern, module, hibernate_after_ns, max_attachment,
                    auto_response_request, auto_response_response
             FROM routes ORDER BY position",
        )?;
        stmt.query_map([], |r| {
            let after = r
                .get::<_, Option<i64>>(3)?
                .map(to_u64)
                .filter(|&ns| ns > 0)
                .map(std::time::Duration::from_nanos);
            let max_attachment = r
                .get::<_, Option<i64>>(4)?
                .map(|n| usize::try_from(to_u64(n)).unwrap_or(usize::MAX))
                .unwrap_or(DEFAULT_MAX_ATTACHMENT);
            let auto_response = match (
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ) {
                (Some(request), Some(response)) => Some(AutoResponse { request, response }),
                _ => None,
            };
            Ok(RouteRecord {
                tenant: r.get(0)?,
                pattern: r.get(1)?,
                module: r.get(2)?,
                hibernation: Hibernation {
                    after,
                    max_attachment,
                    auto_response,
                },
            })
        })?
        .collect()
    }

    /// The tenants that have settings or have uploaded anything.
    pub fn tenants(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT name FROM tenants UNION SELECT DISTINCT tenant FROM versions ORDER BY 1",
        )?;
        stmt.query_map([], |r| r.get(0))?.collect()
    }

    /// Every tenant's settings.
    pub fn tenant_settings(&self) -> rusqlite::Result<Vec<TenantRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, path_prefix, max_connections, limits FROM tenants ORDER BY name",
        )?;
        stmt.query_map([], |r| {
            let limits = match r.get::<_, Option<String>>(3)? {
                Some(json) => serde_json::from_str(&json).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?,
                None => TenantLimits::default(),
            };
            Ok(TenantRecord {
                name: r.get(0)?,
                path_prefix: r.get(1)?,
                max_connections: r.get::<_, Option<i64>>(2)?.map(to_u64),
                limits,
                from_config: false,
            })
        })?
        .collect()
    }

    /// Creates or replaces a tenant's settings.
    pub fn put_tenant(&mut self, tenant: &TenantRecord) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO tenants (name, path_prefix, max_connections, limits) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET path_prefix = excluded.path_prefix,
                 max_connections = excluded.max_connections, limits = excluded.limits",
            params![
                tenant.name,
                tenant.path_prefix,
                tenant.max_connections.map(to_i64),
                serde_json::to_string(&tenant.limits).ok()
            ],
        )?;
        Ok(())
    }

    /// Starts or changes a rollout: `version` gets `percent` of the
    /// module's new connections.
    pub fn set_canary(&mut self, canary: &CanaryRecord) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO canaries (tenant, module, version, percent, pinning) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (tenant, module) DO UPDATE SET version = excluded.version,
                 percent = excluded.percent, pinning = excluded.pinning",
            params![
                canary.tenant,
                canary.module,
                to_i64(canary.version),
                canary.percent,
                canary.pinning
            ],
        )?;
        Ok(())
    }

    /// Ends a module's rollout; `false` when there was none.
    pub fn clear_canary(&mut self, tenant: &str, module: &str) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "DELETE FROM canaries WHERE tenant = ?1 AND module = ?2",
            params![tenant, module],
        )?;
        Ok(n == 1)
    }

    /// Every rollout under way.
    pub fn canaries(&self) -> rusqlite::Result<Vec<CanaryRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT tenant, module, version, percent, pinning FROM canaries ORDER BY tenant, module",
        )?;
        stmt.query_map([], |r| {
            Ok(CanaryRecord {
                tenant: r.get(0)?,
                module: r.get(1)?,
                version: to_u64(r.get(2)?),
                percent: r.get(3)?,
                pinning: r.get(4)?,
            })
        })?
        .collect()
    }

    /// Stores a tenant token's hash; `false` when the tenant already has a
    /// token of that name.
    pub fn insert_token(
        &mut self,
        tenant: &str,
        name: &str,
        sha256: &[u8; 32],
        created_by: &str,
    ) -> rusqlite::Result<bool> {
        let inserted = self.conn.execute(
            "INSERT INTO tokens (tenant, name, sha256, created_by, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, name) DO NOTHING",
            params![tenant, name, &sha256[..], created_by, now_ms()],
        )?;
        Ok(inserted == 1)
    }

    /// Deletes a tenant token; `false` when there was none of that name.
    pub fn delete_token(&mut self, tenant: &str, name: &str) -> rusqlite::Result<bool> {
        let deleted = self.conn.execute(
            "DELETE FROM tokens WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
        )?;
        Ok(deleted == 1)
    }

    /// Every tenant token (hashes, never the tokens).
    pub fn tokens(&self) -> rusqlite::Result<Vec<TokenRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT tenant, name, sha256, created_by, created_at_ms FROM tokens
             ORDER BY tenant, name",
        )?;
        stmt.query_map([], |r| {
            let hash: Vec<u8> = r.get(2)?;
            let mut sha256 = [0u8; 32];
            if hash.len() == 32 {
                sha256.copy_from_slice(&hash);
            }
            Ok(TokenRecord {
                tenant: r.get(0)?,
                name: r.get(1)?,
                sha256,
                created_by: r.get(3)?,
                created_at_ms: to_u64(r.get(4)?),
            })
        })?
        .collect()
    }

    /// The modules of a tenant.
    pub fn modules(&self, tenant: &str) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT module FROM versions WHERE tenant = ?1 ORDER BY module")?;
        stmt.query_map([tenant], |r| r.get(0))?.collect()
    }

    /// Makes `version` the active one (and optionally binds `route` to the
    /// module with its hibernation settings, replacing those of an earlier
    /// binding of the same pattern), in one transaction. The version must
    /// exist.
    pub fn activate(
        &mut self,
        tenant: &str,
        module: &str,
        version: u64,
        route: Option<(&str, &Hibernation)>,
    ) -> rusqlite::Result<ActiveRecord> {
        let tx = self.conn.transaction()?;
        let record = activate_in(&tx, tenant, module, version)?;
        // A full deploy (or a rollback) ends any rollout.
        tx.execute(
            "DELETE FROM canaries WHERE tenant = ?1 AND module = ?2",
            params![tenant, module],
        )?;
        if let Some((pattern, hibernation)) = route {
            let after_ns = hibernation
                .after
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            let max_attachment =
                to_i64(u64::try_from(hibernation.max_attachment).unwrap_or(u64::MAX));
            let (request, response) = match &hibernation.auto_response {
                Some(a) => (Some(a.request.as_str()), Some(a.response.as_str())),
                None => (None, None),
            };
            tx.execute(
                "INSERT INTO routes (tenant, pattern, module, hibernate_after_ns, max_attachment,
                                     auto_response_request, auto_response_response)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tenant, pattern) DO UPDATE SET module = excluded.module,
                     hibernate_after_ns = excluded.hibernate_after_ns,
                     max_attachment = excluded.max_attachment,
                     auto_response_request = excluded.auto_response_request,
                     auto_response_response = excluded.auto_response_response",
                params![
                    tenant,
                    pattern,
                    module,
                    after_ns,
                    max_attachment,
                    request,
                    response
                ],
            )?;
        }
        tx.commit()?;
        Ok(record)
    }
}

fn activate_in(
    tx: &Transaction<'_>,
    tenant: &str,
    module: &str,
    version: u64,
) -> rusqlite::Result<ActiveRecord> {
    let current = active_of(tx, tenant, module)?;
    // Re-activating the active version keeps the rollback target.
    let previous = match &current {
        Some(c) if c.version == version => c.previous_version,
        Some(c) => Some(c.version),
        None => None,
    };
    let at = now_ms();
    tx.execute(
        "INSERT INTO active (tenant, module, version, previous_version, activated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, module) DO UPDATE SET version = excluded.version,
             previous_version = excluded.previous_version, activated_at_ms = excluded.activated_at_ms",
        params![tenant, module, to_i64(version), previous.map(to_i64), at],
    )?;
    Ok(ActiveRecord {
        tenant: tenant.into(),
        module: module.into(),
        version,
        previous_version: previous,
        activated_at_ms: at,
    })
}

fn active_of(
    conn: &Connection,
    tenant: &str,
    module: &str,
) -> rusqlite::Result<Option<ActiveRecord>> {
    conn.query_row(
        "SELECT tenant, module, version, previous_version, activated_at_ms
         FROM active WHERE tenant = ?1 AND module = ?2",
        params![tenant, module],
        active_row,
    )
    .optional()
}

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        tenant: r.get(0)?,
        module: r.get(1)?,
        version: to_u64(r.get(2)?),
        sha256: r.get(3)?,
        size: to_u64(r.get(4)?),
        uploaded_by: r.get(5)?,
        uploaded_at_ms: r.get(6)?,
        note: r.get(7)?,
    })
}

fn active_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActiveRecord> {
    Ok(ActiveRecord {
        tenant: r.get(0)?,
        module: r.get(1)?,
        version: to_u64(r.get(2)?),
        previous_version: r.get::<_, Option<i64>>(3)?.map(to_u64),
        activated_at_ms: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for a test's database, removed when the test
    /// ends, failed or not.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("wsbox-db-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn db_path(&self) -> std::path::PathBuf {
            self.0.join("registry.sqlite3")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn versions_number_up_and_activation_remembers_the_previous() {
        let dir = Scratch::new("versions");
        let mut db = Db::open(&dir.db_path()).unwrap();
        let v1 = db
            .insert_version("default", "m", "aa", 3, "operator", None)
            .unwrap();
        let v2 = db
            .insert_version("default", "m", "bb", 4, "operator", Some("n"))
            .unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert!(
            db.activate("default", "m", 9, None).is_err(),
            "unknown version"
        );
        let off = Hibernation::default();
        db.activate("default", "m", 1, Some(("/m", &off))).unwrap();
        let a = db.activate("default", "m", 2, Some(("/m", &off))).unwrap();
        assert_eq!(a.previous_version, Some(1));
        assert_eq!(db.routes().unwrap().len(), 1);
        assert_eq!(db.active_of("default", "m").unwrap().unwrap().version, 2);
        assert_eq!(db.versions("default", "m").unwrap(), vec![v1, v2]);
    }

    #[test]
    fn a_database_from_before_tenant_limits_is_migrated_and_keeps_its_tenants() {
        let dir = Scratch::new("mig");
        let path = dir.db_path();
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE tenants (name TEXT PRIMARY KEY, path_prefix TEXT UNIQUE,
                                       max_connections INTEGER);
                 INSERT INTO tenants VALUES ('acme', '/acme', 5);",
            )
            .unwrap();
        }
        let mut db = Db::open(&path).unwrap();
        let acme = &db.tenant_settings().unwrap()[0];
        assert_eq!(acme.max_connections, Some(5));
        assert_eq!(acme.limits, TenantLimits::default());
        let mut changed = acme.clone();
        changed.limits.max_memory_total = Some(1 << 30);
        changed.limits.log_lines_per_second = Some(7);
        db.put_tenant(&changed).unwrap();
        drop(db);
        // Reopening runs no migration twice.
        let db = Db::open(&path).unwrap();
        assert_eq!(db.tenant_settings().unwrap(), vec![changed]);
    }

    /// A database as the release before route hibernation left it: the
    /// first schema, migrated to `user_version` 1, with a tenant, two
    /// versions, an active deployment and two bound routes.
    fn schema_1_database(path: &Path) {
        let old = Connection::open(path).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute_batch(
            "ALTER TABLE tenants ADD COLUMN limits TEXT;
             PRAGMA user_version = 1;
             INSERT INTO tenants (name, path_prefix, max_connections) VALUES ('acme', '/acme', 5);
             INSERT INTO versions VALUES ('default', 'm', 1, 'aa', 3, 'operator', 10, NULL);
             INSERT INTO versions VALUES ('acme', 'chat', 1, 'bb', 4, 'operator', 11, 'n');
             INSERT INTO active VALUES ('default', 'm', 1, NULL, 12);
             INSERT INTO active VALUES ('acme', 'chat', 1, NULL, 13);
             INSERT INTO routes (tenant, pattern, module) VALUES ('default', '/m', 'm');
             INSERT INTO routes (tenant, pattern, module) VALUES ('acme', '/chat', 'chat');",
        )
        .unwrap();
    }

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_database_from_before_route_hibernation_is_migrated_and_keeps_its_routes() {
        let dir = Scratch::new("mig2");
        let path = dir.db_path();
        schema_1_database(&path);
        assert_eq!(user_version(&path), 1);

        let mut db = Db::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        // Every route is still there, in order, with hibernation off.
        let routes = db.routes().unwrap();
        let bound: Vec<(&str, &str, &str)> = routes
            .iter()
            .map(|r| (r.tenant.as_str(), r.pattern.as_str(), r.module.as_str()))
            .collect();
        assert_eq!(bound, [("default", "/m", "m"), ("acme", "/chat", "chat")]);
        assert!(
            routes
                .iter()
                .all(|r| r.hibernation == Hibernation::default())
        );
        // And the rest of the registry with them.
        assert_eq!(db.active().unwrap().len(), 2);
        assert_eq!(
            db.versions("acme", "chat").unwrap()[0].note.as_deref(),
            Some("n")
        );
        assert_eq!(db.tenant_settings().unwrap()[0].max_connections, Some(5));

        // Re-binding a route stores its settings; a new binding too.
        let on = Hibernation {
            after: Some(std::time::Duration::from_millis(1500)),
            max_attachment: 4096,
            auto_response: Some(AutoResponse {
                request: "ping".into(),
                response: "pong".into(),
            }),
        };
        db.activate("default", "m", 1, Some(("/m", &on))).unwrap();
        let sub_ms = Hibernation {
            after: Some(std::time::Duration::from_micros(500)),
            ..Hibernation::default()
        };
        db.activate("default", "m", 1, Some(("/m2", &sub_ms)))
            .unwrap();
        drop(db);

        // Reopening migrates nothing twice and reads the settings back.
        let mut db = Db::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        let routes = db.routes().unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].pattern, "/m");
        assert_eq!(routes[0].hibernation, on, "binding order kept");
        assert_eq!(routes[1].hibernation, Hibernation::default());
        assert_eq!(routes[2].hibernation, sub_ms, "exact to the nanosecond");

        // Binding again without settings turns them off (a binding is
        // replaced whole, like a config route rewritten).
        db.activate("default", "m", 1, Some(("/m", &Hibernation::default())))
            .unwrap();
        assert_eq!(db.routes().unwrap()[0].hibernation, Hibernation::default());

        // An older wsbox (schema 1) still inserts into the migrated table;
        // its rows read back with the defaults.
        db.conn
            .execute(
                "INSERT INTO routes (tenant, pattern, module) VALUES ('default', '/old', 'm')",
                [],
            )
            .unwrap();
        let old = db.routes().unwrap();
        assert_eq!(old[3].pattern, "/old");
        assert_eq!(old[3].hibernation, Hibernation::default());
    }

    #[test]
    fn a_new_database_is_created_at_the_current_schema() {
        let dir = Scratch::new("new");
        let path = dir.db_path();
        let mut db = Db::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        db.insert_version("default", "m", "aa", 3, "operator", None)
            .unwrap();
        let h = Hibernation {
            after: Some(std::time::Duration::from_secs(10)),
            ..Hibernation::default()
        };
        db.activate("default", "m", 1, Some(("/m", &h))).unwrap();
        assert_eq!(db.routes().unwrap()[0].hibernation, h);
    }
}
