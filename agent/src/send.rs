//! The QUIC client: delivers spooled batches to the aggregator, one at a time.
//!
//! ```text
//!            connect ok                      ack / non-retryable reject
//!  Disconnected ───────────▶ Connected ──┐   (next batch, same connection)
//!    ▲   │  all endpoints               │◀─┘
//!    │   └─ failed: attempt+1,          │ retryable reject: back off, resend
//!    │      back off, retry             │
//!    └──────────────────────────────────┘ stream error / timeout / peer closed
//! ```
//!
//! Each batch travels on its own bidirectional stream (see `vigil_common::wire`):
//! one frame out, FIN, one reply frame back, all within `ack_timeout`. The batch
//! leaves the spool only when acked (or rejected for good), so anything that
//! goes wrong in between means it is sent again: delivery is at-least-once, and
//! the aggregator dedups on (agent id, boot id, sequence).
//!
//! Order: the spool's fresh lane first, then the backlog oldest first, one
//! backlog batch per token of the replay [`Pacer`] (`spool.replay_batches_per_second`).
//! While the budget is spent the sender waits for a token *or* a new batch, so
//! freshly collected data never queues behind a replay.
//!
//! Endpoints are tried in their configured order on every (re)connection, so
//! the agent returns to the primary as soon as it is reachable again. Backoff
//! grows with consecutive failures and resets on the first ack.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::{debug, error, info, warn};
use vigil_common::ServerMessage;
use vigil_common::frame::{FrameError, read_frame, write_frame};
use vigil_common::wire::WireError;

use crate::backoff::backoff;
use crate::config::AggregatorConfig;
use crate::replay::Pacer;
use crate::spool::{self, Lane, QueuedBatch, Spool};
use crate::stats::{DropReason, Stats};

/// Largest reply frame accepted from the aggregator.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Whether the agent is still collecting or only delivering what is spooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Draining,
}

/// A failed batch exchange; the connection is dropped and re-established.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream: {0}")]
    Frame(#[from] FrameError),
    #[error("stream already closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("undecodable reply: {0}")]
    Decode(#[from] WireError),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("ack names sequence {got}, expected {expected}")]
    WrongSequence { got: u64, expected: u64 },
}

/// Why one address or endpoint could not be reached.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("{endpoint}: cannot resolve: {source}")]
    Resolve { endpoint: String, source: io::Error },
    #[error("{endpoint}: no address within the connect timeout")]
    ResolveTimeout { endpoint: String },
    #[error("{endpoint}: resolves to no address")]
    NoAddress { endpoint: String },
    #[error("{addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("{addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error("{addr}: no handshake within the connect timeout")]
    Timeout { addr: SocketAddr },
}

enum State {
    Disconnected {
        attempt: u32,
    },
    Connected {
        conn: quinn::Connection,
        attempt: u32,
    },
}

/// The sending task's state.
pub(crate) struct Sender {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) config: AggregatorConfig,
    pub(crate) spool: Arc<Spool>,
    /// Budget for backlog batches.
    pub(crate) pacer: Pacer,
    pub(crate) stats: Arc<Stats>,
    pub(crate) phase: watch::Receiver<Phase>,
    pub(crate) rng: StdRng,
    /// Whether any connection succeeded yet (later attempts are reconnects).
    pub(crate) connected_before: bool,
    /// Consecutive retryable rejections of the current batch.
    pub(crate) reject_attempt: u32,
}

impl Sender {
    fn delay(&mut self, attempt: u32) -> Duration {
        let r = self.rng.random::<f64>();
        backoff(
            attempt,
            self.config.backoff_base,
            self.config.backoff_max,
            r,
        )
    }

    fn draining(&mut self) -> bool {
        *self.phase.borrow_and_update() == Phase::Draining
    }

    /// Runs until draining and the spool is empty (the caller bounds a drain
    /// with a timeout and aborts the task).
    pub(crate) async fn run(mut self) {
        let mut state = State::Disconnected { attempt: 0 };
        loop {
            let next = match state {
                State::Disconnected { attempt } => self.disconnected(attempt).await,
                State::Connected { conn, attempt } => self.connected(conn, attempt).await,
            };
            match next {
                Some(next) => state = next,
                None => return,
            }
        }
    }

