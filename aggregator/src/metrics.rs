//! The aggregator's own metrics, served at `/metrics` in the OpenMetrics text
//! format. Names are documented in docs/metrics.md.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use vigil_common::RejectCode;

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

impl Reason {
    pub fn new(reason: &str) -> Self {
        Reason {
            reason: reason.to_string(),
        }
    }
}

/// Why samples inside an accepted batch were not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleDrop {
    /// Timestamp older than `ingest.max_sample_age`.
    TooOld,
    /// Timestamp further ahead than `ingest.max_future_skew`.
    TooNew,
    /// A value for that series and timestamp was already stored.
    Duplicate,
}

impl SampleDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            SampleDrop::TooOld => "too_old",
            SampleDrop::TooNew => "too_new",
            SampleDrop::Duplicate => "duplicate_timestamp",
        }
    }
}

/// The storage layer's own metrics (head, rollups, retention); cheap to
/// clone, every clone updates the same values.
#[derive(Clone, Default)]
pub struct StorageMetrics {
    pub head_series: Gauge,
    pub head_samples: Gauge,
    pub head_series_refused: Counter,
    /// Estimated heap bytes of the head by `part` (`samples`, `labels`,
    /// `index`), as of the last trim (`Head::memory`).
    pub head_bytes: Family<Part, Gauge>,
    /// Failed attempts to write recording rule output (each is retried).
    pub derived_write_failures: Counter,
    /// Recording rule samples given up after every attempt failed.
    pub derived_samples_dropped: Counter,
    /// Per resolution (`1m`, `1h`): seconds between now and the rollup watermark.
    pub rollup_lag_seconds: Family<Resolution, Gauge>,
    pub partitions_dropped: Counter,
    pub rows_deleted: Counter,
}

/// A `part` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Part {
    pub part: String,
}

impl Part {
    pub fn new(part: &str) -> Self {
        Part {
            part: part.to_string(),
        }
    }
}

/// A `resolution` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Resolution {
    pub resolution: String,
}

impl StorageMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "head_series",
            "Series held in the in-memory head",
            self.head_series.clone(),
        );
        registry.register(
            "head_samples",
            "Samples held in the in-memory head",
            self.head_samples.clone(),
        );
        registry.register(
            "head_series_refused",
            "Series not admitted to the head because it was full (read from the store)",
            self.head_series_refused.clone(),
        );
        registry.register(
            "head_bytes",
            "Estimated heap bytes of the head by part (samples, labels, index), as of the last trim; allocator overhead not included",
            self.head_bytes.clone(),
        );
        registry.register(
            "recording_write_failures",
            "Failed attempts to write recording rule output to the database (retried)",
            self.derived_write_failures.clone(),
        );
        registry.register(
            "recording_samples_dropped",
            "Recording rule samples not written after every attempt failed",
            self.derived_samples_dropped.clone(),
        );
        registry.register(
            "rollup_watermark_lag_seconds",
            "How far the rollup watermark trails now, by resolution",
            self.rollup_lag_seconds.clone(),
        );
        registry.register(
            "partitions_dropped",
            "PostgreSQL partitions dropped by retention",
            self.partitions_dropped.clone(),
        );
        registry.register(
            "retention_rows_deleted",
            "Rows deleted by retention (SQLite, which has no partitions)",
            self.rows_deleted.clone(),
        );
    }
}

/// `receiver` and `integration` labels of notification metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    pub receiver: String,
    /// `webhook`, `slack`, `email` or `alertmanager`.
    pub integration: String,
}

/// Labels of dropped notifications: why they were given up.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub receiver: String,
    pub integration: String,
    /// `expired` (retried past `max_age`), `rejected` (a permanent error),
    /// `unknown_receiver` (not in the config any more), `corrupt`.
    pub reason: String,
}

/// An `integration` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabel {
    pub integration: String,
}

/// A histogram of notification request durations (100 ms .. ~100 s).
#[derive(Clone, Copy)]
pub struct LatencyHistogram;

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for LatencyHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.01, 2.0, 14))
    }
}

/// The notification outbox's metrics; cheap to clone, every clone updates
/// the same values.
#[derive(Clone)]
pub struct NotifyMetrics {
    /// Notifications delivered (2xx, or accepted by the SMTP server).
    pub sent: Family<NotifyLabels, Counter>,
    /// Failed delivery attempts (each retry counts).
    pub failed: Family<NotifyLabels, Counter>,
    /// Notifications given up on, by reason.
    pub dropped: Family<DropLabels, Counter>,
    /// Outbox rows waiting for delivery.
    pub pending: Gauge,
    /// Duration of one delivery attempt, by integration.
    pub latency: Family<IntegrationLabel, Histogram, LatencyHistogram>,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        NotifyMetrics {
            sent: Family::default(),
            failed: Family::default(),
            dropped: Family::default(),
            pending: Gauge::default(),
            latency: Family::new_with_constructor(LatencyHistogram),
        }
    }
}

