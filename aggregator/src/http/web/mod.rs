//! The operator web dashboard: pages rendered with tera from templates
//! compiled into the binary (no file is read at run time, no asset comes from
//! a CDN), their static files ([`assets`]), and the live WebSocket
//! ([`live`]).
//!
//! Every page handler takes a [`WebUser`] (signed out: redirect to the login
//! page) and gathers its data from [`AppState`] directly, never over HTTP.
//! Templates are autoescaped (`.html`); data reaches the page scripts through
//! `data-*` attributes (escaped like any other value), never through inline
//! scripts: the Content-Security-Policy set by [`security_headers`] allows
//! scripts from `/static/` only. State-changing forms carry the session's
//! CSRF token ([`check_csrf`]).
//!
//! | file | pages |
//! |---|---|
//! | `overview.rs` | `/`: component tiles, key metrics, active alerts |
//! | `hosts.rs` | `/hosts`, `/hosts/{id}` |
//! | `models.rs` | `/models`, `/models/{model}` (compare two versions) |
//! | `alerts.rs` | `/alerts` (active, history, silences) and its forms |
//! | `rules.rs` | `/rules`, `/explore`, `/admin` |
//! | `audit.rs` | `/audit` (admins only) |

pub mod assets;
pub mod config;
pub mod format;
pub mod live;
pub mod panels;

mod alerts;
mod audit;
mod hosts;
mod maintenance;
mod models;
mod overview;
mod rules;

use std::sync::{Arc, LazyLock};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::AppState;
use super::session::WebUser;
use config::DashboardConfig;

pub use overview::overview_context;

/// Every template, by name; `*.html` ones are autoescaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    (
        "alerts_table.html",
        include_str!("templates/alerts_table.html"),
    ),
    ("hosts.html", include_str!("templates/hosts.html")),
    ("host.html", include_str!("templates/host.html")),
    ("models.html", include_str!("templates/models.html")),
    ("model.html", include_str!("templates/model.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    (
        "silence_new.html",
        include_str!("templates/silence_new.html"),
    ),
    ("rules.html", include_str!("templates/rules.html")),
    ("explore.html", include_str!("templates/explore.html")),
    ("admin.html", include_str!("templates/admin.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

/// The templates, parsed once. A template that does not parse is a bug
/// caught by the test below, so building can only fail in development.
static TERA: LazyLock<Result<tera::Tera, String>> = LazyLock::new(|| {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(vec![".html"]);
    tera.global_context().insert("assets", &assets::urls());
    tera.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|e| format!("{e:?}"))?;
    Ok(tera)
});

/// Renders `name` with `context` to a string.
pub fn render_string(name: &str, context: &tera::Context) -> Result<String, String> {
    match &*TERA {
        Ok(tera) => tera.render(name, context).map_err(|e| format!("{e:?}")),
        Err(e) => Err(e.clone()),
    }
}

/// Renders `name` with `context`; a rendering error is logged and answered
/// with a plain 500 page that shows nothing of the context.
pub fn render(name: &str, context: &tera::Context) -> Response {
    match render_string(name, context) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The dashboard's shared run-time parts, handed to handlers as an
/// [`Extension`].
pub struct Dashboard {
    pub config: DashboardConfig,
    pub hub: live::Hub,
}

impl Dashboard {
    pub fn new(config: DashboardConfig) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            config,
            hub: live::Hub::default(),
        })
    }
}

/// The dashboard's routes: pages, forms, static files and the live socket.
pub fn router(config: DashboardConfig) -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/hosts", get(hosts::list))
        .route("/hosts/{id}", get(hosts::detail))
        .route("/models", get(models::list))
        .route("/models/{model}", get(models::detail))
        .route("/alerts", get(alerts::page))
        .route("/alerts/{id}/ack", post(alerts::ack))
        .route("/alerts/{id}/silence", get(alerts::silence_form))
        .route("/silences", post(alerts::create_silence))
        .route("/silences/{id}/expire", post(alerts::expire_silence))
        .route("/maintenance", post(maintenance::start))
        .route("/maintenance/{id}/stop", post(maintenance::stop))
        .route("/rules", get(rules::rules))
        .route("/explore", get(rules::explore))
        .route("/admin", get(rules::admin))
        .route("/audit", get(audit::page))
        .route("/ws/live", get(live::socket))
        .layer(axum::middleware::from_fn(security_headers))
        .route("/static/{file}", get(assets::serve))
        .layer(Extension(Dashboard::new(config)))
}

