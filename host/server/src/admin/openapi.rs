//! The admin API described as OpenAPI 3.0, served at `GET /openapi.json`.
//! Written by hand next to the router (`api.rs`): a test checks that every
//! path here answers.

use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"},
        "409": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"},
        "422": {"$ref": "#/components/responses/Error"}
    })
}

fn with_errors(ok_code: &str, description: &str, schema: Value) -> Value {
    let mut responses = error_responses();
    responses[ok_code] = json!({
        "description": description,
        "content": {"application/json": {"schema": schema}}
    });
    responses
}

fn path_param(name: &str, description: &str, schema_type: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": schema_type}})
}

/// The document.
pub fn document() -> Value {
    let tenant = path_param(
        "tenant",
        "Tenant name (`default` for the implicit one)",
        "string",
    );
    let module = path_param("module", "Module name", "string");
    let conn = path_param("id", "Connection id (from GET /v1/connections)", "integer");
    let topic = path_param(
        "topic",
        "Topic name, 1 to 256 bytes, percent-encoded (`/` as %2F)",
        "string",
    );
    // Apart from the document: one json! of it all passes the macro's
    // recursion limit.
    let deploy_request = json!({
        "type": "object", "required": ["module"],
        "properties": {"module": {"type": "string"}, "version": {"type": "integer"},
                       "route": {"type": "string", "description": "Path regex, matched whole"},
                       "drain": {"description": "Close older versions' connections with 1012 spread over this window (\"30s\"), or true for 30 s",
                                 "oneOf": [{"type": "string"}, {"type": "boolean"}]},
                       "split": {"type": "integer", "minimum": 1, "maximum": 99,
                           "description": "Gradual rollout: `version` gets this percent of new connections beside the active version (again with another percent to change it; a deploy without split promotes a version to all; rollback ends the rollout)"},
                       "pinning": {"type": "boolean",
                           "description": "With split: a client may choose one of the two versions with a `wsbox-version` header or query parameter (400 for another version)"},
                       "hibernate_after": {"oneOf": [{"type": "string", "example": "10s"}, {"type": "number", "minimum": 0}],
                           "description": "With route: hibernate a connection after this long without messages, when its handler exports `hibernation` and agrees: a duration (\"10s\", \"500ms\") or seconds; 0 or absent = off (recommended \"10s\")"},
                       "max_attachment": {"oneOf": [{"type": "string", "example": "16KiB"}, {"type": "integer", "minimum": 0, "maximum": 1048576}],
                           "description": "With route: the largest attachment a hibernated connection keeps: a size (\"16KiB\") or bytes, at most 1MiB; default 16KiB"},
                       "auto_response": {"$ref": "#/components/schemas/AutoResponse"}}});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "wsbox admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Upload WebAssembly handler components as immutable versions, \
                deploy them to routes without dropping connections, roll back, and reach \
                live connections. Every /v1 endpoint needs `Authorization: Bearer <token>`: \
                the operator token reaches everything; a tenant token reaches its tenant's \
                /v1/tenants/{t}/... paths and connections, answers 404 for other tenants' and \
                403 for operator-only endpoints (status, metrics, tenant settings, making tokens)."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                "responses": {"200": {"description": "The process serves"}}}},
            "/readyz": {"get": {"summary": "Readiness (deployments restored)", "security": [],
                "responses": {"200": {"description": "Ready"}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3 document"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4), labelled by tenant, route, module and version",
                "responses": {"200": {"description": "The exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": {"$ref": "#/components/responses/Error"}}}},
            "/v1/status": {"get": {"summary": "Data directory, compile and cache counters, crash recovery",
                "responses": with_errors("200", "Status", json!({"$ref": "#/components/schemas/Status"}))}},
            "/v1/tenants": {"get": {"summary": "Tenants and their modules",
                "responses": with_errors("200", "Tenants", json!({"type": "object",
                    "properties": {"tenants": {"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}}}))}},
            "/v1/tenants/{tenant}": {"put": {
                "summary": "Create or change a tenant: its namespace (path prefix its API-bound routes live under), connection cap (503 beyond it) and the limits its instances share. Fields left out are unbounded.",
                "parameters": [tenant],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"path_prefix": {"type": "string", "example": "/acme"},
                                   "max_connections": {"type": "integer", "minimum": 1},
                                   "max_memory_total": {"type": "integer", "minimum": 1,
                                       "description": "bytes of linear memory all its instances may use together; a new instance over it gets 503, a growing one traps"},
                                   "max_concurrent_calls": {"type": "integer", "minimum": 1,
                                       "description": "its handler calls that may run past an epoch tick at once, across its routes; more wait their turn"},
                                   "log_lines_per_second": {"type": "integer", "minimum": 1,
                                       "description": "guest log lines per second for all its connections together; more are dropped and counted"},
                                   "log_bytes_per_second": {"type": "integer", "minimum": 1,
                                       "description": "guest log bytes per second for all its connections together; more are dropped and counted"},
                                   "clock_resolution_ms": {"type": "integer", "minimum": 0,
                                       "description": "the resolution of the clocks its handlers see, when coarser than their routes' (against timing attacks); applies to connections opened afterwards"},
                                   "max_subscriptions_per_connection": {"type": "integer", "minimum": 1,
                                       "description": "topics one of its connections may subscribe to (default: [pubsub]'s)"},
                                   "max_publishes_per_second": {"type": "integer", "minimum": 1,
                                       "description": "publishes and send-to messages per second for all its connections (default: [pubsub]'s)"},
                                   "max_message_size": {"type": "integer", "minimum": 1,
                                       "description": "bytes: the largest message its connections may receive, when smaller than their routes' (1009 beyond)"},
                                   "max_output_buffer": {"type": "integer", "minimum": 1,
                                       "description": "bytes that may wait to be sent on one of its connections, when fewer than their routes' (1011 output limit beyond)"},
                                   "memory_limit": {"type": "integer", "minimum": 1,
                                       "description": "bytes of linear memory one of its instances may grow to, when fewer than their routes' (it traps beyond)"},
                                   "cpu_time_per_event_ms": {"type": "integer", "minimum": 1,
                                       "description": "CPU time one call of its handlers may take, when shorter than their routes' (1011 beyond)"}}}}}},
                "responses": with_errors("200", "The tenant's settings", json!({"type": "object"}))}},
            "/v1/tenants/{tenant}/modules/{module}/versions": {
                "post": {"summary": "Upload a new immutable version (validated and compiled first)",
                    "parameters": [tenant, module,
                        {"name": "note", "in": "query", "required": false, "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {"application/wasm": {
                        "schema": {"type": "string", "format": "binary"}}}},
                    "responses": with_errors("201", "The stored version", json!({"$ref": "#/components/schemas/Version"}))},
                "get": {"summary": "A module's versions, the active one, live connections per version",
                    "parameters": [tenant, module],
                    "responses": with_errors("200", "Versions", json!({"$ref": "#/components/schemas/Module"}))}
            },
            "/v1/tenants/{tenant}/topics/{topic}/messages": {"post": {
                "summary": "Publish a message (text, or binary with application/octet-stream) to a tenant's topic: framed once and queued on every subscriber on this server, and with a broker ([pubsub] backend) sent to the other nodes; no handler is called and the tenant's publish rate does not apply",
                "parameters": [tenant, topic],
                "requestBody": {"required": true, "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": with_errors("200", "What the publish did", json!({"type": "object",
                    "properties": {"tenant": {"type": "string"}, "topic": {"type": "string"},
                        "delivered": {"type": "integer", "description": "Subscribers it was queued on"},
                        "skipped": {"type": "integer", "description": "Subscribers skipped as slow consumers (over their route's max_backpressure)"},
                        "broker_error": {"type": "string", "enum": ["unavailable", "backlog"],
                            "description": "With a broker: present when the message did not go to the other nodes (this node's subscribers got it)"},
                        "message": {"type": "string", "description": "With broker_error: what happened, in words"}}}))}},
            "/v1/tenants/{tenant}/tokens": {
                "post": {"summary": "Make a token that reaches this tenant only (operator token needed). The answer holds the token, shown once: only its SHA-256 is stored",
                    "parameters": [tenant],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string", "example": "ci"}}}}}},
                    "responses": with_errors("201", "The new token", json!({"type": "object",
                        "properties": {"tenant": {"type": "string"}, "name": {"type": "string"},
                            "token": {"type": "string"}}}))},
                "get": {"summary": "The tenant's tokens: names and when they were made, never the tokens",
                    "parameters": [tenant],
                    "responses": with_errors("200", "Tokens", json!({"type": "object"}))}
            },
            "/v1/tenants/{tenant}/tokens/{name}": {"delete": {
                "summary": "Revoke a tenant token at once (operator token or the tenant's own)",
                "parameters": [tenant, path_param("name", "The token's name", "string")],
                "responses": with_errors("200", "Revoked", json!({"type": "object"}))}},
            "/v1/tenants/{tenant}/topics/{topic}": {"get": {
                "summary": "How many connections of the tenant subscribe to the topic on this server",
                "parameters": [tenant, topic],
                "responses": with_errors("200", "The count", json!({"type": "object",
                    "properties": {"tenant": {"type": "string"}, "topic": {"type": "string"},
                        "subscribers": {"type": "integer"}}}))}},
            "/v1/tenants/{tenant}/modules/{module}/rollback": {"post": {
                "summary": "Activate the version that was active before the current one",
                "parameters": [tenant, module],
                "responses": with_errors("200", "The deployment", json!({"$ref": "#/components/schemas/Deployment"}))}},
            "/v1/tenants/{tenant}/deployments": {
                "post": {"summary": "Activate a version (the latest by default); with `route`, bind that path regex to the module, with the route's hibernation settings (`hibernate_after`, `max_attachment`, `auto_response`: the config file's keys, units and rules; a binding is replaced whole, so settings left out take their defaults, and a deploy without `route` leaves the module's bindings as they are); with `split`, roll it out to a share of new connections. A bad setting is 400 and changes nothing",
                    "parameters": [tenant],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": deploy_request}}},
                    "responses": with_errors("200", "The deployment", json!({"$ref": "#/components/schemas/Deployment"}))},
                "get": {"summary": "Active deployments of a tenant", "parameters": [tenant],
                    "responses": with_errors("200", "Deployments", json!({"type": "object",
                        "properties": {"deployments": {"type": "array", "items": {"$ref": "#/components/schemas/Deployment"}}}}))}
            },
            "/v1/connections": {"get": {"summary": "Live connections",
                "responses": with_errors("200", "Connections", json!({"type": "object",
                    "properties": {"connections": {"type": "array", "items": {"$ref": "#/components/schemas/Connection"}}}}))}},
            "/v1/connections/{id}": {"delete": {"summary": "Close a connection",
                "parameters": [conn,
                    {"name": "code", "in": "query", "schema": {"type": "integer", "default": 1000}},
                    {"name": "reason", "in": "query", "schema": {"type": "string"}}],
                "responses": with_errors("202", "Closing", json!({"type": "object"}))}},
            "/v1/connections/{id}/close": {"post": {"summary": "Close a connection with a code and reason",
                "parameters": [conn],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object",
                    "properties": {"code": {"type": "integer", "default": 1000}, "reason": {"type": "string"}}}}}},
                "responses": with_errors("202", "Closing", json!({"type": "object"}))}},
            "/v1/connections/{id}/messages": {"post": {
                "summary": "Send a message to the client (text, or binary with application/octet-stream); the handler is not called. Like pub/sub's send-to: framed once, skipped when the connection is over its route's max_backpressure",
                "parameters": [conn],
                "requestBody": {"required": true, "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": with_errors("202", "Sent", json!({"type": "object",
                    "properties": {"connection": {"type": "integer"},
                        "queued": {"type": "boolean", "description": "false when skipped as a slow consumer"},
                        "queued_bytes": {"type": "integer"}}}))}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "What is wrong and what to do",
                "content": {"application/json": {"schema": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}}}}}},
            "schemas": {
                "Version": {"type": "object", "properties": {
                    "tenant": {"type": "string"}, "module": {"type": "string"},
                    "version": {"type": "integer"}, "sha256": {"type": "string"},
                    "size": {"type": "integer"}, "uploaded_by": {"type": "string"},
                    "uploaded_at_ms": {"type": "integer"}, "note": {"type": "string", "nullable": true}}},
                "Module": {"type": "object", "properties": {
                    "tenant": {"type": "string"}, "module": {"type": "string"},
                    "active_version": {"type": "integer", "nullable": true},
                    "versions": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/Version"},
                        {"type": "object", "properties": {"active": {"type": "boolean"},
                                                          "live_connections": {"type": "integer"}}}]}}}},
                "Deployment": {"type": "object", "properties": {
                    "tenant": {"type": "string"}, "module": {"type": "string"},
                    "version": {"type": "integer"}, "previous_version": {"type": "integer", "nullable": true},
                    "activated_at_ms": {"type": "integer"},
                    "routes": {"type": "array", "items": {"type": "string"},
                        "description": "Patterns it serves, as matched (a tenant's under its path_prefix)"},
                    "bound_routes": {"type": "array", "items": {"$ref": "#/components/schemas/BoundRoute"},
                        "description": "Routes bound to it through the API, with their hibernation settings"},
                    "draining": {"type": "integer"},
                    "rollout": {"type": "object", "description": "A version rolling out beside the active one",
                        "properties": {"version": {"type": "integer"}, "percent": {"type": "integer"},
                            "pinning": {"type": "boolean"}}}}},
                "AutoResponse": {"type": "object", "required": ["request", "response"],
                    "description": "A text message (request, not empty, compared whole) the host answers with response itself, without a handler call and without waking a hibernated connection",
                    "properties": {"request": {"type": "string", "example": "ping"},
                                   "response": {"type": "string", "example": "pong"}}},
                "BoundRoute": {"type": "object", "properties": {
                    "route": {"type": "string", "description": "The path regex as bound"},
                    "hibernate_after": {"type": "string", "nullable": true, "example": "10s",
                        "description": "null: hibernation off"},
                    "max_attachment": {"type": "string", "example": "16KiB"},
                    "auto_response": {"allOf": [{"$ref": "#/components/schemas/AutoResponse"}], "nullable": true}}},
                "Tenant": {"type": "object", "properties": {
                    "name": {"type": "string"}, "modules": {"type": "array", "items": {"type": "string"}},
                    "path_prefix": {"type": "string", "nullable": true},
                    "max_connections": {"type": "integer", "nullable": true},
                    "max_memory_total": {"type": "integer"},
                    "max_concurrent_calls": {"type": "integer"},
                    "log_lines_per_second": {"type": "integer"},
                    "log_bytes_per_second": {"type": "integer"},
                    "clock_resolution_ms": {"type": "integer"},
                    "max_subscriptions_per_connection": {"type": "integer"},
                    "max_publishes_per_second": {"type": "integer"},
                    "max_message_size": {"type": "integer"},
                    "max_output_buffer": {"type": "integer"},
                    "memory_limit": {"type": "integer"},
                    "cpu_time_per_event_ms": {"type": "integer"},
                    "memory_used": {"type": "integer"},
                    "live_connections": {"type": "integer"}}},
                "Connection": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "tenant": {"type": "string"}, "route": {"type": "string"},
                    "module": {"type": "string"}, "version": {"type": "integer", "nullable": true},
                    "remote_addr": {"type": "string"}, "age_ms": {"type": "integer"},
                    "bytes_in": {"type": "integer"}, "bytes_out": {"type": "integer"}}},
                "Status": {"type": "object", "properties": {
                    "data_dir": {"type": "string"}, "compiles": {"type": "integer"},
                    "compiled_cache_hits": {"type": "integer"}, "live_connections": {"type": "integer"},
                    "recovery": {"type": "object"}}}
            }
        }
    })
}
