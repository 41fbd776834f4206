//! The host's origin verdict (Tornado's default `check_origin`): a browser
//! may open a WebSocket only to the host its page came from.

/// Whether a request with this `Origin` (if any) and `Host` is same-origin.
///
/// No `Origin` header means a non-browser client: allowed, as in Tornado.
/// Otherwise the origin's `host[:port]` must equal the `Host` header,
/// compared case-insensitively. An opaque origin (`null`) or one that is not
/// a URL never matches.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    match origin_authority(origin) {
        Some(authority) => authority.eq_ignore_ascii_case(host.trim()),
        None => false,
    }
}

/// The `host[:port]` part of a serialized origin (`scheme://host[:port]`).
fn origin_authority(origin: &str) -> Option<&str> {
    let (_scheme, rest) = origin.trim().split_once("://")?;
    // An origin has no path, but tolerate a trailing slash or path.
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origin_is_allowed() {
        assert!(same_origin(None, Some("example.com")));
        assert!(same_origin(None, None));
    }

    #[test]
    fn same_host_and_port_match_case_insensitively() {
        assert!(same_origin(Some("http://example.com"), Some("example.com")));
        assert!(same_origin(
            Some("https://Example.COM:8443"),
            Some("example.com:8443")
        ));
        assert!(same_origin(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        ));
    }

    #[test]
    fn other_hosts_ports_and_forgeries_are_refused() {
        assert!(!same_origin(Some("http://evil.net"), Some("example.com")));
        assert!(!same_origin(
            Some("http://example.com:81"),
            Some("example.com:80")
        ));
        assert!(!same_origin(
            Some("http://example.com.evil.net"),
            Some("example.com")
        ));
        assert!(!same_origin(
            Some("http://example.com@evil.net"),
            Some("example.com")
        ));
        assert!(!same_origin(Some("null"), Some("example.com")));
        assert!(!same_origin(Some("http://example.com"), None));
        assert!(!same_origin(Some("example.com"), Some("example.com")));
    }
}
