//! Operator accounts over the API (admin scope) and the signed-in user's own
//! session:
//!
//! - `GET /api/v1/users` -> `{"users": [{name, role, disabled, created_at,
//!   updated_at}]}` (never the hash);
//! - `POST /api/v1/users` `{name, role, password}` -> 201 with the user;
//! - `PATCH /api/v1/users/{name}` `{role?, password?, disabled?}`;
//! - `DELETE /api/v1/users/{name}` -> 204;
//! - `POST /api/v1/account/password` `{current, new}`: the signed-in user
//!   (session cookie) changes their own password; the answer carries a new
//!   session cookie and CSRF token, every other session of the user ends;
//! - `GET /api/v1/session` -> `{user, role, csrf_token}` (session cookie).
//!
//! A new password, disabling or deleting a user ends that user's sessions.
//! The last enabled admin cannot be disabled, demoted or deleted (409).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{AdminAccess, CookieSession};
use super::audit::Audit;
use super::error::ApiError;
use super::ops::rfc3339;
use super::session::accounts::{self, AccountError};
use super::session::{Sessions, cookie, password};
use crate::audit::Action;
use crate::store::users::{self, UserChange, UserRecord};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{name}", patch(update).delete(remove))
        .route("/account/password", post(change_own_password))
        .route("/session", get(session))
}

/// Maps account errors to HTTP.
fn api_error(e: AccountError) -> ApiError {
    match e {
        AccountError::Invalid(m) => ApiError::BadRequest(m),
        AccountError::Exists(_) | AccountError::LastAdmin(_) => ApiError::Conflict(e.to_string()),
        AccountError::NotFound(_) => ApiError::NotFound(e.to_string()),
        AccountError::Hash(m) => ApiError::Unavailable(m),
        AccountError::Store(e) => e.into(),
    }
}

/// A user as the API shows it.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        UserView {
            created_at: rfc3339(u.created_at_ms),
            updated_at: rfc3339(u.updated_at_ms),
            name: u.name,
            role: u.role,
            disabled: u.disabled,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UsersResponse {
    pub users: Vec<UserView>,
}

