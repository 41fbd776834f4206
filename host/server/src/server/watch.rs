//! `wsbox serve --watch`: the local loop. The module files of the config's
//! routes are checked for changes; a changed file is compiled again and
//! served to new connections, while live connections keep their build.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::ServerHandle;

/// What tells a file changed: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Watches `files` every `interval` until the task is dropped. A file is
/// reloaded once it has changed and then stayed the same for one more
/// interval, so that a build still writing it is not compiled half-done.
/// A build that fails to load is reported and the running one kept.
pub async fn watch(handle: ServerHandle, files: Vec<PathBuf>, interval: Duration) {
    let mut served: Vec<Stamp> = files.iter().map(|f| stamp(f)).collect();
    let mut seen = served.clone();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (i, file) in files.iter().enumerate() {
            let now = stamp(file);
            let settled = now == seen[i];
            seen[i] = now;
            if now.is_none() || now == served[i] || !settled {
                continue;
            }
            served[i] = now;
            match handle.reload_module_file(file).await {
                Ok(routes) => tracing::info!(
                    file = %file.display(),
                    routes = %routes.join(", "),
                    "module file changed: new connections get the new build (live ones keep theirs)"
                ),
                Err(e) => tracing::warn!(
                    file = %file.display(),
                    error = %format!("{e:#}"),
                    "module file changed but does not load; still serving the previous build"
                ),
            }
        }
    }
}
