// Shared by the build scripts of `wsbox` (bundled demo) and `wsbox-tests`
// (test guests): builds a guest crate of this workspace as a wasm32-wasip2
// component with a nested cargo, the way wasmtime's test-programs artifacts do,
// so that `cargo run` / `cargo test` need no extra command.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `package` for wasm32-wasip2 with the `guest` profile and returns the
/// path of the component it produced.
fn build_guest(package: &str) -> PathBuf {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = find_workspace_root(&manifest_dir);
    // A target dir of its own: the outer cargo holds the lock on its own.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("wasm-guests"),
        None => workspace.join("target").join("wasm-guests"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "guest", "-p", package])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the outer (host) build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "RUSTC",
        "RUSTDOC",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("running cargo to build guest {package}: {e}"));
    assert!(status.success(), "building guest {package} for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)");
    let artifact = target_dir
        .join("wasm32-wasip2")
        .join("guest")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(artifact.exists(), "guest {package} built but {} is missing", artifact.display());
    artifact
}

fn find_workspace_root(start: &Path) -> PathBuf {
    let mut dir = start;
    loop {
        if dir.join("rust-toolchain.toml").exists() && dir.join("wit").is_dir() {
            return dir.to_path_buf();
        }
        dir = dir.parent().expect("the wsbox workspace root (with wit/ and rust-toolchain.toml) above the crate");
    }
}

/// Rebuild when any guest-side source changes.
fn rerun_if_guest_sources_change() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = find_workspace_root(&manifest_dir);
    for dir in ["wit", "guest-sdk", "examples", "tests/guests"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());
}
