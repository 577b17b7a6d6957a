//! `POST /api/v1/rules/reload` (admin): reads the rule files again. A broken
//! file is a 400 listing every problem (`errors`), and the old rules keep
//! running; good files are swapped in at once, alerts of rules that still
//! exist keep their state. SIGHUP does the same (`server.rs`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::access::AdminAccess;
use super::audit::Audit;
use crate::audit::{Action, reload_details};

pub fn router() -> Router<AppState> {
    Router::new().route("/rules/reload", post(reload))
}

async fn reload(_: AdminAccess, audit: Audit, State(state): State<AppState>) -> Response {
    let result = state.alerting.reload().await;
    audit
        .note(Action::RulesReload, "rules", reload_details(&result))
        .await;
    match result {
        Ok(l) => Json(json!({"status": "success", "groups": l.groups, "rules": l.rules}))
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "status": "error",
                "errorType": "bad_request",
                "error": format!("rule files rejected, the old rules keep running: {}", e.0.join("; ")),
                "errors": e.0,
            })),
        )
            .into_response(),
    }
}
