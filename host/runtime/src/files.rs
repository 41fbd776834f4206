//! Crash-safe file writes: a file is written under a temporary name,
//! fsynced, renamed into place and its directory fsynced, so after a crash
//! (`kill -9`, power loss) it is either absent or whole, never half-written.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Names of files being written; whatever has it at startup is a leftover
/// of a crash and is removed.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically (see the module comment).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", path.display())))?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Makes a rename or a creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    // A random part: two uploads of the same bytes at once must not share
    // a temporary file.
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{:016x}{TEMP_SUFFIX}", rand::random::<u64>()));
    path.with_file_name(name)
}

/// Removes the temporary files a crash left in `dir`; returns how many.
pub fn remove_leftovers(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_removes_leftovers() {
        let dir = std::env::temp_dir().join(format!("wsbox-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blob");
        write_atomically(&path, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        fs::write(temp_path(&path), b"half").unwrap();
        assert_eq!(remove_leftovers(&dir).unwrap(), 1);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
