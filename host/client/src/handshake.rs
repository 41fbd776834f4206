//! The client's opening: URL, TCP, TLS, and the HTTP/1.1 upgrade (RFC 6455 §4.1).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Host, Url};
use wsbox_protocol::deflate::{self, Negotiated};
use wsbox_protocol::handshake::client::{ClientHandshake, ResponseError, ResponseHead};
use wsbox_protocol::handshake::{client_request_headers, generate_key};

use super::{ClientError, ClientOptions};

/// How much of a refusal's body is kept for the error.
const BODY_SNIPPET: usize = 1024;
/// How long to wait for a refusal's body once the head arrived.
const BODY_WAIT: Duration = Duration::from_secs(2);

/// Headers the handshake sets itself; options may not override them.
const RESERVED_HEADERS: [HeaderName; 7] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_ACCEPT,
];

/// A connected socket, plain or TLS.
pub(super) enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A completed opening handshake.
pub(super) struct Opened {
    pub stream: MaybeTls,
    /// Bytes that followed the response head: the first frames.
    pub leftover: Vec<u8>,
    pub negotiated: Option<Negotiated>,
    pub subprotocol: Option<String>,
    pub extensions: Option<String>,
    pub response_headers: HeaderMap,
}

/// Where to connect and what to ask for, from a `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub tls: bool,
    pub host: Host<String>,
    pub port: u16,
    /// The `Host` header: the host, and the port unless it is the default.
    pub host_header: String,
    /// Path and query, as sent in the request line.
    pub resource: String,
}

pub(super) fn parse_url(url: &str) -> Result<Target, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        other => {
            return Err(invalid(&format!(
                "the scheme must be ws or wss, not {other:?}"
            )));
        }
    };
    if parsed.fragment().is_some() {
        return Err(invalid("WebSocket URLs may not have a #fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not supported; send an Authorization header instead",
        ));
    }
    let host = parsed
        .host()
        .ok_or_else(|| invalid("the URL has no host"))?
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| invalid("the URL has no port"))?;
    let host_str = parsed.host_str().unwrap_or_default();
    let host_header = match parsed.port() {
        Some(port) => format!("{host_str}:{port}"),
        None => host_str.to_owned(),
    };
    let mut resource = parsed.path().to_owned();
    if resource.is_empty() {
        resource.push('/');
    }
    if let Some(query) = parsed.query() {
        resource.push('?');
        resource.push_str(query);
    }
    Ok(Target {
        tls,
        host,
        port,
        host_header,
        resource,
    })
}

/// The handshake's client side, and the request head to send.
pub(super) fn build_request(
    target: &Target,
    options: &ClientOptions,
) -> Result<(ClientHandshake, Vec<u8>), ClientError> {
    let key = generate_key();
    let offer = options.compression.as_ref().map(deflate::client_offer);
    let mut headers = client_request_headers(
        &target.host_header,
        &key,
        &options.subprotocols,
        offer.as_deref(),
    )
    .map_err(|e| ClientError::InvalidOptions(e.to_string()))?;
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("wsbox/", env!("CARGO_PKG_VERSION"))),
    );
    let mut user_agent_set = false;
    for (name, value) in &options.headers {
        let invalid = |reason: &str| ClientError::InvalidHeader {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header_name) {
            return Err(invalid(
                "set by the WebSocket handshake itself (use the subprotocols and compression options)",
            ));
        }
        let header_value = HeaderValue::from_str(value.trim())
            .map_err(|_| invalid("the value contains characters HTTP does not allow"))?;
        if header_name == header::HOST {
            headers.insert(header_name, header_value);
        } else if header_name == header::USER_AGENT && !user_agent_set {
            headers.insert(header_name, header_value);
            user_agent_set = true;
        } else {
            headers.append(header_name, header_value);
        }
    }
    Ok(ClientHandshake::new(
        &target.resource,
        &headers,
        key,
        options.subprotocols.clone(),
    ))
}

