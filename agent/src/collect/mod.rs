//! Collectors and the runner that turns one collection cycle into series.
//!
//! A [`Collector`] produces series for one source (the host, the agent itself;
//! later PostgreSQL, Redis, scrapes, probes). The [`Runner`] calls each in turn
//! with the same [`Context`] (one timestamp per cycle, the `host`/`role` labels)
//! and isolates them: a collector that fails or overruns its time budget is
//! logged and counted, and the others' series still go out. For every collector
//! the runner adds `vigil_agent_collector_up`, `vigil_agent_collector_errors_total`
//! and `vigil_agent_collection_duration_seconds`.
//!
//! Adding a collector: write `collect/<name>.rs` implementing [`Collector`], add a
//! `[collect.<name>]` table to the config, and one `if` in [`Runner::from_config`].

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use thiserror::Error;
use vigil_common::{Label, MetricKind, MetricMetadata, Point, Series};

use crate::config::AgentConfig;
use crate::stats::{DropReason, Stats};

pub use collected::{Collected, Identity};

pub mod agent;
pub mod collected;
pub mod http;
pub mod outage;
pub mod postgres;
pub mod probe;
pub mod redis;
pub mod scrape;
pub mod system;

/// A collector failure. The runner logs it and marks the collector down.
#[derive(Debug, Error)]
pub enum CollectError {
    /// The source could not be read.
    #[error("{0}")]
    Source(String),
    /// The blocking task doing the work panicked or was cancelled.
    #[error("collector task failed: {0}")]
    Task(String),
    /// The collector did not finish within its time budget.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// What every collector receives for one cycle.
#[derive(Debug, Clone)]
pub struct Context {
    /// The timestamp of every sample of this cycle (ms since the epoch).
    pub timestamp_ms: i64,
    base: Arc<[Label]>,
}

impl Context {
    /// A context stamping `host` and `role` on every series.
    pub fn new(timestamp_ms: i64, host: &str, role: &str) -> Self {
        Context {
            timestamp_ms,
            base: Arc::from(vec![Label::new("host", host), Label::new("role", role)]),
        }
    }

    /// The same cycle with another `role` label.
    pub fn with_role(&self, role: &str) -> Context {
        let mut base = self.base.to_vec();
        for label in &mut base {
            if label.name == "role" {
                label.value = role.to_string();
            }
        }
        Context {
            timestamp_ms: self.timestamp_ms,
            base: Arc::from(base),
        }
    }

    /// The `host` and `role` labels every series of this context carries.
    pub fn base_labels(&self) -> &[Label] {
        &self.base
    }

    /// One series with a single point at this cycle's timestamp, carrying the
    /// `host`/`role` labels plus `labels`.
    pub fn series(&self, name: &str, labels: &[(&str, &str)], value: f64) -> Series {
        let mut all = self.base.to_vec();
        all.extend(labels.iter().map(|(k, v)| Label::new(*k, *v)));
        Series::new(
            name,
            all,
            vec![Point {
                timestamp_ms: self.timestamp_ms,
                value,
            }],
        )
    }
}

/// Metadata helper: `(name, kind, help, unit)` to [`MetricMetadata`].
pub fn metadata(families: &[(&str, MetricKind, &str, &str)]) -> Vec<MetricMetadata> {
    families
        .iter()
        .map(|(name, kind, help, unit)| MetricMetadata {
            name: name.to_string(),
            kind: *kind,
            help: help.to_string(),
            unit: unit.to_string(),
        })
        .collect()
}

/// A source of series.
#[async_trait]
pub trait Collector: Send {
    /// Stable name, used as the `collector` label. Collectors that can run
    /// several times (scrapes, probes) use the configured instance name.
    fn name(&self) -> &str;
    /// The `role` label of this collector's series (`db` for PostgreSQL,
    /// `cache` for Redis, ...); `None` means the host's first role.
    fn role(&self) -> Option<&str> {
        None
    }
    /// Type, help and unit of each metric family this collector emits.
    fn metadata(&self) -> Vec<MetricMetadata>;
    /// Collects one cycle. Every series must use `ctx.timestamp_ms` and appear
    /// at most once. Blocking work belongs in `spawn_blocking`.
    async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError>;
    /// What the runner calls: [`Collector::collect`] in the agent's shared
    /// form. Collectors that keep label sets between cycles (scrapes)
    /// override it to hand them out without copying.
    async fn collect_shared(&mut self, ctx: &Context) -> Result<Vec<Collected>, CollectError> {
        Ok(self
            .collect(ctx)
            .await?
            .into_iter()
            .map(Collected::from)
            .collect())
    }
}

/// The output of one cycle: series ready to batch, and their metadata.
#[derive(Debug, Default)]
pub struct Collection {
    /// Every series of the cycle, all stamped with the cycle's timestamp.
    pub series: Vec<Collected>,
    /// Type/help/unit of the families above.
    pub metadata: Vec<MetricMetadata>,
}

struct Entry {
    collector: Box<dyn Collector>,
    errors_total: u64,
    up: bool,
    duration: Duration,
}

/// Runs the configured collectors once per cycle.
pub struct Runner {
    entries: Vec<Entry>,
    host: String,
    role: String,
    budget: Duration,
    stats: Arc<Stats>,
}

const HEALTH: &[(&str, MetricKind, &str, &str)] = &[
    (
        "vigil_agent_collector_up",
        MetricKind::Gauge,
        "1 if the collector's last run succeeded, 0 if it failed",
        "",
    ),
    (
        "vigil_agent_collector_errors_total",
        MetricKind::Counter,
        "Failed or timed-out runs of the collector",
        "",
    ),
    (
        "vigil_agent_collection_duration_seconds",
        MetricKind::Gauge,
        "Duration of the collector's last run",
        "seconds",
    ),
];

impl Runner {
    /// A runner over `collectors`; each run is cut off after `budget`.
    pub fn new(
        collectors: Vec<Box<dyn Collector>>,
        config: &AgentConfig,
        budget: Duration,
        stats: Arc<Stats>,
    ) -> Self {
        Runner {
            entries: collectors
                .into_iter()
                .map(|collector| Entry {
                    collector,
                    errors_total: 0,
                    up: true,
                    duration: Duration::ZERO,
                })
                .collect(),
            host: config.host.clone(),
            role: config.role().to_string(),
            budget,
            stats,
        }
    }

