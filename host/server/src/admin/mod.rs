//! The admin API: an HTTP/1.1 listener of its own (default
//! `127.0.0.1:9090`), JSON in and out, bearer-token auth. See
//! [`api`] for the endpoints and [`openapi`] for their description.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod openapi;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::control::ControlPlane;
pub use auth::{Principal, TokenSource, Tokens};

/// What every admin request needs.
pub struct AdminState {
    pub plane: Arc<ControlPlane>,
    pub tokens: Tokens,
    /// The largest request body read (a module upload).
    pub max_body: u64,
}

/// The admin listener, bound.
pub struct AdminServer {
    listener: TcpListener,
    state: Arc<AdminState>,
    /// `https://` when set.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<AdminServer> {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "binding the admin API to {addr} (choose another address with --admin-listen \
                 or [admin] listen, or run without it with --no-admin)"
            )
        })?;
        Ok(AdminServer {
            listener,
            state: Arc::new(state),
            tls: None,
        })
    }

    /// Serves over TLS with this acceptor (`[admin.tls]`).
    pub fn with_tls(mut self, acceptor: tokio_rustls::TlsAcceptor) -> AdminServer {
        self.tls = Some(acceptor);
        self
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    // Typically EMFILE: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = Arc::clone(&self.state);
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let result = match tls {
                    None => serve_http(stream, state).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls_stream)) => serve_http(tls_stream, state).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "admin TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "admin TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                }
            });
        }
    }
}

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one admin connection (plain or TLS) until it closes.
async fn serve_http<S>(stream: S, state: Arc<AdminState>) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(api::handle(&state, req).await) }
    });
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .await
}

/// Opens the registry in `config.data_dir`, restores its deployments into
/// `server` and binds the admin listener: the control plane of a server.
pub async fn start(
    server: crate::server::ServerHandle,
    config: &crate::config::AdminConfig,
    tokens: Tokens,
) -> Result<(AdminServer, Arc<ControlPlane>)> {
    // A bad certificate is found before the registry is touched.
    let tls = match &config.tls {
        Some(t) => {
            Some(wsbox_io::tls::acceptor(&t.cert, &t.key).context("the admin API's [admin.tls]")?)
        }
        None => None,
    };
    let dir = config.data_dir.clone();
    let engine = server.runtime().engine().clone();
    let (registry, recovery) =
        tokio::task::spawn_blocking(move || crate::registry::ModuleRegistry::open(&dir, &engine))
            .await
            .context("opening the registry")?
            .with_context(|| format!("opening the registry in {}", config.data_dir.display()))?;
    for token in registry.db().tokens()? {
        tokens.add_tenant_token(token.sha256, &token.tenant, &token.name);
    }
    tracing::info!(
        data_dir = %config.data_dir.display(),
        temp_files_removed = recovery.temp_files_removed,
        orphan_blobs_removed = recovery.orphan_blobs_removed,
        missing_blobs = recovery.missing_blobs.len(),
        "registry opened"
    );
    let plane = ControlPlane::start(
        registry,
        recovery,
        server,
        config.max_module_size,
        config.max_compile_time,
    )
    .await
    .context("restoring the deployments")?;
    let mut admin = AdminServer::bind(
        config.listen,
        AdminState {
            plane: Arc::clone(&plane),
            tokens,
            max_body: config.max_module_size,
        },
    )
    .await?;
    if let Some(acceptor) = tls {
        admin = admin.with_tls(acceptor);
    }
    Ok((admin, plane))
}
