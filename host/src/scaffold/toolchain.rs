//! Building a project with its language's toolchain: the same steps as
//! the examples' `build.sh` scripts, from the unpacked SDK instead of a
//! checkout. Toolchains other than Rust's are installed by the SDK's
//! `toolchains/ensure.sh` into `~/.cache/wsbox/toolchains` on first use
//! (it prints one line before an install).

use std::io::BufRead;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::ScratchDir;
use super::project::{Language, Project};
use super::sdk::Sdk;

/// Builds `project` into `out`.
pub fn build(project: &Project, sdk: &Sdk, out: &Path) -> anyhow::Result<()> {
    match project.language {
        Language::Rust => rust(project, out),
        Language::Python => python(project, sdk, out),
        Language::JavaScript => javascript(project, sdk, out),
        Language::C => c(project, sdk, out),
        Language::Go => go(project, sdk, out),
    }
}

/// Runs `command`, its output going to our stderr, and fails naming
/// `what` unless it succeeds.
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .stdout(Stdio::from(
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating stderr")?,
        ))
        .status()
        .with_context(|| format!("running {what} ({:?})", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `ensure.sh LANG`: installs the toolchain if needed and returns what
/// it prints (the tools' paths).
fn ensure(sdk: &Sdk, toolchain: &str) -> anyhow::Result<String> {
    let script = sdk.guest_sdk("toolchains/ensure.sh");
    let output = Command::new("sh")
        .arg(&script)
        .arg(toolchain)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "installing the {toolchain} toolchain failed ({}; {} says why above)",
            output.status,
            script.display()
        );
    }
    let printed = String::from_utf8(output.stdout)
        .with_context(|| format!("{} printed a path that is not UTF-8", script.display()))?;
    Ok(printed.trim().to_string())
}

