//! `[build]`: what makes a `wsbox.toml` a handler project (`wsbox new`,
//! `wsbox build`): its language, its name and, for Python and JavaScript,
//! the WIT world it is built against. `wsbox serve` checks the section and
//! otherwise ignores it.

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

/// The worlds of `wit/websocket.wit` a Python or JavaScript handler can be
/// built against (`[build] world`), the default first: its exports must be
/// the world's (componentize-py and componentize-js build one world).
pub const WORLDS: [&str; 5] = [
    "websocket-batch-handler",
    "websocket-handler",
    "websocket-pubsub-handler",
    "websocket-hibernating-handler",
    "websocket-host",
];

/// Checks `[build] world` for `language`: only Python and JavaScript
/// builds pick a world (Go and C use bindings for every interface, Rust's
/// SDK exports what `export_handler!` names).
pub fn check_world(language: Language, world: &str) -> Result<(), String> {
    if !matches!(language, Language::Python | Language::JavaScript) {
        return Err(format!(
            "only Python and JavaScript builds take a world: {} handlers import every interface they use without one (remove `world`)",
            language.name()
        ));
    }
    if WORLDS.contains(&world) {
        Ok(())
    } else {
        Err(format!(
            "unknown world `{world}`: use one of {} (`websocket-pubsub-handler` for pub/sub)",
            WORLDS.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_world_is_in_the_wit() {
        let wit = include_str!("../../../../wit/websocket.wit");
        for world in WORLDS {
            assert!(wit.contains(&format!("world {world} {{")), "{world}");
        }
    }

    #[test]
    fn a_world_is_checked() {
        assert!(check_world(Language::Python, "websocket-pubsub-handler").is_ok());
        assert!(check_world(Language::JavaScript, "websocket-host").is_ok());
        let unknown = check_world(Language::Python, "pubsub").unwrap_err();
        assert!(unknown.contains("websocket-pubsub-handler"), "{unknown}");
        let go = check_world(Language::Go, "websocket-host").unwrap_err();
        assert!(go.contains("only Python and JavaScript"), "{go}");
    }
}
