//! The persistent module registry in a data directory:
//!
//! - `registry.sqlite3`: metadata (versions, active deployments, routes);
//!   see [`db`];
//! - `blobs/<sha256>`: each component's bytes, content-addressed;
//! - `compiled/<sha256>-<engine>.cwasm`: compiled code, keyed by the
//!   component's hash and the engine's compatibility fingerprint, so a
//!   restart or a rollback loads instead of compiling.
//!
//! Its functions block (disk, SQLite, Cranelift): call them off the
//! connection-serving threads (`spawn_blocking`).

pub mod db;
pub use wsbox_runtime::files;
pub use wsbox_runtime::fingerprint::{engine_fingerprint, sha256_hex};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use wasmtime::Engine;
use wasmtime::component::Component;

pub use db::{ActiveRecord, RouteRecord, TenantLimits, TenantRecord, VersionRecord};
use wsbox_runtime::Runtime;

/// Why a registry operation failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is wrong (a module that cannot be a handler, a bad name).
    #[error("{0}")]
    Invalid(String),
    /// The module is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// No such tenant, module or version.
    #[error("{0}")]
    NotFound(String),
    /// The operation does not apply to the current state.
    #[error("{0}")]
    Conflict(String),
    #[error("registry database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A bug or a crash of the task doing the work; nothing was committed.
    #[error("{0}")]
    Internal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> RegistryError {
    move |source| RegistryError::Io {
        context: context.into(),
        source,
    }
}

/// What startup found and repaired.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Recovery {
    /// Temporary files of writes a crash interrupted, removed.
    pub temp_files_removed: usize,
    /// Blobs no version refers to (an upload that crashed before its
    /// metadata commit), removed.
    pub orphan_blobs_removed: usize,
    /// Hashes of versions whose blob is missing: those versions cannot be
    /// served (this means the data directory was damaged from outside).
    pub missing_blobs: Vec<String>,
}

/// Counters of how compiled code was obtained.
#[derive(Debug, Default)]
pub struct CodeStats {
    compiles: AtomicU64,
    cache_hits: AtomicU64,
}

impl CodeStats {
    /// Components compiled by Cranelift since start.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }
    /// Components loaded from the compiled-code cache since start.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }
}

/// The registry in its data directory.
pub struct ModuleRegistry {
    dir: PathBuf,
    blobs: PathBuf,
    compiled: PathBuf,
    db: Mutex<db::Db>,
    /// Hex digest of the engine's compatibility hash: compiled code made by
    /// another engine configuration or wasmtime version is not loaded.
    engine_fingerprint: String,
    pub stats: CodeStats,
}

/// Tenant and module names: they appear in paths, logs and URLs.
pub fn check_name(kind: &str, name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "invalid {kind} name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.' (not first)"
        )))
    }
}

