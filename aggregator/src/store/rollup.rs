//! Rollups and retention.
//!
//! Two resolutions, 1 minute and 1 hour: per series and bucket, the min, max,
//! sum, count and last raw value (tables `samples_1m`, `samples_1h`). A
//! background task ([`Rollups::spawn`]) extends them from a per-resolution
//! watermark (`rollup_watermarks`): each run aggregates the raw samples from
//! the watermark up to the last bucket that ended [`SETTLE_MS`] ago, and
//! moves the watermark in the same transaction, so a bucket is built once.
//! Samples that arrive for a bucket after it was built are not in it.
//!
//! Retention: raw samples are kept `retention_raw`, but never dropped before
//! both rollups cover them; rollups for `retention_1m` / `retention_1h`.
//! PostgreSQL drops whole partitions (raw: days; 1m: days; 1h: 30 days);
//! SQLite deletes by time range, a chunk of series per transaction, so the
//! single writer is never held for long.
//!
//! Reads ([`Rollups::read`]) stand in for raw samples where those are gone:
//! one sample per bucket at the bucket start, the bucket's last value (right
//! for instant selectors, `rate`, `increase`, `last_over_time`), or its
//! max / min / mean for `max_over_time` / `min_over_time` / `avg_over_time`.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::config::StorageConfig;
use super::head::Head;
use super::{Store, StoreError};
use crate::metrics::{Resolution as ResolutionLabel, StorageMetrics};

/// A bucket is built once it ended this long ago (late samples get a chance).
pub const SETTLE_MS: i64 = 120_000;

/// A rollup resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub const ALL: [Resolution; 2] = [Resolution::Minute, Resolution::Hour];

    /// Bucket width in ms.
    pub fn ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
        }
    }

    /// `1m` / `1h`: the key in `rollup_watermarks` and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
        }
    }

    /// Largest range aggregated in one transaction: an hour keeps each
    /// transaction short (on SQLite it holds the only writer; 1,000 series
    /// at 15 s are 240,000 samples an hour, well under a second).
    fn step_ms(self) -> i64 {
        3_600_000
    }
}

/// A table retention applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Raw,
    Rollup(Resolution),
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "samples",
            Table::Rollup(Resolution::Minute) => "samples_1m",
            Table::Rollup(Resolution::Hour) => "samples_1h",
        }
    }

    /// PostgreSQL partition width (ms).
    pub fn partition_ms(self) -> i64 {
        match self {
            Table::Raw | Table::Rollup(Resolution::Minute) => 86_400_000,
            Table::Rollup(Resolution::Hour) => 30 * 86_400_000,
        }
    }
}

/// One rollup bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub series_id: i64,
    pub ts: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
    pub last: f64,
}

/// Which value of a bucket stands in for its raw samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Last,
    Min,
    Max,
    Mean,
}

impl Pick {
    /// The value that keeps `func` exact (or closest) over rolled-up data.
    pub fn for_function(func: Option<&str>) -> Pick {
        match func {
            Some("max_over_time") => Pick::Max,
            Some("min_over_time") => Pick::Min,
            Some("avg_over_time") => Pick::Mean,
            _ => Pick::Last,
        }
    }

    pub fn value(self, b: &Bucket) -> f64 {
        match self {
            Pick::Last => b.last,
            Pick::Min => b.min,
            Pick::Max => b.max,
            Pick::Mean if b.count > 0 => b.sum / b.count as f64,
            Pick::Mean => f64::NAN,
        }
    }
}

