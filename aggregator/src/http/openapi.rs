//! `GET /api/openapi.json`: the OpenAPI 3.1 document of every route.
//!
//! The document is generated from [`OPERATIONS`], one row per (method, path).
//! `tests/openapi.rs` keeps the table honest in both directions: it probes
//! the app with every documented operation (none may answer 404/405), and it
//! reads the route registrations in `src/http/` and probes every method on
//! every registered path, so a route added without a row here fails the test.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::AppState;
use super::access::{ReadAccess, Scope};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(serve))
}

/// A query (or form) parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
}

const fn p(name: &'static str, required: bool, description: &'static str) -> Param {
    Param {
        name,
        required,
        description,
    }
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub method: &'static str,
    /// With `{name}` path parameters, as axum and OpenAPI both write them.
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// `None`: open to everyone.
    pub scope: Option<Scope>,
    pub params: &'static [Param],
    /// Media type of the success body.
    pub produces: &'static str,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";
const HTML: &str = "text/html";

const LOGIN: &[Param] = &[p("next", false, "local path to return to after signing in")];
const SIGN_IN: &[Param] = &[
    p("username", true, "user name"),
    p("password", true, "password"),
    p(
        "csrf_token",
        true,
        "the form's token (equal to the vigil_login_csrf cookie)",
    ),
    p("next", false, "local path to go to after signing in"),
];
const SIGN_OUT: &[Param] = &[p("csrf_token", true, "the session's CSRF token")];

const AUDIT: &[Param] = &[
    p(
        "since",
        false,
        "at or after this time (RFC 3339 or unix seconds)",
    ),
    p(
        "until",
        false,
        "at or before this time (RFC 3339 or unix seconds)",
    ),
    p(
        "actor",
        false,
        "exactly this actor name (user, token or local user)",
    ),
    p(
        "action",
        false,
        "exactly this action, e.g. alert.ack, silence.create, user.update, token.revoke, agent.revoke, session.login_failed",
    ),
    p(
        "limit",
        false,
        "at most this many entries, newest first (1..=1000, default 100)",
    ),
    p(
        "before",
        false,
        "only entries older than this id: the previous page's next",
    ),
];

const NOTIFICATIONS: &[Param] = &[
    p(
        "status",
        false,
        "pending, delivered, skipped, failed or superseded",
    ),
    p(
        "limit",
        false,
        "at most this many rows, newest first (1..=1000, default 100)",
    ),
];
const QUERY: &[Param] = &[
    p("query", true, "PromQL expression"),
    p(
        "time",
        false,
        "evaluation time: RFC 3339 or unix seconds (default: now)",
    ),
    p("timeout", false, "evaluation timeout, e.g. 30s"),
];
const QUERY_RANGE: &[Param] = &[
    p("query", true, "PromQL expression"),
    p("start", true, "RFC 3339 or unix seconds"),
    p("end", true, "RFC 3339 or unix seconds"),
    p("step", true, "duration (15s) or float seconds"),
    p("timeout", false, "evaluation timeout"),
];
const SERIES: &[Param] = &[
    p("match[]", true, "series selector; repeatable"),
    p("start", false, "RFC 3339 or unix seconds"),
    p("end", false, "RFC 3339 or unix seconds"),
    p("limit", false, "maximum number of series returned"),
];
const LABELS: &[Param] = &[
    p("match[]", false, "series selector; repeatable"),
    p("start", false, "RFC 3339 or unix seconds"),
    p("end", false, "RFC 3339 or unix seconds"),
];
const METADATA: &[Param] = &[
    p("metric", false, "only this metric"),
    p(
        "limit",
        false,
        "maximum number of metrics (0: none, negative: all)",
    ),
    p("limit_per_metric", false, "maximum entries per metric"),
];
const EXEMPLARS: &[Param] = &[
    p("query", true, "PromQL expression"),
    p("start", false, "RFC 3339 or unix seconds"),
    p("end", false, "RFC 3339 or unix seconds"),
];
const SILENCES: &[Param] = &[p("state", false, "active, pending or expired")];
const RULES: &[Param] = &[p("type", false, "alert or record")];
const ALERTS: &[Param] = &[
    p("severity", false, "only alerts with this severity label"),
    p("team", false, "only alerts with this team label"),
    p("host", false, "only alerts with this host label"),
    p("state", false, "pending or firing"),
];
const ALERT_HISTORY: &[Param] = &[
    p("from", false, "start: RFC 3339 or unix seconds"),
    p("to", false, "end: RFC 3339 or unix seconds"),
    p("rule", false, "alert (rule) name"),
    p("host", false, "host label"),
    p("severity", false, "severity label"),
    p("team", false, "team label"),
    p(
        "event",
        false,
        "pending, firing, resolved, inactive, acknowledged, escalated, flapping_start or flapping_stop",
    ),
    p("limit", false, "rows per page, 1 to 1000 (default 100)"),
    p("cursor", false, "next_cursor of the previous page"),
];
const FROM_TO: &[Param] = &[
    p(
        "from",
        false,
        "start: RFC 3339 or unix seconds (default: 24 h ago)",
    ),
    p("to", false, "end: RFC 3339 or unix seconds (default: now)"),
];
const REPORT_METRICS: &[Param] = &[
    p("query", true, "PromQL expression"),
    p(
        "from",
        false,
        "start: RFC 3339 or unix seconds (default: 1 h ago)",
    ),
    p("to", false, "end: RFC 3339 or unix seconds (default: now)"),
    p(
        "step",
        false,
        "duration (60s) or float seconds (default: 60s)",
    ),
    p("format", false, "json (default) or csv"),
];

macro_rules! op {
    ($method:literal, $path:literal, $tag:literal, $scope:expr, $params:expr, $produces:expr, $summary:literal) => {
        Operation {
            method: $method,
            path: $path,
            tag: $tag,
            summary: $summary,
            scope: $scope,
            params: $params,
            produces: $produces,
        }
    };
}

const R: Option<Scope> = Some(Scope::Read);
const W: Option<Scope> = Some(Scope::Write);
const A: Option<Scope> = Some(Scope::Admin);

/// Every route the aggregator serves (one row per operation, kept tabular).
#[rustfmt::skip]
pub const OPERATIONS: &[Operation] = &[
    op!("get", "/healthz", "health", None, &[], TEXT, "Liveness: the process answers"),
    op!("get", "/readyz", "health", None, &[], TEXT, "Readiness: the database is reachable and migrated; also this node's cluster role and leader"),
    op!("get", "/metrics", "health", None, &[], TEXT, "The aggregator's own metrics (Prometheus text format)"),
    op!("get", "/api/openapi.json", "meta", R, &[], JSON, "This document"),
    op!("get", "/api/v1/tokens", "access", A, &[], JSON, "API tokens: name, scope, created, revoked (never the secret)"),
    op!("post", "/api/v1/enroll-tokens", "access", A, &[], JSON, "Create a one-time agent enrollment token: {ttl, host_name?}; 201 with the token (shown once) and the CA fingerprint; 409 without [enroll]"),
    op!("get", "/api/v1/enroll-tokens", "access", A, &[], JSON, "Enrollment tokens: id, host name, created, expires, used (by), revoked, state (never the secret)"),
    op!("delete", "/api/v1/enroll-tokens/{id}", "access", A, &[], JSON, "Revoke an unused enrollment token; 204, 404 if there is no such unused token"),
    op!("post", "/api/v1/agents/{id}/revoke", "access", A, &[], JSON, "Revoke an agent: its open QUIC connections are closed at once and later ones refused; 404 if unknown"),
    op!("get", "/login", "access", None, LOGIN, HTML, "The dashboard's sign-in form (sets the vigil_login_csrf cookie)"),
    op!("post", "/login", "access", None, SIGN_IN, HTML, "Sign in (form: username, password, csrf_token, next): 303 to next with the vigil_session cookie; 401, 403 or 429 with the form"),
    op!("post", "/logout", "access", None, SIGN_OUT, HTML, "Sign out (form: csrf_token): ends the session, 303 to /login"),
    op!("get", "/api/v1/session", "access", R, &[], JSON, "The signed-in user (session cookie only): {user, role, csrf_token}"),
    op!("post", "/api/v1/account/password", "access", R, &[], JSON, "Change the signed-in user's password (session cookie): {current, new}; other sessions end"),
    op!("get", "/api/v1/users", "access", A, &[], JSON, "Dashboard users: name, role, disabled, created_at, updated_at (never the password hash)"),
    op!("post", "/api/v1/users", "access", A, &[], JSON, "Create a user: {name, role (viewer|operator|admin), password (12+ characters)}; 201"),
    op!("patch", "/api/v1/users/{name}", "access", A, &[], JSON, "Change a user: {role?, password?, disabled?}; a new password or disabling ends the user's sessions; 409 for the last admin"),
    op!("delete", "/api/v1/users/{name}", "access", A, &[], JSON, "Delete a user and end their sessions; 409 for the last admin"),
    op!("get", "/api/v1/audit", "access", A, AUDIT, JSON, "The audit log, newest first: {entries: [{id, time, actor_kind, actor, action, target, details, source}], next}; 400 for a bad filter"),
    op!("get", "/api/v1/notifications", "alerting", A, NOTIFICATIONS, JSON, "Recent notification deliveries: receiver, integration, status, attempts, last error (never payloads or receiver secrets)"),
    op!("get", "/api/v1/cluster", "operations", R, &[], JSON, "This aggregator's cluster role (single, leader, follower) and the current leader"),
    op!("get", "/api/v1/hosts", "operations", R, &[], JSON, "Every agent that has sent data"),
    op!("get", "/api/v1/hosts/{id}", "operations", R, &[], JSON, "One host by agent id or hostname, with its latest resource figures"),
    op!("get", "/api/v1/summary", "operations", R, &[], JSON, "Health per component (api, ml-models, database, cache, system): green/yellow/red with the reason"),
    op!("get", "/api/v1/system/resources", "operations", R, &[], JSON, "Latest CPU, memory, disk, network, database and cache figures per host"),
    op!("get", "/api/v1/reports/availability", "reports", R, FROM_TO, JSON, "Uptime % per host and per service over a time range"),
    op!("get", "/api/v1/reports/metrics", "reports", R, REPORT_METRICS, JSON, "A range query as JSON or CSV"),
    op!("get", "/api/v1/alerts", "alerts", R, ALERTS, JSON, "Pending and firing alerts, with acknowledgement and mute status"),
    op!("get", "/api/v1/alerts/history", "alerts", R, ALERT_HISTORY, JSON, "Alert transitions, newest first, paged"),
    op!("post", "/api/v1/alerts/{id}/ack", "alerts", W, &[], JSON, "Acknowledge a firing alert (JSON body with an optional comment)"),
    op!("get", "/api/v1/reports/alerts", "reports", R, FROM_TO, JSON, "Alerts fired by severity and team, MTTA and MTTR"),
    op!("post", "/api/v1/rules/reload", "alerts", A, &[], JSON, "Reload the rule files (400 with every error; old rules keep running)"),
    op!("get", "/api/v1/export/grafana", "exports", R, &[], JSON, "The Grafana dashboards Vigil ships"),
    op!("get", "/api/v1/export/grafana/{uid}", "exports", R, &[], JSON, "One Grafana dashboard (JSON model, import-ready)"),
    op!("get", "/api/v1/silences", "alerting", R, SILENCES, JSON, "Silences (pending, active, expired), Alertmanager's shape"),
    op!("post", "/api/v1/silences", "alerting", W, &[], JSON, "Create a silence: {matchers:[{name,value,isRegex,isEqual}], startsAt?, endsAt, createdBy?, comment}; with {id}: edit it as Alertmanager does (in place when the matchers are the same and an active one keeps its start, a pending one does not start in the past; otherwise the old one is expired and a new id answered); 404 for an unknown id"),
    op!("get", "/api/v1/silences/{id}", "alerting", R, &[], JSON, "One silence"),
    op!("delete", "/api/v1/silences/{id}", "alerting", W, &[], JSON, "Expire a silence now"),
    op!("get", "/api/v1/maintenance", "alerting", R, &[], JSON, "Maintenance windows, active first, then recent ones"),
    op!("post", "/api/v1/maintenance", "alerting", W, &[], JSON, "Start maintenance now: {host?, duration? | until?, comment}; no host: everything"),
    op!("post", "/api/v1/maintenance/{id}/stop", "alerting", W, &[], JSON, "Stop a maintenance window now"),
    op!("delete", "/api/v1/maintenance/{id}", "alerting", W, &[], JSON, "Stop a maintenance window now"),

    op!("get", "/api/v1/export/prometheus-rules", "exports", R, &[], "application/yaml", "Vigil's default alerting and recording rules as a Prometheus rule file (vigil: extensions stripped)"),
    op!("post", "/api/v1/write", "ingest", W, &[], JSON, "Prometheus remote_write 1.0 receiver (snappy-compressed protobuf)"),
    op!("post", "/api/v1/import", "ingest", W, &[], JSON, "Backfill: Prometheus text exposition with timestamps"),
    op!("get", "/prometheus/api/v1/query", "prometheus", R, QUERY, JSON, "Instant query"),
    op!("post", "/prometheus/api/v1/query", "prometheus", R, QUERY, JSON, "Instant query (form body)"),
    op!("get", "/prometheus/api/v1/query_range", "prometheus", R, QUERY_RANGE, JSON, "Range query"),
    op!("post", "/prometheus/api/v1/query_range", "prometheus", R, QUERY_RANGE, JSON, "Range query (form body)"),
    op!("get", "/prometheus/api/v1/series", "prometheus", R, SERIES, JSON, "Series matching selectors"),
    op!("post", "/prometheus/api/v1/series", "prometheus", R, SERIES, JSON, "Series matching selectors (form body)"),
    op!("get", "/prometheus/api/v1/labels", "prometheus", R, LABELS, JSON, "Label names"),
    op!("post", "/prometheus/api/v1/labels", "prometheus", R, LABELS, JSON, "Label names (form body)"),
    op!("get", "/prometheus/api/v1/label/{name}/values", "prometheus", R, LABELS, JSON, "Values of one label"),
    op!("post", "/prometheus/api/v1/label/{name}/values", "prometheus", R, LABELS, JSON, "Values of one label (form body)"),
    op!("get", "/prometheus/api/v1/metadata", "prometheus", R, METADATA, JSON, "Metric metadata (type, help, unit)"),
    op!("get", "/prometheus/api/v1/rules", "prometheus", R, RULES, JSON, "Loaded alerting and recording rules"),
    op!("get", "/prometheus/api/v1/alerts", "prometheus", R, &[], JSON, "Active alerts"),
    op!("get", "/prometheus/api/v1/query_exemplars", "prometheus", R, EXEMPLARS, JSON, "Exemplars (Vigil stores none: always empty)"),
    op!("post", "/prometheus/api/v1/query_exemplars", "prometheus", R, EXEMPLARS, JSON, "Exemplars (form body)"),
    op!("get", "/prometheus/api/v1/status/flags", "prometheus", R, &[], JSON, "Flag values, as Prometheus reports them"),
    op!("get", "/prometheus/api/v1/status/buildinfo", "prometheus", R, &[], JSON, "Build information"),
];

/// The names of a path's `{parameters}`.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn operation(op: &Operation) -> Value {
    let mut params: Vec<Value> = path_params(op.path)
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let form = op.method == "post"
        && (op.path.starts_with("/prometheus/") || op.path == "/login" || op.path == "/logout");
    if !form {
        params.extend(op.params.iter().map(|p| {
            json!({"name": p.name, "in": "query", "required": p.required,
                   "description": p.description, "schema": {"type": "string"}})
        }));
    }
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "success", "content": {op.produces: {"schema": {}}}}),
    );
    if !op.params.is_empty() || op.path.contains('{') || op.method == "post" {
        responses.insert("400".into(), error_response("invalid parameters or body"));
    }
    if op.path.contains('{') {
        responses.insert("404".into(), error_response("no such item"));
    }
    if op.method == "post" && op.path == "/api/v1/silences" {
        responses.insert("404".into(), error_response("no silence with that id"));
    }
    let mut out = json!({
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.', '-'], "_")),
        "parameters": params,
        "responses": responses,
    });
    if let Some(scope) = op.scope {
        responses_for_auth(&mut out);
        // Either a bearer token, or the dashboard's session cookie (writes
        // then need the X-CSRF-Token header).
        out["security"] = json!([{"bearer": [scope.as_str()]}, {"session": []}]);
        out["x-vigil-scope"] = json!(scope.as_str());
    } else {
        out["security"] = json!([]);
        if op.method == "post" {
            if let Some(r) = out["responses"].as_object_mut() {
                r.insert(
                    "303".into(),
                    json!({"description": "signed in or out: redirect"}),
                );
                r.insert(
                    "403".into(),
                    json!({"description": "CSRF token or origin check failed"}),
                );
                r.insert(
                    "429".into(),
                    json!({"description": "too many sign-in attempts; see Retry-After",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}}),
                );
            }
        }
    }
    if form {
        let props: Map<String, Value> = op
            .params
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    json!({"type": "string", "description": p.description}),
                )
            })
            .collect();
        let required: Vec<&str> = op
            .params
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect();
        out["requestBody"] = json!({"content": {"application/x-www-form-urlencoded":
            {"schema": {"type": "object", "properties": props, "required": required}}}});
    } else if op.path.ends_with("/ack") {
        out["requestBody"] = json!({"required": false, "content": {JSON: {"schema": {"type": "object",
            "properties": {"comment": {"type": "string"}}, "additionalProperties": false}}}});
    } else if (op.method == "post" || op.method == "patch")
        && !op.path.ends_with("/reload")
        && !op.path.ends_with("/stop")
    {
        let (media, schema) = if op.path.ends_with("/write") {
            (
                "application/x-protobuf",
                json!({"type": "string", "format": "binary"}),
            )
        } else if op.path.ends_with("/import") {
            (TEXT, json!({"type": "string", "format": "binary"}))
        } else if op.path == "/api/v1/silences" {
            (JSON, silence_schema())
        } else {
            (JSON, json!({"type": "object"}))
        };
        out["requestBody"] = json!({"required": true, "content": {media: {"schema": schema}}});
    }
    out
}

