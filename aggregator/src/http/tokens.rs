//! `GET /api/v1/tokens` (admin): the API tokens, as `list-tokens` prints them
//! (never the secret). Tokens are created and revoked with the CLI.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::access::AdminAccess;
use super::error::ApiError;
use crate::store::TokenRecord;

pub fn router() -> Router<AppState> {
    Router::new().route("/tokens", get(list))
}

#[derive(Debug, Serialize)]
pub struct TokensResponse {
    pub tokens: Vec<TokenRecord>,
}

async fn list(
    _caller: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<TokensResponse>, ApiError> {
    Ok(Json(TokensResponse {
        tokens: state.store.tokens().await?,
    }))
}
