//! The Prometheus-compatible HTTP API under `/prometheus/api/v1/`, so that
//! Grafana's Prometheus data source (and any Prometheus API client) can read
//! from Vigil.
//!
//! - [`params`]: parameters from the query string and form bodies, times,
//!   durations, `match[]` selectors;
//! - [`query`]: `query`, `query_range` through [`crate::query::Engine`];
//! - [`meta`]: `series`, `labels`, `label/{name}/values`, `metadata`,
//!   `status/*`, `query_exemplars`;
//! - [`rules`]: `rules` and `alerts` from the rule evaluator;
//! - [`json`]: results in Prometheus' exact JSON; [`error`]: its error envelope.
//!
//! Every route needs a token with the `read` scope.

pub mod error;
pub mod json;
pub mod meta;
pub mod params;
pub mod query;
pub mod rules;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::AppState;

/// The routes, to nest under `/prometheus/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/query", get(query::instant).post(query::instant))
        .route("/query_range", get(query::range).post(query::range))
        .route("/series", get(meta::series).post(meta::series))
        .route("/labels", get(meta::labels).post(meta::labels))
        .route(
            "/label/{name}/values",
            get(meta::label_values).post(meta::label_values),
        )
        .route("/metadata", get(meta::metadata))
        .route("/rules", get(rules::rules))
        .route("/alerts", get(rules::alerts))
        .route(
            "/query_exemplars",
            get(meta::exemplars).post(meta::exemplars),
        )
        .route("/status/buildinfo", get(meta::buildinfo))
        .route("/status/flags", get(meta::flags))
}

/// A 200 response with a JSON body written by [`json`].
fn respond(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
