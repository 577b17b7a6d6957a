//! One simulated agent: its own QUIC connection, boot id and sequence
//! numbers; builds, signs and sends batches at a fixed rate or open loop
//! (after an optional backfill of past samples sent as fast as acks allow), and
//! behaves like the real agent on failure: a batch refused with a retryable
//! code or lost with the connection is resent with the same bytes (the
//! aggregator dedups it) until acked or the drain time runs out; a batch
//! refused for good is counted and dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, sleep, sleep_until, timeout};
use vigil_common::frame::{self, encode_frame};
use vigil_common::wire::{BatchHeader, PROTOCOL_VERSION, encode_batch_parts};
use vigil_common::{Series, ServerMessage, SignedBatch, sign};

use super::backfill::Walk;
use super::fleet::Identity;
use super::report::AgentStats;
use super::series::SeriesSet;
use super::{Mode, Plan, Progress};

/// Longest wait for one reply (the aggregator's own commit wait is 10 s).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Stands for "no end yet" (a run's end while its backfill goes on).
const NEVER: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Pause before resending a batch refused as `Unavailable` or cut off.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Largest reply frame read.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A built batch, kept until acked.
struct Pending {
    samples: u64,
    frame: Arc<Vec<u8>>,
    retry: bool,
}

/// What one attempt to deliver a batch ended in.
pub enum Outcome {
    Acked {
        latency: Duration,
        stored: u64,
        duplicate: bool,
        rejected_samples: u64,
    },
    /// Refused for good (`reason` is the reject code's name).
    Refused { reason: &'static str },
    /// Resend later: refused as retryable, timed out, or the connection broke.
    Retry { reason: String },
}

/// Runs agent `me` against `addr` until `plan.duration` is up and its
/// in-flight batches are acked (or `plan.drain` has passed as well).
pub async fn run(
    me: Identity,
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
) -> AgentStats {
    let mut stats = AgentStats::default();
    let start = Instant::now();
    // A backfill comes first; the run's own clock starts when it is done.
    let mut walk = plan
        .backfill
        .as_ref()
        .map(|b| Walk::new(b, vigil_common::now_ms(), rand::random()));
    let mut stop_at = if walk.is_some() {
        tokio::time::Instant::now() + NEVER
    } else {
        tokio::time::Instant::from_std(start + plan.duration)
    };
    let mut give_up_at = stop_at + plan.drain;
    let mut series = SeriesSet::new(&me.host, me.role, plan.series);
    let boot_id: [u8; 16] = rand::random();
    let mut sequence = 0u64;
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let key = plan
        .wrong_key
        .clone()
        .unwrap_or_else(|| me.signing_key.clone());

    let deadline = connect_deadline(walk.is_some(), give_up_at, &plan);
    let mut conn = match connect(
        &endpoint,
        &me,
        addr,
        &plan.server_name,
        deadline,
        &mut stats,
    )
    .await
    {
        Some(c) => c,
        None => return stats,
    };
    let mut ticker = if walk.is_some() {
        None
    } else {
        live_ticker(plan.mode)
    };
    let mut due = 0usize;
    let mut retry: VecDeque<Pending> = VecDeque::new();
    let mut in_flight: JoinSet<(Pending, Outcome)> = JoinSet::new();
    let mut stopping = false;
    let mut in_flight_samples = 0u64;

    loop {
        while in_flight.len() < plan.in_flight {
            let next = if let Some(p) = retry.pop_front() {
                p
            } else if let Some(w) = walk.as_mut() {
                let Some(stamps) = w.next_batch(vigil_common::now_ms()) else {
                    // Caught up with the present: the live run starts.
                    walk = None;
                    stop_at = tokio::time::Instant::now() + plan.duration;
                    give_up_at = stop_at + plan.drain;
                    ticker = live_ticker(plan.mode);
                    continue;
                };
                sequence += 1;
                let created_at = stamps.last().copied().unwrap_or_default();
                let past = series.walk(&stamps, &mut rng);
                match build(&me, boot_id, sequence, created_at, &past, &key) {
                    Some(p) => p,
                    None => {
                        // The next batch would fail alike: end the run.
                        stats.error("encode");
                        walk = None;
                        stopping = true;
                        give_up_at = tokio::time::Instant::now() + plan.drain;
                        break;
                    }
                }
            } else if !stopping && (ticker.is_none() || due > 0) {
                due = due.saturating_sub(1);
                sequence += 1;
                let ts = series.advance(vigil_common::now_ms(), &mut rng);
                match build(&me, boot_id, sequence, ts, &series.series, &key) {
                    Some(p) => p,
                    None => {
                        stats.error("encode");
                        break;
                    }
                }
            } else {
                break;
            };
            in_flight_samples += next.samples;
            let conn = conn.clone();
            in_flight.spawn(async move {
                if next.retry {
                    sleep(RETRY_PAUSE).await;
                }
                let outcome = attempt(&conn, &next.frame).await;
                (next, outcome)
            });
        }
        if stopping && in_flight.is_empty() && retry.is_empty() {
            break;
        }
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                let Ok((mut pending, outcome)) = done else {
                    stats.error("task");
                    continue;
                };
                in_flight_samples -= pending.samples;
                match outcome {
                    Outcome::Acked { latency, stored, duplicate, rejected_samples } => {
                        // Sent after the warm-up: its latency is recorded.
                        let measured = start.elapsed().saturating_sub(latency) >= plan.warmup;
                        stats.acked(latency, pending.samples, stored, duplicate, rejected_samples, measured);
                        progress.samples.fetch_add(if duplicate { pending.samples } else { stored }, Ordering::Relaxed);
                        progress.batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Refused { reason } => {
                        stats.error(reason);
                        stats.samples_refused += pending.samples;
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Retry { reason } => {
                        stats.error(&reason);
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        pending.retry = true;
                        retry.push_back(pending);
                        if conn.close_reason().is_some() {
                            stats.error("reconnect");
                            let deadline = connect_deadline(walk.is_some(), give_up_at, &plan);
                            match connect(&endpoint, &me, addr, &plan.server_name, deadline, &mut stats).await {
                                Some(c) => conn = c,
                                None => break,
                            }
                        }
                    }
                }
            }
            _ = tick(&mut ticker), if !stopping => {
                if due > 0 {
                    stats.late_ticks += 1;
                }
                due = (due + 1).min(plan.in_flight);
            }
            _ = sleep_until(stop_at), if !stopping => stopping = true,
            _ = sleep_until(give_up_at), if stopping => break,
        }
    }
    // Whatever is left was never acked: it may or may not be stored.
    stats.samples_unconfirmed += in_flight_samples + retry.iter().map(|p| p.samples).sum::<u64>();
    in_flight.abort_all();
    stats.elapsed = start.elapsed();
    stats.sent_batches = sequence;
    conn.close(0u32.into(), b"loadgen done");
    stats
}

/// Fixed rate: a ticker whose first tick falls at a random point of the
/// first interval (so agents spread out); open loop: none.
fn live_ticker(mode: Mode) -> Option<tokio::time::Interval> {
    match mode {
        Mode::Interval(every) => {
            let phase = every.mul_f64(rand::random::<f64>());
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Some(t)
        }
        Mode::OpenLoop => None,
    }
}

/// How long a (re)connection may keep trying: until the run gives up, or,
/// during a backfill (which has no end time), for `plan.drain` from now.
fn connect_deadline(
    backfilling: bool,
    give_up_at: tokio::time::Instant,
    plan: &Plan,
) -> tokio::time::Instant {
    if backfilling {
        tokio::time::Instant::now() + plan.drain
    } else {
        give_up_at
    }
}

/// The next fixed-rate tick; never, in open-loop mode.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Connects, retrying with a short pause until `give_up_at`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    me: &Identity,
    addr: SocketAddr,
    server_name: &str,
    give_up_at: tokio::time::Instant,
    stats: &mut AgentStats,
) -> Option<quinn::Connection> {
    loop {
        let result = match endpoint.connect_with(me.client.clone(), addr, server_name) {
            Ok(connecting) => timeout(ATTEMPT_TIMEOUT, connecting).await,
            Err(_) => {
                stats.error("connect_config");
                return None;
            }
        };
        match result {
            Ok(Ok(conn)) => return Some(conn),
            Ok(Err(_)) | Err(_) => stats.error("connect"),
        }
        if tokio::time::Instant::now() + RETRY_PAUSE >= give_up_at {
            return None;
        }
        sleep(RETRY_PAUSE).await;
    }
}

