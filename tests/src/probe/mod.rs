//! `vigil-probe`'s engine: one "probe agent" over the real protocol that
//! sends one batch per interval and measures how long its samples take to
//! reach an operator:
//!
//! - **ack**: sample created -> batch acked (committed);
//! - **query**: sample created -> first returned by
//!   `GET /prometheus/api/v1/query` (polled every `poll`, API token);
//! - **live**: sample created -> first pushed by the dashboard's WebSocket
//!   (`/ws/live?set=host&host=<probe host>`, signed in with a session
//!   cookie, own `Origin`). The live socket carries fixed panels only, so
//!   the probe feeds the host set's `cpu` panel
//!   (`max(system_cpu_usage_ratio{host=...})`) with its sequence number
//!   scaled into a ratio ([`config::LIVE_SCALE`]);
//! - **alert**: a sample crossing a threshold created -> the webhook
//!   notification for it received by the probe's own HTTP receiver
//!   (rule `for: 0s`, route `group_wait: 0s`, [`config`]). Crossings repeat:
//!   each of `lanes` threshold series goes 1 (a crossing), stays 1 until
//!   its firing notification arrives, then 0 until the resolved one
//!   arrives (its group is then gone, so the next crossing is again a new
//!   group without wait). At most one crossing starts per batch.
//!
//! Module map: [`agent`] (the probe agent and the [`Ledger`] of what was
//! created and seen), [`http`] (sign-in, the query poller), [`live`] (the
//! WebSocket reader), [`webhook`] (the receiver), [`report`].

pub mod agent;
pub mod config;
pub mod http;
pub mod live;
pub mod report;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use agent::Ledger;
pub use report::Report;

use crate::loadgen::Identity;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("QUIC: {0}")]
    Quic(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("dashboard sign-in: {0}")]
    SignIn(String),
    #[error("live socket: {0}")]
    Live(String),
    #[error("webhook receiver: {0}")]
    Webhook(std::io::Error),
    #[error("setup: {0}")]
    Setup(String),
}

/// What a probe run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The aggregator's QUIC address and the name its certificate carries.
    pub quic: SocketAddr,
    pub server_name: String,
    /// The aggregator's HTTP address.
    pub http: SocketAddr,
    /// An admin API token: queries, and the dashboard user the probe creates
    /// (and deletes at the end) to sign in to the live socket.
    pub token: String,
    /// One batch per interval.
    pub interval: Duration,
    /// Create each batch at a random point of its interval (default), not
    /// at its start. The aggregator pushes live frames and evaluates rules
    /// on its own fixed tickers; a probe on a fixed tick keeps one phase
    /// against them for the whole run, so every sample would wait the same
    /// time for the next frame or evaluation. Random points sample every
    /// phase, as a fleet of agents started at different times does.
    pub jitter: bool,
    /// How long batches are sent after the warm-up.
    pub duration: Duration,
    /// How often `/prometheus/api/v1/query` is polled.
    pub poll: Duration,
    /// How long after the last batch samples and crossings may still be seen.
    pub grace: Duration,
    /// Threshold series crossing in turn (0: no alert measurement).
    pub lanes: usize,
    /// A crossing not notified this long after it was created is missed.
    pub alert_timeout: Duration,
}

impl Plan {
    pub fn new(quic: SocketAddr, http: SocketAddr, token: impl Into<String>) -> Plan {
        Plan {
            quic,
            server_name: "localhost".into(),
            http,
            token: token.into(),
            interval: Duration::from_secs(1),
            jitter: true,
            duration: Duration::from_secs(60),
            poll: Duration::from_millis(20),
            grace: Duration::from_secs(10),
            lanes: 3,
            alert_timeout: Duration::from_secs(10),
        }
    }
}

/// The ledger shared by the agent, the readers and the webhook receiver.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Ledger>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the probe as `me` (issued by the aggregator's CA, key registered)
/// against the aggregator of `plan`, with the webhook receiver on
/// `webhook` (the URL the aggregator's notify config names; see
/// [`config::webhook_url`]).
pub async fn run(
    plan: Plan,
    me: Identity,
    webhook: tokio::net::TcpListener,
) -> Result<Report, ProbeError> {
    let shared = Shared::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let receiver = webhook::serve(webhook, shared.clone(), stop_rx.clone());

    // Warm-up: the first batch makes the host and the series known, so the
    // live socket (which needs a known host) can open and the readers start
    // before anything is measured.
    let mut agent = agent::ProbeAgent::connect(&plan, me, shared.clone()).await?;
    agent.send_first().await?;
    let client = http::client()?;
    let session = http::SignIn::create(&client, &plan).await?;
    let live = match live::start(
        &plan,
        &agent.host,
        &session.cookie,
        shared.clone(),
        stop_rx.clone(),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => {
            session.delete(&client, &plan).await;
            return Err(e);
        }
    };
    let poller = http::start_poller(
        client.clone(),
        &plan,
        &agent.host,
        shared.clone(),
        stop_rx.clone(),
    );
    shared.lock().start_measuring(plan.lanes);

    let started = Instant::now();
    agent.run(&plan).await;
    let sent_for = started.elapsed();

    // Grace: until everything measured was seen, or the time is up.
    let deadline = Instant::now() + plan.grace;
    while Instant::now() < deadline && !shared.lock().all_seen() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let _ = poller.await;
    let _ = live.await;
    let _ = receiver.await;
    session.delete(&client, &plan).await;
    agent.close();
    let ledger = shared.lock();
    Ok(Report::from_ledger(&ledger, &plan, sent_for))
}

/// Resolves when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
