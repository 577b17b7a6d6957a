//! The probe agent and the [`Ledger`] of what it created and what was
//! seen where.
//!
//! The agent has its own identity, QUIC connection, boot id and sequence
//! numbers, like a simulated agent of the load generator, and sends one
//! batch per interval with these series (labels `host`, `role="probe"`):
//! `vigil_probe_sequence` (the sequence number), `system_cpu_usage_ratio`
//! (the sequence number / 1e6, for the live socket's `cpu` panel) and
//! `vigil_probe_level{lane}` per lane (the threshold series). Every point
//! is stamped with the batch's creation time. A batch refused as
//! `unavailable`, timed out or cut off is resent with the same bytes (the
//! aggregator dedups it), so a sample's latency includes its retries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until};
use vigil_common::frame::encode_frame;
use vigil_common::wire::{BatchHeader, PROTOCOL_VERSION, encode_batch_parts};
use vigil_common::{Label, Point, Series, SignedBatch, sign};

use super::config::{LEVEL_METRIC, LIVE_METRIC, LIVE_SCALE, SEQUENCE_METRIC};
use super::{Plan, ProbeError, Shared};
use crate::loadgen::Identity;
use crate::loadgen::agent::{Outcome, RETRY_PAUSE, attempt, connect};
use crate::loadgen::report::AgentStats;

/// The probe host's role label.
pub const ROLE: &str = "probe";

/// One sample of the sequence, and when it was seen where.
#[derive(Debug, Clone)]
pub struct Sample {
    pub created: Instant,
    pub created_ms: i64,
    pub acked: Option<Instant>,
    pub query: Option<Instant>,
    pub live: Option<Instant>,
}

/// One threshold crossing.
#[derive(Debug, Clone)]
pub struct Crossing {
    pub lane: usize,
    /// The batch that carried the crossing sample.
    pub seq: u64,
    pub created: Instant,
    pub created_ms: i64,
    /// The alert's `startsAt` (when the rule evaluation saw it), from the webhook.
    pub starts_at_ms: Option<i64>,
    /// When its firing notification was received.
    pub notified: Option<Instant>,
    /// When its resolved notification was received.
    pub resolved: Option<Instant>,
    /// Not notified within the alert timeout.
    pub missed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Level 0; may start a crossing.
    Idle,
    /// Level 1 until crossing `.0` is notified.
    Firing(usize),
    /// Level 0 until crossing `crossing` is notified as resolved.
    Resolving { crossing: usize, since: Instant },
}

/// Everything the probe created and saw.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Index `seq - 1`.
    pub samples: Vec<Sample>,
    pub crossings: Vec<Crossing>,
    lanes: Vec<Lane>,
    /// The first measured sequence number (0 while warming up).
    pub measure_from: u64,
    /// Counted problems (retries, HTTP errors, reconnects, odd webhooks).
    pub errors: BTreeMap<String, u64>,
    query_max: u64,
    live_max: u64,
    last_ms: i64,
}

impl Ledger {
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// From the next sample on, samples are measured and `lanes` threshold
    /// series cross in turn.
    pub fn start_measuring(&mut self, lanes: usize) {
        self.measure_from = self.samples.len() as u64 + 1;
        self.lanes = vec![Lane::Idle; lanes];
    }

