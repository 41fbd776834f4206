//! The opening handshake: validate the request, ask the handler, answer 101
//! or an HTTP error, and start the connection task.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;
use wsbox_protocol::handshake;

use super::Shared;
use super::connection::{self, ConnectionSetup};
use wsbox_runtime::{
    CallError, Header, NamedCapture, OpenInfo, OriginDecision, UpgradeDecision, UpgradeRequest,
    to_socket_address,
};

type Body = Full<Bytes>;

/// Headers the host owns in a 101 response; a handler may not set them.
fn is_host_managed(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "upgrade" | "connection" | "content-length" | "transfer-encoding"
    ) || name.starts_with("sec-websocket-")
}

/// A query parameter's value (percent-decoding is not needed for the
/// numbers it is used for).
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn text_response(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    body.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 503 with a body that says why, and a hint to retry shortly.
fn unavailable(body: impl Into<String>) -> Response<Body> {
    let mut resp = text_response(StatusCode::SERVICE_UNAVAILABLE, body);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Tornado's answer to a refused origin.
fn forbidden_origin() -> Response<Body> {
    text_response(StatusCode::FORBIDDEN, "Cross origin websockets not allowed")
}

/// The most headers a handler may add to a 101 or reject response...
const MAX_HANDLER_HEADERS: usize = 32;
/// ...and the most bytes of names and values together.
const MAX_HANDLER_HEADER_BYTES: usize = 8 * 1024;
/// The longest reject reason sent as a body; longer ones are cut.
const MAX_REJECT_BODY: usize = 4 * 1024;

/// Adds handler-supplied headers, skipping (and logging) invalid or
/// host-managed ones, and those past the caps above.
fn add_handler_headers(resp: &mut Response<Body>, headers: &[Header], connection_id: u64) {
    let mut total = 0usize;
    for (i, h) in headers.iter().enumerate() {
        total = total.saturating_add(h.name.len() + h.value.len());
        if i >= MAX_HANDLER_HEADERS || total > MAX_HANDLER_HEADER_BYTES {
            tracing::error!(
                conn = connection_id,
                headers = headers.len(),
                "handler returned more than {MAX_HANDLER_HEADERS} headers or {MAX_HANDLER_HEADER_BYTES} bytes of them; the rest are dropped"
            );
            break;
        }
        if is_host_managed(&h.name) {
            tracing::error!(
                conn = connection_id,
                header = %h.name,
                "handler tried to set a host-managed header; ignored"
            );
            continue;
        }
        match (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(&h.value),
        ) {
            (Ok(name), Ok(value)) => {
                resp.headers_mut().append(name, value);
            }
            _ => tracing::error!(
                conn = connection_id,
                header = %h.name,
                "handler returned an invalid header; ignored"
            ),
        }
    }
}

/// The bytes hyper read past the request head, without hyper's read buffer:
/// that `Bytes` shares hyper's whole buffer (8 KB or more), which the
/// connection would otherwise keep for its lifetime.
fn detach_leftover(read_buf: Bytes) -> Bytes {
    if read_buf.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(&read_buf)
    }
}

/// Whether instantiation failed for want of room (the pool's slots or a
/// memory budget), which hibernating other connections can make.
pub(super) fn is_pool_full(e: &CallError) -> bool {
    match e {
        CallError::MemoryBudget(_) => true,
        // wasmtime's pooling allocator: "maximum concurrent ... limit of N reached".
        CallError::Instantiate(why) => why.contains("concurrent") && why.contains("limit"),
        _ => false,
    }
}

/// A connection's instance limits (its route's, with its tenant's caps
/// where they are tighter) and its largest message.
pub(super) fn connection_limits<'r>(
    shared: &Shared,
    route: &'r super::routes::Route,
    tenant: &str,
) -> (std::borrow::Cow<'r, wsbox_runtime::InstanceLimits>, u64) {
    // The tenant's caps, when tighter than the route's.
    let caps = shared.tenants.connection_caps(tenant);
    let max_message_size = route
        .config
        .limits
        .max_message_size
        .min(caps.max_message_size);
    let route_limits = &route.instance_limits;
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let max_pending_output = route_limits
        .max_pending_output
        .min(as_usize(caps.max_output_buffer));
    let memory_limit = route_limits.memory_limit.min(as_usize(caps.memory_limit));
    let cpu_time_per_event = route_limits
        .cpu_time_per_event
        .min(std::time::Duration::from_millis(caps.cpu_time_per_event_ms));
    let instance_limits = if max_pending_output < route_limits.max_pending_output
        || memory_limit < route_limits.memory_limit
        || cpu_time_per_event < route_limits.cpu_time_per_event
    {
        let mut limits = route_limits.clone();
        limits.max_pending_output = max_pending_output;
        limits.memory_limit = memory_limit;
        limits.cpu_time_per_event = cpu_time_per_event;
        std::borrow::Cow::Owned(limits)
    } else {
        std::borrow::Cow::Borrowed(route_limits)
    };
    (instance_limits, max_message_size)
}