/// Encodes, signs and frames the next batch.
fn build(
    me: &Identity,
    boot_id: [u8; 16],
    sequence: u64,
    created_at_ms: i64,
    series: &[Series],
    key: &sign::SigningKey,
) -> Option<Pending> {
    let header = BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: me.id.clone(),
        boot_id,
        sequence,
        created_at_ms,
        host: me.host.clone(),
        roles: vec![me.role.to_string()],
    };
    let batch = encode_batch_parts(&header, series, &[]).ok()?;
    let signed = SignedBatch {
        signature: sign::sign(key, &batch),
        batch,
    };
    Some(Pending {
        samples: series.iter().map(|s| s.points.len() as u64).sum(),
        frame: Arc::new(encode_frame(&signed.encode().ok()?)),
        retry: false,
    })
}

/// Sends one frame on a new stream and reads the reply.
pub async fn attempt(conn: &quinn::Connection, frame_bytes: &[u8]) -> Outcome {
    let started = Instant::now();
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|_| "stream")?;
        send.write_all(frame_bytes).await.map_err(|_| "write")?;
        send.finish().map_err(|_| "write")?;
        let reply = frame::read_frame(&mut recv, MAX_REPLY_BYTES)
            .await
            .map_err(|_| "read")?;
        ServerMessage::decode(&reply).map_err(|_| "bad_reply")
    };
    match timeout(ATTEMPT_TIMEOUT, exchange).await {
        Err(_) => Outcome::Retry {
            reason: "timeout".into(),
        },
        Ok(Err(kind)) => Outcome::Retry {
            reason: format!("transport_{kind}"),
        },
        Ok(Ok(ServerMessage::Ack(ack))) => Outcome::Acked {
            latency: started.elapsed(),
            stored: ack.samples_stored,
            duplicate: ack.duplicate,
            rejected_samples: ack.samples_rejected,
        },
        Ok(Ok(ServerMessage::Reject(r))) if r.code == vigil_common::RejectCode::Unavailable => {
            Outcome::Retry {
                reason: format!("reject_{}", r.code.as_str()),
            }
        }
        Ok(Ok(ServerMessage::Reject(r))) => Outcome::Refused {
            reason: r.code.as_str(),
        },
    }
}
