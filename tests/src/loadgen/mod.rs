//! `vigil-loadgen`'s engine: simulates a fleet of agents over the real
//! protocol (QUIC, mutual TLS, signed bincode batches) against a running
//! aggregator, and measures what it acks.
//!
//! - [`fleet`]: per-agent certificates and signing keys, and their
//!   registration in the aggregator's store;
//! - [`series`]: each agent's ~300 realistic series (system + role metrics);
//! - [`backfill`]: the timestamps of past samples sent first ([`Backfill`]);
//! - [`agent`]: one task per agent, one QUIC connection each; many agents
//!   share a few OS threads and UDP sockets (tokio, [`ENDPOINTS`]);
//! - [`report`]: samples/s acked, ack latency percentiles, errors by kind,
//!   and stored == acked.

pub mod agent;
pub mod backfill;
pub mod fleet;
pub mod report;
pub mod series;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use vigil_aggregator::store::Store;
use vigil_common::sign::SigningKey;

pub use fleet::Identity;
pub use report::Report;

/// UDP sockets (quinn endpoints) the fleet's connections are spread over.
pub const ENDPOINTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("agent {0}: certificate or key: {1}")]
    Certs(String, String),
    #[error("store: {0}")]
    Store(String),
    #[error("QUIC endpoint: {0}")]
    Endpoint(std::io::Error),
}

/// When agents send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One batch per agent per interval.
    Interval(Duration),
    /// The next batch as soon as an in-flight slot frees (as fast as acks allow).
    OpenLoop,
}

/// Samples of the past each agent sends first, as fast as `Plan::in_flight`
/// allows, so a run can fill the aggregator's head with hours of data in
/// minutes (the memory benchmark). Point `k` of an agent is stamped
/// `start - span + phase + k * step` (the phase is random in one step, so
/// agents do not share timestamps), up to the current time; then the run
/// goes on in `Plan::mode` for `Plan::duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    /// How far back the first point is.
    pub span: Duration,
    /// Time between an agent's points (the interval it would have sent at).
    pub step: Duration,
    /// Points per series in one batch (1 is what a live agent sends; more
    /// amortise the per-batch and per-series costs of ingest).
    pub points_per_batch: usize,
}

/// What a run does; shared by every agent task.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// Series per agent (one sample each per batch).
    pub series: usize,
    /// Batches one agent may have unacked at once.
    pub in_flight: usize,
    /// How long agents build new batches.
    pub duration: Duration,
    /// How long after `duration` in-flight and retried batches may still finish.
    pub drain: Duration,
    /// Name the aggregator's certificate is checked against.
    pub server_name: String,
    /// Sign with this key instead of each agent's own (to test refusals).
    pub wrong_key: Option<SigningKey>,
    /// Send this much past data first.
    pub backfill: Option<Backfill>,
    /// Ack latencies of batches sent in this first part of the run are
    /// not recorded (connection set-up, the first series); their samples
    /// still count everywhere else.
    pub warmup: Duration,
}

impl Plan {
    pub fn new(mode: Mode, duration: Duration) -> Plan {
        Plan {
            mode,
            series: 300,
            in_flight: 1,
            duration,
            drain: Duration::from_secs(20),
            server_name: "localhost".into(),
            wrong_key: None,
            backfill: None,
            warmup: Duration::ZERO,
        }
    }
}

/// Live counters, for progress lines while the run goes.
#[derive(Debug, Default)]
pub struct Progress {
    pub samples: AtomicU64,
    pub batches: AtomicU64,
    pub errors: AtomicU64,
}

/// Runs `fleet` against the aggregator at `addr` and merges what each agent saw.
pub async fn run(
    fleet: Vec<Identity>,
    addr: SocketAddr,
    plan: Plan,
    progress: Arc<Progress>,
) -> Result<Report, LoadgenError> {
    let bind: SocketAddr = if addr.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let endpoints = (0..ENDPOINTS.min(fleet.len()).max(1))
        .map(|_| quinn::Endpoint::client(bind).map_err(LoadgenError::Endpoint))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Arc::new(plan);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, me) in fleet.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        tasks.spawn(agent::run(
            me,
            endpoint,
            addr,
            plan.clone(),
            progress.clone(),
        ));
    }
    let mut stats = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(s) => stats.push(s),
            Err(_) => {
                let mut s = report::AgentStats::default();
                s.error("agent_task_failed");
                stats.push(s);
            }
        }
    }
    for e in &endpoints {
        e.wait_idle().await;
    }
    Ok(Report::merge(stats))
}

/// Samples in the store (all series), for stored == acked.
pub async fn count_samples(store: &dyn Store) -> Result<u64, LoadgenError> {
    store
        .count_samples(None)
        .await
        .map_err(|e| LoadgenError::Store(e.to_string()))
}
