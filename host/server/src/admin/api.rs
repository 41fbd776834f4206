//! The admin API's endpoints (all JSON; errors are `{"error": "..."}`):
//!
//! | method and path | what |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (no token) |
//! | `GET /openapi.json` | this API as OpenAPI 3 (no token) |
//! | `GET /v1/status` | data dir, compile and cache counters |
//! | `GET /metrics` | Prometheus text format (token needed) |
//! | `GET /v1/tenants` | tenants and their modules |
//! | `PUT /v1/tenants/{t}` | a tenant's namespace and connection cap |
//! | `POST /v1/tenants/{t}/tokens` | a token for one tenant `{name}` (shown once) |
//! | `GET /v1/tenants/{t}/tokens` | a tenant's token names |
//! | `DELETE /v1/tenants/{t}/tokens/{name}` | revoke one |
//!
//! The operator token reaches everything; a tenant token reaches its
//! tenant's paths (`/v1/tenants/{t}/...`, not `PUT /v1/tenants/{t}` nor
//! making tokens) and connections. Another tenant's are 404, operator-only
//! endpoints (`status`, `metrics`, tenant settings, tokens) 403.
//! | `POST /v1/tenants/{t}/modules/{m}/versions?note=` | upload (body: the component) |
//! | `GET /v1/tenants/{t}/modules/{m}/versions` | versions, active one, live connections each |
//! | `POST /v1/tenants/{t}/deployments` | activate `{module, version?, route?}`; a `route` may carry `hibernate_after`, `max_attachment`, `auto_response` |
//! | `GET /v1/tenants/{t}/deployments` | active deployments |
//! | `POST /v1/tenants/{t}/modules/{m}/rollback` | back to the previous version |
//! | `GET /v1/connections` | live connections |
//! | `POST /v1/connections/{id}/messages` | send a message to the client |
//! | `POST /v1/tenants/{t}/topics/{topic}/messages` | publish to a tenant's topic |
//! | `GET /v1/tenants/{t}/topics/{topic}` | a topic's subscriber count |
//! | `POST /v1/connections/{id}/close`, `DELETE /v1/connections/{id}` | close it |

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::{AdminState, Principal};
use crate::registry::RegistryError;
use crate::server::ConnectionCommandError;

type Body = Full<Bytes>;

/// The most bytes of a message sent to a connection through the API.
const MAX_MESSAGE_BODY: u64 = 16 * 1024 * 1024;
/// The most bytes of a JSON request body.
const MAX_JSON_BODY: u64 = 64 * 1024;

/// An error answer: a status and a message that says what to do.
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let status = match &e {
            RegistryError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Conflict(_) => StatusCode::CONFLICT,
            RegistryError::Db(_) | RegistryError::Io { .. } | RegistryError::Internal(_) => {
                tracing::error!(error = %e, "registry failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

impl From<ConnectionCommandError> for ApiError {
    fn from(e: ConnectionCommandError) -> ApiError {
        let status = match e {
            ConnectionCommandError::UnknownConnection(_) => StatusCode::NOT_FOUND,
            ConnectionCommandError::InvalidClose(_) => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = value.to_string();
    body.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn ok<T: serde::Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, ApiError> {
    let value = serde_json::to_value(value)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json_response(status, &value))
}

fn error_response(ApiError(status, message): ApiError) -> Response<Body> {
    let mut resp = json_response(status, &json!({ "error": message }));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wsbox\""),
        );
    }
    resp
}

/// Answers one admin request.
pub async fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Body> {
    match route(state, req).await {
        Ok(resp) => resp,
        Err(e) => error_response(e),
    }
}

/// A query parameter, percent-decoded.
fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn read_body(req: Request<Incoming>, limit: u64, what: &str) -> Result<Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(req.into_body(), limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the {what} is over the limit of {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!("reading the {what}: {e}"))),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    what: &str,
) -> Result<T, ApiError> {
    let body = read_body(req, MAX_JSON_BODY, what).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the {what} is not the expected JSON: {e}")))
}

/// `POST /v1/tenants/{t}/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateRequest {
    module: String,
    version: Option<u64>,
    /// A gradual rollout: the version gets this percent of new connections
    /// (1 to 99) beside the active one.
    split: Option<u8>,
    /// With `split`: clients may pin a version with `wsbox-version`.
    #[serde(default)]
    pinning: bool,
    route: Option<String>,
    /// Close older versions' connections with 1012 over this window
    /// (`"30s"`, `"500ms"`; `true` for the default 30 s).
    drain: Option<DrainRequest>,
    /// With `route`: its hibernation settings, as a config route's
    /// (`"10s"` or seconds; 0 = off).
    hibernate_after: Option<serde_json::Value>,
    /// With `route`: the largest attachment (`"16KiB"` or bytes, at most 1 MiB).
    max_attachment: Option<serde_json::Value>,
    /// With `route`: `{"request": "ping", "response": "pong"}`.
    auto_response: Option<serde_json::Value>,
}