/// Answers one HTTP request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if !super::pages::is_websocket_request(req.headers())
        && let Some(page) = shared.pages.iter().find(|p| p.path == path)
    {
        return page.respond(req.method());
    }
    // This request keeps the table it matched against: a deploy swapping
    // in a new one meanwhile does not change the route under it.
    let table = shared.routes.load_full();
    let Some(matched) = table.find(&path) else {
        return text_response(StatusCode::NOT_FOUND, format!("no route for {path}"));
    };

    let info = match handshake::validate_request(req.method(), req.version(), req.headers()) {
        Ok(info) => info,
        Err(e) => {
            let mut resp =
                text_response(e.status(), format!("{path} is a WebSocket endpoint: {e}"));
            for (name, value) in e.extra_headers() {
                resp.headers_mut()
                    .insert(name, HeaderValue::from_static(value));
            }
            return resp;
        }
    };

    let route = matched.route;
    // During a gradual rollout: which version this connection gets.
    let pin = req
        .headers()
        .get(super::routes::PIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query_value(req.uri().query().unwrap_or(""), super::routes::PIN));
    let roll = rand::random_range(0..100);
    let module = match route.choose(pin.as_deref(), roll) {
        Ok(m) => Arc::clone(m),
        Err(why) => return text_response(StatusCode::BAD_REQUEST, why),
    };
    let connection_id = shared.next_connection_id();
    let span = conn_span(connection_id, route.pattern(), &module);

    let host_verdict = route
        .config
        .origin
        .allows(info.origin.as_deref(), info.host.as_deref());
    if route.config.origin.enforce && !host_verdict {
        // The policy is pinned: no need to ask (or even create) the handler.
        tracing::info!(parent: &span, origin = ?info.origin, "cross-origin upgrade refused");
        return forbidden_origin();
    }
    let request = UpgradeRequest {
        connection_id,
        path: path.clone(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_string(),
                value: value.as_bytes().to_vec(),
            })
            .collect(),
        positional_captures: matched.positional,
        named_captures: matched
            .named
            .into_iter()
            .map(|(name, value)| NamedCapture { name, value })
            .collect(),
        remote_address: to_socket_address(peer),
        subprotocols: info.subprotocols.clone(),
        origin: info.origin.clone(),
        origin_allowed: host_verdict,
    };

    // Before the instance: a tenant at its cap costs no instantiation.
    let admission = match shared.tenants.admit(&module.tenant) {
        Ok(a) => a,
        Err(full) => {
            tracing::info!(parent: &span, max = full.max, "upgrade refused: tenant at its connection limit");
            return unavailable(format!("{full}; try again later"));
        }
    };

    let (instance_limits, max_message_size) = connection_limits(&shared, route, &module.tenant);
    let instance_limits = &*instance_limits;
    let max_pending_output = instance_limits.max_pending_output;
    let labels = crate::metrics::ModuleLabels::new(route.pattern(), &module);
    let started = std::time::Instant::now();
    // Pool pressure: idle connections that can hibernate make room
    // before the upgrade is refused.
    let instantiated = super::hibernation::instantiate_making_room(&shared, || {
        module.handler.instantiate(instance_limits, connection_id)
    })
    .instrument(span.clone())
    .await;
    shared
        .metrics
        .instantiate_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let mut instance = match instantiated {
        Ok(instance) => instance,
        Err(CallError::MemoryBudget(why)) => {
            shared.metrics.instantiate_failed(&labels, "memory_budget");
            tracing::warn!(parent: &span, %why, "handler instance refused: memory budget spent");
            return unavailable(format!(
                "{} memory for handlers is spent; try again later",
                why.owner
            ));
        }
        Err(e) => {
            shared.metrics.instantiate_failed(&labels, "failed");
            tracing::warn!(parent: &span, error = %e, "cannot create a handler instance");
            return unavailable("the handler for this route is unavailable; try again later");
        }
    };

    let decision = match instance.upgrade(request).instrument(span.clone()).await {
        Ok(d) => d,
        Err(CallError::WallTime(limit)) => {
            tracing::warn!(parent: &span, ?limit, "handler did not decide the upgrade in time");
            return unavailable(format!(
                "the handler for this route did not decide the upgrade within {limit:?}; try again later"
            ));
        }
        Err(e) => {
            tracing::warn!(parent: &span, error = %e, "handler failed during upgrade");
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the handler failed while deciding the upgrade",
            );
        }
    };

    let accept = match decision {
        UpgradeDecision::Reject(reject) => {
            let status = match StatusCode::from_u16(reject.status) {
                Ok(s) if (400..600).contains(&reject.status) => s,
                _ => {
                    tracing::error!(
                        parent: &span,
                        status = reject.status,
                        "handler rejected with a status outside 400-599; answering 500"
                    );
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            tracing::debug!(parent: &span, %status, reason = %reject.reason, "handler rejected upgrade");
            let mut reason = reject.reason;
            if reason.len() > MAX_REJECT_BODY {
                tracing::error!(
                    parent: &span,
                    len = reason.len(),
                    "handler's reject reason is over {MAX_REJECT_BODY} bytes; cut"
                );
                reason.truncate(reason.floor_char_boundary(MAX_REJECT_BODY));
            }
            let mut resp = text_response(status, reason);
            add_handler_headers(&mut resp, &reject.headers, connection_id);
            return resp;
        }
        UpgradeDecision::Accept(accept) => accept,
    };

    let origin_ok = match accept.origin {
        _ if route.config.origin.enforce => host_verdict,
        OriginDecision::HostVerdict => host_verdict,
        OriginDecision::Allow => true,
        OriginDecision::Deny => false,
    };
    if !origin_ok {
        tracing::info!(parent: &span, origin = ?info.origin, "cross-origin upgrade refused");
        return forbidden_origin();
    }

    let subprotocol = match accept.subprotocol {
        Some(p) if info.subprotocols.iter().any(|offered| offered == &p) => Some(p),
        Some(p) => {
            tracing::error!(
                parent: &span,
                selected = %p,
                offered = ?info.subprotocols,
                "handler selected a subprotocol the client did not offer; answering without one"
            );
            None
        }
        None => None,
    };

    let deflate = route
        .config
        .compression
        .as_ref()
        .and_then(|c| wsbox_protocol::deflate::negotiate_server(&info.extensions, c));
    let extensions = deflate
        .as_ref()
        .map(|(_, answer)| answer.clone())
        .unwrap_or_default();
    let websocket_headers = match handshake::response_headers(
        &info.accept,
        subprotocol.as_deref(),
        deflate.as_ref().map(|(_, answer)| answer.as_str()),
    ) {
        Ok(headers) => headers,
        Err(e) => {
            tracing::error!(parent: &span, error = %e, "cannot build the 101 answer");
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the WebSocket handshake answer could not be built",
            );
        }
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    add_handler_headers(&mut resp, &accept.headers, connection_id);
    // The host's headers win over anything of the same name.
    for (name, value) in &websocket_headers {
        resp.headers_mut().insert(name, value.clone());
    }

    let registration = shared.live.register(
        connection_id,
        super::mailbox::ConnectionMeta {
            route: std::sync::Arc::clone(route.config.pattern.shared()),
            module: arc_swap::ArcSwap::from(Arc::clone(&module)),
            remote: peer,
            opened: std::time::Instant::now(),
            admission,
        },
    );
    let entry = registration.shared_entry();
    let (membership, pubsub) = shared.pubsub.join(
        connection_id,
        &module.tenant,
        registration.shared_mailbox(),
        super::pubsub::Backpressure {
            max_bytes: route.config.limits.max_backpressure,
            policy: route.config.limits.slow_consumer,
            fanout: route.config.limits.pubsub_fanout,
        },
        deflate
            .as_ref()
            .and_then(|(negotiated, _)| negotiated.server_shared_compression()),
    );
    instance.set_pubsub(Arc::new(pubsub));
    let setup = ConnectionSetup {
        info: OpenInfo {
            subprotocol,
            extensions,
        },
        deflate: deflate.map(|(negotiated, _)| negotiated),
        max_message_size: usize::try_from(max_message_size).unwrap_or(usize::MAX),
        max_pending_output,
        keepalive: route.config.keepalive,
        shutdown: shared.shutdown.clone(),
        metrics: Arc::clone(&shared.metrics),
        registration,
        pubsub: membership,
        module_metrics: shared.metrics.for_module(&labels),
        wake: (route.config.hibernation.after.is_some()
            || route.config.hibernation.auto_response.is_some())
        .then(|| {
            Box::new(super::hibernation::WakeSource::new(
                Arc::clone(&shared),
                Arc::clone(&route.wake),
                pin,
                roll,
                connection_id,
            ))
        }),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Captured boxed: a value captured by the task stays in it for the
    // connection's lifetime, even once moved into the run future below.
    let pending = (Box::new(instance), Box::new(setup));
    let task = async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        // Made in a function of its own: what it needs (`parts`, the
        // unboxed setup) then takes no room in this task, which every
        // connection keeps for its lifetime.
        let Some(run) = start_run(upgraded, pending) else {
            return;
        };
        log_task_size("run", std::mem::size_of_val(&*run));
        run.await;
    };
    let task = super::traced::InConnSpan::new(task, span, connection_id, entry);
    log_task_size("task", std::mem::size_of_val(&task));
    shared.connections.spawn(task);
    shared
        .metrics
        .connections_accepted
        .get_or_create(&labels)
        .inc();
    resp
}

/// Logs, once per process and kind, the size of a connection's futures:
/// every connection keeps them for its lifetime, hibernated or not.
fn log_task_size(kind: &'static str, bytes: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static RUN: AtomicBool = AtomicBool::new(false);
    static TASK: AtomicBool = AtomicBool::new(false);
    let once = if kind == "run" { &RUN } else { &TASK };
    if !once.swap(true, Ordering::Relaxed) {
        tracing::debug!(kind, bytes, "connection task future size");
    }
}

/// The connection task over `io`.
fn boxed_run<S: connection::Transport + 'static>(
    io: S,
    leftover: Bytes,
    instance: Box<wsbox_runtime::HandlerInstance>,
    setup: Box<ConnectionSetup>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(connection::run(io, leftover, instance, setup))
}