impl NotifyMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications_sent",
            "Notifications delivered, by receiver and integration",
            self.sent.clone(),
        );
        registry.register(
            "notifications_failed",
            "Failed notification delivery attempts (each retry counts)",
            self.failed.clone(),
        );
        registry.register(
            "notifications_dropped",
            "Notifications given up on, by reason",
            self.dropped.clone(),
        );
        registry.register(
            "notification_outbox_pending",
            "Notifications in the outbox waiting for delivery",
            self.pending.clone(),
        );
        registry.register(
            "notification_latency_seconds",
            "Duration of one notification delivery attempt",
            self.latency.clone(),
        );
    }
}

/// A `group` label (a rule group's name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: String,
}

/// A `state` label (`pending`, `firing`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// The rule evaluator's metrics; cheap to clone.
#[derive(Clone, Default)]
pub struct AlertMetrics {
    /// Rule evaluations that failed, by group.
    pub rule_evaluation_failures: Family<GroupLabel, Counter>,
    /// Duration of the last evaluation of each group, in seconds.
    pub rule_group_last_duration: Family<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Active alerts by state.
    pub alerts: Family<StateLabel, Gauge>,
    /// Alert state changes that could not be written to the database (kept
    /// for the next round, up to a cap).
    pub state_write_failures: Counter,
}

impl AlertMetrics {
    fn register(&self, registry: &mut Registry) {
        for state in ["pending", "firing"] {
            let _ = self.alerts.get_or_create(&StateLabel {
                state: state.into(),
            });
        }
        registry.register(
            "rule_evaluation_failures",
            "Rule evaluations that failed, by rule group",
            self.rule_evaluation_failures.clone(),
        );
        registry.register(
            "rule_group_last_duration_seconds",
            "How long the last evaluation of a rule group took",
            self.rule_group_last_duration.clone(),
        );
        registry.register(
            "alerts",
            "Active alerts by state (pending, firing)",
            self.alerts.clone(),
        );
        registry.register(
            "alert_state_write_failures",
            "Rounds whose alert state changes could not be written to the database",
            self.state_write_failures.clone(),
        );
    }
}

/// Every counter and gauge the aggregator exports about itself.
pub struct Metrics {
    registry: Registry,
    pub batches_received: Counter,
    pub batches_committed: Counter,
    pub batches_duplicate: Counter,
    pub batches_rejected: Family<Reason, Counter>,
    pub samples_stored: Counter,
    pub samples_rejected: Family<Reason, Counter>,
    pub connections_accepted: Counter,
    pub connections_active: Gauge,
    pub handshake_failures: Counter,
    /// Enrollments and rotations, by result (`enrolled`, `rotated`, or the refusal).
    pub enrollments: Family<Reason, Counter>,
    /// Agent connections closed or refused because the agent is revoked.
    pub connections_revoked: Counter,
    /// Batches accepted with an agent's previous key (rotation grace period).
    pub batches_previous_key: Counter,
    pub commit_duration: Histogram,
    /// From a batch's frame read in full to its reply written (what an
    /// agent waits for, less the network).
    pub batch_duration: Histogram,
    /// Batches per ingest transaction (group commit).
    pub commit_group_batches: Histogram,
    pub database_up: Gauge,
    /// The QUIC socket's receive buffer as the kernel granted it.
    pub quic_receive_buffer: Gauge,
    /// The storage watch's (and `/readyz`'s) verdict that the database
    /// cannot be reached: false until a ping fails, so an `AppState` built
    /// without the watch (tests, tools) counts as up. Not exported (the
    /// gauge above is).
    pub database_unreachable: std::sync::atomic::AtomicBool,
    /// `/api/v1/write` and `/api/v1/import`.
    pub http_ingest: crate::http::ingest::tally::IngestMetrics,
    pub storage: StorageMetrics,
    /// The notification dispatcher's.
    pub dispatch: crate::notify::dispatch::NotifyMetrics,
    /// The notification outbox.
    pub notify: NotifyMetrics,