/// What the pages' `Content-Security-Policy` allows: this origin's scripts,
/// styles, images and connections (the live WebSocket), nothing inline.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the CSP and the usual hardening headers to every page.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Why a page could not be shown; rendered as an error page with the status.
#[derive(Debug)]
pub enum PageError {
    /// 400: a parameter or form field is wrong (the message says which).
    BadRequest(String),
    /// 403: the role does not allow it, or the CSRF token is wrong.
    Forbidden(String),
    /// 404: no such host, model, alert or silence.
    NotFound(String),
    /// 409: the alert is not firing or already acknowledged.
    Conflict(String),
    /// 503: the storage is down; the detail is logged, not shown.
    Unavailable(String),
}

impl From<super::error::ApiError> for PageError {
    fn from(e: super::error::ApiError) -> Self {
        use super::error::ApiError as E;
        match e {
            E::BadRequest(m)
            | E::Unprocessable(m)
            | E::TooLarge(m)
            | E::UnsupportedMediaType(m) => PageError::BadRequest(m),
            E::Unauthorized(m) => PageError::Forbidden(m.to_string()),
            E::Forbidden(m) => PageError::Forbidden(m),
            E::NotFound(m) => PageError::NotFound(m),
            E::Conflict(m) => PageError::Conflict(m),
            E::RateLimited { .. } => PageError::Unavailable("rate limited".into()),
            E::Unavailable(m) => PageError::Unavailable(m),
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError::Unavailable(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            PageError::Conflict(m) => (StatusCode::CONFLICT, m),
            PageError::Unavailable(detail) => {
                tracing::warn!(%detail, "page failed: storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage is unavailable, try again shortly".to_string(),
                )
            }
        };
        let mut context = tera::Context::new();
        context.insert("status", &status.as_u16());
        context.insert("reason", status.canonical_reason().unwrap_or("error"));
        context.insert("message", &message);
        context.insert("nav", "");
        let mut response = render("error.html", &context);
        *response.status_mut() = status;
        response
    }
}

/// The context every page starts from: who is signed in, the navigation,
/// asset URLs, and the active maintenance windows (the banner).
pub fn page_context(state: &AppState, user: &WebUser, nav: &str, title: &str) -> tera::Context {
    let mut c = tera::Context::new();
    c.insert("nav", nav);
    c.insert("title", title);
    c.insert(
        "user",
        &serde_json::json!({
            "name": user.name,
            "role": user.role.as_str(),
            "can_operate": user.role.can_operate(),
            "is_admin": user.role.is_admin(),
        }),
    );
    c.insert("csrf_token", &user.csrf_token);
    let now = super::ops::now_ms();
    let windows: Vec<serde_json::Value> = state
        .mutes
        .maintenance
        .list()
        .into_iter()
        .filter(|w| w.is_active(now))
        .map(|w| {
            serde_json::json!({
                "id": w.id,
                "host": w.host,
                "until": w.effective_end().map(format::time),
                "comment": w.comment,
                "by": w.created_by,
            })
        })
        .collect();
    c.insert("maintenance", &windows);
    // The storage watch's verdict (server.rs): pages still render what
    // memory holds, under a banner saying the database is unreachable.
    c.insert("storage_down", &state.database_down());
    c
}

/// Refuses a form whose `csrf_token` is not the session's (403).
pub fn check_csrf(user: &WebUser, sent: &str) -> Result<(), PageError> {
    if user.csrf_ok(sent) && !sent.is_empty() {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "the form's CSRF token is missing or stale: reload the page and try again".into(),
        ))
    }
}

/// Refuses a viewer (403) where an operator is needed.
pub fn require_operator(user: &WebUser) -> Result<(), PageError> {
    if user.role.can_operate() {
        Ok(())
    } else {
        Err(PageError::Forbidden(format!(
            "{} is a {}: acknowledging and silencing need the operator role",
            user.name,
            user.role.as_str()
        )))
    }
}

/// A return path from a form: only a local path (not `//host`), else `fallback`.
pub fn local_path<'a>(next: Option<&'a str>, fallback: &'a str) -> &'a str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => fallback,
    }
}

#[cfg(test)]
mod tests;