impl ActivateRequest {
    /// The route to bind, with its hibernation settings validated by the
    /// config file's rules; an error names the field and what is wrong.
    fn binding(&self) -> Result<Option<crate::control::RouteBinding>, ApiError> {
        let given = [
            ("hibernate_after", self.hibernate_after.is_some()),
            ("max_attachment", self.max_attachment.is_some()),
            ("auto_response", self.auto_response.is_some()),
        ];
        let Some(pattern) = &self.route else {
            if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
                return Err(ApiError::bad_request(format!(
                    "`{key}` is a setting of the route being bound: give `route` with it \
                     (a deploy without `route` leaves the module's routes and their settings as they are)"
                )));
            }
            return Ok(None);
        };
        Ok(Some(crate::control::RouteBinding {
            pattern: pattern.clone(),
            hibernation: hibernation_settings(
                self.hibernate_after.as_ref(),
                self.max_attachment.as_ref(),
                self.auto_response.as_ref(),
            )?,
        }))
    }
}

/// A route's hibernation settings from a request, read as the config file
/// reads `hibernate_after`, `max_attachment` and `[route.auto_response]`
/// (same units, same rules); what is left out takes its default.
fn hibernation_settings(
    hibernate_after: Option<&serde_json::Value>,
    max_attachment: Option<&serde_json::Value>,
    auto_response: Option<&serde_json::Value>,
) -> Result<crate::config::Hibernation, ApiError> {
    use crate::config::{AutoResponse, Hibernation};
    use serde_json::Value;
    use wsbox_io::units::{DurationValue, SizeValue};
    let mut h = Hibernation::default();
    if let Some(v) = hibernate_after {
        let value = match v {
            Value::String(s) => DurationValue::Text(s.clone()),
            Value::Number(n) => DurationValue::Seconds(n.as_f64().unwrap_or(f64::NAN)),
            other => {
                return Err(ApiError::bad_request(format!(
                    "`hibernate_after` must be a duration such as \"10s\" or \"500ms\", or a number \
                     of seconds (0 = off), not {other}"
                )));
            }
        };
        h.after = Hibernation::parse_after(&value)
            .map_err(|m| ApiError::bad_request(format!("`hibernate_after`: {m}")))?;
    }
    if let Some(v) = max_attachment {
        let value = match v {
            Value::String(s) => SizeValue::Text(s.clone()),
            // Past i64 is still a whole number: too large, said as such below.
            Value::Number(n) => match n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)) {
                Some(n) => SizeValue::Bytes(n),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "`max_attachment`: {n} is not a whole number of bytes (or a size such as \"16KiB\")"
                    )));
                }
            },
            other => {
                return Err(ApiError::bad_request(format!(
                    "`max_attachment` must be a size such as \"16KiB\" or a number of bytes, not {other}"
                )));
            }
        };
        h.max_attachment = Hibernation::parse_max_attachment(&value)
            .map_err(|m| ApiError::bad_request(format!("`max_attachment`: {m}")))?;
    }
    if let Some(v) = auto_response {
        let pair: AutoResponse = serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "`auto_response` must be {{\"request\": \"ping\", \"response\": \"pong\"}}: {e}"
            ))
        })?;
        h.auto_response = Some(
            AutoResponse::new(&pair.request, &pair.response)
                .map_err(|(key, m)| ApiError::bad_request(format!("`auto_response.{key}`: {m}")))?,
        );
    }
    Ok(h)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DrainRequest {
    Default(bool),
    Window(String),
}

/// The default drain window.
const DEFAULT_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantRequest {
    path_prefix: Option<String>,
    max_connections: Option<u64>,
    max_memory_total: Option<u64>,
    max_concurrent_calls: Option<u32>,
    log_lines_per_second: Option<u32>,
    log_bytes_per_second: Option<u64>,
    clock_resolution_ms: Option<u64>,
    max_subscriptions_per_connection: Option<u32>,
    max_publishes_per_second: Option<u32>,
    max_message_size: Option<u64>,
    max_output_buffer: Option<u64>,
    memory_limit: Option<u64>,
    cpu_time_per_event_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    code: Option<u16>,
    reason: Option<String>,
}