/// The SQL dialect a build statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// SQL that aggregates raw samples in `[$1, $2)` into buckets of `$3` ms of
/// `table`, replacing buckets built before; the last value is found by a
/// primary-key probe per bucket. The text is shared; the dialect supplies how
/// a stored value is tested (PostgreSQL keeps NaN in `float8` and orders it
/// above every number; SQLite holds NaN as a BLOB of its bits, or NULL from
/// older versions, see `sqlite.rs`), so both backends follow one rule:
///
/// - stale markers are skipped: not in min, max, sum, count or last (a bucket
///   of only stale markers is not built);
/// - an ordinary NaN counts, makes `sum` NaN (so the mean is NaN, as
///   `avg_over_time` is), may be `last`, and is ignored by `min` / `max`
///   unless the bucket has nothing else (then they are NaN), as
///   `min_over_time` / `max_over_time` do.
///
/// Arguments: table; `$num` is the value as a number, NULL for a NaN;
/// `$fresh` is true for a value that is not a stale marker; `$sum` sums a
/// bucket (NaN if it holds a NaN); `$last` is the last value (`s2.value`) as
/// the rollup column holds it.
macro_rules! build_sql {
    ($table:literal, num: $num:literal, fresh: $fresh:literal, sum: $sum:literal, last: $last:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (series_id, ts, min, max, sum, count, last)
             SELECT g.series_id, g.b, g.mn, g.mx, g.sm, g.n,
                    (SELECT ",
            $last,
            " FROM samples s2 WHERE s2.series_id = g.series_id AND s2.ts = g.lt)
             FROM (SELECT series_id, b, min(num) AS mn, max(num) AS mx, ",
            $sum,
            " AS sm, count(*) AS n, max(ts) AS lt
                   FROM (SELECT series_id, ts, value, ",
            $num,
            " AS num, (ts / $3) * $3 AS b FROM samples
                         WHERE ts >= $1 AND ts < $2 AND ",
            $fresh,
            ") AS x
                   GROUP BY series_id, b) AS g
             WHERE true
             ON CONFLICT (series_id, ts) DO UPDATE
             SET min = excluded.min, max = excluded.max, sum = excluded.sum,
                 count = excluded.count, last = excluded.last"
        )
    };
}

/// PostgreSQL: every NaN equals `'NaN'`; the marker is told by its bits
/// (`float8send` is the big-endian IEEE 754 encoding).
macro_rules! build_sql_pg {
    ($table:literal) => {
        build_sql!(
            $table,
            num: "CASE WHEN value <> 'NaN'::float8 THEN value END",
            fresh: "(value <> 'NaN'::float8 OR float8send(value) <> '\\x7ff0000000000002'::bytea)",
            sum: "sum(value)",
            last: "s2.value"
        )
    };
}

/// SQLite: numbers are REAL (INTEGER if written by hand); a BLOB is a NaN or
/// -0 (`sqlite.rs`), NULL a NaN from older versions. A REAL never equals a
/// BLOB. A NaN result is stored as NULL, -0 as 0.
macro_rules! build_sql_lite {
    ($table:literal) => {
        build_sql!(
            $table,
            num: "CASE WHEN typeof(value) IN ('real', 'integer') THEN value
                       WHEN value = x'8000000000000000' THEN 0.0 END",
            fresh: "value IS NOT x'7ff0000000000002'",
            sum: "CASE WHEN count(num) = count(*) THEN sum(num) END",
            last: "CASE WHEN typeof(s2.value) IN ('real', 'integer') THEN s2.value
                        WHEN s2.value = x'8000000000000000' THEN 0.0 END"
        )
    };
}

/// The build statement of a resolution.
pub(crate) fn build_statement(res: Resolution, dialect: Dialect) -> &'static str {
    match (dialect, res) {
        (Dialect::Postgres, Resolution::Minute) => build_sql_pg!("samples_1m"),
        (Dialect::Postgres, Resolution::Hour) => build_sql_pg!("samples_1h"),
        (Dialect::Sqlite, Resolution::Minute) => build_sql_lite!("samples_1m"),
        (Dialect::Sqlite, Resolution::Hour) => build_sql_lite!("samples_1h"),
    }
}

pub(crate) const UPSERT_WATERMARK: &str =
    "INSERT INTO rollup_watermarks (resolution, upto_ms) VALUES ($1, $2)
     ON CONFLICT (resolution) DO UPDATE SET upto_ms = excluded.upto_ms";

