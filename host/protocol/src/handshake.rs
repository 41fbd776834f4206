//! The HTTP/1.1 opening handshake (RFC 6455 §4), both sides, on `http` types.
//!
//! Reading and writing the HTTP messages is the host's job (hyper or a client);
//! this module decides whether headers are acceptable and what to answer, and
//! [`client`] encodes a client's request and parses the server's answer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{self, AsHeaderName, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use sha1::{Digest, Sha1};

pub mod client;

/// Appended to the client's key before hashing (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version RFC 6455 defines.
pub const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a client key: base64(sha1(key + GUID)).
pub fn accept_key(client_key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(client_key.as_bytes());
    hasher.update(GUID.as_bytes());
    BASE64.encode(hasher.finalize())
}

/// What a valid opening request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// `Sec-WebSocket-Key` as sent.
    pub key: String,
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// Offered subprotocols, in the client's order of preference.
    pub subprotocols: Vec<String>,
    /// Raw extension offers as sent (e.g. `permessage-deflate; client_max_window_bits`),
    /// split at top-level commas. [`crate::deflate::negotiate_server`] picks from them.
    pub extensions: Vec<String>,
    pub origin: Option<String>,
    pub host: Option<String>,
}

/// What a valid handshake response (client side) agreed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseInfo {
    /// The subprotocol the server selected; always one we offered.
    pub subprotocol: Option<String>,
    /// Raw accepted extensions. The caller must reject ones it did not offer;
    /// [`crate::deflate::negotiate_client_response`] does that for permessage-deflate.
    pub extensions: Vec<String>,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("WebSocket handshake must use GET")]
    MethodNotGet,
    #[error("WebSocket handshake needs HTTP/1.1 or newer")]
    HttpVersionTooOld,
    #[error("not a WebSocket upgrade (needs Upgrade: websocket and Connection: upgrade)")]
    NotAnUpgrade,
    #[error("missing Sec-WebSocket-Version header")]
    MissingVersion,
    #[error("unsupported WebSocket version {0:?} (only 13 is supported)")]
    UnsupportedVersion(String),
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    #[error("Sec-WebSocket-Key must be a single base64 value of 16 bytes")]
    InvalidKey,
    #[error("a header value contains characters HTTP does not allow: {0}")]
    InvalidHeaderValue(&'static str),
    /// Client side: the server answered with something other than 101.
    #[error("server answered {0} instead of 101 Switching Protocols")]
    UnexpectedStatus(StatusCode),
    #[error("missing Sec-WebSocket-Accept header")]
    MissingAccept,
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    InvalidAccept,
    #[error("server selected subprotocol {0:?}, which was not offered")]
    UnofferedSubprotocol(String),
    #[error("server selected more than one subprotocol")]
    MultipleSubprotocols,
}

impl HandshakeError {
    /// HTTP status for refusing a request with this error (server side).
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::NotAnUpgrade
            | HandshakeError::MissingVersion
            | HandshakeError::UnsupportedVersion(_) => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Headers the refusal must carry: the supported version for version problems
    /// (RFC 6455 §4.4), `Upgrade`/`Connection` with a 426 (RFC 9110 §15.5.22), and
    /// `Allow` with a 405 (RFC 9110 §15.5.6).
    pub fn extra_headers(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            HandshakeError::MethodNotGet => vec![("allow", "GET")],
            HandshakeError::NotAnUpgrade => vec![
                ("upgrade", "websocket"),
                ("connection", "upgrade"),
                ("sec-websocket-version", VERSION),
            ],
            HandshakeError::MissingVersion | HandshakeError::UnsupportedVersion(_) => {
                vec![("sec-websocket-version", VERSION)]
            }
            _ => Vec::new(),
        }
    }
}

