//! The series one simulated agent sends: node_exporter-like system metrics
//! plus the metrics of its role (api, db or cache), named as in the design's
//! data model, with stable label sets and values that move between batches
//! (counters grow, gauges wander inside bounds, sizes stay put).

use rand::Rng;
use vigil_common::{Label, Point, Series};

/// The roles simulated agents take, in turn.
pub const ROLES: [&str; 3] = ["api", "db", "cache"];

/// How a series' value moves from one batch to the next.
#[derive(Debug, Clone, Copy)]
enum Motion {
    /// Grows by about `rate` per second (never falls).
    Counter { rate: f64 },
    /// Random walk inside `[lo, hi]`.
    Gauge { lo: f64, hi: f64 },
    /// A size or a limit: the same value every time.
    Constant,
}

/// One agent's series with their current values.
pub struct SeriesSet {
    /// Borrowed for encoding; each holds exactly one point.
    pub series: Vec<Series>,
    motion: Vec<Motion>,
    last_ms: i64,
}

impl SeriesSet {
    /// `count` series for `host` with `role`: system metrics first, then role
    /// metrics widened (more handlers, databases, commands) until `count`.
    pub fn new(host: &str, role: &str, count: usize) -> SeriesSet {
        let mut b = Builder {
            host,
            role,
            out: Vec::new(),
        };
        system(&mut b);
        let mut width = 1;
        while b.out.len() < count {
            let before = b.out.len();
            match role {
                "db" => db(&mut b, width),
                "cache" => cache(&mut b, width),
                _ => api(&mut b, width),
            }
            if b.out.len() == before {
                break;
            }
            width += 1;
        }
        b.out.truncate(count);
        let mut rng = rand::rng();
        let (series, motion) = b
            .out
            .into_iter()
            .map(|(name, labels, motion)| {
                let value = match motion {
                    Motion::Counter { rate } => rate * rng.random_range(100.0..10_000.0),
                    Motion::Gauge { lo, hi } => rng.random_range(lo..=hi),
                    Motion::Constant => 8.0 * 1024.0 * 1024.0 * 1024.0,
                };
                let point = Point {
                    timestamp_ms: 0,
                    value,
                };
                (Series::new(name, labels, vec![point]), motion)
            })
            .unzip();
        SeriesSet {
            series,
            motion,
            last_ms: 0,
        }
    }

    /// Moves every value on and stamps the points with a time later than the
    /// last batch's (so two batches never share a timestamp). Returns it.
    pub fn advance(&mut self, now_ms: i64, rng: &mut impl Rng) -> i64 {
        let ts = now_ms.max(self.last_ms + 1);
        let dt = if self.last_ms == 0 {
            1.0
        } else {
            (ts - self.last_ms) as f64 / 1000.0
        };
        self.last_ms = ts;
        for (s, m) in self.series.iter_mut().zip(&self.motion) {
            let Some(p) = s.points.first_mut() else {
                continue;
            };
            p.timestamp_ms = ts;
            match *m {
                Motion::Counter { rate } => p.value += rate * dt * rng.random_range(0.5..1.5),
                Motion::Gauge { lo, hi } => {
                    let step = (hi - lo) * 0.02 * rng.random_range(-1.0..1.0);
                    p.value = (p.value + step).clamp(lo, hi);
                }
                Motion::Constant => {}
            }
        }
        ts
    }

