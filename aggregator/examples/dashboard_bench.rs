//! Dashboard overview benchmark for issue 6's target: the overview page
//! renders in <= 30 ms with 200 hosts and 50 active alerts (a benchmark, not
//! a timed test; results go in docs/dashboard.md and docs/benchmarks.md).
//!
//! Commits, per host, one batch of 5 minutes of 15 s samples (host metrics;
//! a quarter of the hosts also API and ML-model metrics, a quarter
//! PostgreSQL, a quarter Redis) through the head, loads a rule that fires
//! for `--alerts` of them, then times what `GET /` does: the component
//! tiles (every summary check), the eight key figures, the sorted alerts,
//! the host count, and the tera render.
//!
//! ```text
//! cargo run --release -p vigil-aggregator --example dashboard_bench
//! # smoke (CI): target/debug/examples/dashboard_bench --hosts 20 --alerts 5 --iterations 2
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vigil_aggregator::alert::config::AlertingConfig;
use vigil_aggregator::alert::eval::Evaluator;
use vigil_aggregator::http::AppState;
use vigil_aggregator::http::session::{Role, WebUser};
use vigil_aggregator::http::web::{self, Dashboard, config::DashboardConfig};
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::query::Engine;
use vigil_aggregator::store::{self, config::StorageConfig};
use vigil_common::wire::{BatchHeader, PROTOCOL_VERSION};
use vigil_common::{Label, Point, Series, now_ms};

// The aggregator binary's allocator (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// postgres://... or sqlite:PATH (default: SQLite in a temporary folder).
    #[arg(long)]
    database: Option<String>,
    #[arg(long, default_value_t = 200)]
    hosts: usize,
    /// Hosts whose CPU is above the alert's threshold.
    #[arg(long, default_value_t = 50)]
    alerts: usize,
    /// Timed renders (after one warm-up).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
}

const STEP: i64 = 15_000;
const POINTS: i64 = 20;

fn series(
    name: &str,
    host: &str,
    extra: &[(&str, String)],
    start: i64,
    value: impl Fn(i64) -> f64,
) -> Series {
    let mut labels = vec![Label::new("host", host)];
    for (k, v) in extra {
        labels.push(Label::new(*k, v.clone()));
    }
    Series::new(
        name,
        labels,
        (0..POINTS)
            .map(|s| Point {
                timestamp_ms: start + s * STEP,
                value: value(s),
            })
            .collect(),
    )
}

/// Everything host `i` reports over the last 5 minutes.
fn host_series(i: usize, hot: bool, start: i64) -> (String, Vec<String>, Vec<Series>) {
    let host = format!("host-{i:03}");
    let h = host.as_str();
    let cpu = if hot {
        0.95
    } else {
        0.2 + (i % 50) as f64 / 100.0
    };
    let mut s = vec![
        series("system_cpu_usage_ratio", h, &[], start, |_| cpu),
        series("system_load1", h, &[], start, |k| 1.0 + k as f64 / 10.0),
        series("system_memory_used_bytes", h, &[], start, |_| 4.0e9),
        series("system_memory_total_bytes", h, &[], start, |_| 16.0e9),
        series(
            "system_filesystem_used_bytes",
            h,
            &[("mount", "/".into())],
            start,
            |_| 50.0e9,
        ),
        series(
            "system_filesystem_size_bytes",
            h,
            &[("mount", "/".into())],
            start,
            |_| 100.0e9,
        ),
        series(
            "system_network_receive_bytes_total",
            h,
            &[("device", "eth0".into())],
            start,
            |k| 1e6 * k as f64,
        ),
        series(
            "system_network_transmit_bytes_total",
            h,
            &[("device", "eth0".into())],
            start,
            |k| 5e5 * k as f64,
        ),
    ];
    let role = ["api", "db", "cache", "worker"][i % 4];
    match role {
        "api" => {
            for status in ["200", "500"] {
                let rate = if status == "200" { 100.0 } else { 0.5 };
                s.push(series(
                    "http_requests_total",
                    h,
                    &[
                        ("handler", "/predict".into()),
                        ("method", "POST".into()),
                        ("status", status.into()),
                    ],
                    start,
                    move |k| rate * 15.0 * k as f64,
                ));
            }
            for (le, share) in [("0.05", 0.5), ("0.1", 0.8), ("0.5", 0.99), ("+Inf", 1.0)] {
                s.push(series(
                    "http_request_duration_seconds_bucket",
                    h,
                    &[("handler", "/predict".into()), ("le", le.into())],
                    start,
                    move |k| 1500.0 * share * k as f64,
                ));
            }
            let version = format!("v{}", i % 3);
            for (le, share) in [("0.01", 0.3), ("0.05", 0.9), ("+Inf", 1.0)] {
                s.push(series(
                    "model_inference_duration_seconds_bucket",
                    h,
                    &[
                        ("model", "ranker".into()),
                        ("version", version.clone()),
                        ("le", le.into()),
                    ],
                    start,
                    move |k| 900.0 * share * k as f64,
                ));
            }
            s.push(series(
                "model_predictions_total",
                h,
                &[("model", "ranker".into()), ("version", version.clone())],
                start,
                |k| 900.0 * k as f64,
            ));
            s.push(series(
                "model_accuracy_ratio",
                h,
                &[("model", "ranker".into()), ("version", version.clone())],
                start,
                |_| 0.92,
            ));
            s.push(series(
                "model_drift_score",
                h,
                &[("model", "ranker".into()), ("version", version)],
                start,
                |_| 0.1,
            ));
        }
        "db" => {
            s.push(series("pg_up", h, &[], start, |_| 1.0));
            s.push(series(
                "pg_connections",
                h,
                &[("state", "active".into())],
                start,
                |_| 20.0,
            ));
            s.push(series("pg_max_connections", h, &[], start, |_| 100.0));
            s.push(series("pg_blks_hit_total", h, &[], start, |k| {
                1e5 * k as f64
            }));
            s.push(series("pg_blks_read_total", h, &[], start, |k| {
                1e3 * k as f64
            }));
        }
        "cache" => {
            s.push(series("redis_up", h, &[], start, |_| 1.0));
            s.push(series("redis_keyspace_hits_total", h, &[], start, |k| {
                1e4 * k as f64
            }));
            s.push(series("redis_keyspace_misses_total", h, &[], start, |k| {
                1e2 * k as f64
            }));
            s.push(series("redis_memory_used_bytes", h, &[], start, |_| 1e9));
            s.push(series("redis_memory_max_bytes", h, &[], start, |_| 4e9));
        }
        _ => {}
    }
    (host.clone(), vec![role.to_string()], s)
}

