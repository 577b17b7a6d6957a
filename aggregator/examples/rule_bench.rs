//! Rule evaluation benchmark for issue 5's target: one evaluation round of
//! 500 rules over 10,000 series in the head stays under 100 ms (a benchmark,
//! not a timed test; results go in docs/benchmarks.md).
//!
//! Writes `--series` gauges (`m0`..`m49`, 50 metrics, labels `host` and
//! `instance`) with 10 minutes of 15 s samples through the head, then loads
//! `--rules` rules in groups of 50 (alerting rules of three shapes and
//! recording rules; see `rule_file`) and times `Evaluator::round_at`:
//! queries over the production source (head + store), the state machines,
//! the state write and the (null) sink, as in production.
//!
//! ```text
//! cargo run --release -p vigil-aggregator --example rule_bench
//! cargo run --release -p vigil-aggregator --example rule_bench -- --database postgres://postgres@127.0.0.1:5432/bench
//! # smoke (CI): target/debug/examples/rule_bench --rules 20 --series 200 --rounds 2
//! ```
//! Without `--database`, a SQLite file in a temporary folder is used.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vigil_aggregator::alert::config::AlertingConfig;
use vigil_aggregator::alert::eval::Evaluator;
use vigil_aggregator::alert::rules;
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::query::{Engine, Value};
use vigil_aggregator::store::{self, config::StorageConfig};
use vigil_common::{Label, Point, Series, now_ms};

// The aggregator binary's allocator (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// postgres://... or sqlite:PATH (default: SQLite in a temporary folder).
    #[arg(long)]
    database: Option<String>,
    #[arg(long, default_value_t = 500)]
    rules: usize,
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Timed rounds (after one warm-up round).
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Start each round while the previous round's recording outputs are
    /// still being written (default: wait for them, untimed, as production
    /// rounds 15 s apart do; the CPU figure counts the writes either way).
    #[arg(long)]
    back_to_back: bool,
}

const STEP: i64 = 15_000;
const METRICS: usize = 50;
const GROUP_SIZE: usize = 50;

/// CPU time (user + system) this process used so far, from /proc (Linux;
/// `None` elsewhere). Clock ticks are 1/100 s on Linux.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Rule `i` of the benchmark, cycling through four shapes: a threshold on
/// one metric (about 5 % of its series above it), a per-host average, a
/// `for` over a rate-like comparison, and a recording rule.
fn rule_yaml(i: usize, out: &mut String) {
    let m = i % METRICS;
    let _ = match i % 4 {
        0 => writeln!(
            out,
            "  - alert: High{i}\n    expr: m{m} > 95\n    labels: {{severity: warning, team: platform}}\n    annotations: {{summary: \"{{{{ $labels.instance }}}} at {{{{ $value }}}}\"}}"
        ),
        1 => writeln!(
            out,
            "  - alert: HostAvg{i}\n    expr: avg by (host) (m{m}) > 60\n    for: 1m\n    labels: {{severity: critical}}"
        ),
        2 => writeln!(
            out,
            "  - alert: Delta{i}\n    expr: max_over_time(m{m}[5m]) - min_over_time(m{m}[5m]) > 99\n    labels: {{severity: info}}"
        ),
        _ => writeln!(
            out,
            "  - record: host:m{m}:sum{i}\n    expr: sum by (host) (m{m})"
        ),
    };
}