    /// Advances once per stamp of `stamps` (increasing) and returns the
    /// series with one point per stamp, for a batch of past samples.
    pub fn walk(&mut self, stamps: &[i64], rng: &mut impl Rng) -> Vec<Series> {
        let mut out: Vec<Series> = self
            .series
            .iter()
            .map(|s| Series {
                name: s.name.clone(),
                labels: s.labels.clone(),
                points: Vec::with_capacity(stamps.len()),
            })
            .collect();
        for &ts in stamps {
            self.advance(ts, rng);
            for (o, s) in out.iter_mut().zip(&self.series) {
                o.points.extend(s.points.first().copied());
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

struct Builder<'a> {
    host: &'a str,
    role: &'a str,
    out: Vec<(String, Vec<Label>, Motion)>,
}

impl Builder<'_> {
    fn add(&mut self, name: &str, extra: &[(&str, &str)], motion: Motion) {
        let mut labels = vec![Label::new("host", self.host), Label::new("role", self.role)];
        labels.extend(extra.iter().map(|(k, v)| Label::new(*k, *v)));
        self.out.push((name.to_string(), labels, motion));
    }
}

fn counter(rate: f64) -> Motion {
    Motion::Counter { rate }
}

fn gauge(lo: f64, hi: f64) -> Motion {
    Motion::Gauge { lo, hi }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];

/// About 140 node_exporter-like series.
fn system(b: &mut Builder) {
    b.add("system_cpu_usage_ratio", &[], gauge(0.0, 1.0));
    for cpu in ["0", "1", "2", "3", "4", "5", "6", "7"] {
        for mode in [
            "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
        ] {
            b.add(
                "system_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                counter(0.2),
            );
        }
    }
    b.add("system_memory_used_bytes", &[], gauge(2.0 * GIB, 6.0 * GIB));
    b.add("system_memory_total_bytes", &[], Motion::Constant);
    b.add("system_memory_available_bytes", &[], gauge(GIB, 5.0 * GIB));
    b.add(
        "system_memory_cached_bytes",
        &[],
        gauge(0.5 * GIB, 2.0 * GIB),
    );
    b.add("system_memory_buffers_bytes", &[], gauge(0.0, 0.2 * GIB));
    b.add("system_swap_used_bytes", &[], gauge(0.0, 0.5 * GIB));
    b.add("system_swap_total_bytes", &[], Motion::Constant);
    for load in ["system_load1", "system_load5", "system_load15"] {
        b.add(load, &[], gauge(0.0, 8.0));
    }
    for (mount, device) in [
        ("/", "vda1"),
        ("/boot", "vda2"),
        ("/var", "vdb1"),
        ("/srv", "vdc1"),
    ] {
        let l = [("device", device), ("fstype", "ext4"), ("mount", mount)];
        b.add("system_filesystem_used_bytes", &l, gauge(GIB, 40.0 * GIB));
        b.add("system_filesystem_size_bytes", &l, Motion::Constant);
        b.add("system_filesystem_files", &l, Motion::Constant);
        b.add("system_filesystem_files_free", &l, gauge(1e5, 1e6));
    }
    for device in ["eth0", "eth1", "lo"] {
        for dir in ["receive", "transmit"] {
            for (what, rate) in [
                ("bytes", 1e6),
                ("packets", 1e3),
                ("errs", 0.01),
                ("drop", 0.1),
            ] {
                let name = format!("system_network_{dir}_{what}_total");
                b.add(&name, &[("device", device)], counter(rate));
            }
        }
    }
    for device in ["vda", "vdb", "vdc"] {
        for (name, rate) in [
            ("system_disk_reads_completed_total", 50.0),
            ("system_disk_writes_completed_total", 80.0),
            ("system_disk_read_bytes_total", 2e5),
            ("system_disk_written_bytes_total", 4e5),
            ("system_disk_io_time_seconds_total", 0.05),
        ] {
            b.add(name, &[("device", device)], counter(rate));
        }
    }
    b.add("system_uptime_seconds", &[], counter(1.0));
    b.add("system_boot_time_seconds", &[], Motion::Constant);
    b.add("system_processes_running", &[], gauge(1.0, 8.0));
    b.add("system_processes_blocked", &[], gauge(0.0, 2.0));
    b.add("system_context_switches_total", &[], counter(5e3));
    b.add("system_interrupts_total", &[], counter(3e3));
    b.add("system_forks_total", &[], counter(5.0));
    for name in [
        "vigil_agent_batches_sent_total",
        "vigil_agent_samples_collected_total",
    ] {
        b.add(name, &[], counter(1.0));
    }
    b.add("vigil_agent_spool_bytes", &[], gauge(0.0, 1e6));
}

/// One more HTTP handler and, on odd widths, one more ML model.
fn api(b: &mut Builder, width: usize) {
    let handler = format!("/api/v1/endpoint{width}");
    for status in ["200", "400", "500"] {
        let rate = if status == "200" { 50.0 } else { 0.5 };
        b.add(
            "http_requests_total",
            &[
                ("handler", &handler),
                ("method", "POST"),
                ("status", status),
            ],
            counter(rate),
        );
    }
    for (i, le) in BUCKETS.iter().enumerate() {
        let rate = 50.0 * (i + 1) as f64 / BUCKETS.len() as f64;
        b.add(
            "http_request_duration_seconds_bucket",
            &[("handler", &handler), ("le", le)],
            counter(rate),
        );
    }
    b.add(
        "http_request_duration_seconds_sum",
        &[("handler", &handler)],
        counter(2.5),
    );
    b.add(
        "http_request_duration_seconds_count",
        &[("handler", &handler)],
        counter(50.0),
    );
    if width % 2 == 1 {
        let model = format!("model{width}");
        let mv = [("model", model.as_str()), ("version", "3")];
        b.add("model_predictions_total", &mv, counter(40.0));
        b.add("model_accuracy_ratio", &mv, gauge(0.8, 0.99));
        b.add("model_drift_score", &mv, gauge(0.0, 0.3));
        for (i, le) in BUCKETS.iter().enumerate() {
            let rate = 40.0 * (i + 1) as f64 / BUCKETS.len() as f64;
            b.add(
                "model_inference_duration_seconds_bucket",
                &[mv[0], mv[1], ("le", le)],
                counter(rate),
            );
        }
        for le in ["0.5", "0.7", "0.9", "0.95", "0.99", "+Inf"] {
            b.add(
                "model_prediction_confidence_bucket",
                &[mv[0], ("le", le)],
                counter(10.0),
            );
        }
    }
}

/// One more database (per-database statistics); width 1 adds the server's.
fn db(b: &mut Builder, width: usize) {
    if width == 1 {
        b.add("pg_up", &[], gauge(1.0, 1.0));
        b.add("pg_max_connections", &[], Motion::Constant);
        for state in ["active", "idle", "idle in transaction", "waiting"] {
            b.add("pg_connections", &[("state", state)], gauge(0.0, 50.0));
        }
    }
    let datname = format!("app{width}");
    let d = [("datname", datname.as_str())];
    for (name, rate) in [
        ("pg_xact_commit_total", 500.0),
        ("pg_xact_rollback_total", 1.0),
        ("pg_blks_hit_total", 1e4),
        ("pg_blks_read_total", 100.0),
        ("pg_tup_fetched_total", 5e3),
        ("pg_tup_inserted_total", 200.0),
        ("pg_tup_updated_total", 100.0),
        ("pg_tup_deleted_total", 10.0),
        ("pg_deadlocks_total", 0.001),
        ("pg_temp_bytes_total", 1e4),
    ] {
        b.add(name, &d, counter(rate));
    }
    b.add("pg_database_size_bytes", &d, gauge(GIB, 100.0 * GIB));
}

/// One more Redis command (calls and time); width 1 adds the server's.
fn cache(b: &mut Builder, width: usize) {
    if width == 1 {
        b.add("redis_up", &[], gauge(1.0, 1.0));
        b.add("redis_memory_used_bytes", &[], gauge(0.5 * GIB, 2.0 * GIB));
        b.add("redis_memory_max_bytes", &[], Motion::Constant);
        b.add("redis_connected_clients", &[], gauge(10.0, 200.0));
        b.add("redis_keyspace_hits_total", &[], counter(1e4));
        b.add("redis_keyspace_misses_total", &[], counter(500.0));
        b.add("redis_evicted_keys_total", &[], counter(5.0));
        b.add("redis_expired_keys_total", &[], counter(50.0));
        for db in ["0", "1"] {
            b.add("redis_db_keys", &[("db", db)], gauge(1e4, 1e6));
        }
    }
    let cmd = format!("cmd{width}");
    b.add("redis_commands_total", &[("cmd", &cmd)], counter(1e3));
    b.add(
        "redis_commands_duration_seconds_total",
        &[("cmd", &cmd)],
        counter(0.01),
    );
    b.add(
        "redis_commands_rejected_calls_total",
        &[("cmd", &cmd)],
        counter(0.01),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reaches_the_count_with_valid_distinct_series() {
        for role in ROLES {
            let set = SeriesSet::new("h1", role, 300);
            assert_eq!(set.len(), 300, "{role}");
            let mut keys: Vec<_> = set
                .series
                .iter()
                .map(|s| format!("{}{:?}", s.name, s.labels))
                .collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), 300, "{role}: duplicate series");
            for s in &set.series {
                s.validate().unwrap_or_else(|e| panic!("{role}: {e}"));
            }
        }
    }

    #[test]
    fn a_walk_gives_one_point_per_stamp_to_every_series() {
        let mut set = SeriesSet::new("h1", "db", 50);
        let mut rng = rand::rng();
        let out = set.walk(&[1_000, 16_000, 31_000], &mut rng);
        assert_eq!(out.len(), 50);
        for (o, s) in out.iter().zip(&set.series) {
            assert_eq!((&o.name, &o.labels), (&s.name, &s.labels));
            let ts: Vec<i64> = o.points.iter().map(|p| p.timestamp_ms).collect();
            assert_eq!(ts, [1_000, 16_000, 31_000]);
            // The set is left at the last point.
            assert_eq!(o.points[2], s.points[0]);
            if o.name.ends_with("_total") {
                assert!(o.points.windows(2).all(|p| p[1].value >= p[0].value));
            }
        }
    }

    #[test]
    fn values_move_and_timestamps_increase() {
        let mut set = SeriesSet::new("h1", "api", 300);
        let mut rng = rand::rng();
        let t1 = set.advance(1_000, &mut rng);
        let before: Vec<f64> = set.series.iter().map(|s| s.points[0].value).collect();
        // The same clock reading twice still gives a later timestamp.
        let t2 = set.advance(1_000, &mut rng);
        assert!(t2 > t1);
        let moved = set
            .series
            .iter()
            .zip(&before)
            .filter(|(s, b)| s.points[0].value != **b)
            .count();
        assert!(moved > 200, "only {moved} values moved");
        for (s, b) in set.series.iter().zip(&before) {
            if s.name.ends_with("_total") || s.name.ends_with("_bucket") {
                assert!(s.points[0].value >= *b, "{} fell", s.name);
            }
        }
    }
}