/// Connects, upgrades, and checks the answer, all within the connect timeout.
pub(super) async fn open(url: &str, options: &ClientOptions) -> Result<Opened, ClientError> {
    let target = parse_url(url)?;
    let (mut opening, request) = build_request(&target, options)?;
    let connector = if target.tls {
        Some(wsbox_io::tls::connector(options.ca_file.as_deref()).map_err(ClientError::TlsSetup)?)
    } else {
        None
    };
    let deadline = Instant::now() + options.connect_timeout;
    let mut stage = "connecting";
    let result = tokio::time::timeout_at(deadline, async {
        let tcp = connect_tcp(&target).await?;
        let _ = tcp.set_nodelay(true);
        let mut stream = match connector {
            None => MaybeTls::Plain(tcp),
            Some(connector) => {
                stage = "TLS handshake";
                let name = server_name(&target)?;
                let tls =
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|source| ClientError::Tls {
                            host: target.host.to_string(),
                            source,
                        })?;
                MaybeTls::Tls(Box::new(tls))
            }
        };
        stage = "sending the upgrade request";
        stream.write_all(&request).await.map_err(ClientError::Io)?;
        stream.flush().await.map_err(ClientError::Io)?;
        stage = "waiting for the response";
        let response = read_response(&mut stream, &mut opening, deadline).await?;
        finish(stream, response, &opening, options)
    })
    .await;
    match result {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout {
            url: url.to_owned(),
            timeout: options.connect_timeout,
            stage,
        }),
    }
}

async fn connect_tcp(target: &Target) -> Result<TcpStream, ClientError> {
    let result = match &target.host {
        Host::Domain(domain) => TcpStream::connect((domain.as_str(), target.port)).await,
        Host::Ipv4(ip) => TcpStream::connect((*ip, target.port)).await,
        Host::Ipv6(ip) => TcpStream::connect((*ip, target.port)).await,
    };
    result.map_err(|source| ClientError::Connect {
        addr: match &target.host {
            Host::Ipv6(ip) => format!("[{ip}]:{}", target.port),
            host => format!("{host}:{}", target.port),
        },
        source,
    })
}

fn server_name(target: &Target) -> Result<ServerName<'static>, ClientError> {
    Ok(match &target.host {
        Host::Domain(domain) => {
            ServerName::try_from(domain.clone()).map_err(|e| ClientError::InvalidUrl {
                url: domain.clone(),
                reason: format!("not a valid TLS server name: {e}"),
            })?
        }
        Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(*ip).into()),
        Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(*ip).into()),
    })
}

async fn read_response(
    stream: &mut MaybeTls,
    opening: &mut ClientHandshake,
    deadline: Instant,
) -> Result<ResponseHead, ClientError> {
    let mut chunk = [0u8; 4096];
    let mut received = false;
    loop {
        let n = stream.read(&mut chunk).await.map_err(ClientError::Io)?;
        if n == 0 {
            return Err(if received {
                ClientError::MalformedResponse(
                    "the connection closed in the middle of the response head".into(),
                )
            } else {
                ClientError::NoResponse
            });
        }
        received = true;
        if let Some(mut response) = opening.receive(&chunk[..n]).map_err(malformed)? {
            if response.status != 101 {
                read_body_snippet(stream, &mut response, deadline).await;
            }
            return Ok(response);
        }
    }
}

fn malformed(error: ResponseError) -> ClientError {
    ClientError::MalformedResponse(match error {
        ResponseError::Malformed(what) => what,
        other => other.to_string(),
    })
}

