//! The probe's webhook receiver: a local HTTP server taking Alertmanager's
//! webhook payload (what the aggregator's `webhook_configs` receiver
//! posts) at [`WEBHOOK_PATH`]; each alert of the probe's rule is handed to
//! the ledger with the time it arrived.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::sync::watch;

use super::config::{ALERT_NAME, WEBHOOK_PATH};
use super::{Shared, stopped};

/// Serves the receiver on `listener` until `stop`.
pub fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route(WEBHOOK_PATH, post(hook))
        .with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped(&mut stop).await })
            .await;
    })
}

/// One alert of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Notified {
    lane: usize,
    firing: bool,
    /// `startsAt` in ms.
    starts_at_ms: Option<i64>,
}

/// The alerts of a notification (an error kind for each one that is not
/// the probe's).
fn alerts(body: &serde_json::Value) -> Vec<Result<Notified, &'static str>> {
    let Some(list) = body["alerts"].as_array() else {
        return vec![Err("webhook_decode")];
    };
    list.iter()
        .map(|a| {
            if a["labels"]["alertname"] != ALERT_NAME {
                return Err("webhook_other_alert");
            }
            let lane = a["labels"]["lane"]
                .as_str()
                .and_then(|l| l.parse().ok())
                .ok_or("webhook_decode")?;
            let firing = match a["status"].as_str() {
                Some("firing") => true,
                Some("resolved") => false,
                _ => return Err("webhook_decode"),
            };
            let starts = a["startsAt"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp_millis());
            Ok(Notified {
                lane,
                firing,
                starts_at_ms: starts,
            })
        })
        .collect()
}

async fn hook(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        shared.lock().error("webhook_decode");
        return StatusCode::BAD_REQUEST;
    };
    let mut ledger = shared.lock();
    for a in alerts(&body) {
        match a {
            Ok(n) => ledger.webhook(n.lane, n.firing, n.starts_at_ms, at),
            Err(kind) => ledger.error(kind),
        }
    }
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanagers_payload_gives_lane_status_and_start() {
        let body = serde_json::json!({"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": ALERT_NAME, "lane": "2"},
             "startsAt": "2026-01-02T03:04:05.123Z"},
            {"status": "resolved", "labels": {"alertname": ALERT_NAME, "lane": "0"},
             "startsAt": "2026-01-02T03:04:05Z"},
            {"status": "firing", "labels": {"alertname": "Other", "lane": "0"}}
        ]});
        let got = alerts(&body);
        let n = |lane, firing, starts_at_ms| {
            Ok(Notified {
                lane,
                firing,
                starts_at_ms: Some(starts_at_ms),
            })
        };
        assert_eq!(got[0], n(2, true, 1_767_323_045_123));
        assert_eq!(got[1], n(0, false, 1_767_323_045_000));
        assert_eq!(got[2], Err("webhook_other_alert"));
    }
}
