//! Signing in and out of the dashboard.
//!
//! - `GET /login?next=PATH`: the form (`login.html`), with a fresh
//!   double-submit token: the same random value in the `vigil_login_csrf`
//!   cookie and in the form's `csrf_token` field.
//! - `POST /login` (form `username`, `password`, `csrf_token`, `next`):
//!   refused with 403 unless the token matches the cookie and the `Origin`
//!   (or `Referer`) names this host; 429 with `Retry-After` over the
//!   per-address or per-user-name limit; 401 with one generic message for an
//!   unknown user, a wrong password or a disabled account (same work in each
//!   case, see `session/password.rs`). On success: a new session, its id in
//!   the `vigil_session` cookie, and 303 to `next` if it is a local path,
//!   else to `/`.
//! - `POST /logout` (form `csrf_token`): ends the session, clears the
//!   cookie, 303 to `/login`.
//!
//! Every answer is `Cache-Control: no-store` and may not be framed.

use super::audit::source_of;
use crate::audit::{self, Action, Actor, Event};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use super::AppState;
use super::session::{Sessions, accounts, constant_time_eq, cookie, hex, password};
use crate::store::users;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(form).post(sign_in))
        .route("/logout", post(sign_out))
}

/// The one answer for every failed sign-in.
pub const BAD_CREDENTIALS: &str = "Invalid user name or password.";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FormParams {
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignIn {
    username: String,
    password: String,
    csrf_token: String,
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignOut {
    csrf_token: String,
}

/// `next` if it is a path on this site, else `/` (no open redirect:
/// `//host`, `/\host`, schemes and control characters are refused).
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() <= 2048;
    if local { next } else { "/" }
}

/// Adds the headers every page of this module carries.
pub fn harden(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The login page with `status`, an optional error and the form's token.
fn page(status: StatusCode, error: Option<&str>, next: &str, csrf: &str) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("error", &error);
    ctx.insert("next", safe_next(next));
    ctx.insert("csrf_token", csrf);
    let mut response = super::web::render("login.html", &ctx);
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    harden(&mut response);
    response
}

fn client_ip(connect: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    connect.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Whether the request's `Origin` (or, without one, `Referer`) is this
/// host. A request with neither is let through: the double-submit token
/// still has to match.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(claimed) = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
    else {
        return true;
    };
    let authority = |url: &str| -> Option<String> {
        let rest = url.split_once("://")?.1;
        Some(rest.split('/').next().unwrap_or(rest).to_ascii_lowercase())
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let claimed = claimed.to_str().ok().and_then(authority);
    matches!((claimed, host), (Some(c), Some(h)) if c == h)
}

async fn form(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    params: Result<Query<FormParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let next = safe_next(&params.next).to_string();
    // Already signed in: straight on.
    if let Some(id) = cookie::get(&headers, cookie::SESSION)
        && let Ok(Some(_)) = sessions.resolve(&state.store.db(), id).await
    {
        let mut response = Redirect::to(&next).into_response();
        harden(&mut response);
        return response;
    }
    fresh_form(&sessions, StatusCode::OK, None, &next)
}

/// The form with a new double-submit token (cookie and field).
fn fresh_form(
    sessions: &Sessions,
    status: StatusCode,
    error: Option<&str>,
    next: &str,
) -> Response {
    let Ok(bytes) = password::random_bytes::<32>() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no randomness available").into_response();
    };
    let token = hex(&bytes);
    let mut response = page(status, error, next, &token);
    set_cookie(
        &mut response,
        &cookie::set(
            cookie::LOGIN_CSRF,
            &token,
            "/login",
            3600,
            sessions.policy().secure_cookies,
        ),
    );
    response
}

async fn sign_in(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return fresh_form(
            &sessions,
            StatusCode::BAD_REQUEST,
            Some("The sign-in form was malformed; please try again."),
            "/",
        );
    };
    let next = safe_next(&form.next).to_string();
    let cookie_token = cookie::get(&headers, cookie::LOGIN_CSRF).unwrap_or("");
    if !same_origin(&headers)
        || cookie_token.is_empty()
        || !constant_time_eq(cookie_token.as_bytes(), form.csrf_token.as_bytes())
    {
        return fresh_form(
            &sessions,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or came from another site; please sign in again."),
            &next,
        );
    }
    // Capped: the name keys a rate limiter, and no user has a longer one.
    let username: String = form
        .username
        .trim()
        .chars()
        .take(accounts::MAX_NAME_CHARS + 1)
        .collect();
    if let Err(secs) = sessions.check_login(client_ip(extensions.get()), &username) {
        let mut response = page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many sign-in attempts; try again in {secs} seconds."
            )),
            &next,
            cookie_token,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    let db = state.store.db();
    let user = match users::user(&db, &username).await {
        Ok(u) => u,
        Err(e) => return unavailable(&e.to_string(), &next, cookie_token),
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    // An over-long password cannot match (none is stored) and is not hashed.
    let matches = form.password.len() <= password::MAX_PASSWORD_BYTES
        && password::verify(form.password, hash).await;
    let user = match user {
        Some(u) if matches && !u.disabled => u,
        _ => {
            tracing::info!(user = %username, "failed sign-in");
            audit::note(
                &db,
                Event::new(Actor::anonymous(&username), Action::LoginFailed, &username)
                    .source(source_of(&extensions)),
            )
            .await;
            return page(
                StatusCode::UNAUTHORIZED,
                Some(BAD_CREDENTIALS),
                &next,
                cookie_token,
            );
        }
    };
    let created = match sessions.create(&db, &user.name).await {
        Ok(c) => c,
        Err(e) => return unavailable(&e.to_string(), &next, cookie_token),
    };
    tracing::info!(user = %user.name, "signed in");
    audit::note(
        &db,
        Event::new(Actor::user(&user.name), Action::Login, &user.name)
            .source(source_of(&extensions)),
    )
    .await;
    let mut response = Redirect::to(&next).into_response();
    harden(&mut response);
    let secure = sessions.policy().secure_cookies;
    set_cookie(
        &mut response,
        &cookie::set(
            cookie::SESSION,
            &created.id,
            "/",
            sessions.policy().max_age.as_secs(),
            secure,
        ),
    );
    set_cookie(
        &mut response,
        &cookie::clear(cookie::LOGIN_CSRF, "/login", secure),
    );
    response
}