async fn list(
    _caller: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<UsersResponse>, ApiError> {
    let users = users::users(&state.store.db()).await?;
    Ok(Json(UsersResponse {
        users: users.into_iter().map(UserView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    pub password: String,
}

async fn one(state: &AppState, name: &str) -> Result<UserView, ApiError> {
    users::user(&state.store.db(), name)
        .await?
        .map(UserView::from)
        .ok_or_else(|| ApiError::NotFound(format!("no user named {name:?}")))
}

async fn create(
    AdminAccess(caller): AdminAccess,
    audit: Audit,
    State(state): State<AppState>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let Json(body) = body.map_err(ApiError::from)?;
    let role = accounts::parse_role(&body.role).map_err(api_error)?;
    accounts::create(&state.store.db(), &body.name, role, &body.password)
        .await
        .map_err(api_error)?;
    tracing::info!(by = %caller.name, user = %body.name, role = role.as_str(), "user created");
    audit
        .note(
            Action::UserCreate,
            &body.name,
            serde_json::json!({"role": role.as_str()}),
        )
        .await;
    Ok((StatusCode::CREATED, Json(one(&state, &body.name).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<String>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
}

async fn update(
    AdminAccess(caller): AdminAccess,
    audit: Audit,
    State(state): State<AppState>,
    sessions: Option<Extension<Arc<Sessions>>>,
    Path(name): Path<String>,
    body: Result<Json<UserPatch>, JsonRejection>,
) -> Result<Json<UserView>, ApiError> {
    let Json(body) = body.map_err(ApiError::from)?;
    if body.role.is_none() && body.password.is_none() && body.disabled.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: send role, password and/or disabled".into(),
        ));
    }
    let role = match &body.role {
        Some(r) => Some(accounts::parse_role(r).map_err(api_error)?),
        None => None,
    };
    let hash = match &body.password {
        Some(p) => {
            password::validate(p).map_err(|e| api_error(e.into()))?;
            Some(
                password::hash(p.clone())
                    .await
                    .map_err(|e| api_error(e.into()))?,
            )
        }
        None => None,
    };
    let change = UserChange {
        role: role.map(|r| r.as_str()),
        password_hash: hash.as_deref(),
        disabled: body.disabled,
    };
    let result =
        users::update_user(&state.store.db(), &name, &change, super::ops::now_ms()).await?;
    accounts::changed(&name, result).map_err(api_error)?;
    if let Some(Extension(sessions)) = sessions {
        sessions.forget_user(&name);
    }
    tracing::info!(by = %caller.name, user = %name, "user changed");
    // The password itself never reaches the log: only that it changed.
    let mut details = serde_json::Map::new();
    if let Some(r) = role {
        details.insert("role".into(), r.as_str().into());
    }
    if let Some(d) = body.disabled {
        details.insert("disabled".into(), d.into());
    }
    if body.password.is_some() {
        details.insert("password".into(), "changed".into());
    }
    audit.note(Action::UserUpdate, &name, details.into()).await;
    Ok(Json(one(&state, &name).await?))
}

async fn remove(
    AdminAccess(caller): AdminAccess,
    audit: Audit,
    State(state): State<AppState>,
    sessions: Option<Extension<Arc<Sessions>>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let result = users::delete_user(&state.store.db(), &name).await?;
    accounts::changed(&name, result).map_err(api_error)?;
    if let Some(Extension(sessions)) = sessions {
        sessions.forget_user(&name);
    }
    tracing::info!(by = %caller.name, user = %name, "user deleted");
    audit
        .note(Action::UserDelete, &name, serde_json::json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user of a request (session cookie only).
fn signed_in(session: Option<Extension<CookieSession>>) -> Result<CookieSession, ApiError> {
    session.map(|Extension(s)| s).ok_or(ApiError::Unauthorized(
        "not signed in: this route needs the dashboard's session cookie",
    ))
}

#[derive(Debug, Serialize)]
pub struct SessionView {
    pub user: String,
    pub role: &'static str,
    pub csrf_token: String,
}

async fn session(session: Option<Extension<CookieSession>>) -> Result<Json<SessionView>, ApiError> {
    let CookieSession(user) = signed_in(session)?;
    Ok(Json(SessionView {
        role: user.role.as_str(),
        user: user.name,
        csrf_token: user.csrf_token,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

async fn change_own_password(
    audit: Audit,
    State(state): State<AppState>,
    session: Option<Extension<CookieSession>>,
    sessions: Option<Extension<Arc<Sessions>>>,
    body: Result<Json<PasswordChange>, JsonRejection>,
) -> Result<Response, ApiError> {
    let CookieSession(user) = signed_in(session)?;
    let Some(Extension(sessions)) = sessions else {
        return Err(ApiError::Unauthorized("not signed in"));
    };
    let Json(body) = body.map_err(ApiError::from)?;
    let db = state.store.db();
    let stored = users::user(&db, &user.name).await?;
    let hash = stored.map(|u| u.password_hash);
    if !password::verify(body.current, hash).await {
        return Err(ApiError::Forbidden("the current password is wrong".into()));
    }
    accounts::set_password(&db, &user.name, &body.new)
        .await
        .map_err(api_error)?;
    sessions.forget_user(&user.name);
    // Every session ended with the change; this browser gets a new one.
    let created = sessions
        .create(&db, &user.name)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    tracing::info!(user = %user.name, "password changed by its user");
    audit
        .note(
            Action::UserPassword,
            &user.name,
            serde_json::json!({"password": "changed", "by": "self"}),
        )
        .await;
    let mut response = Json(SessionView {
        user: user.name,
        role: user.role.as_str(),
        csrf_token: created.csrf_token,
    })
    .into_response();
    let value = cookie::set(
        cookie::SESSION,
        &created.id,
        "/",
        sessions.policy().max_age.as_secs(),
        sessions.policy().secure_cookies,
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}