    /// One connection round: back off (after a failure), then try every endpoint.
    async fn disconnected(&mut self, attempt: u32) -> Option<State> {
        self.stats.connected.store(0, Ordering::Relaxed);
        if self.draining() && self.spool.is_empty() {
            return None;
        }
        if attempt > 0 {
            let d = self.delay(attempt - 1);
            debug!(?d, attempt, "waiting before reconnecting");
            tokio::time::sleep(d).await;
        }
        if self.connected_before || attempt > 0 {
            Stats::add(&self.stats.reconnects, 1);
        }
        Some(match self.connect().await {
            Ok(conn) => {
                self.connected_before = true;
                self.stats.connected.store(1, Ordering::Relaxed);
                State::Connected { conn, attempt }
            }
            Err(errors) => {
                Stats::add(&self.stats.connect_errors, 1);
                let detail: Vec<String> = errors.iter().map(ToString::to_string).collect();
                warn!(attempt, errors = %detail.join("; "), "cannot reach any aggregator endpoint");
                State::Disconnected {
                    attempt: attempt.saturating_add(1),
                }
            }
        })
    }

    /// Sends the next batch and handles the reply, or waits for one to send.
    async fn connected(&mut self, conn: quinn::Connection, attempt: u32) -> Option<State> {
        let failed = State::Disconnected {
            attempt: attempt.saturating_add(1),
        };
        let backlog_allowed = self.pacer.ready(Instant::now());
        // Nothing pending (the usual case after an ack): no trip to the
        // blocking pool. A push racing with this check wakes `spool.wait()`.
        let next = match self.spool.is_empty() {
            true => None,
            false => spool::blocking(&self.spool, move |s| s.front(backlog_allowed))
                .await
                .flatten(),
        };
        let Some(spooled) = next else {
            if self.draining() && self.spool.is_empty() {
                conn.close(0u32.into(), b"agent shutting down");
                self.stats.connected.store(0, Ordering::Relaxed);
                return None;
            }
            // Only the replay budget holds the backlog back: wake when it refills.
            let token =
                (self.spool.backlog_len() > 0).then(|| self.pacer.next_ready(Instant::now()));
            let paced = async {
                match token {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.spool.wait() => {}
                _ = paced => {}
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        return None; // the handle is gone
                    }
                }
                reason = conn.closed() => {
                    log_closed(&reason);
                    return Some(failed);
                }
            }
            return Some(State::Connected { conn, attempt });
        };
        if spooled.lane == Lane::Backlog {
            self.pacer.take(Instant::now());
        }
        let (id, batch) = (spooled.id, spooled.batch);
        let sequence = batch.sequence;
        let started = Instant::now();
        let reply = self.exchange(&conn, &batch).await;
        if reply.is_ok() {
            self.stats.send_latency.observe(started.elapsed());
        }
        match reply {
            Ok(ServerMessage::Ack(ack)) => {
                self.reject_attempt = 0;
                spool::blocking(&self.spool, move |s| s.ack(id)).await;
                Stats::add(&self.stats.batches_acked, 1);
                if ack.duplicate {
                    Stats::add(&self.stats.batches_duplicate, 1);
                    Stats::add(&self.stats.samples_duplicate, batch.samples);
                    debug!(sequence, "duplicate ack: the batch was already stored");
                } else {
                    Stats::add(&self.stats.samples_acked, batch.samples);
                }
                // A full exchange succeeded: the next failure starts backoff afresh.
                Some(State::Connected { conn, attempt: 0 })
            }
            Ok(ServerMessage::Reject(r)) if r.code.is_retryable() => {
                Stats::add(&self.stats.retries, 1);
                let d = self.delay(self.reject_attempt);
                self.reject_attempt = self.reject_attempt.saturating_add(1);
                warn!(sequence, code = %r.code, message = %r.message, retry_in = ?d,
                    "aggregator rejected the batch; will retry");
                tokio::time::sleep(d).await;
                Some(State::Connected { conn, attempt })
            }
            Ok(ServerMessage::Reject(r)) => {
                self.reject_attempt = 0;
                spool::blocking(&self.spool, move |s| s.ack(id)).await;
                self.stats
                    .record_drop(DropReason::Rejected, 1, batch.samples);
                error!(sequence, samples = batch.samples, code = %r.code, message = %r.message,
                    "aggregator rejected the batch for good; dropped");
                Some(State::Connected { conn, attempt })
            }
            Err(e) => {
                Stats::add(&self.stats.send_errors, 1);
                if let Some(reason) = conn.close_reason() {
                    log_closed(&reason);
                }
                warn!(sequence, error = %e, "sending the batch failed; reconnecting");
                conn.close(1u32.into(), b"send error");
                Some(failed)
            }
        }
    }

    /// Sends one batch and reads the reply, all within `ack_timeout`.
    async fn exchange(
        &self,
        conn: &quinn::Connection,
        batch: &QueuedBatch,
    ) -> Result<ServerMessage, SendError> {
        let limit = self.config.ack_timeout;
        let reply = timeout(limit, async {
            let (mut send, mut recv) = conn.open_bi().await?;
            write_frame(&mut send, &batch.payload).await?;
            send.finish()?;
            let reply = read_frame(&mut recv, MAX_REPLY_BYTES).await?;
            Ok::<_, SendError>(ServerMessage::decode(&reply)?)
        })
        .await
        .map_err(|_| SendError::Timeout(limit))??;
        if let ServerMessage::Ack(ack) = &reply {
            if ack.sequence != batch.sequence {
                return Err(SendError::WrongSequence {
                    got: ack.sequence,
                    expected: batch.sequence,
                });
            }
        }
        Ok(reply)
    }

    /// Tries every address of every endpoint in order; the first handshake wins.
    async fn connect(&self) -> Result<quinn::Connection, Vec<ConnectError>> {
        let limit = self.config.connect_timeout;
        let mut errors = Vec::new();
        for endpoint in &self.config.endpoints {
            let addrs = match timeout(limit, tokio::net::lookup_host(endpoint.as_str())).await {
                Ok(Ok(addrs)) => addrs,
                Ok(Err(source)) => {
                    errors.push(ConnectError::Resolve {
                        endpoint: endpoint.clone(),
                        source,
                    });
                    continue;
                }
                Err(_) => {
                    errors.push(ConnectError::ResolveTimeout {
                        endpoint: endpoint.clone(),
                    });
                    continue;
                }
            };
            let mut tried = false;
            for addr in addrs {
                tried = true;
                let connecting = match self.endpoint.connect_with(
                    self.client_config.clone(),
                    addr,
                    &self.config.server_name,
                ) {
                    Ok(c) => c,
                    Err(source) => {
                        errors.push(ConnectError::Connect { addr, source });
                        continue;
                    }
                };
                match timeout(limit, connecting).await {
                    Ok(Ok(conn)) => {
                        info!(%endpoint, %addr, "connected to the aggregator");
                        return Ok(conn);
                    }
                    Ok(Err(source)) => errors.push(ConnectError::Handshake { addr, source }),
                    Err(_) => errors.push(ConnectError::Timeout { addr }),
                }
            }
            if !tried {
                errors.push(ConnectError::NoAddress {
                    endpoint: endpoint.clone(),
                });
            }
        }
        Err(errors)
    }
}

/// Logs why the aggregator closed the connection; a revocation loudly.
fn log_closed(reason: &quinn::ConnectionError) {
    match reason {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == vigil_common::wire::close::REVOKED.into() =>
        {
            error!(
                "the aggregator revoked this agent and refuses its connections; batches stay \
                 spooled (re-enroll with a token created with --host-name <agent id>)"
            );
        }
        _ => warn!(%reason, "connection to the aggregator closed"),
    }
}
