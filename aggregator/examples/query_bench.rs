//! Query benchmark for issue 4's performance targets (a benchmark, not a
//! timed test; results go in docs/benchmarks.md).
//!
//! Loads `--series` counters (default 1,000) x `--hours` (24) of 15 s samples
//! through `Store::write_series`, then times, with the production source
//! (head + store) and the PromQL engine:
//! (a) `query_range` of one series over 24 h at a 60 s step;
//! (b) `sum by (host) (rate(x[5m]))` over all series for 1 h at a 15 s step,
//!     for the last hour (served by the head) and for an hour 12 h ago
//!     (served by the database);
//! then the first rollup build over the loaded data.
//!
//! ```text
//! cargo run --release --example query_bench -- --database postgres://postgres@127.0.0.1:5432/bench
//! cargo run --release --example query_bench -- --database sqlite:/tmp/bench.db
//! ```
//! The PostgreSQL database must exist; the tables are created. Loading is
//! idempotent, so a second run against the same database only re-checks.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use vigil_aggregator::metrics::StorageMetrics;
use vigil_aggregator::query::{Engine, Value};
use vigil_aggregator::store::{self, config::StorageConfig};
use vigil_common::{Label, Point, Series, now_ms};

#[derive(Parser)]
struct Args {
    /// postgres://... or sqlite:PATH
    #[arg(long)]
    database: String,
    #[arg(long, default_value_t = 1000)]
    series: usize,
    #[arg(long, default_value_t = 24)]
    hours: i64,
    /// Timed runs per query.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Skip loading (the data is already there from a run in the same hour).
    #[arg(long)]
    no_load: bool,
}

const STEP: i64 = 15_000;
const HOUR: i64 = 3_600_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Times `f`; fails if it returns no points where the loaded data says it must
/// (the smoke run in CI relies on this).
async fn time<F, Fut>(
    what: &str,
    iterations: usize,
    expect_data: bool,
    mut f: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let points = f().await?; // warm-up, and a sanity figure
    anyhow::ensure!(
        points > 0 || !expect_data,
        "{what}: no points returned from loaded data"
    );
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        f().await?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({iterations} runs, {points} points returned)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}

fn points(v: &Value) -> usize {
    match v {
        Value::Matrix(m) => m.iter().map(|s| s.samples.len()).sum(),
        Value::Vector(v) => v.len(),
        _ => 1,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Data ends at the start of the current hour, so reruns in the same hour
    // see the same timestamps.
    let end = now_ms().div_euclid(HOUR) * HOUR;
    let start = end - args.hours * HOUR;

    let inner = store::open(&args.database, Path::new("."), 8)?;
    inner.migrate().await?;
    if !args.no_load {
        let t = Instant::now();
        let mut stored = 0u64;
        // 100 series x 1 hour (24,000 samples) per write.
        for chunk_start in (0..args.series).step_by(100) {
            for h in 0..args.hours {
                let batch: Vec<Series> = (chunk_start..(chunk_start + 100).min(args.series))
                    .map(|i| {
                        let t0 = start + h * HOUR;
                        Series::new(
                            "x",
                            vec![
                                Label::new("host", format!("host-{}", i % 50)),
                                Label::new("instance", format!("i{i}")),
                            ],
                            (0..HOUR / STEP)
                                .map(|k| {
                                    let ts = t0 + k * STEP;
                                    Point {
                                        timestamp_ms: ts,
                                        value: ((ts - start) / STEP) as f64 * (1 + i % 7) as f64,
                                    }
                                })
                                .collect(),
                        )
                    })
                    .collect();
                stored += inner.write_series(&batch).await?;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "loaded {stored} new samples ({} series x {} h) in {secs:.1} s ({:.0} samples/s)",
            args.series,
            args.hours,
            stored as f64 / secs
        );
    }

    let config = StorageConfig::default();
    let layers = store::layered(inner, &config, StorageMetrics::default());
    let t = Instant::now();
    layers.store.migrate().await?; // warms the head
    let (hs, hp) = layers.head.size();
    println!(
        "head warmed: {hs} series, {hp} samples in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let engine = Engine::default();
    let source = layers.source.clone();

    let one = r#"x{instance="i7"}"#;
    time(
        &format!("(a) {one} over {} h at 60 s", args.hours),
        args.iterations,
        true,
        || async {
            let v = engine
                .range(source.as_ref(), one, start, end, 60_000)
                .await?;
            Ok(points(&v))
        },
    )
    .await?;
    let agg = "sum by (host) (rate(x[5m]))";
    time(
        "(b) sum by (host) (rate(x[5m])), last 1 h at 15 s (head)",
        args.iterations,
        true,
        || async {
            let v = engine
                .range(source.as_ref(), agg, end - HOUR, end, STEP)
                .await?;
            Ok(points(&v))
        },
    )
    .await?;
    let old_end = end - 12 * HOUR;
    time(
        "(b') the same for an hour 12 h ago (database)",
        args.iterations,
        args.hours >= 13,
        || async {
            let v = engine
                .range(source.as_ref(), agg, old_end - HOUR, old_end, STEP)
                .await?;
            Ok(points(&v))
        },
    )
    .await?;

    // Rollups over everything loaded (the first maintenance run after a
    // backfill), then one steady-state run.
    let t = Instant::now();
    layers.rollups.run_once(now_ms()).await?;
    println!(
        "rollups built (1m and 1h over {} h of {} series) in {:.1} s",
        args.hours,
        args.series,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    layers.rollups.run_once(now_ms()).await?;
    println!(
        "steady-state maintenance run in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
