//! permessage-deflate (RFC 7692): settings, and the negotiation for both roles.
//!
//! Server: pass the raw offers of [`crate::handshake::RequestInfo::extensions`] to
//! [`negotiate_server`]; put the returned string in the 101 response's
//! `Sec-WebSocket-Extensions` and the [`Negotiated`] in
//! [`crate::Connection::with_deflate`].
//!
//! Client: send [`client_offer`] in the request, then check the server's answer with
//! [`negotiate_client_response`] (or [`negotiate_client`] for one header value).
//!
//! ```
//! use wsbox_protocol::deflate::{DeflateConfig, negotiate_server};
//! use wsbox_protocol::{Config, Connection, Role};
//!
//! // RequestInfo::extensions of a browser's request:
//! let offers = vec!["permessage-deflate; client_max_window_bits".to_owned()];
//! let config = DeflateConfig::default();
//! let (negotiated, header_value) = match negotiate_server(&offers, &config) {
//!     Some((n, value)) => (Some(n), Some(value)),
//!     None => (None, None),
//! };
//! assert_eq!(header_value.as_deref(), Some("permessage-deflate"));
//! // header_value goes into handshake::response_headers(accept, subprotocol, ..).
//! let conn = Connection::with_deflate(Config::new(Role::Server), negotiated);
//! assert!(conn.is_deflate_enabled());
//! ```
//!
//! Window bits 8: zlib (and zlib-rs) cannot compress raw deflate with a 256-byte
//! window. When our side is limited to 8 bits we compress with a 9-bit window but
//! Huffman-only, which emits no back-references, so any window fits. We inflate an
//! 8-bit peer with a 9-bit window: older zlib turned 8 into 9 silently, so such peers
//! may reach 512 bytes back.

pub(crate) mod codec;

/// The extension token (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// Smallest and largest LZ77 window sizes (log2) RFC 7692 §7.1.2 allows.
pub const MIN_WINDOW_BITS: u8 = 8;
pub const MAX_WINDOW_BITS: u8 = 15;

/// Local permessage-deflate settings, named after Tornado's `compression_options`
/// where it has them. Out-of-range values are clamped when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// zlib level 0-9 for messages we send. Default 6.
    pub compression_level: u32,
    /// zlib `memLevel` 1-9 for our compressor: memory against speed/ratio. Default 8.
    pub mem_level: u8,
    /// The server's LZ77 window, log2 (8-15). Server: the largest we use (the client
    /// may ask for less). Client: below 15 we ask the server to stay within it.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, log2 (8-15). Server: below 15 we limit clients that
    /// allow it. Client: the largest we use (the server may ask for less).
    pub client_max_window_bits: u8,
    /// The server resets its compressor after each message. Server: we do, and say so.
    /// Client: we ask the server to (and refuse a server that does not agree).
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message. Server: we ask clients to,
    /// so that our inflater can be dropped between messages. Client: we do.
    pub client_no_context_takeover: bool,
    /// Messages shorter than this go out uncompressed. Default 256.
    pub min_compress_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            compression_level: 6,
            mem_level: 8,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            min_compress_size: 256,
        }
    }
}

/// The outcome of a negotiation: the agreed parameters plus our local settings.
/// `server_*` describe the server's compressor (the client's inflater), `client_*` the
/// client's compressor (the server's inflater). Fields are public so tests and tools
/// can build one directly; out-of-range values are clamped by the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
    /// Local: our compression level.
    pub compression_level: u32,
    /// Local: our compressor's mem_level.
    pub mem_level: u8,
    /// Local: messages shorter than this are sent uncompressed.
    pub min_compress_size: usize,
}

/// How the server compresses for one connection when its compressor resets
/// after every message (`server_no_context_takeover`): then one compressed
/// message fits every such connection with the same settings, and a
/// publisher can compress once for all of them ([`compress_once`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedCompression {
    pub window_bits: u8,
    pub level: u32,
    pub mem_level: u8,
    /// Messages shorter than this go out uncompressed.
    pub min_compress_size: usize,
}

impl Negotiated {
    /// The server side's settings when they allow sharing compressed
    /// messages (`server_no_context_takeover`), else `None`.
    pub fn server_shared_compression(&self) -> Option<SharedCompression> {
        self.server_no_context_takeover
            .then_some(SharedCompression {
                window_bits: self.server_max_window_bits,
                level: self.compression_level,
                mem_level: self.mem_level,
                min_compress_size: self.min_compress_size,
            })
    }