    /// The measured samples.
    pub fn measured(&self) -> &[Sample] {
        match usize::try_from(self.measure_from) {
            Ok(from) if from > 0 => self.samples.get(from - 1..).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// A new sample created now: its sequence number, timestamp and the
    /// lanes' levels. A lane whose crossing waited `alert_timeout` for its
    /// notification gives up on it (missed); one waiting as long for its
    /// resolution goes idle; then the first idle lane starts a crossing.
    fn create(&mut self, alert_timeout: Duration) -> (u64, i64, Vec<f64>) {
        let created = Instant::now();
        let created_ms = vigil_common::now_ms().max(self.last_ms + 1);
        self.last_ms = created_ms;
        let seq = self.samples.len() as u64 + 1;
        self.samples.push(Sample {
            created,
            created_ms,
            acked: None,
            query: None,
            live: None,
        });
        for lane in &mut self.lanes {
            match *lane {
                Lane::Firing(c) if created - self.crossings[c].created >= alert_timeout => {
                    self.crossings[c].missed = true;
                    *lane = Lane::Resolving {
                        crossing: c,
                        since: created,
                    };
                }
                Lane::Resolving { since, .. } if created - since >= alert_timeout => {
                    *lane = Lane::Idle;
                }
                _ => {}
            }
        }
        if let Some(i) = self.lanes.iter().position(|l| *l == Lane::Idle) {
            self.lanes[i] = Lane::Firing(self.crossings.len());
            self.crossings.push(Crossing {
                lane: i,
                seq,
                created,
                created_ms,
                starts_at_ms: None,
                notified: None,
                resolved: None,
                missed: false,
            });
        }
        let levels = self
            .lanes
            .iter()
            .map(|l| f64::from(u8::from(matches!(l, Lane::Firing(_)))))
            .collect();
        (seq, created_ms, levels)
    }

    fn sample_mut(&mut self, seq: u64) -> Option<&mut Sample> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.samples.get_mut(i)
    }

    fn acked(&mut self, seq: u64, at: Instant) {
        if let Some(s) = self.sample_mut(seq) {
            s.acked.get_or_insert(at);
        }
    }

    /// The query returned sequence number `value`: it and every earlier
    /// one are visible (as of `at` at the latest).
    pub fn seen_query(&mut self, value: u64, at: Instant) {
        let value = value.min(self.samples.len() as u64);
        for seq in self.query_max + 1..=value {
            if let Some(s) = self.sample_mut(seq) {
                s.query.get_or_insert(at);
            }
        }
        self.query_max = self.query_max.max(value);
    }

    /// The live socket pushed sequence number `value`.
    pub fn seen_live(&mut self, value: u64, at: Instant) {
        let value = value.min(self.samples.len() as u64);
        for seq in self.live_max + 1..=value {
            if let Some(s) = self.sample_mut(seq) {
                s.live.get_or_insert(at);
            }
        }
        self.live_max = self.live_max.max(value);
    }

    /// A webhook notification about the alert of `lane` (received `at`).
    /// A firing one ends the lane's crossing if the alert started at or
    /// after the crossing sample (an evaluation cannot see a sample
    /// stamped later than itself); a resolved one makes a resolving lane
    /// idle.
    pub fn webhook(&mut self, lane: usize, firing: bool, starts_at_ms: Option<i64>, at: Instant) {
        let Some(state) = self.lanes.get(lane).copied() else {
            self.error("webhook_unknown_lane");
            return;
        };
        match (state, firing) {
            (Lane::Firing(c), true)
                if starts_at_ms.is_some_and(|s| s >= self.crossings[c].created_ms) =>
            {
                let x = &mut self.crossings[c];
                x.notified = Some(at);
                x.starts_at_ms = starts_at_ms;
                self.lanes[lane] = Lane::Resolving {
                    crossing: c,
                    since: at,
                };
            }
            (Lane::Resolving { crossing, .. }, false) => {
                self.crossings[crossing].resolved = Some(at);
                self.lanes[lane] = Lane::Idle;
            }
            (Lane::Resolving { crossing, .. }, true) if self.crossings[crossing].missed => {
                self.error("webhook_after_timeout");
            }
            (_, true) => self.error("webhook_unexpected_firing"),
            (_, false) => self.error("webhook_unexpected_resolved"),
        }
    }

    /// Whether every measured sample was acked and seen on both paths and
    /// no crossing waits for its notification.
    pub fn all_seen(&self) -> bool {
        self.measured()
            .iter()
            .all(|s| s.acked.is_some() && s.query.is_some() && s.live.is_some())
            && self
                .crossings
                .iter()
                .all(|c| c.notified.is_some() || c.missed)
    }
}

/// The probe agent's connection and identity.
pub struct ProbeAgent {
    pub host: String,
    me: Identity,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    addr: SocketAddr,
    server_name: String,
    boot_id: [u8; 16],
    shared: Shared,
    /// Lanes (threshold series) in every batch.
    lanes: usize,
    alert_timeout: Duration,
}

/// A built batch, kept until acked.
struct Pending {
    seq: u64,
    frame: Arc<Vec<u8>>,
    retry: bool,
}

impl ProbeAgent {
    /// Connects as `me` (retrying for up to 30 s).
    pub async fn connect(
        plan: &Plan,
        me: Identity,
        shared: Shared,
    ) -> Result<ProbeAgent, ProbeError> {
        let bind: SocketAddr = if plan.quic.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ProbeError::Quic(e.to_string()))?;
        let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut stats = AgentStats::default();
        let conn = connect(
            &endpoint,
            &me,
            plan.quic,
            &plan.server_name,
            give_up,
            &mut stats,
        )
        .await
        .ok_or_else(|| ProbeError::Quic(format!("cannot connect to {}", plan.quic)))?;
        Ok(ProbeAgent {
            host: me.host.clone(),
            me,
            endpoint,
            conn,
            addr: plan.quic,
            server_name: plan.server_name.clone(),
            boot_id: rand::random(),
            shared,
            lanes: plan.lanes,
            alert_timeout: plan.alert_timeout,
        })
    }

