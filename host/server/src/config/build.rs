//! `[build]`: what makes a `wsbox.toml` a handler project (`wsbox new`,
//! `wsbox build`): its language and its name. `wsbox serve` checks the
//! section and otherwise ignores it.

/// A guest language `wsbox new` and `wsbox build` support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    Go,
    C,
}

impl Language {
    /// Every supported language, in the order the README lists them.
    pub const ALL: [Language; 5] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::Go,
        Language::C,
    ];

    /// The name `--lang` and `[build] language` take.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::Go => "go",
            Language::C => "c",
        }
    }

    /// A language by name (`js` for javascript; any case), or an error
    /// listing the supported ones.
    pub fn parse(name: &str) -> Result<Language, String> {
        let lower = name.trim().to_ascii_lowercase();
        let lower = if lower == "js" {
            "javascript".to_string()
        } else {
            lower
        };
        Language::ALL
            .into_iter()
            .find(|l| l.name() == lower)
            .ok_or_else(|| {
                format!(
                    "unknown language `{name}`: wsbox supports {}",
                    Language::ALL.map(Language::name).join(", ")
                )
            })
    }
}

/// A handler's name: it names the project's directory, its `NAME.wasm` and
/// its routes.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name a handler: use letters, digits, `-` and `_`, starting with a letter (at most 64)"
        ))
    }
}