/// The connection's run future, boxed, over the socket taken back from
/// hyper; `None` for a stream type it does not know.
fn start_run(
    upgraded: hyper::upgrade::Upgraded,
    pending: (Box<wsbox_runtime::HandlerInstance>, Box<ConnectionSetup>),
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let (instance, setup) = pending;
    // Take the socket back from hyper: the connection task drives
    // it directly, with any bytes hyper read past the request head.
    let run: Pin<Box<dyn Future<Output = ()> + Send>> =
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (io, leftover) = (parts.io.into_inner(), detach_leftover(parts.read_buf));
                boxed_run(io, leftover, instance, setup)
            }
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(parts) => {
                    let (io, leftover) = (parts.io.into_inner(), detach_leftover(parts.read_buf));
                    boxed_run(io, leftover, instance, setup)
                }
                Err(_) => {
                    tracing::error!("upgraded connection is of an unknown stream type");
                    return None;
                }
            },
        };
    Some(run)
}

/// A connection's span: every log line about it carries these fields.
pub(super) fn conn_span(
    id: u64,
    route: &str,
    module: &super::routes::ServedModule,
) -> tracing::Span {
    tracing::info_span!(
        "conn",
        id,
        route = %route,
        tenant = %module.tenant,
        module = %module.name,
        version = module.version,
    )
}
