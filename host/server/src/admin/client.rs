//! A small blocking HTTP/1.1 client for the admin API, for the CLI: one
//! request per connection (`Connection: close`), JSON answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::ServerName;

/// A plain or TLS connection.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// How long the CLI waits for an answer: an upload of a large component
/// includes its compilation.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// A request body goes out in pieces of this size (progress reports).
const UPLOAD_CHUNK: usize = 256 * 1024;

/// An admin API endpoint and the token to use.
pub struct AdminClient {
    /// `host:port`
    authority: String,
    token: Option<String>,
    /// For `https://`: the TLS settings and the server's name.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl AdminClient {
    /// `url` is `http://host:port` or `https://host:port` (a trailing `/`
    /// is fine). `ca` is a PEM file of a CA to trust besides the web PKI
    /// (a self-signed admin certificate, for instance).
    pub fn new(url: &str, token: Option<String>, ca: Option<&Path>) -> Result<AdminClient> {
        let parsed = url::Url::parse(url).with_context(|| format!("admin URL `{url}`"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow!("admin URL `{url}` has no host"))?;
        let tls = match parsed.scheme() {
            "http" => None,
            "https" => {
                // IP addresses come bracketed from the URL for v6.
                let name = host.trim_start_matches('[').trim_end_matches(']');
                let server_name = ServerName::try_from(name.to_string())
                    .with_context(|| format!("admin URL `{url}`: `{name}` is not a TLS name"))?;
                Some((wsbox_io::tls::client_config(ca)?, server_name))
            }
            other => bail!("admin URL `{url}`: use http:// or https://, not {other}://"),
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        Ok(AdminClient {
            authority: format!("{host}:{port}"),
            token,
            tls,
        })
    }

    /// Sends a request; returns the JSON answer, or the server's error
    /// message as the error.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<serde_json::Value> {
        self.request_with_progress(method, path, content_type, body, &mut |_| {})
    }

    /// [`request`](Self::request), calling `progress` with the bytes of
    /// the body sent so far as it goes (for a large upload).
    pub fn request_with_progress(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        progress: &mut dyn FnMut(usize),
    ) -> Result<serde_json::Value> {
        let tcp = TcpStream::connect(&self.authority)
            .with_context(|| format!("connecting to the admin API at {}", self.authority))?;
        tcp.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let mut stream: Box<dyn ReadWrite> = match &self.tls {
            None => Box::new(tcp),
            Some((config, name)) => {
                let conn = rustls::ClientConnection::new(Arc::clone(config), name.clone())
                    .context("starting TLS to the admin API")?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.authority,
            body.len()
        );
        if let Some(t) = content_type {
            head.push_str(&format!("Content-Type: {t}\r\n"));
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .with_context(|| format!("sending {method} {path}"))?;
        let mut sent = 0;
        for chunk in body.chunks(UPLOAD_CHUNK) {
            stream
                .write_all(chunk)
                .with_context(|| format!("sending {method} {path}"))?;
            sent += chunk.len();
            progress(sent);
        }
        stream
            .flush()
            .with_context(|| format!("sending {method} {path}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&answer) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => bail!("the admin API sent a malformed answer to {method} {path}"),
        };
        let status = response.code.unwrap_or(0);
        let body = &answer[head_len..];
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
        });
        if status >= 400 {
            let message = value
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            bail!("{message} (HTTP {status})");
        }
        Ok(value)
    }
}