/// A path segment, percent-decoded (a topic may hold `/`, sent as `%2F`).
fn path_segment(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("`{segment}` has a malformed percent escape"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad_request(format!("`{segment}` is not UTF-8 once decoded")))
}

/// A message from a request body: binary with
/// `Content-Type: application/octet-stream`, else UTF-8 text.
async fn read_message(req: Request<Incoming>) -> Result<wsbox_protocol::Message, ApiError> {
    let binary = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/octet-stream"));
    let body = read_body(req, MAX_MESSAGE_BODY, "message").await?;
    if binary {
        return Ok(wsbox_protocol::Message::Binary(body));
    }
    let text = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::bad_request(
            "the message is not UTF-8 text: send binary messages with              `Content-Type: application/octet-stream`",
        )
    })?;
    Ok(wsbox_protocol::Message::Text(text))
}

impl From<crate::server::pubsub::PubsubError> for ApiError {
    fn from(e: crate::server::pubsub::PubsubError) -> ApiError {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    }
}

fn connection_id(segment: &str) -> Result<u64, ApiError> {
    segment.parse().map_err(|_| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("`{segment}` is not a connection id: GET /v1/connections lists them"),
        )
    })
}

/// What a request's token may reach.
struct Scope<'p>(&'p Principal);

impl Scope<'_> {
    /// Operator-only endpoints: 403 for a tenant token.
    fn operator(&self) -> Result<(), ApiError> {
        match self.0 {
            Principal::Operator => Ok(()),
            Principal::Tenant { tenant, .. } => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs the operator token: tenant `{tenant}`'s token reaches \
                     /v1/tenants/{tenant}/... and the tenant's connections"
                ),
            )),
        }
    }

    /// A tenant's resources: another tenant's are not found, so a token
    /// learns nothing of other tenants, not even whether they exist.
    fn tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self.0.reaches(tenant) {
            return Ok(());
        }
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no tenant `{tenant}` for this token"),
        ))
    }

    /// A live connection: another tenant's is unknown to a tenant token.
    fn connection(&self, plane: &crate::control::ControlPlane, id: u64) -> Result<(), ApiError> {
        if *self.0 == Principal::Operator {
            return Ok(());
        }
        let reachable = plane
            .server()
            .connections()
            .iter()
            .any(|c| c.id == id && self.0.reaches(&c.tenant));
        if reachable {
            Ok(())
        } else {
            Err(ConnectionCommandError::UnknownConnection(id).into())
        }
    }
}

