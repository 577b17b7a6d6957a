//! `GET /ws/live?set=overview` (or `?set=host&host=NAME`): the dashboard's
//! live updates over a WebSocket.
//!
//! - What is pushed is chosen by the server: a client names a panel set
//!   (`overview`, `host`), never a query. Every `[dashboard] live_interval`
//!   the server sends a `tick` frame (the set's figures, and for the
//!   overview the component tiles and alert counts); the overview's first
//!   frame is `history`, the rolling charts' last `chart_window`.
//! - Frames are computed once per set and interval and shared by every
//!   client of that set ([`Hub`]), so a hundred open overviews cost one
//!   evaluation.
//! - Each client has a bounded queue of `client_queue` frames between the
//!   ticker and the task writing to its socket. A client that does not
//!   read fills its TCP buffers, then its queue; it is then disconnected
//!   and counted in `vigil_aggregator_dashboard_live_slow_clients_dropped_total`,
//!   never buffered without bound. At most `max_clients` sockets are open
//!   at once (503 beyond).
//! - The socket is authenticated by the session cookie ([`WebUser`]) and
//!   its `Origin` must be the page's own host or one of
//!   `allowed_origins` (no cross-site WebSocket hijacking); anything else
//!   is refused with 403 before the upgrade and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::super::AppState;
use super::super::ops::now_ms;
use super::super::session::WebUser;
use super::{Dashboard, PageError, overview, panels};
use crate::alert::eval::machine::Phase;
use crate::metrics::Reason;

/// The live socket's own metrics.
#[derive(Debug, Default)]
pub struct LiveMetrics {
    pub clients: Gauge,
    pub frames_sent: Counter,
    pub slow_clients_dropped: Counter,
    pub refused: Family<Reason, Counter>,
}

impl LiveMetrics {
    pub fn register(&self, registry: &mut Registry) {
        for reason in REFUSALS {
            let _ = self.refused.get_or_create(&Reason::new(reason));
        }
        registry.register(
            "dashboard_live_clients",
            "Dashboard WebSocket clients connected now",
            self.clients.clone(),
        );
        registry.register(
            "dashboard_live_frames",
            "Frames queued to dashboard WebSocket clients",
            self.frames_sent.clone(),
        );
        registry.register(
            "dashboard_live_slow_clients_dropped",
            "Dashboard WebSocket clients disconnected because their queue was full",
            self.slow_clients_dropped.clone(),
        );
        registry.register(
            "dashboard_live_refused",
            "Dashboard WebSocket upgrades refused, by reason (origin, full)",
            self.refused.clone(),
        );
    }
}

const REFUSALS: [&str; 2] = ["origin", "full"];

/// Frames computed per set and shared, and the count of open sockets.
#[derive(Default)]
pub struct Hub {
    clients: AtomicUsize,
    cache: Mutex<HashMap<String, (Instant, Utf8Bytes)>>,
}

/// Entries unused for this long are forgotten.
const CACHE_IDLE: Duration = Duration::from_secs(300);

impl Hub {
    /// Sockets open now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    fn cached(&self, key: &str, fresh_for: Duration) -> Option<Utf8Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < fresh_for)
            .map(|(_, f)| f.clone())
    }

    fn store(&self, key: &str, frame: Utf8Bytes) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < CACHE_IDLE);
        cache.insert(key.to_string(), (Instant::now(), frame));
    }

    /// The frame of `key`, computed by `compute` unless one younger than
    /// `fresh_for` exists. (Two clients may compute the same frame at once;
    /// no lock is held across the computation.)
    async fn frame<F>(&self, key: &str, fresh_for: Duration, compute: F) -> Utf8Bytes
    where
        F: Future<Output = serde_json::Value>,
    {
        if let Some(f) = self.cached(key, fresh_for) {
            return f;
        }
        let frame = Utf8Bytes::from(compute.await.to_string());
        self.store(key, frame.clone());
        frame
    }
}

/// Which panel set a client follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelSet {
    Overview,
    Host { name: String, roles: Vec<String> },
}

impl PanelSet {
    fn key(&self) -> String {
        match self {
            PanelSet::Overview => "overview".into(),
            PanelSet::Host { name, .. } => format!("host\u{0}{name}"),
        }
    }

