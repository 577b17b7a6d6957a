//! Head benchmark (issue 7, memory): what the head costs per sample and how
//! fast it appends and reads, without a database or a network in the way.
//!
//! Fills a [`Head`] with `--series` series of `--samples` samples `--step`
//! apart (2 h at 15 s by default), appended as ingest does (a batch per
//! timestamp, by series id), then reads every series' last 5 minutes and
//! last sample as the rule evaluator does (`Head::probe_ids`). Prints the
//! head's own estimate of its sample bytes per sample, the process RSS,
//! and append / read times.
//!
//! Values (`--values`): `loadgen` is vigil-loadgen's mix (counters growing
//! by random fractional amounts, gauges wandering at random inside bounds:
//! nearly every mantissa bit changes, the hardest case for XOR compression);
//! `integer` are counters growing by whole numbers (request and byte
//! counts); `constant` never change (sizes, limits, `up`).
//!
//! ```text
//! cargo run --release -p vigil-aggregator --example head_bench
//! cargo run --release -p vigil-aggregator --example head_bench -- --series 100000 --values integer
//! # smoke (CI): target/debug/examples/head_bench --series 200 --samples 300
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use vigil_aggregator::metrics::StorageMetrics;
use vigil_aggregator::query::Need;
use vigil_aggregator::query::source::SharedLabels;
use vigil_aggregator::store::head::{Head, Probe, series_labels};
use vigil_common::{Label, Point, Series, now_ms};

// The aggregator binary's allocator (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, ValueEnum)]
enum Values {
    Loadgen,
    Integer,
    Constant,
}

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Samples per series (480 = 2 h at 15 s).
    #[arg(long, default_value_t = 480)]
    samples: usize,
    /// Time between a series' samples.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    step: Duration,
    #[arg(long, value_enum, default_value = "loadgen")]
    values: Values,
}

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// A warmed head with nothing in it: covered from `from` on.
async fn empty_head(head: &Head, from: i64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("empty.db").display());
    let store = vigil_aggregator::store::open(&url, dir.path(), 1)?;
    store.migrate().await?;
    head.warm(store.as_ref(), from + head_window()).await?;
    Ok(())
}

/// The head's duration in the benchmark: long enough for every sample.
fn head_window() -> i64 {
    i64::MAX / 4
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let step = i64::try_from(args.step.as_millis())?;
    let end = now_ms() / 1000 * 1000;
    let start = end - step * (args.samples as i64 - 1);
    let head = Head::new(
        Duration::from_millis(u64::try_from(head_window())?),
        args.series + 1,
        StorageMetrics::default(),
    );
    empty_head(&head, start - head_window()).await?;
    let rss_empty = rss_kib();

    let mut batch: Vec<Series> = (0..args.series)
        .map(|i| {
            Series::new(
                format!("m{}", i % 50),
                vec![
                    Label::new("host", format!("host-{:05}", i / 300)),
                    Label::new("instance", format!("i{i}")),
                ],
                vec![Point {
                    timestamp_ms: start,
                    value: 0.0,
                }],
            )
        })
        .collect();
    let ids: Vec<i64> = (1..=args.series as i64).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut values: Vec<f64> = (0..args.series)
        .map(|i| match args.values {
            Values::Loadgen if i % 3 == 0 => 20.0 + 60.0 * rng.unit(),
            Values::Loadgen => 1e4 * rng.unit(),
            Values::Integer => (i * 1000) as f64,
            Values::Constant => (i % 7) as f64,
        })
        .collect();

    let mut append_times = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let t = start + step * k as i64;
        for (i, (s, v)) in batch.iter_mut().zip(&mut values).enumerate() {
            match args.values {
                // A gauge wandering inside [0, 100].
                Values::Loadgen if i % 3 == 0 => {
                    *v = (*v + 2.0 * (rng.unit() - 0.5)).clamp(0.0, 100.0);
                }
                // A counter growing by 0.5-1.5 x its rate per second.
                Values::Loadgen => *v += (i % 97 + 1) as f64 * 15.0 * (0.5 + rng.unit()),
                Values::Integer => *v += ((i % 97 + 1) * (1 + k % 5)) as f64,
                Values::Constant => {}
            }
            s.points[0] = Point {
                timestamp_ms: t,
                value: *v,
            };
        }
        let t0 = Instant::now();
        // Ingest appends each committed batch; 1,000 series per batch here.
        for (chunk, ids) in batch.chunks(1_000).zip(ids.chunks(1_000)) {
            head.append_ids(chunk, ids);
        }
        append_times.push(t0.elapsed());
    }
    let (series, samples) = head.size();
    let memory = head.memory();
    let rss_full = rss_kib();

    // Reads as the rule evaluator makes them: one selection of 1,000 series
    // at a time, their last 5 minutes, then their last sample.
    let selected: Vec<(i64, SharedLabels)> = batch
        .iter()
        .zip(&ids)
        .map(|(s, &id)| (id, Arc::new(series_labels(s))))
        .collect();
    let mut read = Vec::new();
    let mut latest = Vec::new();
    let mut read_samples = 0usize;
    for _ in 0..3 {
        for sel in selected.chunks(1_000) {
            let t0 = Instant::now();
            let probes = head.probe_ids(sel, end - 300_000, end, Need::All);
            read.push(t0.elapsed());
            read_samples += probes
                .iter()
                .map(|p| match p {
                    Probe::Held(v) => v.len(),
                    _ => 0,
                })
                .sum::<usize>();
            let t0 = Instant::now();
            let probes = head.probe_ids(sel, end - 300_000, end, Need::Last);
            latest.push(t0.elapsed());
            anyhow::ensure!(
                probes
                    .iter()
                    .all(|p| matches!(p, Probe::Held(v) if v.len() == 1)),
                "a series has no last sample"
            );
        }
    }
    anyhow::ensure!(
        series == args.series && samples == args.series * args.samples,
        "the head holds {series} series and {samples} samples"
    );
    anyhow::ensure!(read_samples > 0, "the 5-minute reads returned nothing");
    append_times.sort();
    read.sort();
    latest.sort();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "series {series}  samples {samples}  step {:?}  values {}",
        args.step,
        match args.values {
            Values::Loadgen => "loadgen",
            Values::Integer => "integer",
            Values::Constant => "constant",
        }
    );
    println!(
        "head estimate: samples part {:.1} MiB = {:.2} B/sample; labels {:.1} MiB; index {:.1} MiB",
        memory.samples as f64 / 1_048_576.0,
        memory.samples as f64 / samples as f64,
        memory.labels as f64 / 1_048_576.0,
        memory.index as f64 / 1_048_576.0,
    );
    println!(
        "RSS: empty {:.1} MiB, full {:.1} MiB ({:.2} B/sample over empty, labels included)",
        mib(rss_empty),
        mib(rss_full),
        (rss_full.saturating_sub(rss_empty) * 1024) as f64 / samples as f64
    );
    println!(
        "append of one timestamp for every series: p50 {:?}  p99 {:?}",
        percentile(&append_times, 0.5),
        percentile(&append_times, 0.99)
    );
    println!(
        "read of 1,000 series: last 5 min ({} samples each) p50 {:?} p99 {:?}; last sample p50 {:?} p99 {:?}",
        read_samples / (3 * series.max(1)),
        percentile(&read, 0.5),
        percentile(&read, 0.99),
        percentile(&latest, 0.5),
        percentile(&latest, 0.99)
    );
    Ok(())
}