    /// Both sides keep their context and use 15-bit windows, with `config`'s local
    /// settings. Mostly for tests; real connections get theirs from a negotiation.
    pub fn with_defaults(config: &DeflateConfig) -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            compression_level: config.compression_level,
            mem_level: config.mem_level,
            min_compress_size: config.min_compress_size,
        }
    }
}

/// Why a server's `Sec-WebSocket-Extensions` answer is unacceptable to the client
/// (RFC 7692 §5: the client must then fail the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeflateNegotiationError {
    #[error("extension header is not valid syntax")]
    Malformed,
    #[error("server accepted extension {0:?}, which was not offered")]
    UnofferedExtension(String),
    #[error("server accepted permessage-deflate more than once")]
    Duplicated,
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    #[error("permessage-deflate parameter {0} given twice")]
    DuplicateParameter(&'static str),
    #[error("invalid value for permessage-deflate parameter {0}")]
    InvalidValue(&'static str),
    #[error("server sent {0} above the limit we offered")]
    WindowTooLarge(&'static str),
    #[error("server did not agree to the requested {0}")]
    MissingParameter(&'static str),
}

/// Compresses one message as a fresh permessage-deflate stream (what a
/// compressor that resets after every message produces), for every
/// connection with these settings. `None` when it is below
/// `min_compress_size` or does not compress; send it uncompressed then.
pub fn compress_once(payload: &[u8], settings: &SharedCompression) -> Option<Vec<u8>> {
    if payload.len() < settings.min_compress_size {
        return None;
    }
    codec::Compressor::new(
        settings.level,
        settings.mem_level,
        settings.window_bits,
        true,
    )
    .compress(payload)
}

// ----- server side -----

/// Pick the first acceptable permessage-deflate offer (RFC 7692 §5, §7.1).
///
/// `offers` are raw extension elements as in
/// [`crate::handshake::RequestInfo::extensions`]. Offers of other extensions, malformed
/// ones, and ones with unknown, duplicate or invalid parameters are skipped. Returns
/// the agreed parameters and the `Sec-WebSocket-Extensions` value to answer with, or
/// `None` to proceed without compression.
pub fn negotiate_server(offers: &[String], config: &DeflateConfig) -> Option<(Negotiated, String)> {
    let config = sanitized(config);
    offers
        .iter()
        .filter_map(|offer| parse_element(offer))
        .filter(|element| element.name.eq_ignore_ascii_case(EXTENSION_NAME))
        .find_map(|element| accept_offer(&element.params, &config))
}

fn accept_offer(params: &[Param], config: &DeflateConfig) -> Option<(Negotiated, String)> {
    let offer = OfferParams::parse(params).ok()?;
    // The client's offer of server_max_window_bits is a limit on our window (§7.1.2.1);
    // client_max_window_bits tells that the client accepts a limit on its own, and its
    // value is a limit it sets itself (§7.1.2.2).
    let server_bits = config
        .server_max_window_bits
        .min(offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS));
    let (client_bits, send_client_bits) = match offer.client_max_window_bits {
        None => (MAX_WINDOW_BITS, false),
        Some(None) => (
            config.client_max_window_bits,
            config.client_max_window_bits < MAX_WINDOW_BITS,
        ),
        Some(Some(bits)) => (bits.min(config.client_max_window_bits), true),
    };
    let negotiated = Negotiated {
        // We may add either no_context_takeover on our own (§7.1.1.1, §7.1.1.2): ours
        // because we choose to reset, the client's so that we may drop its inflater.
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        compression_level: config.compression_level,
        mem_level: config.mem_level,
        min_compress_size: config.min_compress_size,
    };
    let mut response = String::from(EXTENSION_NAME);
    if negotiated.server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if negotiated.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if offer.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    if send_client_bits {
        response.push_str(&format!("; client_max_window_bits={client_bits}"));
    }
    Some((negotiated, response))
}

// ----- client side -----

/// The `Sec-WebSocket-Extensions` value a client sends for `config`. It always
/// includes `client_max_window_bits`, which lets the server limit our window.
pub fn client_offer(config: &DeflateConfig) -> String {
    let config = sanitized(config);
    let mut offer = String::from(EXTENSION_NAME);
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < MAX_WINDOW_BITS {
        offer.push_str(&format!(
            "; server_max_window_bits={}",
            config.server_max_window_bits
        ));
    }
    offer.push_str("; client_max_window_bits");
    if config.client_max_window_bits < MAX_WINDOW_BITS {
        offer.push_str(&format!("={}", config.client_max_window_bits));
    }
    offer
}

/// Check the server's accepted extensions ([`crate::handshake::ResponseInfo::extensions`])
/// against the offer [`client_offer`] made for `config`. `Ok(None)`: the server
/// declined compression. Any other extension is an error, as we offered none.
pub fn negotiate_client_response(
    extensions: &[String],
    config: &DeflateConfig,
) -> Result<Option<Negotiated>, DeflateNegotiationError> {
    if extensions.is_empty() {
        return Ok(None);
    }
    // The elements were split at top-level commas, so joining them is lossless.
    negotiate_client(&extensions.join(", "), config).map(Some)
}

/// Validate one `Sec-WebSocket-Extensions` value from the server against the offer
/// [`client_offer`] made for `config`. The value must hold exactly one element, a
/// permessage-deflate one, as that is all we offered.
pub fn negotiate_client(
    response_value: &str,
    config: &DeflateConfig,
) -> Result<Negotiated, DeflateNegotiationError> {
    let elements =
        split_unquoted(response_value, b',').ok_or(DeflateNegotiationError::Malformed)?;
    let elements: Vec<&str> = elements.into_iter().filter(|e| !e.is_empty()).collect();
    match elements.as_slice() {
        [] => Err(DeflateNegotiationError::Malformed),
        [element] => accept_response(element, &sanitized(config)),
        several => {
            // Report a foreign extension if there is one: the likelier mistake.
            match several.iter().find(|e| !is_deflate(e)) {
                Some(foreign) => Err(DeflateNegotiationError::UnofferedExtension(
                    (*foreign).to_owned(),
                )),
                None => Err(DeflateNegotiationError::Duplicated),
            }
        }
    }
}

fn accept_response(
    element: &str,
    config: &DeflateConfig,
) -> Result<Negotiated, DeflateNegotiationError> {
    let element = parse_element(element).ok_or(DeflateNegotiationError::Malformed)?;
    if !element.name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return Err(DeflateNegotiationError::UnofferedExtension(
            element.name.to_owned(),
        ));
    }
    let answer = OfferParams::parse(&element.params)?;
    let server_bits = match answer.server_max_window_bits {
        Some(bits) if bits > config.server_max_window_bits => {
            return Err(DeflateNegotiationError::WindowTooLarge(
                SERVER_MAX_WINDOW_BITS,
            ));
        }
        Some(bits) => bits,
        None if config.server_max_window_bits < MAX_WINDOW_BITS => {
            return Err(DeflateNegotiationError::MissingParameter(
                SERVER_MAX_WINDOW_BITS,
            ));
        }
        None => MAX_WINDOW_BITS,
    };
    // We always offer client_max_window_bits (see client_offer); the answer must carry
    // a value (§7.1.2.2), no larger than the one we offered.
    let client_bits = match answer.client_max_window_bits {
        None => config.client_max_window_bits,
        Some(None) => {
            return Err(DeflateNegotiationError::InvalidValue(
                CLIENT_MAX_WINDOW_BITS,
            ));
        }
        Some(Some(bits)) if bits > config.client_max_window_bits => {
            return Err(DeflateNegotiationError::WindowTooLarge(
                CLIENT_MAX_WINDOW_BITS,
            ));
        }
        Some(Some(bits)) => bits,
    };
    if config.server_no_context_takeover && !answer.server_no_context_takeover {
        return Err(DeflateNegotiationError::MissingParameter(
            SERVER_NO_CONTEXT_TAKEOVER,
        ));
    }
    Ok(Negotiated {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        compression_level: config.compression_level,
        mem_level: config.mem_level,
        min_compress_size: config.min_compress_size,
    })
}

fn is_deflate(element: &str) -> bool {
    parse_element(element).is_some_and(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME))
}

