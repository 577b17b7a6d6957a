//! QUIC ingest: where a batch enters the aggregator.
//!
//! One task per connection ([`connection`]), one task per stream ([`stream`]);
//! each stream carries one batch and gets one reply (see `vigil_common::wire`).
//! A connection that negotiated `vigil-enroll/1` is an enrollment or
//! rotation instead ([`enroll`]); an ingest connection is refused if its
//! agent is revoked, and registered in [`live`] so a later revocation
//! closes it.
//! Bounds and what happens at them:
//! - streams per agent: the QUIC `max_concurrent_bidi_streams` limit; an agent
//!   past it waits for flow-control credit (backpressure);
//! - frame size: refused from its length prefix, before reading the body;
//! - time to receive a frame: `ingest.stream_timeout`;
//! - batches being committed or waiting for a committer: a semaphore of
//!   `ingest.max_concurrent_commits` x [`commit::MAX_GROUP_BATCHES`]; a batch
//!   waits for a permit up to [`COMMIT_WAIT`], then gets `Unavailable` (the
//!   agent keeps it and retries), never a silent drop;
//! - concurrent transactions: `ingest.max_concurrent_commits` committers,
//!   each committing the batches waiting together ([`commit`]).

pub mod agents;
pub mod clock;
pub mod commit;
pub mod enroll;
pub mod live;
pub mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use vigil_common::enroll::ENROLL_ALPN;
use vigil_common::frame::{self, FrameError};
use vigil_common::wire::close;
use vigil_common::{Ack, Reject, RejectCode, ServerMessage, now_ms, tls};

use crate::config::IngestConfig;
use crate::metrics::{Metrics, Reason, SampleDrop};
use crate::store::Store;
use agents::{AgentKeys, AgentStatus, KeyUsed};
use commit::Committer;
use verify::reject;

/// Longest a batch waits for a commit slot before being told to retry.
pub const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Largest reply frame; replies are tiny.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Everything a stream needs, shared by all connections.
pub struct Ingest {
    pub store: Arc<dyn Store>,
    pub keys: Arc<AgentKeys>,
    /// Open connections by agent id (revocation closes them).
    pub live: Arc<live::LiveAgents>,
    /// Enrollment and rotation, with `[enroll]`.
    pub enroller: Option<enroll::Enroller>,
    pub metrics: Arc<Metrics>,
    pub limits: IngestConfig,
    /// False until the store is reachable and migrated.
    pub store_ready: Arc<AtomicBool>,
    /// Permits for batches in the commit pipeline (waiting or committing).
    commits: Arc<Semaphore>,
    committer: Committer,
}

impl Ingest {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        limits: IngestConfig,
        store_ready: Arc<AtomicBool>,
    ) -> Self {
        let keys = Arc::new(AgentKeys::new(store.clone()));
        Ingest {
            live: Arc::new(live::LiveAgents::new(keys.clone(), metrics.clone())),
            keys,
            enroller: None,
            commits: Arc::new(Semaphore::new(Self::pipeline_permits(&limits))),
            committer: Committer::start(
                store.clone(),
                limits.max_concurrent_commits,
                limits.max_group_samples,
                metrics.clone(),
            ),
            store,
            metrics,
            limits,
            store_ready,
        }
    }

    /// Turns enrollment on, signing with `ca` per `config`.
    pub fn with_enrollment(
        mut self,
        ca: Arc<vigil_certs::Ca>,
        config: enroll::config::EnrollConfig,
    ) -> Self {
        self.enroller = Some(enroll::Enroller::new(
            ca,
            config,
            self.store.clone(),
            self.store_ready.clone(),
            self.keys.clone(),
            self.metrics.clone(),
        ));
        self
    }

    fn pipeline_permits(limits: &IngestConfig) -> usize {
        limits
            .max_concurrent_commits
            .saturating_mul(commit::MAX_GROUP_BATCHES)
    }

    /// Waits until no commit is in flight, then refuses new ones.
    pub async fn drain_commits(&self) {
        let all = u32::try_from(Self::pipeline_permits(&self.limits)).unwrap_or(u32::MAX);
        if let Ok(permits) = self.commits.acquire_many(all).await {
            permits.forget();
        }
        self.commits.close();
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    endpoint: quinn::Endpoint,
    ingest: Arc<Ingest>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Some(incoming) = incoming else { break };
        let ingest = ingest.clone();
        let remote = incoming.remote_address();
        tokio::spawn(
            connection(incoming, ingest, shutdown.clone()).instrument(info_span!("agent", %remote)),
        );
    }
    debug!("ingest stopped accepting connections");
}

