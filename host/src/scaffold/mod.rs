//! `wsbox new` and `wsbox build`: handler projects in every guest language,
//! in the manner of Spin's `spin new` / `spin build`.
//!
//! `wsbox new --lang LANG NAME` writes a working echo handler (greeting with
//! the route's captures, echo of text and binary) into `NAME/`, with a
//! `wsbox.toml` that is both the project file (its `[build]` section names
//! the language and the handler) and the config `wsbox serve --config
//! wsbox.toml` serves it with. `wsbox build` builds `NAME.wasm` with that
//! language's toolchain, installed into `~/.cache/wsbox/toolchains` on first
//! use.
//!
//! The `wsbox` binary carries what a project needs (the SDKs, the WIT, the
//! committed C and Go bindings, the toolchain scripts: [`sdk`]): the Rust
//! SDK is vendored into a Rust project (it is not on crates.io); the others
//! are written once into a cache directory named after this binary's
//! version and the files' hash. No wsbox checkout is needed.

pub mod project;
pub mod sdk;
mod toolchain;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

pub use project::{Language, PROJECT_FILE, Project};

/// `wsbox new`.
#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The handler's language: rust, python, javascript (or js), go, c.
    #[arg(long, short = 'l', value_name = "LANG")]
    pub lang: String,
    /// The project directory to create; its last part names the handler
    /// (letters, digits, `-` and `_`, starting with a letter).
    pub name: PathBuf,
}

/// `wsbox build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The project directory (with the `wsbox.toml` that `wsbox new` wrote).
    #[arg(long, short = 'C', value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// `wsbox new`: creates the project and says what to do next.
pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let language = Language::parse(&args.lang).map_err(anyhow::Error::msg)?;
    let project = project::create(&args.name, language)?;
    let dir = args.name.display();
    println!(
        "Created a {} handler `{}` in {dir}/ (an echo: edit {}).",
        language.name(),
        project.name,
        project::source_file(language)
    );
    println!("Build and serve it:");
    println!("  cd {dir}");
    println!("  wsbox build");
    println!("  {}", serve_command());
    println!("then talk to it: {}", try_command(&project));
    Ok(())
}

/// `wsbox build`: builds the project's component and says how to serve it.
pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    let project = Project::load(&args.dir)?;
    let started = Instant::now();
    eprintln!(
        "wsbox: building {} ({}) in {}",
        project.output_name(),
        project.language.name(),
        std::path::absolute(&project.dir)
            .unwrap_or_else(|_| project.dir.clone())
            .display()
    );
    let out = build_project(&project)?;
    let size = std::fs::metadata(&out)
        .with_context(|| format!("reading {}", out.display()))?
        .len();
    println!(
        "built {} ({}) in {:.1}s",
        out.display(),
        human_size(size),
        started.elapsed().as_secs_f64()
    );
    println!("serve it: {}", serve_command());
    println!("try it:   {}", try_command(&project));
    Ok(())
}

/// Builds `project` into its output file (written whole: a server
/// watching it never loads half a component) and returns its path.
pub fn build_project(project: &Project) -> anyhow::Result<PathBuf> {
    let sdk = sdk::Sdk::unpacked()?;
    let out = project.output_path();
    let partial = project
        .dir
        .join(format!(".{}.partial", project.output_name()));
    let _ = std::fs::remove_file(&partial);
    let built = toolchain::build(project, &sdk, &partial);
    if let Err(e) = built {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    if !partial.is_file() {
        bail!(
            "the {} toolchain finished without writing {}",
            project.language.name(),
            partial.display()
        );
    }
    std::fs::rename(&partial, &out)
        .with_context(|| format!("moving the build to {}", out.display()))?;
    Ok(out)
}

/// The command that serves a project, run in its directory.
pub fn serve_command() -> String {
    format!("wsbox serve --config {PROJECT_FILE}")
}

fn try_command(project: &Project) -> String {
    format!(
        "echo hi | wsbox connect ws://127.0.0.1:8080/{}/lobby",
        project.name
    )
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.0} KB", bytes as f64 / 1e3)
    }
}

/// A directory removed when dropped (the toolchains' scratch space).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(purpose: &str) -> anyhow::Result<ScratchDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("wsbox-{purpose}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the scratch directory {}", dir.display()))?;
        Ok(ScratchDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