async fn route(state: &AdminState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => return ok(StatusCode::OK, &json!({"status": "ok"})),
        // Ready once the listener is up: it starts after the registry
        // restored the deployments.
        (&Method::GET, ["readyz"]) => return ok(StatusCode::OK, &json!({"status": "ready"})),
        (&Method::GET, ["openapi.json"]) => return ok(StatusCode::OK, &super::openapi::document()),
        _ => {}
    }
    // Prometheus scrapes /metrics; it is served under /v1 too.
    let segments: Vec<&str> = if segments.as_slice() == ["metrics"] {
        vec!["v1", "metrics"]
    } else {
        segments
    };
    if segments.first() != Some(&"v1") {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no endpoint {path}: GET /openapi.json lists them"),
        ));
    }
    let principal = state
        .tokens
        .check(req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send `Authorization: Bearer <token>` with the operator \
                 token (WSBOX_ADMIN_TOKEN, or the admin-token file in the data directory) or a \
                 tenant token"
                    .into(),
            )
        })?;
    let by_name = principal.audit_name();
    let by: &str = &by_name;
    let scope = Scope(&principal);
    let plane = &state.plane;
    match (&method, &segments[1..]) {
        (&Method::GET, ["status"]) => {
            scope.operator()?;
            ok(StatusCode::OK, &plane.status())
        }
        (&Method::GET, ["metrics"]) => {
            scope.operator()?;
            let stats = &plane.registry().stats;
            let text = plane
                .server()
                .encode_metrics(stats.compiles(), stats.cache_hits())
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
            // OpenMetrics to scrapers that ask for it, else text 0.0.4.
            let openmetrics = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            let (body, content_type) = if openmetrics {
                (
                    text,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    crate::metrics::to_prometheus_text(&text),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok(resp)
        }
        (&Method::GET, ["tenants"]) => {
            let mut tenants = plane.tenants().await?;
            tenants.retain(|t| principal.reaches(&t.name));
            ok(StatusCode::OK, &json!({"tenants": tenants}))
        }
        (&Method::POST, ["tenants", tenant, "tokens"]) => {
            scope.operator()?;
            let tenant = path_segment(tenant)?;
            let request: TokenRequest = read_json(req, "token request").await?;
            let token = plane
                .create_token(&tenant, &request.name, &state.tokens, by)
                .await?;
            ok(
                StatusCode::CREATED,
                &json!({
                    "tenant": tenant,
                    "name": request.name,
                    "token": token,
                    "note": "shown once: only its hash is kept",
                }),
            )
        }
        (&Method::GET, ["tenants", tenant, "tokens"]) => {
            let tenant = path_segment(tenant)?;
            scope.tenant(&tenant)?;
            ok(
                StatusCode::OK,
                &json!({"tenant": tenant, "tokens": plane.tokens(&tenant).await?}),
            )
        }
        (&Method::DELETE, ["tenants", tenant, "tokens", name]) => {
            let tenant = path_segment(tenant)?;
            scope.tenant(&tenant)?;
            let name = path_segment(name)?;
            plane
                .revoke_token(&tenant, &name, &state.tokens, by)
                .await?;
            ok(
                StatusCode::OK,
                &json!({"tenant": tenant, "name": name, "revoked": true}),
            )
        }
        (&Method::PUT, ["tenants", tenant]) => {
            scope.operator()?;
            let tenant = tenant.to_string();
            let request: TenantRequest = read_json(req, "tenant settings").await?;
            let record = plane
                .set_tenant(
                    &tenant,
                    request.path_prefix,
                    request.max_connections,
                    crate::config::TenantLimits {
                        max_memory_total: request.max_memory_total,
                        max_concurrent_calls: request.max_concurrent_calls,
                        log_lines_per_second: request.log_lines_per_second,
                        log_bytes_per_second: request.log_bytes_per_second,
                        clock_resolution_ms: request.clock_resolution_ms,
                        max_subscriptions_per_connection: request.max_subscriptions_per_connection,
                        max_publishes_per_second: request.max_publishes_per_second,
                        max_message_size: request.max_message_size,
                        max_output_buffer: request.max_output_buffer,
                        memory_limit: request.memory_limit,
                        cpu_time_per_event_ms: request.cpu_time_per_event_ms,
                    },
                    by,
                )
                .await?;
            ok(StatusCode::OK, &record)
        }
        (&Method::POST, ["tenants", tenant, "modules", module, "versions"]) => {
            scope.tenant(tenant)?;
            let note = query_param(&req, "note");
            let bytes = read_body(req, state.max_body, "module").await?;
            let record = plane.upload(tenant, module, bytes, by, note).await?;
            ok(StatusCode::CREATED, &record)
        }
        (&Method::GET, ["tenants", tenant, "modules", module, "versions"]) => {
            scope.tenant(tenant)?;
            ok(StatusCode::OK, &plane.versions(tenant, module).await?)
        }
        (&Method::POST, ["tenants", tenant, "modules", module, "rollback"]) => {
            scope.tenant(tenant)?;
            ok(StatusCode::OK, &plane.rollback(tenant, module, by).await?)
        }
        (&Method::POST, ["tenants", tenant, "deployments"]) => {
            scope.tenant(tenant)?;
            let tenant = tenant.to_string();
            let request: ActivateRequest = read_json(req, "deployment request").await?;
            // Checked first: a bad setting changes nothing.
            let binding = request.binding()?;
            let drain = match &request.drain {
                None | Some(DrainRequest::Default(false)) => None,
                Some(DrainRequest::Default(true)) => Some(DEFAULT_DRAIN),
                Some(DrainRequest::Window(text)) => {
                    Some(wsbox_io::units::parse_duration_text(text).map_err(|e| {
                        ApiError::bad_request(format!(
                            "`drain` must be a duration such as \"30s\" or true: {e}"
                        ))
                    })?)
                }
            };
            if let Some(percent) = request.split {
                if drain.is_some() || request.route.is_some() {
                    return Err(ApiError::bad_request(
                        "a split rolls a version out beside the active one: it takes no `drain` \
                         or `route` (bind the route with a full deploy)",
                    ));
                }
                let version = request.version.ok_or_else(|| {
                    ApiError::bad_request("a split needs the `version` to roll out")
                })?;
                let deployment = plane
                    .roll_out(
                        &tenant,
                        &request.module,
                        version,
                        percent,
                        request.pinning,
                        by,
                    )
                    .await?;
                return ok(StatusCode::OK, &deployment);
            }
            let mut deployment = plane
                .activate(&tenant, &request.module, request.version, binding, by)
                .await?;
            if let Some(window) = drain {
                deployment.draining =
                    plane.drain(&tenant, &deployment.module, deployment.version, window);
            }
            ok(StatusCode::OK, &deployment)
        }
        (&Method::GET, ["tenants", tenant, "deployments"]) => {
            scope.tenant(tenant)?;
            ok(
                StatusCode::OK,
                &json!({"deployments": plane.deployments(tenant).await?}),
            )
        }
        (&Method::GET, ["connections"]) => {
            let mut connections = plane.server().connections();
            connections.retain(|c| principal.reaches(&c.tenant));
            ok(StatusCode::OK, &json!({"connections": connections}))
        }
        (&Method::POST, ["tenants", tenant, "topics", topic, "messages"]) => {
            let tenant = path_segment(tenant)?;
            scope.tenant(&tenant)?;
            let topic = path_segment(topic)?;
            let message = read_message(req).await?;
            let len = message.len();
            let report = plane.server().publish(&tenant, &topic, &message)?;
            tracing::info!(
                audit = "publish",
                tenant = %tenant,
                topic = %topic,
                len,
                delivered = report.delivered,
                skipped = report.skipped,
                broker_error = report.broker_error.map(|e| e.to_string()),
                by,
                "message published to a topic"
            );
            let mut answer = json!({
                "tenant": tenant,
                "topic": topic,
                "delivered": report.delivered,
                "skipped": report.skipped,
            });
            if let Some(e) = report.broker_error {
                // Delivered here, not to the other nodes: say which and why.
                answer["broker_error"] = json!(e);
                answer["message"] = json!(format!(
                    "delivered on this node only: {e}; the other nodes did not get it"
                ));
            }
            ok(StatusCode::OK, &answer)
        }
        (&Method::GET, ["tenants", tenant, "topics", topic]) => {
            let tenant = path_segment(tenant)?;
            scope.tenant(&tenant)?;
            let topic = path_segment(topic)?;
            let subscribers = plane.server().subscriber_count(&tenant, &topic);
            ok(
                StatusCode::OK,
                &json!({"tenant": tenant, "topic": topic, "subscribers": subscribers}),
            )
        }
        (&Method::POST, ["connections", id, "messages"]) => {
            let id = connection_id(id)?;
            scope.connection(plane, id)?;
            let message = read_message(req).await?;
            let len = message.len();
            let queued = plane.server().send(id, message)?;
            tracing::info!(
                audit = "send",
                conn = id,
                len,
                queued,
                by,
                "message sent to a connection (queued unless it is a slow consumer)"
            );
            // `queued_bytes` is 0 when the connection was over its
            // route's max_backpressure and the message was skipped.
            ok(
                StatusCode::ACCEPTED,
                &json!({
                    "connection": id,
                    "queued": queued,
                    "queued_bytes": if queued { len } else { 0 },
                }),
            )
        }
        (&Method::POST, ["connections", id, "close"]) | (&Method::DELETE, ["connections", id]) => {
            let id = connection_id(id)?;
            scope.connection(plane, id)?;
            let request = if method == Method::DELETE {
                CloseRequest {
                    code: query_param(&req, "code")
                        .map(|c| c.parse())
                        .transpose()
                        .map_err(|_| {
                            ApiError::bad_request("`code` must be a close code such as 1000")
                        })?,
                    reason: query_param(&req, "reason"),
                }
            } else {
                let body = read_body(req, MAX_JSON_BODY, "close request").await?;
                if body.is_empty() {
                    CloseRequest::default()
                } else {
                    serde_json::from_slice(&body).map_err(|e| {
                        ApiError::bad_request(format!(
                            "the close request is not JSON like {{\"code\": 1000, \"reason\": \"bye\"}}: {e}"
                        ))
                    })?
                }
            };
            let code = request.code.unwrap_or(1000);
            let reason = request.reason.unwrap_or_default();
            plane.server().close(id, code, &reason)?;
            tracing::info!(audit = "close", conn = id, code, %reason, by, "connection close requested");
            ok(
                StatusCode::ACCEPTED,
                &json!({"connection": id, "closing": true, "code": code}),
            )
        }
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no endpoint {method} {path}: GET /openapi.json lists them"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request(body: serde_json::Value) -> ActivateRequest {
        serde_json::from_value(body).expect("the request's shape")
    }

    fn refused(body: serde_json::Value) -> String {
        match request(body).binding() {
            Err(ApiError(status, message)) => {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
                message
            }
            Ok(b) => panic!("accepted: {b:?}"),
        }
    }

    #[test]
    fn route_settings_are_read_as_the_config_file_reads_them() {
        let b = request(
            json!({"module": "m", "route": "/r", "hibernate_after": "10s",
            "max_attachment": "4KiB", "auto_response": {"request": "ping", "response": "pong"}}),
        )
        .binding()
        .ok()
        .flatten()
        .expect("a binding");
        assert_eq!(b.pattern, "/r");
        assert_eq!(b.hibernation.after, Some(Duration::from_secs(10)));
        assert_eq!(b.hibernation.max_attachment, 4096);
        assert_eq!(
            b.hibernation.auto_response,
            Some(crate::config::AutoResponse {
                request: "ping".into(),
                response: "pong".into()
            })
        );
        // Numbers are seconds and bytes; 0 is off; null is left out.
        let b = request(
            json!({"module": "m", "route": "/r", "hibernate_after": 0.25,
            "max_attachment": 1024}),
        )
        .binding()
        .ok()
        .flatten()
        .expect("a binding");
        assert_eq!(b.hibernation.after, Some(Duration::from_millis(250)));
        assert_eq!(b.hibernation.max_attachment, 1024);
        let b = request(json!({"module": "m", "route": "/r", "hibernate_after": 0,
            "max_attachment": null, "auto_response": null}))
        .binding()
        .ok()
        .flatten()
        .expect("a binding");
        assert_eq!(b.hibernation, crate::config::Hibernation::default());
        // No route, no settings: nothing to bind.
        assert!(matches!(
            request(json!({"module": "m"})).binding(),
            Ok(None)
        ));
    }

    #[test]
    fn bad_route_settings_are_refused_with_what_is_wrong() {
        let m = refused(json!({"module": "m", "route": "/r", "hibernate_after": "5 fortnights"}));
        assert!(
            m.contains("`hibernate_after`") && m.contains("unknown duration unit"),
            "{m}"
        );
        let m = refused(json!({"module": "m", "route": "/r", "hibernate_after": -1}));
        assert!(
            m.contains("`hibernate_after`") && m.contains("out of range"),
            "{m}"
        );
        let m = refused(json!({"module": "m", "route": "/r", "hibernate_after": true}));
        assert!(m.contains("must be a duration such as"), "{m}");
        let m = refused(json!({"module": "m", "route": "/r", "max_attachment": "2MiB"}));
        assert!(
            m.contains("`max_attachment`") && m.contains("at most 1MiB"),
            "{m}"
        );
        let m = refused(json!({"module": "m", "route": "/r", "max_attachment": -5}));
        assert!(m.contains("must not be negative"), "{m}");
        let m = refused(json!({"module": "m", "route": "/r", "max_attachment": 1.5}));
        assert!(m.contains("whole number of bytes"), "{m}");
        let m = refused(json!({"module": "m", "route": "/r", "max_attachment": "lots"}));
        assert!(m.contains("is not a size"), "{m}");
        let m = refused(json!({"module": "m", "route": "/r",
            "auto_response": {"request": "", "response": "x"}}));
        assert!(
            m.contains("`auto_response.request`") && m.contains("must not be empty"),
            "{m}"
        );
        let m = refused(json!({"module": "m", "route": "/r", "auto_response": {"request": "x"}}));
        assert!(m.contains("missing field `response`"), "{m}");
        let m = refused(json!({"module": "m", "route": "/r", "auto_response": "ping"}));
        assert!(m.contains("`auto_response` must be"), "{m}");
        // Settings belong to the route being bound.
        let m = refused(json!({"module": "m", "hibernate_after": "10s"}));
        assert!(m.contains("give `route`"), "{m}");
    }
}