    fn panels(&self) -> Vec<(panels::Panel, String)> {
        match self {
            PanelSet::Overview => panels::overview_panels(),
            PanelSet::Host { name, roles } => panels::host_panels(name, roles),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LiveParams {
    set: Option<String>,
    host: Option<String>,
}

/// Whether `origin` may open the socket of a page served as `host`.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return false;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let own = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((own, host), (Some(o), Some(h)) if !o.is_empty() && o.eq_ignore_ascii_case(h))
}

/// Gives the slot back when a socket ends.
struct Slot(Arc<Dashboard>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.hub.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /ws/live`.
pub async fn socket(
    user: WebUser,
    State(state): State<AppState>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(p): Query<LiveParams>,
    ws: WebSocketUpgrade,
) -> Result<Response, PageError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &dashboard.config.allowed_origins) {
        state
            .metrics
            .dashboard
            .refused
            .get_or_create(&Reason::new("origin"))
            .inc();
        tracing::warn!(user = %user.name, ?origin, ?host, "live socket refused: foreign origin");
        return Err(PageError::Forbidden(
            "this page's origin may not open the live socket".into(),
        ));
    }
    let set = match p.set.as_deref() {
        Some("overview") | None => PanelSet::Overview,
        Some("host") => {
            let name = p.host.unwrap_or_default();
            let host = state
                .store
                .hosts()
                .await?
                .into_iter()
                .find(|h| h.hostname == name)
                .ok_or_else(|| PageError::NotFound(format!("no host {name:?}")))?;
            PanelSet::Host {
                name: host.hostname,
                roles: host.roles,
            }
        }
        Some(other) => {
            return Err(PageError::BadRequest(format!(
                "set: expected overview or host, got {other:?}"
            )));
        }
    };
    let before = dashboard.hub.clients.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(dashboard.clone());
    if before >= dashboard.config.max_clients {
        drop(slot);
        state
            .metrics
            .dashboard
            .refused
            .get_or_create(&Reason::new("full"))
            .inc();
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live dashboard connections, try again later",
        )
            .into_response());
    }
    Ok(ws
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| run(socket, state, slot, set)))
}

/// One client: a ticker that queues frames, and a writer task that sends
/// them; a full queue drops the client.
async fn run(socket: WebSocket, state: AppState, slot: Slot, set: PanelSet) {
    let dashboard = slot.0.clone();
    let metrics = &state.metrics.dashboard;
    metrics.clients.inc();
    let (tx, rx) = mpsc::channel::<Utf8Bytes>(dashboard.config.client_queue);
    let mut writer = tokio::spawn(write(socket, rx));
    let interval = dashboard.config.live_interval;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut first = set == PanelSet::Overview;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let frame = if first {
                    first = false;
                    history_frame(&state, &dashboard, &set).await
                } else {
                    tick_frame(&state, &dashboard, &set).await
                };
                match tx.try_send(frame) {
                    Ok(()) => {
                        metrics.frames_sent.inc();
                    }
                    Err(TrySendError::Full(_)) => {
                        metrics.slow_clients_dropped.inc();
                        tracing::info!(set = %set.key(), "live client too slow: disconnected");
                        writer.abort();
                        break;
                    }
                    Err(TrySendError::Closed(_)) => break,
                }
            }
            _ = &mut writer => break,
        }
    }
    metrics.clients.dec();
    drop(slot);
}

/// Sends queued frames; ends when the client closes or the queue does.
async fn write(mut socket: WebSocket, mut rx: mpsc::Receiver<Utf8Bytes>) {
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => {
                    if socket.send(Message::Text(f)).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Pings are answered by the library; other messages are ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn tick_frame(state: &AppState, dashboard: &Dashboard, set: &PanelSet) -> Utf8Bytes {
    let fresh_for = dashboard.config.live_interval / 2;
    dashboard
        .hub
        .frame(&set.key(), fresh_for, async {
            let now = now_ms();
            let figures = match panels::figures(state, &set.panels(), now).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = ?e, "live figures failed");
                    return serde_json::json!({"type": "error", "t": now, "message": "figures could not be evaluated (storage unavailable?)"});
                }
            };
            let mut frame = serde_json::json!({"type": "tick", "t": now, "figures": figures});
            if *set == PanelSet::Overview {
                let active = state.alerting.active();
                let firing = active.iter().filter(|a| a.phase == Phase::Firing).count();
                frame["tiles"] = serde_json::json!(overview::tiles(state, now).await);
                frame["alerts"] = serde_json::json!({"firing": firing, "pending": active.len() - firing});
            }
            frame
        })
        .await
}

async fn history_frame(state: &AppState, dashboard: &Dashboard, set: &PanelSet) -> Utf8Bytes {
    let window = i64::try_from(dashboard.config.chart_window.as_millis()).unwrap_or(900_000);
    // About 120 points of history; live ticks add theirs.
    let step = (window / 120).max(1000);
    let fresh_for = dashboard.config.live_interval;
    dashboard
        .hub
        .frame(&format!("{}\u{0}history", set.key()), fresh_for, async {
            let now = now_ms();
            let to = now - now % step;
            match panels::history(state, &set.panels(), to - window, to, step).await {
                Ok(h) => serde_json::json!({"type": "history", "t": now, "ts": h.ts, "series": h.series}),
                Err(e) => {
                    tracing::warn!(error = ?e, "live history failed");
                    serde_json::json!({"type": "error", "t": now, "message": "history could not be evaluated (storage unavailable?)"})
                }
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            &none
        ));
        assert!(origin_allowed(
            Some("https://Vigil.example"),
            Some("vigil.example"),
            &none
        ));
        assert!(!origin_allowed(
            Some("http://evil.example"),
            Some("vigil.example"),
            &none
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:9999"),
            Some("127.0.0.1:8080"),
            &none
        ));
        assert!(!origin_allowed(None, Some("vigil.example"), &none));
        assert!(!origin_allowed(Some("null"), Some("vigil.example"), &none));
        let allowed = vec!["https://ops.example".to_string()];
        assert!(origin_allowed(
            Some("https://ops.example"),
            Some("vigil.internal"),
            &allowed
        ));
    }
}