impl ModuleRegistry {
    /// Opens the registry in `dir` (creating it), and repairs what a crash
    /// may have left: temporary files and blobs without metadata.
    pub fn open(dir: &Path, engine: &Engine) -> Result<(ModuleRegistry, Recovery), RegistryError> {
        let blobs = dir.join("blobs");
        let compiled = dir.join("compiled");
        for d in [dir, &blobs, &compiled] {
            fs::create_dir_all(d).map_err(io_error(format!("creating {}", d.display())))?;
        }
        let mut recovery = Recovery::default();
        for d in [&blobs, &compiled] {
            recovery.temp_files_removed += files::remove_leftovers(d)
                .map_err(io_error(format!("cleaning {}", d.display())))?;
        }
        let db = db::Db::open(&dir.join("registry.sqlite3"))?;
        let known: std::collections::HashSet<String> = db.all_hashes()?.into_iter().collect();
        for entry in
            fs::read_dir(&blobs).map_err(io_error(format!("listing {}", blobs.display())))?
        {
            let entry = entry.map_err(io_error(format!("listing {}", blobs.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                fs::remove_file(entry.path())
                    .map_err(io_error(format!("removing {}", entry.path().display())))?;
                recovery.orphan_blobs_removed += 1;
            }
        }
        for hash in &known {
            if !blobs.join(hash).is_file() {
                recovery.missing_blobs.push(hash.clone());
            }
        }
        Ok((
            ModuleRegistry {
                dir: dir.to_path_buf(),
                blobs,
                compiled,
                db: Mutex::new(db),
                engine_fingerprint: engine_fingerprint(engine),
                stats: CodeStats::default(),
            },
            recovery,
        ))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata database, locked.
    pub fn db(&self) -> MutexGuard<'_, db::Db> {
        // A panic while holding the lock cannot leave a transaction half
        // done (rusqlite rolls back on drop), so the database is usable.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a blob is stored.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.join(sha256)
    }

    fn compiled_path(&self, sha256: &str) -> PathBuf {
        self.compiled
            .join(format!("{sha256}-{}.cwasm", self.engine_fingerprint))
    }

    /// Stores a validated component as the next version of `module`: the
    /// blob and its compiled code are on disk before the metadata commit,
    /// so a crash at any point leaves either no version or a whole one.
    pub fn store_version(
        &self,
        tenant: &str,
        module: &str,
        bytes: &[u8],
        component: &Component,
        uploaded_by: &str,
        note: Option<&str>,
    ) -> Result<VersionRecord, RegistryError> {
        let sha256 = sha256_hex(bytes);
        let blob = self.blob_path(&sha256);
        // Content-addressed: the same bytes are stored once.
        if !blob.is_file() {
            files::write_atomically(&blob, bytes)
                .map_err(io_error(format!("writing {}", blob.display())))?;
        }
        self.cache_compiled(&sha256, component);
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Ok(self
            .db()
            .insert_version(tenant, module, &sha256, size, uploaded_by, note)?)
    }

    /// Writes a component's compiled code to the cache. A failure only
    /// costs a compile later, so it is logged, not returned.
    fn cache_compiled(&self, sha256: &str, component: &Component) {
        let path = self.compiled_path(sha256);
        if path.is_file() {
            return;
        }
        let written = component
            .serialize()
            .map_err(|e| io::Error::other(format!("{e:#}")))
            .and_then(|code| files::write_atomically(&path, &code));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled code");
        }
    }

    /// The compiled component for a stored blob: from the cache when
    /// there, else compiled (and cached).
    pub fn load_component(
        &self,
        runtime: &Runtime,
        sha256: &str,
    ) -> Result<Component, RegistryError> {
        let cached = self.compiled_path(sha256);
        if cached.is_file() {
            // SAFETY: `deserialize_file` trusts the file to be code this
            // wasmtime wrote. Files under `compiled/` are only ever written
            // by `cache_compiled` above (whole, through a rename), from
            // `Component::serialize` of an engine with the same
            // fingerprint, which is part of the name.
            match unsafe { Component::deserialize_file(runtime.engine(), &cached) } {
                Ok(component) => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(sha256, "compiled code loaded from the cache");
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    path = %cached.display(),
                    error = %format!("{e:#}"),
                    "cached compiled code unusable; compiling again"
                ),
            }
        }
        let blob = self.blob_path(sha256);
        let bytes = fs::read(&blob).map_err(io_error(format!("reading {}", blob.display())))?;
        let component = runtime
            .compile(&bytes)
            .map_err(|e| RegistryError::Invalid(format!("{e:#}")))?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        let _ = fs::remove_file(&cached);
        self.cache_compiled(sha256, &component);
        Ok(component)
    }

    /// Compiles bytes for an upload (counted as a compile); bytes stored
    /// before (the same SHA-256) take their cached compiled code instead.
    pub fn compile_upload(
        &self,
        runtime: &Runtime,
        bytes: &[u8],
    ) -> Result<Component, RegistryError> {
        let sha256 = sha256_hex(bytes);
        if self.compiled_path(&sha256).is_file() && self.blob_path(&sha256).is_file() {
            return self.load_component(runtime, &sha256);
        }
        let component = runtime
            .compile(bytes)
            .map_err(|e| RegistryError::Invalid(format!("{e:#}")))?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        Ok(component)
    }
}