/// The body of `POST /api/v1/silences` (Alertmanager's `postableSilence`).
fn silence_schema() -> Value {
    let time = json!({"type": "string", "description": "RFC 3339 or unix seconds"});
    json!({"type": "object", "additionalProperties": false,
        "required": ["matchers", "endsAt", "comment"],
        "properties": {
            "id": {"type": "string", "description": "the silence to edit; absent: a new one"},
            "matchers": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                "required": ["name", "value", "isRegex"],
                "properties": {"name": {"type": "string"}, "value": {"type": "string"},
                    "isRegex": {"type": "boolean"}, "isEqual": {"type": "boolean", "default": true}}}},
            "startsAt": time.clone(), "endsAt": time,
            "createdBy": {"type": "string", "description": "default: the caller's name"},
            "comment": {"type": "string"}}})
}

fn responses_for_auth(op: &mut Value) {
    if let Some(r) = op["responses"].as_object_mut() {
        r.insert(
            "401".into(),
            error_response("missing, invalid or revoked token"),
        );
        r.insert("403".into(), error_response("the token lacks the scope"));
        r.insert(
            "429".into(),
            json!({"description": "rate limited; see the Retry-After header",
                   "headers": {"Retry-After": {"schema": {"type": "integer"}}}}),
        );
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vigil aggregator API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operations REST API, Prometheus-compatible query API and ingest. \
                Authenticate with `Authorization: Bearer <token>`; scopes are read < write < admin. \
                The dashboard's session cookie (`vigil_session`, see POST /login) also works, with the \
                scope of the user's role (viewer: read, operator: write, admin: admin); requests other \
                than GET/HEAD/OPTIONS made with it must send the `X-CSRF-Token` header \
                (GET /api/v1/session returns it). See docs/operations-api.md and docs/access.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "vigil_session"},
            },
            "schemas": {"Error": {
                "type": "object",
                "required": ["status", "errorType", "error"],
                "properties": {
                    "status": {"const": "error"},
                    "errorType": {"type": "string"},
                    "error": {"type": "string"},
                },
            }},
        },
    })
}

async fn serve(_caller: ReadAccess, State(_): State<AppState>) -> Json<Value> {
    Json(document())
}
