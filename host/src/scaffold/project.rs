//! A handler project: its directory, its `wsbox.toml` and the files
//! `wsbox new` writes for each language.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::sdk;

/// The project file: `[build]` for `wsbox build`, the rest a config for
/// `wsbox serve --config`.
pub const PROJECT_FILE: &str = "wsbox.toml";

pub use wsbox_server::config::build::Language;

/// The file with the handler's code in a new project.
pub fn source_file(language: Language) -> &'static str {
    match language {
        Language::Rust => "src/lib.rs",
        Language::Python => "app.py",
        Language::JavaScript => "handler.js",
        Language::Go => "handler.go",
        Language::C => "handler.c",
    }
}

fn template(language: Language) -> &'static str {
    match language {
        Language::Rust => include_str!("templates/lib.rs"),
        Language::Python => include_str!("templates/app.py"),
        Language::JavaScript => include_str!("templates/handler.js"),
        Language::Go => include_str!("templates/handler.go"),
        Language::C => include_str!("templates/handler.c"),
    }
}

/// A project `wsbox build` can build.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory with `wsbox.toml`.
    pub dir: PathBuf,
    /// The handler's name: the output is `NAME.wasm`.
    pub name: String,
    pub language: Language,
    /// `[build] world` (Python and JavaScript), if set.
    pub world: Option<String>,
}

#[derive(Deserialize)]
struct ProjectFile {
    build: Option<BuildSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    language: String,
    name: String,
    world: Option<String>,
}

impl Project {
    /// Reads `dir/wsbox.toml`.
    pub fn load(dir: &Path) -> anyhow::Result<Project> {
        let file = dir.join(PROJECT_FILE);
        let shown = std::path::absolute(&file).unwrap_or_else(|_| file.clone());
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no wsbox project here: looked for {} (`wsbox new --lang LANG NAME` makes a project; run `wsbox build` in its directory or pass --dir)",
                shown.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", shown.display())),
        };
        let parsed: ProjectFile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", shown.display(), e.to_string().trim_end()))?;
        let Some(build) = parsed.build else {
            bail!(
                "{} has no [build] section (with `language` and `name`): it is a serve config, not a project made by `wsbox new`",
                shown.display()
            );
        };
        let language = Language::parse(&build.language)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: [build] language", shown.display()))?;
        check_name(&build.name).with_context(|| format!("{}: [build] name", shown.display()))?;
        if let Some(world) = &build.world {
            wsbox_server::config::build::check_world(language, world)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}: [build] world", shown.display()))?;
        }
        Ok(Project {
            dir: dir.to_path_buf(),
            name: build.name,
            language,
            world: build.world,
        })
    }

    /// The world a Python or JavaScript build targets: `[build] world`,
    /// or the batch handler's.
    pub fn world(&self) -> &str {
        self.world
            .as_deref()
            .unwrap_or(wsbox_server::config::build::WORLDS[0])
    }

    /// `NAME.wasm`.
    pub fn output_name(&self) -> String {
        format!("{}.wasm", self.name)
    }

    pub fn output_path(&self) -> PathBuf {
        self.dir.join(self.output_name())
    }
}

/// Whether `name` can name a handler: a Rust crate, a file, a URL path.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    wsbox_server::config::build::check_name(name).map_err(anyhow::Error::msg)
}

/// The files of a new project for `language` named `name`, as (relative
/// path, contents).
pub fn files(name: &str, language: Language) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let source = template(language).replace("__NAME__", name);
    let mut files = vec![
        (
            PROJECT_FILE.to_string(),
            project_file(name, language).into_bytes(),
        ),
        (
            ".gitignore".to_string(),
            gitignore(language).as_bytes().to_vec(),
        ),
        (source_file(language).to_string(), source.into_bytes()),
    ];
    if language == Language::Rust {
        files.extend(sdk::rust_project_files(name)?);
    }
    Ok(files)
}

/// Creates the project directory `dir` (absent or empty) with a new
/// project's files.
pub fn create(dir: &Path, language: Language) -> anyhow::Result<Project> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("`{}` does not end in a project name", dir.display()))?
        .to_string();
    check_name(&name)?;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty: `wsbox new` makes a new project in a new (or empty) directory",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} already exists and is a file", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    for (relative, contents) in files(&name, language)? {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        name,
        language,
        world: None,
    })
}

fn project_file(name: &str, language: Language) -> String {
    let limits = match language {
        // Interpreters: a larger heap, and time for a large text message.
        Language::Python | Language::JavaScript => {
            "memory_limit = \"128MiB\"\ncpu_time_per_event = \"2s\"\n"
        }
        _ => "",
    };
    format!(
        r#"# The {name} handler project (made by `wsbox new`).
#
# `wsbox build` reads [build] and writes {name}.wasm; the rest is a wsbox
# config (README "Configuration"): `wsbox serve --config wsbox.toml`
# serves the handler at ws://127.0.0.1:8080/{name} and /{name}/<room>.

listen = "127.0.0.1:8080"

[build]
language = "{lang}"
name = "{name}"

[[route]]
path = "/{name}"
module = "{name}.wasm"
{limits}
[[route]]
path = "/{name}/(?P<room>[^/]+)"
module = "{name}.wasm"
{limits}"#,
        lang = language.name(),
    )
}