/// Validate a server-side opening request (RFC 6455 §4.2.1).
///
/// Checks, in order: method GET, HTTP/1.1+, `Upgrade: websocket`, `Connection: upgrade`
/// (case-insensitive tokens in comma lists, over repeated headers), version 13 and a
/// key that decodes to 16 bytes. `Host` is reported, not required, since HTTP/1.1
/// parsing already requires it.
pub fn validate_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<RequestInfo, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::MethodNotGet);
    }
    if version < Version::HTTP_11 {
        return Err(HandshakeError::HttpVersionTooOld);
    }
    check_upgrade_headers(headers)?;

    let versions: Vec<&HeaderValue> = headers
        .get_all(header::SEC_WEBSOCKET_VERSION)
        .iter()
        .collect();
    match versions.as_slice() {
        [] => return Err(HandshakeError::MissingVersion),
        [v] if v.as_bytes().trim_ascii() == VERSION.as_bytes() => {}
        _ => {
            let sent: Vec<String> = versions.iter().map(|v| lossy(v)).collect();
            return Err(HandshakeError::UnsupportedVersion(sent.join(", ")));
        }
    }

    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(HandshakeError::MissingKey),
        (Some(key), None) => key.to_str().map_err(|_| HandshakeError::InvalidKey)?.trim(),
        (Some(_), Some(_)) => return Err(HandshakeError::InvalidKey),
    };
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => {}
        _ => return Err(HandshakeError::InvalidKey),
    }

    Ok(RequestInfo {
        key: key.to_owned(),
        accept: accept_key(key),
        subprotocols: parse_header_list(headers, header::SEC_WEBSOCKET_PROTOCOL),
        extensions: parse_extension_list(headers, header::SEC_WEBSOCKET_EXTENSIONS),
        origin: headers.get(header::ORIGIN).map(lossy),
        host: headers.get(header::HOST).map(lossy),
    })
}

/// Headers of the 101 response accepting a request (`Upgrade`, `Connection`,
/// `Sec-WebSocket-Accept`, and the selected subprotocol/extensions if any).
pub fn response_headers(
    accept: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
) -> Result<HeaderMap, HandshakeError> {
    let mut headers = HeaderMap::new();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    insert(&mut headers, header::SEC_WEBSOCKET_ACCEPT, accept, "accept")?;
    if let Some(protocol) = subprotocol {
        insert(
            &mut headers,
            header::SEC_WEBSOCKET_PROTOCOL,
            protocol,
            "subprotocol",
        )?;
    }
    if let Some(extensions) = extensions {
        insert(
            &mut headers,
            header::SEC_WEBSOCKET_EXTENSIONS,
            extensions,
            "extensions",
        )?;
    }
    Ok(headers)
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 encoded.
pub fn generate_key() -> String {
    BASE64.encode(rand::random::<[u8; 16]>())
}

/// Headers of a client's opening request (the host adds method, path and version).
/// Fails only if `host`, a subprotocol or `extensions` contains characters that are
/// not allowed in a header value.
pub fn client_request_headers(
    host: &str,
    key: &str,
    subprotocols: &[String],
    extensions: Option<&str>,
) -> Result<HeaderMap, HandshakeError> {
    let mut headers = HeaderMap::new();
    insert(&mut headers, header::HOST, host, "host")?;
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    insert(&mut headers, header::SEC_WEBSOCKET_KEY, key, "key")?;
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static(VERSION),
    );
    if !subprotocols.is_empty() {
        let joined = subprotocols.join(", ");
        insert(
            &mut headers,
            header::SEC_WEBSOCKET_PROTOCOL,
            &joined,
            "subprotocols",
        )?;
    }
    if let Some(extensions) = extensions {
        insert(
            &mut headers,
            header::SEC_WEBSOCKET_EXTENSIONS,
            extensions,
            "extensions",
        )?;
    }
    Ok(headers)
}

