//! The host's origin verdict (Tornado's `check_origin`): by default a
//! browser may open a WebSocket only to the host its page came from; a
//! route may allow more origins.

use crate::config::OriginConfig;

/// A route's compiled origin policy.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    /// `"null"` was listed: pages with an opaque origin (`file://`,
    /// sandboxed iframes) may connect. Never implied by anything else.
    null: bool,
    allowed: Vec<OriginPattern>,
    /// The host's verdict is final; the handler cannot override it.
    pub enforce: bool,
}

impl OriginPolicy {
    /// Compiles a route's origin settings (already validated by the config).
    pub fn new(config: &OriginConfig) -> Result<OriginPolicy, String> {
        let mut policy = OriginPolicy {
            enforce: config.enforce,
            ..OriginPolicy::default()
        };
        for o in &config.allowed {
            if o.trim() == "*" {
                policy.any = true;
            } else if is_null(o) {
                policy.null = true;
            } else {
                policy.allowed.push(OriginPattern::parse(o)?);
            }
        }
        Ok(policy)
    }

    /// The host's verdict for a request with this `Origin` and `Host`.
    ///
    /// No `Origin` header means a non-browser client: allowed, as in
    /// Tornado. Otherwise the origin must be the same as `Host`, or match an
    /// allowed origin.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        if is_null(origin) {
            return self.null;
        }
        let Some(parsed) = Origin::parse(origin) else {
            // Anything that is not an origin.
            return false;
        };
        if host.is_some_and(|h| parsed.same_authority_as_host(h)) {
            return true;
        }
        self.allowed.iter().any(|p| p.matches(&parsed))
    }
}

/// The opaque origin browsers send from `file://` pages and sandboxed frames.
fn is_null(origin: &str) -> bool {
    origin.trim() == "null"
}

/// Checks one `allowed_origins` entry: an origin pattern, `"*"` or `"null"`.
pub fn validate_allowed(text: &str) -> Result<(), String> {
    if is_null(text) {
        return Ok(());
    }
    OriginPattern::parse(text).map(|_| ())
}

/// A serialized origin `scheme://host[:port]`, lower-cased, with the port
/// made explicit.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (IPv6 hosts in brackets) into host and port.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

