//! The size cap of the compiled-code cache (`runtime.compiled_cache`,
//! `runtime.compiled_cache_max_size`): after an entry is written, the
//! entries used least recently go, oldest first, until the cache fits.
//! "Used" is the file's modification time: written, or loaded ([`touch`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The default cap: room for a few dozen Python or JavaScript builds
/// (about 40 MB of compiled code each).
pub const DEFAULT_MAX_SIZE: u64 = 2 << 30;

/// What [`evict`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

/// Marks `entry` as just used (its modification time is now), so that
/// eviction keeps it over entries not loaded since.
pub fn touch(entry: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(entry) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Removes `*.cwasm` entries of `dir`, least recently used first, until
/// they take at most `max_bytes` together; never `keep` (the entry just
/// written, which may alone be larger than the cap). Files that are not
/// entries (other names, directories) are left alone; an entry that
/// cannot be read or removed is skipped.
pub fn evict(dir: &Path, max_bytes: u64, keep: &Path) -> std::io::Result<Evicted> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("cwasm") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        entries.push((used, path, meta.len()));
    }
    let mut total: u64 = entries.iter().map(|(_, _, len)| len).sum();
    // Oldest first; ties by name, so the order is deterministic.
    entries.sort();
    let mut evicted = Evicted::default();
    for (_, path, len) in entries {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
            evicted.bytes += len;
            evicted.files.push(path);
        }
    }
    Ok(evicted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(dir: &Path, name: &str, len: usize, age_s: u64) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; len]).unwrap();
        let file = std::fs::File::options().append(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .unwrap();
        path
    }

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wsbox-cc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn evicts_the_least_recently_used_until_it_fits() {
        let dir = temp("lru");
        let oldest = entry(&dir, "a.cwasm", 100, 300);
        let middle = entry(&dir, "b.cwasm", 100, 200);
        let recent = entry(&dir, "c.cwasm", 100, 100);
        let new = entry(&dir, "d.cwasm", 100, 0);
        let other = entry(&dir, "notes.txt", 1000, 1000);
        // Loading the oldest makes it the most recently used.
        touch(&oldest);
        let evicted = evict(&dir, 250, &new).unwrap();
        assert_eq!(evicted.files, vec![middle.clone(), recent.clone()]);
        assert_eq!(evicted.bytes, 200);
        assert!(oldest.exists() && new.exists() && other.exists());
        assert!(!middle.exists() && !recent.exists());
        // Under the cap: nothing goes.
        assert_eq!(evict(&dir, 250, &new).unwrap(), Evicted::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_evicts_the_entry_just_written() {
        let dir = temp("keep");
        let old = entry(&dir, "old.cwasm", 10, 100);
        let big = entry(&dir, "big.cwasm", 500, 200);
        let evicted = evict(&dir, 100, &big).unwrap();
        assert_eq!(evicted.files, vec![old]);
        assert!(big.exists(), "the new entry stays, even over the cap");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