fn rule_file(n: usize) -> String {
    let mut out = String::from("groups:\n");
    for g in 0..n.div_ceil(GROUP_SIZE) {
        let _ = writeln!(out, "- name: g{g}\n  rules:");
        for i in g * GROUP_SIZE..((g + 1) * GROUP_SIZE).min(n) {
            rule_yaml(i, &mut out);
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
    let inner = store::open(&url, Path::new("."), 8)?;
    let metrics = Arc::new(Metrics::new());
    let layers = store::layered(inner, &StorageConfig::default(), metrics.storage.clone());
    layers.store.migrate().await?; // schema + (empty) head

    // 10 minutes of samples, ending now, through the head.
    let end = now_ms() / STEP * STEP;
    let start = end - 40 * STEP;
    let t = Instant::now();
    let per_metric = args.series.div_ceil(METRICS);
    let mut stored = 0;
    for chunk in (0..args.series).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Series> = chunk
            .iter()
            .map(|&i| {
                let (m, k) = (i % METRICS, i / METRICS);
                Series::new(
                    format!("m{m}"),
                    vec![
                        Label::new("host", format!("host-{}", k % 100)),
                        Label::new("instance", format!("i{k}")),
                    ],
                    (0..=40)
                        .map(|s| Point {
                            timestamp_ms: start + s * STEP,
                            // Spread 0..100 over a metric's series.
                            value: (k * 100 / per_metric.max(1)) as f64 + (s % 2) as f64 * 0.5,
                        })
                        .collect(),
                )
            })
            .collect();
        stored += layers.store.write_series(&batch).await?;
    }
    let (hs, hp) = layers.head.size();
    println!(
        "loaded {stored} samples ({} series) in {:.1} s; head: {hs} series, {hp} samples",
        args.series,
        t.elapsed().as_secs_f64()
    );

    std::fs::write(dir.path().join("rules.yml"), rule_file(args.rules))?;
    let config = AlertingConfig {
        rule_files: vec!["rules.yml".into()],
        ..AlertingConfig::default()
    };
    let engine = Arc::new(Engine::default());
    let evaluator = Evaluator::new(
        layers.store.clone(),
        layers.source.clone(),
        engine.clone(),
        Arc::new(vigil_aggregator::alert::NullSink),
        metrics.alerting.clone(),
        config,
        dir.path().to_path_buf(),
    );
    let loaded = evaluator
        .reload()
        .await
        .map_err(|e| anyhow::anyhow!("rules: {}", e.0.join("; ")))?;
    anyhow::ensure!(loaded.rules == args.rules, "loaded {} rules", loaded.rules);
    // Sanity: the generated file is what the loader accepts.
    rules::load_files(&[dir.path().join("rules.yml")]).map_err(|e| anyhow::anyhow!("{e}"))?;

    // First round: every alert is new (pending/firing rows and history written).
    let t = Instant::now();
    evaluator.round_at(end).await?;
    let first = t.elapsed();
    let active = evaluator.active().len();
    println!(
        "first round (all alerts new, state written): {:.1} ms, {active} active alerts",
        first.as_secs_f64() * 1e3
    );
    anyhow::ensure!(active > 0, "no alert fired from the loaded data");
    let recorded = engine
        .instant(layers.source.as_ref(), "host:m3:sum3", end)
        .await?;
    anyhow::ensure!(
        matches!(&recorded, Value::Vector(v) if !v.is_empty()),
        "the recording rule's output is not queryable"
    );

    let cpu_before = cpu_time();
    let mut times = Vec::with_capacity(args.rounds);
    for r in 0..args.rounds {
        // Within the samples' lookback: the same data, steady state (the
        // `for: 1m` alerts fire during these rounds).
        let at = end + (r as i64 + 1) * 1_000;
        let t = Instant::now();
        evaluator.round_at(at).await?;
        times.push(t.elapsed());
        if !args.back_to_back {
            layers.store.flush().await?;
        }
    }
    // Recording output is written behind the rounds: count its CPU too.
    let t = Instant::now();
    layers.store.flush().await?;
    let flush = t.elapsed();
    let cpu = cpu_before
        .zip(cpu_time())
        .map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e3 / args.rounds.max(1) as f64);
    times.sort();
    if let Some(cpu) = cpu {
        println!("CPU time per round (all threads, recording writes included): {cpu:.1} ms");
    }
    println!(
        "recording output still queued after the last round: written in {:.1} ms",
        flush.as_secs_f64() * 1e3
    );
    println!(
        "round of {} rules over {} series{}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} rounds, {} active alerts)",
        args.rules,
        args.series,
        if args.back_to_back {
            " (back to back)"
        } else {
            ""
        },
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        args.rounds,
        evaluator.active().len(),
    );
    Ok(())
}