    /// The collectors `config` enables, plus the agent's self-metrics. Blocking
    /// (sysinfo reads /proc): call from `spawn_blocking` or at start-up.
    pub fn from_config(config: &AgentConfig, stats: Arc<Stats>) -> Result<Self, CollectError> {
        let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
        if config.collect.system.enabled {
            collectors.push(Box::new(system::SystemCollector::new()?));
        }
        // A run may use most of the interval, never less than a second.
        let budget = config.interval.mul_f64(0.9).max(Duration::from_secs(1));
        // Both connect lazily, in collect(): a service down at start-up does not stop the agent.
        if config.collect.postgres.is_enabled(&config.roles) {
            let pg = config.collect.postgres.clone();
            collectors.push(Box::new(
                postgres::PostgresCollector::new(pg)?.with_budget(budget),
            ));
        }
        if config.collect.redis.is_enabled(&config.roles) {
            let redis = config.collect.redis.clone();
            collectors.push(Box::new(
                redis::RedisCollector::new(redis)?.with_budget(budget),
            ));
        }
        for s in scrape::scrapes(config) {
            collectors.push(Box::new(scrape::ScrapeCollector::new(s, config.interval)?));
        }
        for p in &config.collect.probe {
            collectors.push(Box::new(probe::ProbeCollector::new(
                p.clone(),
                config.interval,
            )?));
        }
        collectors.push(Box::new(agent::AgentCollector::new(
            stats.clone(),
            config.interval,
        )));
        Ok(Runner::new(collectors, config, budget, stats))
    }

    /// Runs every collector once. Never fails: failures become health series.
    pub async fn collect(&mut self) -> Collection {
        let ctx = Context::new(vigil_common::now_ms(), &self.host, &self.role);
        let mut out = Collection::default();
        for entry in &mut self.entries {
            let name = entry.collector.name().to_string();
            let cctx = match entry.collector.role() {
                Some(role) => ctx.with_role(role),
                None => ctx.clone(),
            };
            let started = Instant::now();
            let result = tokio::time::timeout(self.budget, entry.collector.collect_shared(&cctx))
                .await
                .unwrap_or(Err(CollectError::Timeout(self.budget)));
            entry.duration = started.elapsed();
            match result {
                Ok(series) => {
                    entry.up = true;
                    out.series.extend(series);
                }
                Err(e) => {
                    entry.up = false;
                    entry.errors_total += 1;
                    Stats::add(&self.stats.collector_errors, 1);
                    tracing::warn!(collector = %name, error = %e, "collector failed");
                }
            }
            out.metadata.extend(entry.collector.metadata());
        }
        for entry in &self.entries {
            let labels = [("collector", entry.collector.name())];
            let up = if entry.up { 1.0 } else { 0.0 };
            let errors = entry.errors_total as f64;
            let duration = entry.duration.as_secs_f64();
            for (name, value) in [
                ("vigil_agent_collector_up", up),
                ("vigil_agent_collector_errors_total", errors),
                ("vigil_agent_collection_duration_seconds", duration),
            ] {
                out.series.push(ctx.series(name, &labels, value).into());
            }
        }
        out.metadata.extend(metadata(HEALTH));
        out.series = sanitize(out.series, &self.stats);
        Stats::add(&self.stats.collections, 1);
        out
    }
}

/// Drops series the aggregator would refuse (invalid names or labels) and
/// repeats of a (name, labels) pair, which it would silently collapse. Both are
/// collector bugs: logged and counted as dropped with `reason="invalid"`.
///
/// Runs every cycle over every series, so it borrows rather than clones and
/// hashes with FxHash (the keys are our own series, not attacker input).
fn sanitize(series: Vec<Collected>, stats: &Stats) -> Vec<Collected> {
    let problems: Vec<Option<String>> = {
        let mut seen: HashSet<(&str, &[Label]), BuildHasherDefault<FxHasher>> =
            HashSet::with_capacity_and_hasher(series.len(), Default::default());
        series
            .iter()
            .map(|s| match s.validate() {
                Err(e) => Some(e),
                Ok(()) if !seen.insert((s.name(), s.labels())) => Some(format!(
                    "series {} {:?} emitted twice",
                    s.name(),
                    s.labels()
                )),
                Ok(()) => None,
            })
            .collect()
    };
    let mut kept = Vec::with_capacity(series.len());
    for (s, problem) in series.into_iter().zip(problems) {
        match problem {
            Some(why) => {
                tracing::warn!(%why, "dropping series");
                stats.record_drop(DropReason::Invalid, 0, s.points.len() as u64);
            }
            None => kept.push(s),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AggregatorConfig;

    struct Fixed(&'static str, Vec<(&'static str, f64)>);
    struct Failing;
    struct Slow;

    #[async_trait]
    impl Collector for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn metadata(&self) -> Vec<MetricMetadata> {
            Vec::new()
        }
        async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError> {
            Ok(self.1.iter().map(|(n, v)| ctx.series(n, &[], *v)).collect())
        }
    }

    #[async_trait]
    impl Collector for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn role(&self) -> Option<&str> {
            Some("cache")
        }
        fn metadata(&self) -> Vec<MetricMetadata> {
            Vec::new()
        }
        async fn collect(&mut self, _: &Context) -> Result<Vec<Series>, CollectError> {
            Err(CollectError::Source("boom".into()))
        }
    }