/// Validate the server's answer to our opening request (RFC 6455 §4.2.2 step 5 / §4.1).
pub fn validate_response(
    status: StatusCode,
    headers: &HeaderMap,
    key: &str,
    offered_subprotocols: &[String],
) -> Result<ResponseInfo, HandshakeError> {
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::UnexpectedStatus(status));
    }
    check_upgrade_headers(headers)?;

    let mut accepts = headers.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
    match (accepts.next(), accepts.next()) {
        (None, _) => return Err(HandshakeError::MissingAccept),
        (Some(accept), None) if accept.as_bytes().trim_ascii() == accept_key(key).as_bytes() => {}
        _ => return Err(HandshakeError::InvalidAccept),
    }

    let mut selected = parse_header_list(headers, header::SEC_WEBSOCKET_PROTOCOL);
    let subprotocol = match selected.len() {
        0 => None,
        1 => selected.pop(),
        _ => return Err(HandshakeError::MultipleSubprotocols),
    };
    if let Some(protocol) = &subprotocol
        && !offered_subprotocols.contains(protocol)
    {
        return Err(HandshakeError::UnofferedSubprotocol(protocol.clone()));
    }

    Ok(ResponseInfo {
        subprotocol,
        extensions: parse_extension_list(headers, header::SEC_WEBSOCKET_EXTENSIONS),
    })
}