/// `config` with every number in its valid range.
fn sanitized(config: &DeflateConfig) -> DeflateConfig {
    DeflateConfig {
        compression_level: config.compression_level.min(9),
        mem_level: config.mem_level.clamp(1, 9),
        server_max_window_bits: clamp_bits(config.server_max_window_bits),
        client_max_window_bits: clamp_bits(config.client_max_window_bits),
        ..config.clone()
    }
}

pub(crate) fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

// ----- parameters -----

/// The four parameters, as found in an offer or a response.
#[derive(Debug, Default)]
struct OfferParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl OfferParams {
    /// The syntax shared by offers and responses; what each side may send is checked
    /// by the caller. Names are compared case-insensitively, like the extension token.
    fn parse(params: &[Param]) -> Result<Self, DeflateNegotiationError> {
        use DeflateNegotiationError as E;
        let mut out = Self::default();
        for param in params {
            let name = param.name.to_ascii_lowercase();
            match name.as_str() {
                SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER => {
                    let (flag, name) = if name == SERVER_NO_CONTEXT_TAKEOVER {
                        (
                            &mut out.server_no_context_takeover,
                            SERVER_NO_CONTEXT_TAKEOVER,
                        )
                    } else {
                        (
                            &mut out.client_no_context_takeover,
                            CLIENT_NO_CONTEXT_TAKEOVER,
                        )
                    };
                    if *flag {
                        return Err(E::DuplicateParameter(name));
                    }
                    if param.value.is_some() {
                        return Err(E::InvalidValue(name));
                    }
                    *flag = true;
                }
                SERVER_MAX_WINDOW_BITS => {
                    if out.server_max_window_bits.is_some() {
                        return Err(E::DuplicateParameter(SERVER_MAX_WINDOW_BITS));
                    }
                    let bits = param.value.as_deref().and_then(parse_window_bits);
                    out.server_max_window_bits =
                        Some(bits.ok_or(E::InvalidValue(SERVER_MAX_WINDOW_BITS))?);
                }
                CLIENT_MAX_WINDOW_BITS => {
                    if out.client_max_window_bits.is_some() {
                        return Err(E::DuplicateParameter(CLIENT_MAX_WINDOW_BITS));
                    }
                    let bits = match param.value.as_deref() {
                        None => None,
                        Some(value) => Some(
                            parse_window_bits(value)
                                .ok_or(E::InvalidValue(CLIENT_MAX_WINDOW_BITS))?,
                        ),
                    };
                    out.client_max_window_bits = Some(bits);
                }
                _ => return Err(E::UnknownParameter(param.name.clone())),
            }
        }
        Ok(out)
    }
}