/// The files directly in `dir` whose names end in one of `extensions`.
fn sources(dir: &Path, extensions: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && extensions.iter().any(|e| name.ends_with(e)) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn copy_into(files: &[PathBuf], dir: &Path) -> anyhow::Result<()> {
    for file in files {
        let name = file
            .file_name()
            .with_context(|| format!("{} has no file name", file.display()))?;
        std::fs::copy(file, dir.join(name))
            .with_context(|| format!("copying {} to {}", file.display(), dir.display()))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)
                .with_context(|| format!("copying {} to {}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

fn toolchains_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WSBOX_TOOLCHAINS").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("wsbox").join("toolchains"))
}

// ---- Rust ---------------------------------------------------------------

include!("../../server/guest_layout.rs");

const RUST_TARGET: &str = "wasm32-wasip2";

fn rust(project: &Project, out: &Path) -> anyhow::Result<()> {
    ensure_rust_target(&project.dir)?;
    // Linked twice, as the guests of wsbox's own workspace are: once with a
    // link map, then with the stack size that packs the memory an idle
    // instance touches into one page fewer (`guest_layout.rs`). Only the
    // crate itself is linked again.
    let map = std::env::temp_dir().join(format!("wsbox-link-{}.map", std::process::id()));
    let mut artifact = None;
    let packing = link_packed(&map, |link_args| {
        artifact = Some(cargo_rustc(project, link_args)?);
        anyhow::Ok(())
    });
    let _ = std::fs::remove_file(&map);
    match packing? {
        Packing::Packed => {}
        Packing::NoMap(e) => eprintln!(
            "wsbox: note: no link map to pack the memory layout with ({e}); linked with the default one"
        ),
        Packing::NoRoom(bss) => eprintln!(
            "wsbox: note: {bss} bytes of zero-initialised data leave no room for a packed memory layout; linked with the default one"
        ),
        Packing::NotAsPlanned(layout) => eprintln!(
            "wsbox: note: the packed memory layout did not come out as planned ({layout}); the handler works, but each idle instance touches one page more"
        ),
    }
    let artifact = artifact.context("cargo built no component")?;
    std::fs::copy(&artifact, out)
        .with_context(|| format!("copying {} to {}", artifact.display(), out.display()))?;
    Ok(())
}

/// Builds the project's crate with `link_args` for its linker and returns
/// the component cargo wrote.
fn cargo_rustc(project: &Project, link_args: &[&str]) -> anyhow::Result<PathBuf> {
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(&project.dir)
        .args(["rustc", "--lib", "--release", "--target", RUST_TARGET])
        .args(["--message-format", "json-render-diagnostics", "--"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for arg in link_args {
        cargo.arg("-C").arg(format!("link-arg={arg}"));
    }
    let mut child = cargo
        .spawn()
        .context("running cargo (is Rust installed? https://rustup.rs)")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    // The crate's name as cargo's artifact messages give it.
    let crate_name = project.name.replace('-', "_");
    let mut artifact = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"].as_str() == Some(crate_name.as_str())
            && let Some(files) = message["filenames"].as_array()
        {
            artifact = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(artifact);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo rustc --lib --release --target {RUST_TARGET} failed ({status})");
    }
    artifact.with_context(|| {
        format!("cargo built no {crate_name}.wasm (is Cargo.toml's [lib] crate-type still [\"cdylib\"]?)")
    })
}

/// Adds the wasm32-wasip2 target to the project's toolchain when it lacks
/// it (rustup installs a toolchain file's targets only with the toolchain
/// itself), and says so.
fn ensure_rust_target(dir: &Path) -> anyhow::Result<()> {
    let sysroot = Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "sysroot"])
        .stderr(Stdio::inherit())
        .output()
        .context("running rustc (is Rust installed? https://rustup.rs)")?;
    if !sysroot.status.success() {
        bail!("`rustc --print sysroot` failed ({})", sysroot.status);
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(RUST_TARGET).is_dir() {
        return Ok(());
    }
    eprintln!(
        "wsbox: the Rust target {RUST_TARGET} is missing: installing it with `rustup target add {RUST_TARGET}` (once)"
    );
    let status = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", RUST_TARGET])
        .status()
        .with_context(|| {
            format!("the Rust target {RUST_TARGET} is missing and rustup could not be run: install the target (`rustup target add {RUST_TARGET}`) and build again")
        })?;
    if !status.success() {
        bail!(
            "`rustup target add {RUST_TARGET}` failed ({status}): install the target by hand and build again"
        );
    }
    Ok(())
}

// ---- Python -------------------------------------------------------------

fn python(project: &Project, sdk: &Sdk, out: &Path) -> anyhow::Result<()> {
    let componentize_py = ensure(sdk, "python")?;
    if !project.dir.join("app.py").is_file() {
        bail!(
            "{} is missing: componentize-py builds module `app` (with `Handler, BatchHandler = exports(YourHandler)`)",
            project.dir.join("app.py").display()
        );
    }
    run(
        Command::new(&componentize_py)
            .arg("-d")
            .arg(sdk.wit())
            .args(["-w", project.world(), "componentize", "app", "-p"])
            .arg(&project.dir)
            .arg("-p")
            .arg(sdk.guest_sdk("python"))
            .arg("-o")
            .arg(out),
        "componentize-py",
    )
}

// ---- JavaScript ---------------------------------------------------------

fn javascript(project: &Project, sdk: &Sdk, out: &Path) -> anyhow::Result<()> {
    let bin = PathBuf::from(ensure(sdk, "javascript")?);
    let entry = project.dir.join("handler.js");
    if !entry.is_file() {
        bail!(
            "{} is missing: it is the handler module (exporting `handler` and `batchHandler`)",
            entry.display()
        );
    }
    let work = ScratchDir::new("js-build")?;
    // componentize-js takes one module: bundle the handler with the SDK.
    copy_into(&sources(&project.dir, &[".js", ".mjs"])?, work.path())?;
    copy_into(
        &[
            sdk.guest_sdk("javascript/wsbox.js"),
            sdk.guest_sdk("javascript/wsbox.d.ts"),
            sdk.guest_sdk("javascript/wsbox-pubsub.js"),
            sdk.guest_sdk("javascript/wsbox-pubsub.d.ts"),
        ],
        work.path(),
    )?;
    let version = Sdk::wit_version()?;
    let logging = format!("wsbox:websocket/logging@{version}");
    let pubsub = format!("wsbox:websocket/pubsub@{version}");
    let bundle = work.path().join("bundle.js");
    run(
        Command::new(bin.join("rolldown"))
            .arg(work.path().join("handler.js"))
            .args([
                "--format",
                "esm",
                "--external",
                &logging,
                "--external",
                &pubsub,
            ])
            .arg("--file")
            .arg(&bundle),
        "rolldown (bundling handler.js with the SDK)",
    )?;
    // wsbox grants no wasi:http: the build must not import it.
    run(
        Command::new(bin.join("jco"))
            .arg("componentize")
            .arg(&bundle)
            .arg("--wit")
            .arg(sdk.wit())
            .args([
                "-n",
                project.world(),
                "-d",
                "http",
                "-d",
                "fetch-event",
                "-o",
            ])
            .arg(out),
        "jco componentize",
    )
}

// ---- C --------------------------------------------------------------------

fn c(project: &Project, sdk: &Sdk, out: &Path) -> anyhow::Result<()> {
    let bin = PathBuf::from(ensure(sdk, "c")?);
    let c_sdk = sdk.guest_sdk("c");
    let bindings = c_sdk.join("bindings");
    let handler_sources = sources(&project.dir, &[".c"])?;
    if handler_sources.is_empty() {
        bail!("no .c file in {}", project.dir.display());
    }
    let work = ScratchDir::new("c-build")?;
    let core = work.path().join("core.wasm");
    run(
        Command::new("clang")
            .args([
                "--target=wasm32-wasi",
                "-mexec-model=reactor",
                "-O2",
                "-Wall",
                "-Wno-unused-function",
            ])
            .arg("-I")
            .arg(&c_sdk)
            .arg("-I")
            .arg(&bindings)
            .arg("-I")
            .arg(&project.dir)
            .args(&handler_sources)
            .arg(c_sdk.join("wsbox.c"))
            .arg(bindings.join("websocket_host.c"))
            .arg(bindings.join("websocket_host_component_type.o"))
            .arg("-Wl,--strip-debug")
            .arg("-o")
            .arg(&core),
        "clang",
    )?;
    // The core module imports wasi_snapshot_preview1: make it a component
    // with the reactor adapter (wasm-tools component new --adapt).
    run(
        Command::new(bin.join("jco"))
            .arg("new")
            .arg(&core)
            .arg("--wasi-reactor")
            .arg("-o")
            .arg(out),
        "jco new --wasi-reactor",
    )
}

// ---- Go -------------------------------------------------------------------

fn go(project: &Project, sdk: &Sdk, out: &Path) -> anyhow::Result<()> {
    let tools = ensure(sdk, "go")?;
    let (go, jco_bin) = tools
        .split_once(':')
        .with_context(|| format!("ensure.sh go printed `{tools}`, not GO:JCO_BIN"))?;
    let go_sdk = sdk.guest_sdk("go");
    let handler_sources = sources(&project.dir, &[".go"])?;
    if handler_sources.is_empty() {
        bail!("no .go file in {}", project.dir.display());
    }
    // One Go module (wit_component, as the bindings name it): the
    // bindings, the SDK's export packages, the SDK, the handler (package
    // app), and go.bytecodealliance.org/pkg from the SDK (no network).
    let work = ScratchDir::new("go-build")?;
    let w = work.path();
    copy_tree(&go_sdk.join("bindings"), w)?;
    for generated in ["WIT_SHA256", "GENERATED_BY"] {
        let _ = std::fs::remove_file(w.join(generated));
    }
    for package in [
        "wsbox",
        "export_wsbox_websocket_handler",
        "export_wsbox_websocket_batch_handler",
        "export_wsbox_websocket_hibernation",
    ] {
        copy_tree(&go_sdk.join(package), &w.join(package))?;
    }
    copy_tree(&go_sdk.join("pkg"), &w.join("gopkg"))?;
    std::fs::create_dir_all(w.join("app")).context("creating the app package")?;
    copy_into(&handler_sources, &w.join("app"))?;
    let go_mod = w.join("go.mod");
    let mut module = std::fs::read_to_string(&go_mod).context("reading the bindings' go.mod")?;
    module.push_str("\nreplace go.bytecodealliance.org/pkg => ./gopkg\n");
    std::fs::write(&go_mod, module).context("writing go.mod")?;
    let mut command = Command::new(go);
    command
        .current_dir(w)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .args([
            "build",
            "-buildmode=c-shared",
            "-ldflags=-checklinkname=0",
            "-o",
            "core.wasm",
            ".",
        ]);
    if let Some(cache) = toolchains_dir() {
        command.env("GOCACHE", cache.join("go-build-cache"));
    }
    run(&mut command, "go build")?;
    let jco_dir = Path::new(jco_bin).join("../..");
    run(
        Command::new("node")
            .arg(sdk.guest_sdk("toolchains/embed.mjs"))
            .arg(&jco_dir)
            .arg(w.join("core.wasm"))
            .arg(sdk.wit())
            .arg("websocket-host")
            .arg(w.join("embedded.wasm")),
        "embedding the WIT (node embed.mjs)",
    )?;
    run(
        Command::new(Path::new(jco_bin).join("jco"))
            .arg("new")
            .arg(w.join("embedded.wasm"))
            .arg("--wasi-reactor")
            .arg("-o")
            .arg(out),
        "jco new --wasi-reactor",
    )
}
