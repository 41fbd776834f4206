// Shared by the build scripts of `wsbox-server` (bundled demo) and `wsbox-tests`
// (test guests): builds a guest crate of this workspace as a wasm32-wasip2
// component with a nested cargo, the way wasmtime's test-programs artifacts do,
// so that `cargo run` / `cargo test` need no extra command.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("guest_layout.rs");

/// Builds `package` for wasm32-wasip2 with the `guest` profile and returns the
/// path of the component it produced.
fn build_guest(package: &str) -> PathBuf {
    build_guest_with(package, &[])
}

/// [`build_guest`] with some of the package's cargo features. Cargo writes
/// every feature set of a package to the same file, and the build scripts
/// of this workspace run concurrently: each component is copied out, under
/// a name of its own (package and features), while a lock is held.
fn build_guest_with(package: &str, features: &[&str]) -> PathBuf {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = find_workspace_root(&manifest_dir);
    // A target dir of its own: the outer cargo holds the lock on its own.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("wasm-guests"),
        None => workspace.join("target").join("wasm-guests"),
    };
    ensure_wasm_target();
    let components = target_dir.join("components");
    std::fs::create_dir_all(&components).unwrap_or_else(|e| panic!("creating {}: {e}", components.display()));
    let mut name = package.replace('-', "_");
    for feature in features {
        name.push('+');
        name.push_str(feature);
    }
    let lock_path = target_dir.join("wsbox-guest-build.lock");
    let lock = std::fs::File::create(&lock_path).unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock().unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    // Linked twice, the second time with the packed layout (`guest_layout.rs`).
    let map = components.join(format!("{name}.map"));
    let packing = link_packed(&map, |link_args| {
        link_guest(&workspace, &target_dir, package, features, link_args);
        Ok::<(), std::convert::Infallible>(())
    });
    match packing {
        Ok(Packing::Packed) => {}
        Ok(Packing::NoMap(e)) => panic!("guest {package}: reading the link map {}: {e}", map.display()),
        Ok(Packing::NoRoom(bss)) => println!(
            "cargo:warning=guest {package}: {bss} bytes of zero-initialised data leave no room for a packed memory layout; linked with the default one"
        ),
        Ok(Packing::NotAsPlanned(layout)) => println!(
            "cargo:warning=guest {package}: the packed memory layout did not come out as planned ({layout}); it still works, but idle instances touch more pages"
        ),
        Err(never) => match never {},
    }
    let artifact = target_dir
        .join("wasm32-wasip2")
        .join("guest")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let bytes = std::fs::read(&artifact).unwrap_or_else(|e| panic!("guest {package} built but {} cannot be read: {e}", artifact.display()));
    let out = components.join(format!("{name}.wasm"));
    // Written only when it changed, so that what includes it is not rebuilt.
    if std::fs::read(&out).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(&out, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    }
    drop(lock);
    out
}

/// Runs `cargo rustc` for the guest crate with `link_args` for its linker
/// (wasm-component-ld, which hands them to wasm-ld).
fn link_guest(workspace: &Path, target_dir: &Path, package: &str, features: &[&str], link_args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["rustc", "--lib", "--target", GUEST_TARGET, "--profile", "guest", "-p", package])
        .arg("--target-dir")
        .arg(target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    cmd.arg("--");
    for arg in link_args {
        cmd.arg("-C").arg(format!("link-arg={arg}"));
    }
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
    assert!(status.success(), "building guest {package} for {GUEST_TARGET} failed (is the target installed? `rustup target add {GUEST_TARGET}`)");
}

const GUEST_TARGET: &str = "wasm32-wasip2";

/// The pinned toolchain may be installed without the guest target (rustup
/// installs `rust-toolchain.toml`'s targets only when it installs the
/// toolchain itself). Add it through rustup, once, and say so.
fn ensure_wasm_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(sysroot) = &sysroot
        && sysroot.join("lib/rustlib").join(GUEST_TARGET).is_dir()
    {
        return;
    }
    println!("cargo:warning=the Rust target {GUEST_TARGET} is missing: installing it with `rustup target add {GUEST_TARGET}` (once)");
    eprintln!("wsbox build: installing the Rust target {GUEST_TARGET} through rustup");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", GUEST_TARGET]);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.arg("--toolchain").arg(toolchain);
    }
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`rustup target add {GUEST_TARGET}` failed ({status}); the handlers need this target: install it by hand and build again"
        ),
        Err(e) => panic!(
            "the Rust target {GUEST_TARGET} is missing and rustup could not be run ({e}): install the target for this toolchain (`rustup target add {GUEST_TARGET}`) and build again"
        ),
    }
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