/// Parse a comma-separated header list (subprotocols, `Connection` tokens) over all
/// occurrences of the header, trimming whitespace and dropping empty elements.
/// Bytes that are not UTF-8 become U+FFFD rather than hiding the whole value.
pub fn parse_header_list(headers: &HeaderMap, name: impl AsHeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| {
            lossy(value)
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Like [`parse_header_list`] but commas inside quoted strings (extension parameter
/// values, RFC 9110 §5.6.4) do not split; elements are kept raw, parameters included.
pub fn parse_extension_list(headers: &HeaderMap, name: impl AsHeaderName) -> Vec<String> {
    let mut items = Vec::new();
    for value in headers.get_all(name) {
        let value = lossy(value);
        let mut start = 0;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, c) in value.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    push_trimmed(&mut items, &value[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        push_trimmed(&mut items, &value[start..]);
    }
    items
}

fn push_trimmed(items: &mut Vec<String>, item: &str) {
    let item = item.trim();
    if !item.is_empty() {
        items.push(item.to_owned());
    }
}

/// Whether a comma-list header contains `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    parse_header_list(headers, name)
        .iter()
        .any(|item| item.eq_ignore_ascii_case(token))
}

fn check_upgrade_headers(headers: &HeaderMap) -> Result<(), HandshakeError> {
    if has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
    {
        Ok(())
    } else {
        Err(HandshakeError::NotAnUpgrade)
    }
}

fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn insert(
    headers: &mut HeaderMap,
    name: HeaderName,
    value: &str,
    what: &'static str,
) -> Result<(), HandshakeError> {
    let value =
        HeaderValue::from_str(value).map_err(|_| HandshakeError::InvalidHeaderValue(what))?;
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn good_request() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "server.example.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", SAMPLE_KEY),
            ("origin", "http://example.com"),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-version", "13"),
        ]
    }

    fn validate(pairs: &[(&'static str, &str)]) -> Result<RequestInfo, HandshakeError> {
        validate_request(&Method::GET, Version::HTTP_11, &request_headers(pairs))
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        good_request()
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect()
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut pairs = without(name);
        pairs.push((name, value));
        pairs
    }

    #[test]
    fn rfc_sample_key() {
        assert_eq!(accept_key(SAMPLE_KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rfc_sample_request() {
        let info = validate(&good_request()).unwrap();
        assert_eq!(info.key, SAMPLE_KEY);
        assert_eq!(info.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(info.subprotocols, ["chat", "superchat"]);
        assert!(info.extensions.is_empty());
        assert_eq!(info.origin.as_deref(), Some("http://example.com"));
        assert_eq!(info.host.as_deref(), Some("server.example.com"));
    }

    #[test]
    fn method_and_http_version() {
        let headers = request_headers(&good_request());
        let err = validate_request(&Method::POST, Version::HTTP_11, &headers).unwrap_err();
        assert_eq!(err, HandshakeError::MethodNotGet);
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(err.extra_headers(), [("allow", "GET")]);
        let err = validate_request(&Method::GET, Version::HTTP_10, &headers).unwrap_err();
        assert_eq!(err, HandshakeError::HttpVersionTooOld);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn version_8_is_unsupported() {
        let err = validate(&with("sec-websocket-version", "8")).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion("8".into()));
        assert_eq!(err.status(), StatusCode::UPGRADE_REQUIRED);
        assert!(
            err.extra_headers()
                .contains(&("sec-websocket-version", "13"))
        );
        let err = validate(&without("sec-websocket-version")).unwrap_err();
        assert_eq!(err, HandshakeError::MissingVersion);
        assert_eq!(err.status(), StatusCode::UPGRADE_REQUIRED);
        let mut twice = good_request();
        twice.push(("sec-websocket-version", "8"));
        assert!(matches!(
            validate(&twice),
            Err(HandshakeError::UnsupportedVersion(v)) if v == "13, 8"
        ));
    }

    #[test]
    fn upgrade_and_connection_tokens() {
        for (name, value) in [
            ("upgrade", "WebSocket"),
            ("upgrade", "h2c, websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("connection", "UPGRADE"),
        ] {
            assert!(validate(&with(name, value)).is_ok(), "{name}: {value}");
        }
        for pairs in [
            without("upgrade"),
            without("connection"),
            with("upgrade", "websockets"),
            with("upgrade", "h2c"),
            with("connection", "keep-alive"),
            with("connection", "upgrade-insecure"),
        ] {
            let err = validate(&pairs).unwrap_err();
            assert_eq!(err, HandshakeError::NotAnUpgrade, "{pairs:?}");
            assert_eq!(err.status(), StatusCode::UPGRADE_REQUIRED);
            let extra = err.extra_headers();
            assert!(extra.contains(&("sec-websocket-version", "13")));
            assert!(extra.contains(&("upgrade", "websocket")));
        }
        // Tokens split over repeated headers.
        let mut split = without("connection");
        split.push(("connection", "keep-alive"));
        split.push(("connection", "upgrade"));
        assert!(validate(&split).is_ok());
    }

    #[test]
    fn bad_keys() {
        assert_eq!(
            validate(&without("sec-websocket-key")),
            Err(HandshakeError::MissingKey)
        );
        for key in [
            "",
            "short",
            "dGhlIHNhbXBsZSBub25j",         // 15 bytes
            "dGhlIHNhbXBsZSBub25jZSEh",     // 18 bytes
            "dGhlIHNhbXBsZSBub25jZQ",       // missing padding
            "dGhlIHNhbXBsZSBub25jZQ==junk", // trailing garbage
            "!!!!!!!!!!!!!!!!!!!!!!==",
        ] {
            let err = validate(&with("sec-websocket-key", key)).unwrap_err();
            assert_eq!(err, HandshakeError::InvalidKey, "{key:?}");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(err.extra_headers().is_empty());
        }
        let mut twice = good_request();
        twice.push(("sec-websocket-key", SAMPLE_KEY));
        assert_eq!(validate(&twice), Err(HandshakeError::InvalidKey));
    }

    #[test]
    fn extension_offers_split_at_top_level() {
        let mut pairs = good_request();
        pairs.push((
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits, foo; bar=\"a,b\\\",c\" ,, ",
        ));
        pairs.push(("sec-websocket-extensions", "permessage-deflate"));
        let info = validate(&pairs).unwrap();
        assert_eq!(
            info.extensions,
            [
                "permessage-deflate; client_max_window_bits",
                "foo; bar=\"a,b\\\",c\"",
                "permessage-deflate"
            ]
        );
    }

    #[test]
    fn header_list_parsing() {
        let headers = request_headers(&[
            ("sec-websocket-protocol", " a ,b,, c"),
            ("sec-websocket-protocol", ""),
            ("sec-websocket-protocol", "d"),
        ]);
        assert_eq!(
            parse_header_list(&headers, header::SEC_WEBSOCKET_PROTOCOL),
            ["a", "b", "c", "d"]
        );
        assert!(parse_header_list(&headers, header::CONNECTION).is_empty());
    }

    #[test]
    fn non_utf8_header_bytes_do_not_hide_values() {
        let mut headers = request_headers(&good_request());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"http://\xffevil").unwrap(),
        );
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"\xfe, upgrade").unwrap(),
        );
        let info = validate_request(&Method::GET, Version::HTTP_11, &headers).unwrap();
        assert_eq!(info.origin.as_deref(), Some("http://\u{fffd}evil"));
    }

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&a).unwrap().len(), 16);
        let headers = client_request_headers("example.com:80", &a, &[], None).unwrap();
        let info = validate_request(&Method::GET, Version::HTTP_11, &headers).unwrap();
        assert_eq!(info.key, a);
    }

    #[test]
    fn client_headers_round_trip_through_server_validation() {
        let protocols = vec!["chat".to_owned(), "superchat".to_owned()];
        let headers = client_request_headers(
            "example.com",
            SAMPLE_KEY,
            &protocols,
            Some("permessage-deflate; client_max_window_bits"),
        )
        .unwrap();
        let info = validate_request(&Method::GET, Version::HTTP_11, &headers).unwrap();
        assert_eq!(info.subprotocols, protocols);
        assert_eq!(
            info.extensions,
            ["permessage-deflate; client_max_window_bits"]
        );
        assert_eq!(info.host.as_deref(), Some("example.com"));

        let response = response_headers(&info.accept, Some("chat"), None).unwrap();
        let agreed = validate_response(
            StatusCode::SWITCHING_PROTOCOLS,
            &response,
            SAMPLE_KEY,
            &protocols,
        )
        .unwrap();
        assert_eq!(agreed.subprotocol.as_deref(), Some("chat"));
        assert!(agreed.extensions.is_empty());
    }

    #[test]
    fn invalid_header_values_are_errors_not_panics() {
        assert_eq!(
            client_request_headers("bad\nhost", SAMPLE_KEY, &[], None).unwrap_err(),
            HandshakeError::InvalidHeaderValue("host")
        );
        assert!(client_request_headers("h", SAMPLE_KEY, &["a\r\n".into()], None).is_err());
        assert!(response_headers("x", None, Some("\0")).is_err());
    }

    #[test]
    fn response_validation_failures() {
        let accept = accept_key(SAMPLE_KEY);
        let good = response_headers(&accept, None, None).unwrap();
        let offered = vec!["chat".to_owned()];
        assert!(validate_response(StatusCode::SWITCHING_PROTOCOLS, &good, SAMPLE_KEY, &[]).is_ok());
        assert_eq!(
            validate_response(StatusCode::OK, &good, SAMPLE_KEY, &[]),
            Err(HandshakeError::UnexpectedStatus(StatusCode::OK))
        );
        let mut h = good.clone();
        h.remove(header::UPGRADE);
        assert_eq!(
            validate_response(StatusCode::SWITCHING_PROTOCOLS, &h, SAMPLE_KEY, &[]),
            Err(HandshakeError::NotAnUpgrade)
        );
        let mut h = good.clone();
        h.remove(header::SEC_WEBSOCKET_ACCEPT);
        assert_eq!(
            validate_response(StatusCode::SWITCHING_PROTOCOLS, &h, SAMPLE_KEY, &[]),
            Err(HandshakeError::MissingAccept)
        );
        let other = generate_key();
        assert_eq!(
            validate_response(StatusCode::SWITCHING_PROTOCOLS, &good, &other, &[]),
            Err(HandshakeError::InvalidAccept)
        );
        let h = response_headers(&accept, Some("superchat"), None).unwrap();
        assert_eq!(
            validate_response(StatusCode::SWITCHING_PROTOCOLS, &h, SAMPLE_KEY, &offered),
            Err(HandshakeError::UnofferedSubprotocol("superchat".into()))
        );
        let h = response_headers(&accept, Some("chat, chat"), None).unwrap();
        assert_eq!(
            validate_response(StatusCode::SWITCHING_PROTOCOLS, &h, SAMPLE_KEY, &offered),
            Err(HandshakeError::MultipleSubprotocols)
        );
    }
}
