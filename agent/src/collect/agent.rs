//! The agent's own metrics (`vigil_agent_*`), from [`Stats`] and from
//! /proc/self (memory and CPU of this process).
//!
//! Reading /proc/self/stat takes microseconds, so unlike the system collector
//! this runs inline on the runtime.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use vigil_common::{MetricKind, MetricMetadata, Series};

use super::{CollectError, Collector, Context};
use crate::stats::{DropReason, Stats};

use MetricKind::{Counter, Gauge, Histogram};

#[rustfmt::skip]
const FAMILIES: &[(&str, MetricKind, &str, &str)] = &[
    ("vigil_agent_batches_sent_total", Counter, "Batches acked by the aggregator (duplicate acks included)", ""),
    ("vigil_agent_samples_sent_total", Counter, "Samples in acked batches, duplicate acks excluded", ""),
    ("vigil_agent_batches_duplicate_total", Counter, "Acks reporting the batch was already stored by an earlier attempt", ""),
    ("vigil_agent_batches_dropped_total", Counter, "Batches given up on, by reason", ""),
    ("vigil_agent_samples_dropped_total", Counter, "Samples given up on, by reason", ""),
    ("vigil_agent_batch_retries_total", Counter, "Batches sent again after a retryable rejection", ""),
    ("vigil_agent_send_errors_total", Counter, "Failed batch exchanges (stream errors, ack timeouts, protocol errors)", ""),
    ("vigil_agent_connect_errors_total", Counter, "Connection attempts that reached no endpoint", ""),
    ("vigil_agent_reconnects_total", Counter, "Connection attempts after the first", ""),
    ("vigil_agent_connected", Gauge, "1 while connected to an aggregator", ""),
    ("vigil_agent_send_latency_seconds", Histogram, "Time from opening a batch's stream to its reply (ack or rejection)", "seconds"),
    ("vigil_agent_spool_batches", Gauge, "Batches waiting for an ack (spooled or held in memory)", ""),
    ("vigil_agent_spool_bytes", Gauge, "Size of the spool's segment files", "bytes"),
    ("vigil_agent_spool_memory_batches", Gauge, "Batches held in memory because the spool could not write them", ""),
    ("vigil_agent_spool_dropped_batches_total", Counter, "Batches the spool gave up on: evicted when full, or unwritable", ""),
    ("vigil_agent_spool_dropped_samples_total", Counter, "Samples in those batches", ""),
    ("vigil_agent_spool_corrupt_records_total", Counter, "Torn or corrupt spool records discarded", ""),
    ("vigil_agent_spool_truncated_bytes_total", Counter, "Bytes cut off torn or corrupt spool files", "bytes"),
    ("vigil_agent_spool_write_errors_total", Counter, "Failed spool writes and deletions", ""),
    ("vigil_agent_spool_recovered_batches_total", Counter, "Batches found pending in the spool at start", ""),
    ("vigil_agent_resident_memory_bytes", Gauge, "Resident memory of the agent process", "bytes"),
    ("vigil_agent_cpu_seconds_total", Counter, "CPU time used by the agent process", "seconds"),
    ("vigil_agent_build_info", Gauge, "Always 1; the version label names the agent build", ""),
    ("vigil_agent_interval_seconds", Gauge, "The agent's collection interval: a batch is due this often", "seconds"),
];

/// Self-metrics: delivery counters and latency, spool state, own memory and
/// CPU, build info, collection interval.
pub struct AgentCollector {
    stats: Arc<Stats>,
    interval: Duration,
}

impl AgentCollector {
    /// Reads `stats` each cycle; `interval` is the agent's collection interval
    /// (`vigil_agent_interval_seconds`, which the aggregator's dead-man alert
    /// reads to know how long a silent agent has really been silent).
    pub fn new(stats: Arc<Stats>, interval: Duration) -> Self {
        AgentCollector { stats, interval }
    }
}