fn unavailable(detail: &str, next: &str, csrf: &str) -> Response {
    tracing::warn!(%detail, "sign-in failed: storage unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some("Vigil cannot reach its database; try again shortly."),
        next,
        csrf,
    )
}

async fn sign_out(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    form: Result<Form<SignOut>, axum::extract::rejection::FormRejection>,
) -> Response {
    let secure = sessions.policy().secure_cookies;
    let db = state.store.db();
    let session = match cookie::get(&headers, cookie::SESSION) {
        Some(id) => sessions.resolve(&db, id).await.ok().flatten(),
        None => None,
    };
    if let Some(session) = session {
        let token = form.map(|Form(f)| f.csrf_token).unwrap_or_default();
        if !session.user().csrf_ok(&token) {
            let mut response = (
                StatusCode::FORBIDDEN,
                "sign-out refused: the form's csrf_token does not match this session",
            )
                .into_response();
            harden(&mut response);
            return response;
        }
        if let Err(e) = sessions.end(&db, &session.id_sha256).await {
            tracing::warn!(error = %e, "cannot delete a session");
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                "Vigil cannot reach its database; try again shortly.",
            )
                .into_response();
            harden(&mut response);
            return response;
        }
        tracing::info!(user = %session.record.user_name, "signed out");
        let name = &session.record.user_name;
        audit::note(
            &db,
            Event::new(Actor::user(name), Action::Logout, name).source(source_of(&extensions)),
        )
        .await;
    }
    let mut response = Redirect::to("/login").into_response();
    harden(&mut response);
    set_cookie(&mut response, &cookie::clear(cookie::SESSION, "/", secure));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for ok in ["/", "/alerts?x=1", "/hosts/a%2Fb"] {
            assert_eq!(safe_next(ok), ok);
        }
        for bad in [
            "",
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\nb",
            "evil",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn origin_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("vigil:8080"));
        assert!(same_origin(&h), "neither header: the token decides");
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://vigil:8080/login"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://vigil:8080"),
        );
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }
}