const RULES: &str = "groups:\n- name: bench\n  rules:\n  - alert: HostCpuHot\n    expr: system_cpu_usage_ratio > 0.9\n    labels:\n      severity: critical\n    annotations:\n      summary: \"CPU on {{ $labels.host }}\"\n      runbook_url: https://runbooks.example/cpu\n";

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.iterations > 0 && args.alerts <= args.hosts,
        "--alerts must not exceed --hosts"
    );
    let dir = tempfile::tempdir()?;
    let url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
    let inner = store::open(&url, Path::new("."), 8)?;
    let metrics = Arc::new(Metrics::new());
    let layers = store::layered(inner, &StorageConfig::default(), metrics.storage.clone());
    layers.store.migrate().await?;

    let end = now_ms() / STEP * STEP;
    let start = end - (POINTS - 1) * STEP;
    let t = Instant::now();
    let mut samples = 0;
    for i in 0..args.hosts {
        let (host, roles, batch) = host_series(i, i < args.alerts, start);
        let header = BatchHeader {
            protocol_version: PROTOCOL_VERSION,
            agent_id: format!("agent-{i:03}"),
            boot_id: [1; 16],
            sequence: 1,
            created_at_ms: end,
            host,
            roles,
        };
        samples += layers
            .store
            .commit_batch(&header, &batch)
            .await?
            .samples_stored;
    }
    println!(
        "loaded {samples} samples of {} hosts in {:.1} s",
        args.hosts,
        t.elapsed().as_secs_f64()
    );

    std::fs::write(dir.path().join("rules.yml"), RULES)?;
    let engine = Arc::new(Engine::default());
    let alerting = Arc::new(Evaluator::new(
        layers.store.clone(),
        layers.source.clone(),
        engine.clone(),
        Arc::new(vigil_aggregator::alert::NullSink),
        metrics.alerting.clone(),
        AlertingConfig {
            rule_files: vec!["rules.yml".into()],
            ..AlertingConfig::default()
        },
        dir.path().to_path_buf(),
    ));
    alerting
        .reload()
        .await
        .map_err(|e| anyhow::anyhow!("rules: {}", e.0.join("; ")))?;
    alerting.round_at(now_ms()).await?;
    let active = alerting.active().len();
    anyhow::ensure!(
        active == args.alerts,
        "{active} active alerts, expected {}",
        args.alerts
    );

    let state = AppState {
        mutes: vigil_aggregator::testing::mutes(layers.store.as_ref()),
        store: layers.store,
        metrics,
        store_ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        source: layers.source,
        engine,
        alerting,
    };
    let dashboard = Dashboard::new(DashboardConfig::default());
    let user = WebUser {
        name: "bench".into(),
        role: Role::Operator,
        csrf_token: "0".repeat(64),
    };
    let render = || async {
        let context = web::overview_context(&state, &dashboard, &user)
            .await
            .map_err(|e| anyhow::anyhow!("overview: {e:?}"))?;
        web::render_string("overview.html", &context).map_err(|e| anyhow::anyhow!(e))
    };
    let html = render().await?;
    anyhow::ensure!(
        html.matches("class=\"alert-row\"").count() == args.alerts,
        "the page does not list every alert"
    );
    anyhow::ensure!(html.contains("tile-system"), "no tiles rendered");
    let mut times = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations {
        let t = Instant::now();
        let html = render().await?;
        times.push(t.elapsed());
        std::hint::black_box(html);
    }
    times.sort();
    println!(
        "overview ({} hosts, {active} active alerts, {} KiB of HTML): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms over {} renders",
        args.hosts,
        html.len() / 1024,
        pct(&times, 0.5),
        pct(&times, 0.95),
        pct(&times, 1.0),
        times.len()
    );
    Ok(())
}