/// Resident bytes and CPU seconds of a process from its /proc `stat` line:
/// utime and stime are fields 14 and 15 (clock ticks, USER_HZ = 100 on Linux),
/// rss field 24 (pages). The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn own_usage(stat: &str, page_size: u64) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu = (field(14)? + field(15)?) as f64 / 100.0;
    let rss = field(24)?.saturating_mul(page_size) as f64;
    Some((rss, cpu))
}

#[async_trait]
impl Collector for AgentCollector {
    fn name(&self) -> &str {
        "agent"
    }

    fn metadata(&self) -> Vec<MetricMetadata> {
        super::metadata(FAMILIES)
    }

    async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError> {
        let s = &self.stats;
        let get = Stats::get;
        let mut out = vec![
            ctx.series(
                "vigil_agent_batches_sent_total",
                &[],
                get(&s.batches_acked) as f64,
            ),
            ctx.series(
                "vigil_agent_samples_sent_total",
                &[],
                get(&s.samples_acked) as f64,
            ),
            ctx.series(
                "vigil_agent_batches_duplicate_total",
                &[],
                get(&s.batches_duplicate) as f64,
            ),
            ctx.series(
                "vigil_agent_batch_retries_total",
                &[],
                get(&s.retries) as f64,
            ),
            ctx.series(
                "vigil_agent_send_errors_total",
                &[],
                get(&s.send_errors) as f64,
            ),
            ctx.series(
                "vigil_agent_connect_errors_total",
                &[],
                get(&s.connect_errors) as f64,
            ),
            ctx.series(
                "vigil_agent_reconnects_total",
                &[],
                get(&s.reconnects) as f64,
            ),
            ctx.series("vigil_agent_connected", &[], get(&s.connected) as f64),
            ctx.series(
                "vigil_agent_interval_seconds",
                &[],
                self.interval.as_secs_f64(),
            ),
            ctx.series(
                "vigil_agent_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))],
                1.0,
            ),
        ];
        let (spool_batches, spool_samples) = s.spool_dropped();
        for (name, value) in [
            ("vigil_agent_spool_batches", get(&s.spool_batches)),
            ("vigil_agent_spool_bytes", get(&s.spool_bytes)),
            (
                "vigil_agent_spool_memory_batches",
                get(&s.spool_memory_batches),
            ),
            ("vigil_agent_spool_dropped_batches_total", spool_batches),
            ("vigil_agent_spool_dropped_samples_total", spool_samples),
            (
                "vigil_agent_spool_corrupt_records_total",
                get(&s.spool_corrupt_records),
            ),
            (
                "vigil_agent_spool_truncated_bytes_total",
                get(&s.spool_truncated_bytes),
            ),
            (
                "vigil_agent_spool_write_errors_total",
                get(&s.spool_write_errors),
            ),
            (
                "vigil_agent_spool_recovered_batches_total",
                get(&s.spool_recovered_batches),
            ),
        ] {
            out.push(ctx.series(name, &[], value as f64));
        }
        let (buckets, sum, count) = s.send_latency.snapshot();
        for (le, n) in buckets {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            out.push(ctx.series(
                "vigil_agent_send_latency_seconds_bucket",
                &[("le", &le)],
                n as f64,
            ));
        }
        out.push(ctx.series("vigil_agent_send_latency_seconds_sum", &[], sum));
        out.push(ctx.series("vigil_agent_send_latency_seconds_count", &[], count as f64));
        for reason in DropReason::ALL {
            let (batches, samples) = s.dropped(reason);
            let labels = [("reason", reason.as_str())];
            out.push(ctx.series("vigil_agent_batches_dropped_total", &labels, batches as f64));
            out.push(ctx.series("vigil_agent_samples_dropped_total", &labels, samples as f64));
        }
        let usage = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| own_usage(&stat, rustix::param::page_size() as u64));
        if let Some((rss, cpu)) = usage {
            out.push(ctx.series("vigil_agent_resident_memory_bytes", &[], rss));
            out.push(ctx.series("vigil_agent_cpu_seconds_total", &[], cpu));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_usage_from_a_stat_line() {
        let line = "4242 (vigil agent) (x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 3 0 100 200000000 2500 18446744073709551615";
        assert_eq!(own_usage(line, 4096), Some((2500.0 * 4096.0, 3.0)));
        assert_eq!(own_usage("garbage", 4096), None);
        assert_eq!(own_usage("1 (x) S 1 2", 4096), None);
    }

    #[tokio::test]
    async fn reports_stats_and_own_process() {
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.batches_acked, 3);
        Stats::add(&stats.samples_acked, 30);
        stats.record_drop(DropReason::Rejected, 1, 7);
        stats.record_drop(DropReason::SpoolFull, 2, 11);
        stats.record_drop(DropReason::SpoolWriteError, 1, 4);
        Stats::set(&stats.spool_bytes, 4096);
        Stats::set(&stats.spool_batches, 9);
        Stats::add(&stats.spool_corrupt_records, 1);
        stats
            .send_latency
            .observe(std::time::Duration::from_millis(30));
        stats
            .send_latency
            .observe(std::time::Duration::from_secs(3));
        let mut c = AgentCollector::new(stats, std::time::Duration::from_millis(2500));
        let series = c
            .collect(&Context::new(5, "h", "r"))
            .await
            .expect("collect");
        let get = |name: &str, reason: Option<&str>| {
            series
                .iter()
                .find(|s| s.name == name && s.label("reason") == reason)
                .map(|s| s.points[0].value)
        };
        let bucket = |le: &str| {
            series
                .iter()
                .find(|s| {
                    s.name == "vigil_agent_send_latency_seconds_bucket" && s.label("le") == Some(le)
                })
                .map(|s| s.points[0].value)
        };
        assert_eq!(get("vigil_agent_batches_sent_total", None), Some(3.0));
        assert_eq!(get("vigil_agent_samples_sent_total", None), Some(30.0));
        assert_eq!(
            get("vigil_agent_batches_dropped_total", Some("rejected")),
            Some(1.0)
        );
        assert_eq!(
            get("vigil_agent_samples_dropped_total", Some("rejected")),
            Some(7.0)
        );
        assert_eq!(
            get("vigil_agent_batches_dropped_total", Some("spool_full")),
            Some(2.0)
        );
        assert_eq!(
            get("vigil_agent_batches_dropped_total", Some("invalid")),
            Some(0.0)
        );
        assert_eq!(
            get("vigil_agent_spool_dropped_batches_total", None),
            Some(3.0)
        );
        assert_eq!(
            get("vigil_agent_spool_dropped_samples_total", None),
            Some(15.0)
        );
        assert_eq!(get("vigil_agent_interval_seconds", None), Some(2.5));
        let interval = (series.iter())
            .find(|s| s.name == "vigil_agent_interval_seconds")
            .expect("interval series");
        let names: Vec<&str> = interval.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["host", "role"], "no labels beyond the usual ones");
        assert_eq!(get("vigil_agent_spool_bytes", None), Some(4096.0));
        assert_eq!(get("vigil_agent_spool_batches", None), Some(9.0));
        assert_eq!(
            get("vigil_agent_spool_corrupt_records_total", None),
            Some(1.0)
        );
        assert_eq!(bucket("0.025"), Some(0.0));
        assert_eq!(bucket("0.05"), Some(1.0));
        assert_eq!(bucket("5"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        assert_eq!(
            get("vigil_agent_send_latency_seconds_count", None),
            Some(2.0)
        );
        let sum = get("vigil_agent_send_latency_seconds_sum", None).expect("sum");
        assert!((sum - 3.03).abs() < 1e-9, "{sum}");
        assert!(get("vigil_agent_resident_memory_bytes", None).expect("rss") > 0.0);
        assert!(get("vigil_agent_cpu_seconds_total", None).is_some());
        let families: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
        for s in &series {
            s.validate().expect("valid");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| s.name.strip_suffix(suffix))
                .filter(|f| families.contains(f))
                .unwrap_or(&s.name);
            assert!(families.contains(&family), "undocumented {}", s.name);
        }
    }
}
