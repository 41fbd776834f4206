//! Static pages served beside the WebSocket routes: a page that uses the
//! routes from the same origin passes the default origin check.

use anyhow::{Context, Result};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use crate::config::{PageConfig, PageSource};

/// A page, read once at start.
pub(super) struct Page {
    pub path: String,
    content_type: &'static str,
    body: Bytes,
}

impl Page {
    pub fn load(config: &PageConfig) -> Result<Page> {
        let body =
            match &config.source {
                PageSource::Bundled(text) => Bytes::from_static(text.as_bytes()),
                PageSource::File(file) => Bytes::from(std::fs::read(file).with_context(|| {
                    format!("reading page {} for {}", file.display(), config.path)
                })?),
            };
        Ok(Page {
            path: config.path.clone(),
            content_type: config.content_type(),
            body,
        })
    }

    /// The answer to a plain HTTP request for this page.
    pub fn respond(&self, method: &Method) -> Response<Full<Bytes>> {
        let body = match *method {
            Method::GET => self.body.clone(),
            Method::HEAD => Bytes::new(),
            _ => {
                let mut resp = Response::new(Full::new(Bytes::from_static(
                    b"this page answers GET and HEAD only\n",
                )));
                *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return resp;
            }
        };
        let mut resp = Response::new(Full::new(body));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`): such a
/// request goes to the routes, never to a page.
pub(super) fn is_websocket_request(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}