    #[async_trait]
    impl Collector for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        fn metadata(&self) -> Vec<MetricMetadata> {
            Vec::new()
        }
        async fn collect(&mut self, _: &Context) -> Result<Vec<Series>, CollectError> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Vec::new())
        }
    }

    fn value(c: &Collection, name: &str, collector: &str) -> Option<f64> {
        c.series
            .iter()
            .find(|s| s.name() == name && s.label("collector") == Some(collector))
            .map(|s| s.points[0].value)
    }

    #[test]
    fn a_collector_can_carry_its_own_role() {
        let ctx = Context::new(5, "h", "api");
        let db = ctx.with_role("db");
        let s = db.series("pg_up", &[], 1.0);
        assert_eq!((s.label("host"), s.label("role")), (Some("h"), Some("db")));
        assert_eq!(ctx.series("x", &[], 1.0).label("role"), Some("api"));
    }

    #[tokio::test]
    async fn failing_collectors_are_isolated_and_counted() {
        let mut config = AgentConfig::new(
            "t",
            AggregatorConfig::new(vec![], "localhost", "", "", "", ""),
        );
        config.host = "h1".into();
        config.roles = vec!["db".into()];
        let stats = Arc::new(Stats::default());
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(Failing),
            Box::new(Slow),
            Box::new(Fixed(
                "ok",
                vec![("a_metric", 1.0), ("bad-name", 2.0), ("a_metric", 3.0)],
            )),
        ];
        let mut runner = Runner::new(
            collectors,
            &config,
            Duration::from_millis(50),
            stats.clone(),
        );
        let c = runner.collect().await;
        runner.collect().await;
        let c2 = runner.collect().await;

        let a: Vec<_> = c.series.iter().filter(|s| s.name() == "a_metric").collect();
        assert_eq!(a.len(), 1, "duplicate dropped");
        assert_eq!(a[0].points[0].value, 1.0, "first occurrence kept");
        assert_eq!(a[0].label("host"), Some("h1"));
        assert_eq!(a[0].label("role"), Some("db"));
        assert!(c.series.iter().all(|s| s.name() != "bad-name"));
        assert_eq!(value(&c, "vigil_agent_collector_up", "failing"), Some(0.0));
        assert_eq!(value(&c, "vigil_agent_collector_up", "slow"), Some(0.0));
        assert_eq!(value(&c, "vigil_agent_collector_up", "ok"), Some(1.0));
        assert_eq!(
            value(&c2, "vigil_agent_collector_errors_total", "failing"),
            Some(3.0)
        );
        assert_eq!(
            value(&c2, "vigil_agent_collector_errors_total", "ok"),
            Some(0.0)
        );
        assert!(value(&c, "vigil_agent_collection_duration_seconds", "slow").is_some());
        assert_eq!(Stats::get(&stats.collector_errors), 6);
        assert_eq!(stats.dropped(DropReason::Invalid), (0, 6));
        let ts = c.series[0].points[0].timestamp_ms;
        assert!(c.series.iter().all(|s| s.points[0].timestamp_ms == ts));
    }
}