    /// Rule evaluation and alerts.
    pub alerting: AlertMetrics,
    /// The web dashboard's live WebSocket.
    pub dashboard: crate::http::web::live::LiveMetrics,
    /// Leadership in a cluster (`[cluster]`).
    pub cluster: crate::cluster::ClusterMetrics,
    /// Each agent's clock skew, measured at ingest (`ingest/clock.rs`).
    pub clock: crate::ingest::clock::ClockSkew,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vigil_aggregator");
        let m = Metrics {
            registry: Registry::default(),
            batches_received: Counter::default(),
            batches_committed: Counter::default(),
            batches_duplicate: Counter::default(),
            batches_rejected: Family::default(),
            samples_stored: Counter::default(),
            samples_rejected: Family::default(),
            connections_accepted: Counter::default(),
            connections_active: Gauge::default(),
            handshake_failures: Counter::default(),
            enrollments: Family::default(),
            connections_revoked: Counter::default(),
            batches_previous_key: Counter::default(),
            commit_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            batch_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            commit_group_batches: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            database_up: Gauge::default(),
            quic_receive_buffer: Gauge::default(),
            database_unreachable: Default::default(),
            http_ingest: Default::default(),
            storage: StorageMetrics::default(),
            dispatch: Default::default(),
            notify: NotifyMetrics::default(),

            alerting: AlertMetrics::default(),
            dashboard: Default::default(),
            cluster: Default::default(),
            clock: Default::default(),
        };
        // Every reason exists from the start, so dashboards see zeros, not gaps.
        for code in RejectCode::ALL {
            let _ = m
                .batches_rejected
                .get_or_create(&Reason::new(code.as_str()));
        }
        for drop in [
            SampleDrop::TooOld,
            SampleDrop::TooNew,
            SampleDrop::Duplicate,
        ] {
            let _ = m
                .samples_rejected
                .get_or_create(&Reason::new(drop.as_str()));
        }
        registry.register(
            "batches_received",
            "Batches read from agents, before verification",
            m.batches_received.clone(),
        );
        registry.register(
            "batches_committed",
            "Batches durably committed and acked",
            m.batches_committed.clone(),
        );
        registry.register(
            "batches_duplicate",
            "Batches acked as already committed (retries, replays)",
            m.batches_duplicate.clone(),
        );
        registry.register(
            "batches_rejected",
            "Batches rejected, by reason",
            m.batches_rejected.clone(),
        );
        registry.register(
            "samples_stored",
            "Samples written to the store",
            m.samples_stored.clone(),
        );
        registry.register(
            "samples_rejected",
            "Samples inside accepted batches that were not stored, by reason",
            m.samples_rejected.clone(),
        );
        registry.register(
            "connections_accepted",
            "Agent connections that completed the TLS handshake",
            m.connections_accepted.clone(),
        );
        registry.register(
            "connections_active",
            "Agent connections open now",
            m.connections_active.clone(),
        );
        registry.register(
            "handshake_failures",
            "Connection attempts that failed the QUIC/TLS handshake",
            m.handshake_failures.clone(),
        );
        registry.register(
            "enrollments",
            "Agent enrollments and key rotations, by result",
            m.enrollments.clone(),
        );
        registry.register(
            "connections_revoked",
            "Agent connections closed or refused because the agent is revoked",
            m.connections_revoked.clone(),
        );
        registry.register(
            "batches_previous_key",
            "Batches accepted with the agent's previous signing key (rotation grace period)",
            m.batches_previous_key.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Time from a batch's turn to commit (after waiting for a permit) to its outcome",
            m.commit_duration.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time from a batch's frame read in full to its reply written",
            m.batch_duration.clone(),
        );
        registry.register(
            "commit_group_batches",
            "Batches committed per ingest transaction (group commit)",
            m.commit_group_batches.clone(),
        );
        registry.register(
            "quic_receive_buffer_bytes",
            "UDP receive buffer of the QUIC socket as granted by the kernel (quic.receive_buffer_bytes asks)",
            m.quic_receive_buffer.clone(),
        );
        registry.register(
            "database_up",
            "1 when the store is reachable and migrated (checked every 2 s)",
            m.database_up.clone(),
        );
        registry.register(
            "agent_clock_skew_seconds",
            "Agent clock minus aggregator clock, from the newest batch header (positive: the agent is ahead)",
            m.clock.gauge.clone(),
        );
        m.http_ingest.register(&mut registry);
        m.storage.register(&mut registry);
        m.dispatch.register(&mut registry);
        m.notify.register(&mut registry);

        m.alerting.register(&mut registry);
        m.dashboard.register(&mut registry);
        m.cluster.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Batches rejected with `code` so far.
    pub fn rejected(&self, code: RejectCode) -> u64 {
        self.batches_rejected
            .get_or_create(&Reason::new(code.as_str()))
            .get()
    }

    /// Samples dropped for `reason` so far.
    pub fn samples_dropped(&self, reason: SampleDrop) -> u64 {
        self.samples_rejected
            .get_or_create(&Reason::new(reason.as_str()))
            .get()
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_reason_and_counts() {
        let m = Metrics::new();
        m.batches_rejected
            .get_or_create(&Reason::new(RejectCode::BadSignature.as_str()))
            .inc();
        assert_eq!(m.rejected(RejectCode::BadSignature), 1);
        assert_eq!(m.rejected(RejectCode::Malformed), 0);
        let text = m.render();
        assert!(
            text.contains("vigil_aggregator_batches_rejected_total{reason=\"bad_signature\"} 1")
        );
        assert!(
            text.contains("vigil_aggregator_batches_rejected_total{reason=\"frame_too_large\"} 0")
        );
        assert!(text.contains("vigil_aggregator_samples_rejected_total{reason=\"too_old\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