async fn connection(
    incoming: quinn::Incoming,
    ingest: Arc<Ingest>,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            ingest.metrics.handshake_failures.inc();
            warn!(error = %e, "agent handshake failed");
            return;
        }
    };
    if tls::negotiated_alpn(&conn).as_deref() == Some(ENROLL_ALPN) {
        match &ingest.enroller {
            Some(enroller) => enroller.serve(conn).await,
            // Not offered without [enroll]; refuse all the same.
            None => conn.close(close::NO_IDENTITY.into(), b"enrollment is off"),
        }
        return;
    }
    let Some(agent_id) = tls::peer_agent_id(&conn) else {
        ingest.metrics.handshake_failures.inc();
        warn!("agent connection without a client certificate or its common name");
        conn.close(
            close::NO_IDENTITY.into(),
            b"a client certificate naming the agent is required",
        );
        return;
    };
    // The store, not the cache: a revoked agent is refused at once.
    if let Ok(AgentStatus::Revoked) = ingest.keys.fresh_status(&agent_id).await {
        ingest.metrics.connections_revoked.inc();
        warn!(agent = %agent_id, "revoked agent refused");
        conn.close(close::REVOKED.into(), b"agent revoked");
        return;
    }
    let _registered = ingest.live.register(&agent_id, conn.clone());
    ingest.metrics.connections_accepted.inc();
    ingest.metrics.connections_active.inc();
    info!(agent = %agent_id, "agent connected");
    loop {
        let accepted = tokio::select! {
            accepted = conn.accept_bi() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((send, recv)) => {
                let ingest = ingest.clone();
                let agent_id = agent_id.clone();
                tokio::spawn(
                    async move { stream(send, recv, &agent_id, &ingest).await }.in_current_span(),
                );
            }
            Err(e) => {
                info!(agent = %agent_id, reason = %e, "agent disconnected");
                break;
            }
        }
    }
    ingest.metrics.connections_active.dec();
}