impl Origin {
    fn parse(origin: &str) -> Option<Origin> {
        let (scheme, rest) = origin.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        // An origin has no path, but tolerate a trailing slash.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['@', '/', '?', '#', ' ']) {
            return None;
        }
        let (host, port) = split_authority(authority)?;
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(p) => p,
            None => default_port(&scheme)?,
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Same host and port as the `Host` header (its port defaulting to the
    /// origin scheme's).
    fn same_authority_as_host(&self, host_header: &str) -> bool {
        let Some((host, port)) = split_authority(host_header.trim()) else {
            return false;
        };
        let port = port.or_else(|| default_port(&self.scheme));
        host.eq_ignore_ascii_case(&self.host) && port == Some(self.port)
    }
}

/// An allowed origin from the config: exact, or `scheme://*.domain[:port]`.
#[derive(Debug, Clone)]
pub struct OriginPattern {
    scheme: String,
    /// For a wildcard: the domain a subdomain of which must match.
    wildcard_domain: Option<String>,
    host: String,
    port: u16,
}

impl OriginPattern {
    /// Parses an allowed-origin entry, with an error saying what is wrong.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let bad = || {
            format!(
                "`{text}` is not an origin like \"https://app.example.com\", \
                 \"https://*.example.com\", \"*\" or \"null\" (for file:// pages)"
            )
        };
        if text.trim() == "*" {
            return Ok(OriginPattern {
                scheme: String::new(),
                wildcard_domain: Some(String::new()),
                host: String::new(),
                port: 0,
            });
        }
        let (scheme, rest) = text.trim().split_once("://").ok_or_else(bad)?;
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, rest),
        };
        let origin = Origin::parse(&format!("{scheme}://{rest}")).ok_or_else(bad)?;
        if origin.host.contains('*') {
            return Err(bad());
        }
        Ok(OriginPattern {
            scheme: origin.scheme,
            wildcard_domain: wildcard.then(|| format!(".{}", origin.host)),
            host: origin.host,
            port: origin.port,
        })
    }

    fn matches(&self, origin: &Origin) -> bool {
        if origin.scheme != self.scheme || origin.port != self.port {
            return false;
        }
        match &self.wildcard_domain {
            // `*.example.com` matches `a.example.com`, not `example.com`
            // nor `example.com.evil.net`.
            Some(suffix) => {
                origin.host.len() > suffix.len() && origin.host.ends_with(suffix.as_str())
            }
            None => origin.host == self.host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&OriginConfig {
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            enforce: false,
        })
        .unwrap()
    }

    #[test]
    fn no_origin_is_allowed() {
        let p = policy(&[]);
        assert!(p.allows(None, Some("example.com")));
        assert!(p.allows(None, None));
    }

    #[test]
    fn same_origin_with_case_and_port_variations() {
        let p = policy(&[]);
        assert!(p.allows(Some("http://example.com"), Some("example.com")));
        assert!(p.allows(Some("http://example.com"), Some("example.com:80")));
        assert!(p.allows(Some("https://example.com"), Some("example.com:443")));
        assert!(p.allows(Some("https://Example.COM:8443"), Some("example.com:8443")));
        assert!(p.allows(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(p.allows(Some("http://[::1]:8080"), Some("[::1]:8080")));
        assert!(p.allows(Some("http://example.com/"), Some("EXAMPLE.com")));
    }

    #[test]
    fn other_hosts_ports_and_forgeries_are_refused() {
        let p = policy(&[]);
        assert!(!p.allows(Some("http://evil.net"), Some("example.com")));
        assert!(!p.allows(Some("http://example.com:81"), Some("example.com:80")));
        assert!(!p.allows(Some("https://example.com"), Some("example.com:80")));
        assert!(!p.allows(Some("http://example.com.evil.net"), Some("example.com")));
        assert!(!p.allows(Some("http://example.com@evil.net"), Some("example.com")));
        assert!(!p.allows(Some("http://evil.net/example.com"), Some("example.com")));
        assert!(!p.allows(Some("null"), Some("example.com")));
        assert!(!p.allows(Some("http://example.com"), None));
        assert!(!p.allows(Some("example.com"), Some("example.com")));
        // A forged Host that matches a forged Origin is same-origin by
        // definition: the browser, not the server, guarantees Origin.
        assert!(p.allows(Some("http://evil.net"), Some("evil.net")));
    }

    #[test]
    fn exact_and_wildcard_allowed_origins() {
        let p = policy(&[
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:3000",
        ]);
        let host = Some("api.internal");
        assert!(p.allows(Some("https://app.example.com"), host));
        assert!(p.allows(Some("https://APP.example.com:443"), host));
        assert!(
            !p.allows(Some("http://app.example.com"), host),
            "scheme matters"
        );
        assert!(
            !p.allows(Some("https://app.example.com:8443"), host),
            "port matters"
        );
        assert!(p.allows(Some("https://a.example.org"), host));
        assert!(p.allows(Some("https://a.b.example.org"), host));
        assert!(
            !p.allows(Some("https://example.org"), host),
            "wildcard needs a subdomain"
        );
        assert!(!p.allows(Some("https://example.org.evil.net"), host));
        assert!(!p.allows(Some("https://evilexample.org"), host));
        assert!(p.allows(Some("http://localhost:3000"), host));
        assert!(!p.allows(Some("http://localhost:3001"), host));
    }

    #[test]
    fn star_allows_everything() {
        let p = policy(&["*"]);
        assert!(p.allows(Some("https://anything.example"), Some("h")));
        assert!(p.allows(Some("null"), Some("h")));
    }

    #[test]
    fn null_is_allowed_only_when_listed() {
        assert!(!policy(&[]).allows(Some("null"), Some("h")));
        assert!(!policy(&["https://a.example"]).allows(Some("null"), Some("h")));
        let p = policy(&["null"]);
        assert!(p.allows(Some("null"), Some("h")));
        assert!(
            !p.allows(Some("https://other.example"), Some("h")),
            "null allows only opaque origins"
        );
        assert!(validate_allowed("null").is_ok());
        assert!(validate_allowed("nul").is_err());
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in [
            "example.com",
            "https://",
            "https://a.*.com",
            "ftp://x:notaport",
            "https://a b",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