/// Builds rollups, applies retention, trims the head, and reads rollups.
pub struct Rollups {
    store: Arc<dyn Store>,
    config: StorageConfig,
    metrics: StorageMetrics,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Rollups {
    pub fn new(store: Arc<dyn Store>, config: StorageConfig, metrics: StorageMetrics) -> Self {
        for res in Resolution::ALL {
            let _ = metrics.rollup_lag_seconds.get_or_create(&ResolutionLabel {
                resolution: res.name().into(),
            });
        }
        Rollups {
            store,
            config,
            metrics,
        }
    }

    /// Before this time raw samples may be gone; reads use rollups there.
    pub fn raw_from(&self, now: i64) -> i64 {
        now.saturating_sub(ms(self.config.retention_raw))
    }

    /// Extends both rollups up to now, then applies retention.
    pub async fn run_once(&self, now: i64) -> Result<(), StoreError> {
        let mut covered = i64::MAX;
        for res in Resolution::ALL {
            let settled = (now - SETTLE_MS).div_euclid(res.ms()) * res.ms();
            let mut from = match self.store.rollup_watermark(res).await? {
                Some(wm) => wm,
                None => match self.store.oldest_sample().await? {
                    Some(t) => t.div_euclid(res.ms()) * res.ms(),
                    None => settled,
                },
            };
            while from < settled {
                let to = (from + res.step_ms()).min(settled);
                self.store.build_rollup(res, from, to).await?;
                from = to;
            }
            self.metrics
                .rollup_lag_seconds
                .get_or_create(&ResolutionLabel {
                    resolution: res.name().into(),
                })
                .set((now - from).max(0) / 1000);
            covered = covered.min(from);
        }
        // Raw samples go only once both rollups hold them.
        let cutoffs = [
            (Table::Raw, self.raw_from(now).min(covered)),
            (
                Table::Rollup(Resolution::Minute),
                now.saturating_sub(ms(self.config.retention_1m)),
            ),
            (
                Table::Rollup(Resolution::Hour),
                now.saturating_sub(ms(self.config.retention_1h)),
            ),
        ];
        for (table, before) in cutoffs {
            let removed = self.store.drop_before(table, before).await?;
            if removed > 0 {
                info!(table = table.name(), removed, "retention applied");
                if self.store.backend() == "postgres" {
                    self.metrics.partitions_dropped.inc_by(removed);
                } else {
                    self.metrics.rows_deleted.inc_by(removed);
                }
            }
        }
        Ok(())
    }

    /// Rolled-up samples `(series id, bucket start, value)` of `ids` in
    /// `[start, end]`: 1-minute buckets where kept, 1-hour ones before.
    pub async fn read(
        &self,
        ids: &[i64],
        start: i64,
        end: i64,
        pick: Pick,
        limit: usize,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        let minute_from = vigil_common::now_ms().saturating_sub(ms(self.config.retention_1m));
        let mut out = Vec::new();
        let parts = [
            (Resolution::Hour, start, end.min(minute_from - 1)),
            (Resolution::Minute, start.max(minute_from), end),
        ];
        for (res, from, to) in parts {
            if from > to || ids.is_empty() {
                continue;
            }
            let budget = if limit == 0 {
                0
            } else {
                limit.saturating_sub(out.len()).max(1)
            };
            let buckets = self.store.read_rollup(res, ids, from, to, budget).await?;
            out.extend(buckets.iter().map(|b| (b.series_id, b.ts, pick.value(b))));
            if limit > 0 && out.len() > limit {
                break;
            }
        }
        Ok(out)
    }

    /// Those of `ids` with rolled-up data in `[start, end]` (by the 1-hour
    /// rollup, which covers every range the 1-minute one does).
    pub async fn series_with_data(
        &self,
        ids: &[i64],
        start: i64,
        end: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let hour = Resolution::Hour.ms();
        let buckets = self
            .store
            .read_rollup(Resolution::Hour, ids, start.div_euclid(hour) * hour, end, 0)
            .await?;
        let mut found: Vec<i64> = buckets.iter().map(|b| b.series_id).collect();
        found.dedup();
        Ok(found)
    }

    /// Runs [`Rollups::run_once`] and trims the head every
    /// `maintenance_interval` until cancelled.
    pub fn spawn(self: Arc<Self>, head: Arc<Head>) -> JoinHandle<()> {
        tokio::spawn(async move {
            // The first run waits an interval: the store is migrated by then.
            let every = self.config.maintenance_interval;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = vigil_common::now_ms();
                head.trim(now);
                if let Err(e) = self.run_once(now).await {
                    warn!(error = %e, "rollup / retention run failed; retrying next interval");
                }
            }
        })
    }
}
