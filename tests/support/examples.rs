//! The guest-language examples, built by their own `build.sh` for the
//! polyglot suites (`polyglot.rs`, `polyglot_chat.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wsbox::config::RouteLimits;

use crate::{Peers, announce, skip_peers};

/// Limits for every language: generous CPU time, since an interpreter
/// echoing 1 MiB on a loaded 2-core machine takes a while.
pub fn polyglot_limits() -> RouteLimits {
    RouteLimits {
        memory_limit: 128 << 20,
        cpu_time_per_event: Duration::from_secs(5),
        wall_time_per_call: Duration::from_secs(20),
        ..RouteLimits::default()
    }
}

/// [`build_example`] off the test's runtime threads.
pub async fn built_example(example: &'static str, sdk: &'static str) -> Option<PathBuf> {
    tokio::task::spawn_blocking(move || build_example(example, sdk))
        .await
        .expect("build task")
}

/// Builds `examples/<example>` with its `build.sh` into this build's
/// target directory and returns the component, or `None` when the
/// polyglot tests are skipped. The build is skipped when its inputs (the
/// example, the language's SDK, the WIT, the toolchain script) hash to
/// what they did for the component already there.
pub fn build_example(example: &str, sdk: &str) -> Option<PathBuf> {
    build_example_with(example, sdk, None)
}

/// [`build_example`] with an environment variable set for the build
/// script, into an output named after the variable.
pub fn build_example_with(example: &str, sdk: &str, env: Option<(&str, &str)>) -> Option<PathBuf> {
    if skip_peers(Peers::Polyglot) {
        return None;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf();
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("polyglot");
    std::fs::create_dir_all(&out_dir).expect("create the polyglot output dir");
    let name = match env {
        Some((var, _)) => format!("{example}-{}", var.to_lowercase()),
        None => example.to_string(),
    };
    let out = out_dir.join(format!("{name}.wasm"));
    let stamp = out_dir.join(format!("{name}.inputs"));
    let inputs = inputs_hash(&[
        workspace.join("examples").join(example),
        workspace.join("guest-sdk").join(sdk),
        workspace.join("guest-sdk/toolchains"),
        workspace.join("wit/websocket.wit"),
    ]);
    if out.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(inputs.as_str()) {
        announce(&format!(
            "polyglot: {name} is up to date ({})",
            out.display()
        ));
        return Some(out);
    }
    let script = workspace.join("examples").join(example).join("build.sh");
    announce(&format!(
        "polyglot: building {example} with {}",
        script.display()
    ));
    let started = Instant::now();
    let mut command = std::process::Command::new("sh");
    command.arg(&script).arg(&out);
    if let Some((var, value)) = env {
        command.env(var, value);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(status.success(), "{} failed ({status})", script.display());
    std::fs::write(&stamp, &inputs).expect("write the build stamp");
    announce(&format!(
        "polyglot: built {name} in {:.1}s ({} bytes)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0)
    ));
    Some(out)
}

/// A hash of the paths and contents of every file under `roots` (build
/// outputs and caches excluded).
pub fn inputs_hash(roots: &[PathBuf]) -> String {
    fn walk(path: &Path, files: &mut Vec<PathBuf>) {
        if path.is_dir() {
            let Ok(entries) = std::fs::read_dir(path) else {
                return;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name == "__pycache__" || name == "node_modules" || name.ends_with(".wasm") {
                    continue;
                }
                walk(&p, files);
            }
        } else if path.is_file() {
            files.push(path.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for root in roots {
        walk(root, &mut files);
    }
    files.sort();
    let mut all = Vec::new();
    for file in files {
        all.extend_from_slice(file.to_string_lossy().as_bytes());
        all.push(0);
        all.extend(std::fs::read(&file).unwrap_or_default());
        all.push(0);
    }
    wsbox::registry::sha256_hex(&all)
}