    /// Sends the warm-up batch and waits for its ack (up to 30 s).
    pub async fn send_first(&mut self) -> Result<(), ProbeError> {
        let p = self.build()?;
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            match attempt(&self.conn, &p.frame).await {
                Outcome::Acked { .. } => {
                    self.shared.lock().acked(p.seq, Instant::now());
                    return Ok(());
                }
                Outcome::Refused { reason } => {
                    return Err(ProbeError::Quic(format!(
                        "the first batch was refused: {reason} (is the probe's key registered?)"
                    )));
                }
                Outcome::Retry { reason } => {
                    self.shared.lock().error(&reason);
                    if Instant::now() >= give_up {
                        return Err(ProbeError::Quic(format!(
                            "the first batch was not acked: {reason}"
                        )));
                    }
                    self.reconnect_if_closed().await;
                    sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Sends one batch per `plan.interval` for `plan.duration`, then lets
    /// unacked ones finish for `plan.grace`.
    pub async fn run(&mut self, plan: &Plan) {
        let stop_at = tokio::time::Instant::now() + plan.duration;
        let give_up_at = stop_at + plan.grace;
        // Batch k is created in slot [start + k x interval, + interval), at a
        // random point of it unless `plan.jitter` is off (see `Plan::jitter`).
        let start = tokio::time::Instant::now();
        let slot = |k: u32| {
            let offset = if plan.jitter {
                plan.interval.mul_f64(rand::random::<f64>())
            } else {
                Duration::ZERO
            };
            start + plan.interval * k + offset
        };
        let mut k = 0;
        let mut next = slot(k);
        let mut in_flight: JoinSet<(Pending, Outcome)> = JoinSet::new();
        let mut stopping = false;
        loop {
            if stopping && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                _ = sleep_until(next), if !stopping => {
                    match self.build() {
                        Ok(p) => self.spawn(&mut in_flight, p),
                        Err(_) => self.shared.lock().error("encode"),
                    }
                    k += 1;
                    next = slot(k);
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let Ok((mut pending, outcome)) = done else {
                        self.shared.lock().error("task");
                        continue;
                    };
                    match outcome {
                        Outcome::Acked { .. } => self.shared.lock().acked(pending.seq, Instant::now()),
                        Outcome::Refused { reason } => self.shared.lock().error(reason),
                        Outcome::Retry { reason } => {
                            self.shared.lock().error(&reason);
                            self.reconnect_if_closed().await;
                            pending.retry = true;
                            self.spawn(&mut in_flight, pending);
                        }
                    }
                }
                _ = sleep_until(stop_at), if !stopping => stopping = true,
                _ = sleep_until(give_up_at), if stopping => break,
            }
        }
        in_flight.abort_all();
    }

    pub fn close(&self) {
        self.conn.close(0u32.into(), b"probe done");
    }

    fn spawn(&self, in_flight: &mut JoinSet<(Pending, Outcome)>, p: Pending) {
        let conn = self.conn.clone();
        in_flight.spawn(async move {
            if p.retry {
                sleep(RETRY_PAUSE).await;
            }
            let outcome = attempt(&conn, &p.frame).await;
            (p, outcome)
        });
    }

    async fn reconnect_if_closed(&mut self) {
        if self.conn.close_reason().is_none() {
            return;
        }
        self.shared.lock().error("reconnect");
        let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut stats = AgentStats::default();
        if let Some(c) = connect(
            &self.endpoint,
            &self.me,
            self.addr,
            &self.server_name,
            give_up,
            &mut stats,
        )
        .await
        {
            self.conn = c;
        }
    }

    /// Creates the next sample and builds its signed, framed batch.
    fn build(&self) -> Result<Pending, ProbeError> {
        let (seq, ts, levels) = self.shared.lock().create(self.alert_timeout);
        let labels = |extra: Option<(&str, String)>| {
            let mut l = vec![Label::new("host", self.host.as_str())];
            if let Some((k, v)) = extra {
                l.push(Label::new(k, v));
            }
            l.push(Label::new("role", ROLE));
            l
        };
        let point = |value: f64| {
            vec![Point {
                timestamp_ms: ts,
                value,
            }]
        };
        let mut series = vec![
            Series::new(SEQUENCE_METRIC, labels(None), point(seq as f64)),
            Series::new(LIVE_METRIC, labels(None), point(seq as f64 / LIVE_SCALE)),
        ];
        // Only measured batches carry the threshold series (the warm-up
        // batch is built before the lanes exist).
        for (lane, level) in levels.iter().enumerate() {
            series.push(Series::new(
                LEVEL_METRIC,
                labels(Some(("lane", lane.to_string()))),
                point(*level),
            ));
        }
        debug_assert!(levels.is_empty() || levels.len() == self.lanes);
        let header = BatchHeader {
            protocol_version: PROTOCOL_VERSION,
            agent_id: self.me.id.clone(),
            boot_id: self.boot_id,
            sequence: seq,
            created_at_ms: ts,
            host: self.host.clone(),
            roles: vec![ROLE.to_string()],
        };
        let encode = |e: vigil_common::wire::WireError| ProbeError::Setup(format!("encode: {e}"));
        let batch = encode_batch_parts(&header, &series, &[]).map_err(encode)?;
        let signed = SignedBatch {
            signature: sign::sign(&self.me.signing_key, &batch),
            batch,
        };
        Ok(Pending {
            seq,
            frame: Arc::new(encode_frame(&signed.encode().map_err(encode)?)),
            retry: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_cross_in_turn_and_wait_for_their_notifications() {
        let mut l = Ledger::default();
        let timeout = Duration::from_secs(10);
        // Warm-up: no lanes yet.
        let (seq, _, levels) = l.create(timeout);
        assert_eq!((seq, levels.len()), (1, 0));
        l.start_measuring(2);
        let (_, ms2, levels) = l.create(timeout);
        assert_eq!(levels, vec![1.0, 0.0]);
        let (_, _, levels) = l.create(timeout);
        assert_eq!(levels, vec![1.0, 1.0]);
        // Both busy: no third crossing.
        let (_, _, levels) = l.create(timeout);
        assert_eq!(levels, vec![1.0, 1.0]);
        assert_eq!(l.crossings.len(), 2);
        // A firing notification that started before the crossing is not it.
        l.webhook(0, true, Some(ms2 - 1), Instant::now());
        assert!(l.crossings[0].notified.is_none());
        assert_eq!(l.errors.get("webhook_unexpected_firing"), Some(&1));
        l.webhook(0, true, Some(ms2), Instant::now());
        assert!(l.crossings[0].notified.is_some());
        let (_, _, levels) = l.create(timeout);
        assert_eq!(
            levels,
            vec![0.0, 1.0],
            "lane 0 resolves before crossing again"
        );
        l.webhook(0, false, Some(ms2), Instant::now());
        assert!(l.crossings[0].resolved.is_some());
        let (seq, _, levels) = l.create(timeout);
        assert_eq!(levels, vec![1.0, 1.0]);
        assert_eq!(l.crossings[2].seq, seq);
        assert!(!l.all_seen());
    }

    #[test]
    fn a_crossing_past_the_timeout_is_missed() {
        let mut l = Ledger::default();
        l.start_measuring(1);
        l.create(Duration::from_secs(10));
        // A zero timeout: the next batch gives up on it.
        let (_, _, levels) = l.create(Duration::ZERO);
        assert!(l.crossings[0].missed);
        assert_eq!(levels, vec![0.0]);
    }

    #[test]
    fn a_value_seen_marks_every_earlier_sample() {
        let mut l = Ledger::default();
        l.start_measuring(0);
        for _ in 0..3 {
            l.create(Duration::from_secs(10));
        }
        let t = Instant::now();
        l.seen_query(2, t);
        assert!(l.samples[0].query.is_some() && l.samples[1].query.is_some());
        assert!(l.samples[2].query.is_none());
        // Beyond what was created: capped.
        l.seen_live(9, t);
        assert!(l.samples.iter().all(|s| s.live.is_some()));
        assert_eq!(l.measured().len(), 3);
    }
}
