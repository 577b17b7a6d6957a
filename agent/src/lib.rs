//! vigil-agent: collects host and service metrics and pushes signed batches to
//! the aggregator over QUIC.
//!
//! Two tasks do the work, joined by the on-disk spool:
//!
//! ```text
//!  collect loop (every interval)                         sender (send.rs)
//!  Runner::collect ─▶ Batcher::build ─▶ Spool::push ┄┄ Spool::front ─▶ QUIC stream ─▶ ack ─▶ Spool::ack
//!  collect/*.rs        batch.rs          spool/ (disk)   fresh first,                (or retry / drop)
//!                                                        backlog paced (replay.rs)
//! ```
//!
//! [`Agent::start`] validates the config, loads the TLS identity and signing
//! key, opens the spool (recovering what a previous run left), and spawns both
//! tasks. [`AgentHandle::shutdown`] stops the collect loop first, then lets the
//! sender deliver what is spooled for at most the drain timeout (what is left
//! stays in the spool for the next start), then closes the QUIC connection.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::{OsRng, StdRng};
use rand::{SeedableRng, TryRngCore};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use vigil_common::sign::{self, KeyError};
use vigil_common::tls::{self, TlsError};

pub mod backoff;
pub mod batch;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod replay;
pub mod send;
pub mod spool;
pub mod stats;

pub use config::{AgentConfig, AggregatorConfig, ConfigError};
pub use stats::{DropReason, Stats};

use batch::Batcher;
use collect::{CollectError, Runner};
use send::{Phase, Sender};
use spool::{Limits, Spool, SpoolError};

/// Why the agent could not start, or did not shut down cleanly.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigError),
    #[error("TLS setup: {0}")]
    Tls(#[from] TlsError),
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("starting collectors: {0}")]
    Collect(#[from] CollectError),
    #[error("opening the spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("the {task} task failed: {detail}")]
    Task { task: &'static str, detail: String },
    /// The drain timeout passed with batches still spooled; they are sent after
    /// the next start (only batches held in memory after a spool write failure
    /// are lost).
    #[error(
        "{pending} batches still undelivered after the {timeout:?} drain timeout; \
         they stay in the spool"
    )]
    DrainTimeout { pending: usize, timeout: Duration },
}

/// Entry point of the library.
pub struct Agent;

/// Aborts the task if the handle is dropped without a shutdown.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running agent. Dropping it aborts the agent without draining.
pub struct AgentHandle {
    stats: Arc<Stats>,
    spool: Arc<Spool>,
    boot_id: [u8; 16],
    stop: watch::Sender<bool>,
    phase: watch::Sender<Phase>,
    collect_task: Task,
    send_task: Task,
    endpoint: quinn::Endpoint,
}

impl Agent {
    /// Validates `config` (values and files), then starts collecting and sending
    /// in the background. Connecting happens in the background too: an
    /// unreachable aggregator is retried, not an error.
    pub async fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
        config.validate()?;
        let a = &config.aggregator;
        let material = tls::TlsMaterial::load(&a.ca, &a.cert, &a.key)?;
        let client_config = tls::quic_client_config(&material)?;
        let key = sign::load_signing_key(&a.signing_key)?;
        let endpoint = client_endpoint()?;

        let mut seed = [0u8; 48];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| AgentError::Random(e.to_string()))?;
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&seed[..16]);
        let mut rng_seed = [0u8; 32];
        rng_seed.copy_from_slice(&seed[16..]);

        let stats = Arc::new(Stats::default());
        let spool = {
            let (dir, limits) = (config.spool.dir.clone(), Limits::from_config(&config.spool));
            let stats = stats.clone();
            tokio::task::spawn_blocking(move || Spool::open(&dir, limits, stats))
                .await
                .map_err(|e| AgentError::Task {
                    task: "spool recovery",
                    detail: e.to_string(),
                })??
        };
        let spool = Arc::new(spool);
        let runner = {
            let (config, stats) = (config.clone(), stats.clone());
            tokio::task::spawn_blocking(move || Runner::from_config(&config, stats))
                .await
                .map_err(|e| AgentError::Task {
                    task: "collector setup",
                    detail: e.to_string(),
                })??
        };
        let batcher = Batcher::new(
            config.agent_id.clone(),
            config.host.clone(),
            config.roles.clone(),
            boot_id,
            key,
            config.max_batch_samples,
        );
        let (stop, stop_rx) = watch::channel(false);
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let collect_task = tokio::spawn(collect_loop(
            runner,
            batcher,
            spool.clone(),
            stats.clone(),
            config.interval,
            stop_rx,
        ));
        let sender = Sender {
            endpoint: endpoint.clone(),
            client_config,
            config: config.aggregator.clone(),
            spool: spool.clone(),
            pacer: replay::Pacer::new(
                config.spool.replay_batches_per_second,
                std::time::Instant::now(),
            ),
            stats: stats.clone(),
            phase: phase_rx,
            rng: StdRng::from_seed(rng_seed),
            connected_before: false,
            reject_attempt: 0,
        };
        let send_task = tokio::spawn(sender.run());
        tracing::info!(
            agent_id = %config.agent_id,
            host = %config.host,
            interval = ?config.interval,
            spool = %config.spool.dir.display(),
            "agent started"
        );
        Ok(AgentHandle {
            stats,
            spool,
            boot_id,
            stop,
            phase,
            collect_task: Task(collect_task),
            send_task: Task(send_task),
            endpoint,
        })
    }
}

