//! `GET /api/v1/cluster`: this node's part in the cluster and who leads
//! (`[cluster]`, docs/scaling.md). `/readyz` carries the same object.

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Json, Router};

use super::AppState;
use super::access::ReadAccess;
use crate::cluster::{Cluster, Role, Status};

pub fn router() -> Router<AppState> {
    Router::new().route("/cluster", get(status))
}

/// The status of `cluster`; an app built without one (tests, tools) is a
/// single node.
pub fn status_of(cluster: Option<&Arc<Cluster>>) -> Status {
    match cluster {
        Some(c) => c.status(),
        None => Status {
            node: String::new(),
            role: Role::Single,
            leader: None,
        },
    }
}

async fn status(_caller: ReadAccess, cluster: Option<Extension<Arc<Cluster>>>) -> Json<Status> {
    Json(status_of(cluster.as_ref().map(|Extension(c)| c)))
}