/// Reads the start of a refusal's body into `response.rest` (best effort).
async fn read_body_snippet(stream: &mut MaybeTls, response: &mut ResponseHead, deadline: Instant) {
    let content_length = response
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = is_chunked(&response.headers);
    let want = content_length.unwrap_or(usize::MAX).min(BODY_SNIPPET);
    let until = deadline.min(Instant::now() + BODY_WAIT);
    let _ = tokio::time::timeout_at(until, async {
        let mut chunk = [0u8; 1024];
        while response.rest.len() < want && !(chunked && dechunk(&response.rest).1) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.rest.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if chunked {
        response.rest = dechunk(&response.rest).0;
    }
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Decodes as much of a chunked body as is there; also tells whether the
/// last chunk was seen.
fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (out, false);
        };
        if size == 0 {
            return (out, true);
        }
        data = &data[line_end + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 {
            return (out, false);
        }
        data = &data[size + 2..];
    }
}

/// Checks the response and settles the negotiated parameters.
fn finish(
    stream: MaybeTls,
    response: ResponseHead,
    opening: &ClientHandshake,
    options: &ClientOptions,
) -> Result<Opened, ClientError> {
    if response.status != 101 {
        let body = snippet(&response.rest);
        return Err(ClientError::HttpStatus {
            status: response.status.as_u16(),
            reason: response.reason,
            headers: Box::new(response.headers),
            body,
        });
    }
    let info = opening.validate(&response)?;
    let negotiated = match &options.compression {
        Some(config) => deflate::negotiate_client_response(&info.extensions, config)?,
        None if !info.extensions.is_empty() => {
            return Err(ClientError::UnofferedExtension(info.extensions.join(", ")));
        }
        None => None,
    };
    let extensions = (!info.extensions.is_empty()).then(|| info.extensions.join(", "));
    Ok(Opened {
        stream,
        leftover: response.rest,
        negotiated,
        subprotocol: info.subprotocol,
        extensions,
        response_headers: response.headers,
    })
}

/// The start of a body as text for an error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_SNIPPET)]);
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsbox_protocol::handshake::client::parse_response_head;

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:8080/echo?x=1").unwrap();
        assert!(!t.tls);
        assert_eq!(t.port, 8080);
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.resource, "/echo?x=1");

        let t = parse_url("wss://example.com").unwrap();
        assert!(t.tls);
        assert_eq!(t.port, 443);
        assert_eq!(t.host_header, "example.com");
        assert_eq!(t.resource, "/");

        let t = parse_url("ws://[::1]:9000/a%20b").unwrap();
        assert_eq!(t.host, Host::<String>::Ipv6(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(t.host_header, "[::1]:9000");
        assert_eq!(t.resource, "/a%20b");

        let t = parse_url("ws://example.com:80/").unwrap();
        assert_eq!(t.host_header, "example.com");

        for bad in [
            "http://example.com/",
            "ws://example.com/#frag",
            "ws://user:pw@example.com/",
            "not a url",
            "ws://",
            "wss://:443/",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(matches!(e, ClientError::InvalidUrl { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn request_head() {
        let target = parse_url("ws://localhost:9/chat?room=1").unwrap();
        let options = ClientOptions::default()
            .with_subprotocol("chat")
            .with_subprotocol("superchat")
            .with_header("X-Test", "yes")
            .with_header("Host", "override.example")
            .with_compression(Default::default());
        let (opening, head) = build_request(&target, &options).unwrap();
        let key = opening.key();
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("GET /chat?room=1 HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("sec-websocket-key: {key}\r\n")),
            "{head}"
        );
        assert!(head.contains("host: override.example\r\n"), "{head}");
        assert!(!head.contains("localhost:9"), "{head}");
        assert!(
            head.contains("sec-websocket-protocol: chat, superchat\r\n"),
            "{head}"
        );
        assert!(
            head.contains("sec-websocket-extensions: permessage-deflate"),
            "{head}"
        );
        assert!(head.contains("x-test: yes\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"));

        let bad = ClientOptions::default().with_header("Sec-WebSocket-Key", "x");
        assert!(matches!(
            build_request(&target, &bad),
            Err(ClientError::InvalidHeader { .. })
        ));
        let bad = ClientOptions::default().with_header("X-Bad", "a\nb");
        assert!(matches!(
            build_request(&target, &bad),
            Err(ClientError::InvalidHeader { .. })
        ));
        let bad = ClientOptions::default().with_header("Bad Name", "x");
        assert!(matches!(
            build_request(&target, &bad),
            Err(ClientError::InvalidHeader { .. })
        ));
    }

    fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, ClientError> {
        parse_response_head(buf).map_err(malformed)
    }

    #[test]
    fn response_heads() {
        assert!(parse_head(b"HTTP/1.1 101 Switching").unwrap().is_none());
        let r = parse_head(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!")
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(r.reason, "Forbidden");
        assert_eq!(r.rest, b"no!");
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ClientError::MalformedResponse(_))
        ));
        // A TLS alert record: the hint names wss://.
        match parse_head(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]) {
            Err(ClientError::MalformedResponse(m)) => assert!(m.contains("wss://"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.map(|r| r.status))),
        }
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n0\r\n\r\n"),
            (b"hello".to_vec(), true)
        );
        assert_eq!(dechunk(b"5\r\nhel"), (b"hel".to_vec(), false));
        assert_eq!(
            dechunk(b"3;x=y\r\nabc\r\n2\r\nde\r\n"),
            (b"abcde".to_vec(), false)
        );
    }
}
