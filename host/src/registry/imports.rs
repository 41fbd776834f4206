//! What a handler component may import: the wsbox interface and the WASI
//! 0.2 interfaces the host links (which grant nothing: no files, no
//! network, no environment). Checked at upload so that a module asking for
//! more is refused with the import named, not with a linker message.

use wasmtime::Engine;
use wasmtime::component::Component;

/// Packages (`namespace:package`) whose interfaces the host links.
pub const GRANTED_PACKAGES: &[&str] = &[
    "wsbox:websocket",
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:cli",
    "wasi:filesystem",
    "wasi:sockets",
];

/// The package of an import name such as `wasi:http/outgoing-handler@0.2.0`.
fn package_of(import: &str) -> &str {
    let without_version = import.split('@').next().unwrap_or(import);
    without_version.split('/').next().unwrap_or(without_version)
}

/// The component's imports that the host does not grant.
pub fn ungranted_imports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| !GRANTED_PACKAGES.contains(&package_of(name)))
        .collect()
}

/// An error message naming the ungranted imports, if any.
pub fn check(component: &Component, engine: &Engine) -> Result<(), String> {
    let ungranted = ungranted_imports(component, engine);
    if ungranted.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the module imports {}, which wsbox does not grant; a handler may import only {} \
         (build it against the wsbox-guest SDK without other WASI worlds such as wasi:http)",
        ungranted.join(", "),
        GRANTED_PACKAGES.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::package_of;

    #[test]
    fn packages_are_cut_from_import_names() {
        assert_eq!(package_of("wasi:http/outgoing-handler@0.2.0"), "wasi:http");
        assert_eq!(package_of("wsbox:websocket/host@0.1.0"), "wsbox:websocket");
        assert_eq!(package_of("plain"), "plain");
    }
}