/// A client endpoint on a dual-stack socket, or IPv4 only where IPv6 is off.
///
/// The UDP payload limit is a standard Ethernet MTU's: quinn sizes its receive
/// buffer from it (times 32 datagrams times the GRO segments), and the default
/// of 64 KiB made that buffer alone weigh megabytes. The agent only ever
/// receives small acks.
fn client_endpoint() -> Result<quinn::Endpoint, AgentError> {
    let any6 = std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let any4 = std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    let socket = std::net::UdpSocket::bind(any6)
        .or_else(|_| std::net::UdpSocket::bind(any4))
        .map_err(AgentError::Socket)?;
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(1472)
        .map_err(|e| AgentError::Socket(std::io::Error::other(e.to_string())))?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| AgentError::Socket(std::io::Error::other("no async runtime for QUIC")))?;
    quinn::Endpoint::new(config, None, socket, runtime).map_err(AgentError::Socket)
}

async fn collect_loop(
    mut runner: Runner,
    mut batcher: Batcher,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let collection = tokio::select! {
            biased;
            _ = stop.changed() => return,
            c = runner.collect() => c,
        };
        let (batches, failed) = batcher.build(collection);
        for (e, samples) in failed {
            tracing::error!(error = %e, samples, "batch dropped");
            stats.record_drop(DropReason::Invalid, 1, samples);
        }
        for b in batches {
            Stats::add(&stats.batches_queued, 1);
            Stats::add(&stats.samples_queued, b.samples);
            // Evictions and failures are counted and logged by the spool.
            spool::blocking(&spool, move |s| s.push(b)).await;
        }
    }
}

impl AgentHandle {
    /// The agent's counters (live: they keep changing while it runs).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Batches waiting for an ack right now (spooled, or held in memory).
    pub fn spool_len(&self) -> usize {
        self.spool.len()
    }

    /// This run's boot id (with the sequence, it identifies a batch).
    pub fn boot_id(&self) -> [u8; 16] {
        self.boot_id
    }

    /// Stops the collectors, then delivers spooled batches until the spool is
    /// empty or `drain_timeout` passes, then closes the QUIC connection.
    /// Returns [`AgentError::DrainTimeout`] if batches were left undelivered.
    pub async fn shutdown(mut self, drain_timeout: Duration) -> Result<(), AgentError> {
        let _ = self.stop.send(true);
        let collected = (&mut self.collect_task.0).await;
        let _ = self.phase.send(Phase::Draining);
        let drained = tokio::time::timeout(drain_timeout, &mut self.send_task.0).await;
        let result = match drained {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AgentError::Task {
                task: "sender",
                detail: e.to_string(),
            }),
            Err(_) => {
                self.send_task.0.abort();
                let _ = (&mut self.send_task.0).await;
                Err(AgentError::DrainTimeout {
                    pending: self.spool.len(),
                    timeout: drain_timeout,
                })
            }
        };
        // What is left waits for the next start: make it durable now.
        spool::blocking(&self.spool, |s| s.sync()).await;
        self.endpoint.close(0u32.into(), b"agent shutting down");
        // Lets the close reach the peer; bounded because the peer may be gone.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        self.stats
            .connected
            .store(0, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            batches_acked = Stats::get(&self.stats.batches_acked),
            pending = self.spool.len(),
            "agent stopped"
        );
        collected.map_err(|e| AgentError::Task {
            task: "collect",
            detail: e.to_string(),
        })?;
        result
    }
}