fn gitignore(language: Language) -> &'static str {
    match language {
        Language::Rust => "/target\n*.wasm\n.*.partial\n",
        Language::Python => "*.wasm\n.*.partial\n__pycache__/\n",
        _ => "*.wasm\n.*.partial\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wsbox-scaffold-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_unknown_language_lists_the_supported_ones() {
        let e = Language::parse("cobol").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown language `cobol`: wsbox supports rust, python, javascript, go, c"
        );
        assert_eq!(Language::parse("JS").unwrap(), Language::JavaScript);
        assert_eq!(Language::parse("Python").unwrap(), Language::Python);
    }

    #[test]
    fn names_must_fit_a_crate_a_file_and_a_path() {
        for good in ["echo", "my-handler", "h_2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "2fast", "a b", "a/b", "é", "-x", &"a".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("cannot name a handler"), "{bad}: {e}");
        }
    }

    #[test]
    fn new_refuses_a_non_empty_directory_and_accepts_an_empty_one() {
        let root = temp("nonempty");
        let dir = root.join("taken");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        let e = create(&dir, Language::Python).unwrap_err().to_string();
        assert!(e.contains("already exists and is not empty"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
        assert!(!dir.join(PROJECT_FILE).exists(), "nothing written");

        let empty = root.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let project = create(&empty, Language::Python).unwrap();
        assert_eq!(project.name, "empty");
        assert!(empty.join("app.py").is_file());

        let file = root.join("file");
        std::fs::write(&file, "x").unwrap();
        let e = create(&file, Language::C).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn build_outside_a_project_says_where_it_looked() {
        let dir = temp("noproject");
        std::fs::create_dir_all(&dir).unwrap();
        let e = format!("{:#}", Project::load(&dir).unwrap_err());
        assert!(e.contains("no wsbox project here: looked for"), "{e}");
        assert!(
            e.contains(&dir.join(PROJECT_FILE).display().to_string()),
            "{e}"
        );

        // A serve config without [build] is not a project.
        std::fs::write(dir.join(PROJECT_FILE), "listen = \"127.0.0.1:8080\"\n").unwrap();
        let e = format!("{:#}", Project::load(&dir).unwrap_err());
        assert!(e.contains("has no [build] section"), "{e}");

        std::fs::write(
            dir.join(PROJECT_FILE),
            "[build]\nlanguage = \"fortran\"\nname = \"x\"\n",
        )
        .unwrap();
        let e = format!("{:#}", Project::load(&dir).unwrap_err());
        assert!(
            e.contains("[build] language") && e.contains("wsbox supports rust, python"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_world_picks_what_python_and_javascript_build_against() {
        let dir = temp("world");
        std::fs::create_dir_all(&dir).unwrap();
        let project = |language: &str, world: &str| {
            std::fs::write(
                dir.join(PROJECT_FILE),
                format!("[build]\nlanguage = \"{language}\"\nname = \"x\"\n{world}"),
            )
            .unwrap();
            Project::load(&dir).map_err(|e| format!("{e:#}"))
        };
        let default = project("python", "").unwrap();
        assert_eq!(default.world(), "websocket-batch-handler");
        let pubsub = project("javascript", "world = \"websocket-pubsub-handler\"\n").unwrap();
        assert_eq!(pubsub.world(), "websocket-pubsub-handler");
        let e = project("python", "world = \"pubsub\"\n").unwrap_err();
        assert!(
            e.contains("[build] world") && e.contains("unknown world `pubsub`"),
            "{e}"
        );
        let e = project("go", "world = \"websocket-host\"\n").unwrap_err();
        assert!(e.contains("only Python and JavaScript"), "{e}");
        // `wsbox serve` reads the same file and checks the key the same way.
        std::fs::write(dir.join("x.wasm"), b"built").unwrap();
        let e = crate::config::Config::load(&dir.join(PROJECT_FILE))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("build.world") && e.contains("only Python"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_new_project_loads_and_its_file_is_a_valid_serve_config() {
        let root = temp("configs");
        for language in Language::ALL {
            let dir = root.join(format!("hello-{}", language.name()));
            create(&dir, language).unwrap();
            let project = Project::load(&dir).unwrap();
            assert_eq!(project.language, language);
            assert_eq!(project.name, format!("hello-{}", language.name()));
            // As after `wsbox build` (the config wants the module file).
            std::fs::write(dir.join(project.output_name()), b"built").unwrap();
            let config = crate::config::Config::load(&dir.join(PROJECT_FILE))
                .unwrap_or_else(|e| panic!("{}: {e}", language.name()));
            assert_eq!(config.routes.len(), 2);
            let source = std::fs::read_to_string(dir.join(source_file(language))).unwrap();
            assert!(!source.contains("__NAME__"));
            assert!(source.contains(&format!("hello from hello-{}", language.name())));
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