/// "A decimal integer value without leading zeroes between 8 to 15" (§7.1.2).
fn parse_window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

// ----- extension header syntax (RFC 6455 §9.1) -----

/// `extension-param = token [ "=" (token | quoted-string) ]`, value unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    name: String,
    value: Option<String>,
}

#[derive(Debug)]
struct Element<'a> {
    name: &'a str,
    params: Vec<Param>,
}

/// Parse `extension-token *( ";" extension-param )`; `None` if it is not valid syntax.
fn parse_element(element: &str) -> Option<Element<'_>> {
    let parts = split_unquoted(element, b';')?;
    let (name, params) = parts.split_first()?;
    if !is_token(name) {
        return None;
    }
    let params = params
        .iter()
        .map(|param| parse_param(param))
        .collect::<Option<Vec<_>>>()?;
    Some(Element { name, params })
}

fn parse_param(param: &str) -> Option<Param> {
    let (name, value) = match param.split_once('=') {
        None => (param, None),
        Some((name, value)) => (name.trim(), Some(parse_value(value.trim())?)),
    };
    is_token(name).then(|| Param {
        name: name.to_owned(),
        value,
    })
}

/// A token, or a quoted-string whose unescaped content is a token (RFC 6455 §9.1).
fn parse_value(value: &str) -> Option<String> {
    let Some(quoted) = value.strip_prefix('"') else {
        return is_token(value).then(|| value.to_owned());
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    loop {
        match chars.next()? {
            '"' => break,
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    (chars.as_str().is_empty() && is_token(&out)).then_some(out)
}

/// Split at `sep` outside quoted strings, trimming each part. `None` if a quoted
/// string is left open.
fn split_unquoted(s: &str, sep: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            _ if b == sep && !in_quotes => {
                parts.push(s.get(start..i)?.trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return None;
    }
    parts.push(s.get(start..)?.trim());
    Some(parts)
}

/// RFC 9110 §5.6.2 token: one or more tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