/// Reads one batch, handles it, writes the reply.
async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    agent_id: &str,
    ingest: &Ingest,
) {
    let mut received = None;
    let reply = match tokio::time::timeout(
        ingest.limits.stream_timeout,
        frame::read_frame(&mut recv, ingest.limits.max_frame_bytes),
    )
    .await
    {
        Err(_) => Err(reject(
            None,
            RejectCode::Malformed,
            "timed out waiting for a complete frame",
        )),
        Ok(Err(FrameError::TooLarge { len, limit })) => {
            // Tell the peer to stop sending the rest of the body.
            let _ = recv.stop(0u32.into());
            Err(reject(
                None,
                RejectCode::FrameTooLarge,
                format!("frame of {len} bytes exceeds the limit of {limit}"),
            ))
        }
        Ok(Err(e)) => Err(reject(
            None,
            RejectCode::Malformed,
            format!("bad frame: {e}"),
        )),
        Ok(Ok(bytes)) => {
            ingest.metrics.batches_received.inc();
            received = Some(Instant::now());
            handle(&bytes, agent_id, ingest).await
        }
    };
    let message = match reply {
        Ok(ack) => ServerMessage::Ack(ack),
        Err(rejected) => {
            ingest
                .metrics
                .batches_rejected
                .get_or_create(&Reason::new(rejected.code.as_str()))
                .inc();
            warn!(agent = %agent_id, code = %rejected.code, seq = ?rejected.sequence, "batch rejected: {}", rejected.message);
            ServerMessage::Reject(rejected)
        }
    };
    let sent = match message.encode() {
        Ok(bytes) if bytes.len() <= MAX_REPLY_BYTES => frame::write_frame(&mut send, &bytes)
            .await
            .map_err(|e| e.to_string()),
        Ok(_) => Err("reply too large".to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent.and_then(|()| send.finish().map_err(|e| e.to_string())) {
        // The agent never sees this reply; it will retry and dedup makes that safe.
        debug!(agent = %agent_id, error = %e, "could not send reply");
    }
    if let Some(received) = received {
        ingest
            .metrics
            .batch_duration
            .observe(received.elapsed().as_secs_f64());
    }
}

/// Verifies and commits one frame's batch.
async fn handle(frame: &[u8], agent_id: &str, ingest: &Ingest) -> Result<Ack, Reject> {
    let unavailable = |seq, what: String| reject(seq, RejectCode::Unavailable, what);
    let signed = verify::open_envelope(frame)?;
    if !ingest.store_ready.load(Ordering::Acquire) {
        return Err(unavailable(None, "storage is not ready yet".into()));
    }
    let status = ingest
        .keys
        .status(agent_id)
        .await
        .map_err(|e| unavailable(None, format!("cannot look up agent: {e}")))?;
    let (mut batch, key_used) = verify::verify(&signed, agent_id, &status, now_ms())?;
    if key_used == KeyUsed::Previous {
        ingest.metrics.batches_previous_key.inc();
    }
    let seq = batch.header.sequence;
    let received = batch.sample_count() as u64;
    let now = now_ms();
    ingest
        .metrics
        .clock
        .observe(agent_id, batch.header.created_at_ms, now);
    let drops = verify::normalize(
        &mut batch,
        now,
        ingest.limits.max_sample_age,
        ingest.limits.max_future_skew,
    );

    let _permit = tokio::time::timeout(COMMIT_WAIT, ingest.commits.acquire())
        .await
        .map_err(|_| unavailable(Some(seq), "aggregator overloaded, retry later".into()))?
        .map_err(|_| unavailable(Some(seq), "aggregator is shutting down".into()))?;
    let started = Instant::now();
    let batch = Arc::new(batch);
    let committed = ingest.committer.commit(batch.clone()).await.map_err(|e| {
        warn!(agent = %agent_id, seq, error = %e, "commit failed");
        unavailable(Some(seq), "storage unavailable, retry later".into())
    })?;
    let outcome = committed.outcome;
    ingest
        .metrics
        .commit_duration
        .observe(started.elapsed().as_secs_f64());
    // After the commit, and not fatal: the samples are stored, and the
    // agent resends its metadata with the next batch (the store writes only
    // what changed, so this is no write in the steady state).
    if let Err(e) = ingest.store.put_metadata(&batch.metadata).await {
        warn!(agent = %agent_id, seq, error = %e, "could not store metric metadata");
    }

    if outcome.duplicate {
        ingest.metrics.batches_duplicate.inc();
        debug!(agent = %agent_id, seq, "duplicate batch acked");
        return Ok(Ack {
            sequence: seq,
            duplicate: true,
            samples_stored: 0,
            samples_rejected: 0,
        });
    }
    let kept = batch.sample_count() as u64;
    let dropped_bounds: u64 = drops.iter().map(|(_, n)| n).sum();
    let duplicate_ts = kept.saturating_sub(outcome.samples_stored);
    for (reason, n) in drops
        .into_iter()
        .chain([(SampleDrop::Duplicate, duplicate_ts)])
    {
        if n > 0 {
            ingest
                .metrics
                .samples_rejected
                .get_or_create(&Reason::new(reason.as_str()))
                .inc_by(n);
        }
    }
    ingest.metrics.batches_committed.inc();
    ingest.metrics.samples_stored.inc_by(outcome.samples_stored);
    debug!(agent = %agent_id, seq, received, stored = outcome.samples_stored, "batch committed");
    Ok(Ack {
        sequence: seq,
        duplicate: false,
        samples_stored: outcome.samples_stored,
        samples_rejected: dropped_bounds + duplicate_ts,
    })
}

/// Closes every connection and waits (bounded) for agents to see it.
pub async fn close(endpoint: &quinn::Endpoint, wait: Duration) {
    endpoint.close(close::SHUTDOWN.into(), b"aggregator shutting down");
    let _ = tokio::time::timeout(wait, endpoint.wait_idle()).await;
}
