//! `vigil-loadgen`: simulates N agents against a running aggregator over the
//! real protocol and reports acked samples/s, ack latency and errors; with
//! `--verify` it fails (exit 1) unless the database holds exactly the acked
//! samples. See docs/loadgen.md.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use vigil_tests::loadgen::{self, Backfill, Mode, Plan, Progress, fleet};

#[derive(Parser)]
#[command(
    name = "vigil-loadgen",
    about = "Simulated agents against a Vigil aggregator"
)]
struct Args {
    /// The aggregator's QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    aggregator: SocketAddr,
    /// Name the aggregator's certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Folder with the Vigil CA (`ca.crt`, `ca.key`) that issues agent certificates.
    #[arg(long)]
    ca_dir: PathBuf,
    /// Folder for the agents' certificates and keys (reused across runs).
    #[arg(long, default_value = "loadgen-work")]
    work_dir: PathBuf,
    /// Simulated agents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Series per agent (one sample each per batch).
    #[arg(long, default_value_t = 300)]
    series: usize,
    /// Agent ids are `<prefix>-00000` ...
    #[arg(long, default_value = "loadgen")]
    prefix: String,
    /// Fixed rate: each agent sends one batch per interval.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "max")]
    interval: Option<Duration>,
    /// Open loop: each agent sends its next batch as soon as an in-flight slot frees.
    #[arg(long)]
    max: bool,
    /// Batches one agent may have unacked at once.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// How long to send (after the backfill, if any).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    duration: Duration,
    /// First send the samples of this much past time at `--interval`
    /// spacing, as fast as `--in-flight` allows (e.g. `2h` fills a 2 h head
    /// in minutes); then run as usual for `--duration` (which may be `0s`).
    #[arg(long, value_parser = humantime::parse_duration, requires = "interval")]
    backfill: Option<Duration>,
    /// Backfill only: points per series in one batch.
    #[arg(long, default_value_t = 1, requires = "backfill")]
    backfill_points: usize,
    /// How long unacked batches may still finish after that.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    drain: Duration,
    /// Ack latencies of batches sent in this first part of the run are not
    /// recorded (connection set-up); everything else counts them.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    warmup: Duration,
    /// The aggregator's database (`postgres://...` or `sqlite:PATH`), for
    /// `--register` and `--verify`.
    #[arg(long, env = "VIGIL_LOADGEN_DATABASE")]
    database: Option<String>,
    /// Register the agents' signing keys in `--database` before sending.
    #[arg(long)]
    register: bool,
    /// Count samples in `--database` before and after; exit 1 unless the
    /// difference equals the samples acked.
    #[arg(long)]
    verify: bool,
    /// Print a progress line this often (0: never).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    progress: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vigil-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    vigil_common::tls::install_default_provider();
    let mode = match (args.interval, args.max) {
        (Some(every), false) if !every.is_zero() => Mode::Interval(every),
        (None, true) => Mode::OpenLoop,
        _ => bail!("give either --interval DURATION (not zero) or --max"),
    };
    if args.agents == 0 || args.series == 0 || args.in_flight == 0 || args.backfill_points == 0 {
        bail!("--agents, --series, --in-flight and --backfill-points must be at least 1");
    }
    if (args.register || args.verify) && args.database.is_none() {
        bail!("--register and --verify need --database URL");
    }
    let store = match &args.database {
        Some(url) => Some(
            vigil_aggregator::store::open(url, &std::env::current_dir()?, 2)
                .with_context(|| format!("database {url}"))?,
        ),
        None => None,
    };

    let ids = fleet::agent_ids(&args.prefix, args.agents);
    let ca_dir = args.ca_dir.clone();
    let work_dir = args.work_dir.clone();
    let agents =
        tokio::task::spawn_blocking(move || fleet::prepare(&ca_dir, &work_dir, &ids)).await??;
    if let (true, Some(store)) = (args.register, &store) {
        fleet::register(store.as_ref(), &agents).await?;
        println!("registered {} agents", agents.len());
    }
    let before = match (args.verify, &store) {
        (true, Some(store)) => Some(loadgen::count_samples(store.as_ref()).await?),
        _ => None,
    };

    let mut plan = Plan::new(mode, args.duration);
    plan.series = args.series;
    plan.in_flight = args.in_flight;
    plan.drain = args.drain;
    plan.warmup = args.warmup;
    plan.server_name = args.server_name.clone();
    plan.backfill = match (args.backfill, mode) {
        (Some(span), Mode::Interval(step)) => Some(Backfill {
            span,
            step,
            points_per_batch: args.backfill_points,
        }),
        _ => None,
    };
    let progress = Arc::new(Progress::default());
    let ticker = (!args.progress.is_zero()).then(|| {
        let progress = progress.clone();
        let every = args.progress;
        tokio::spawn(async move {
            let mut last = 0;
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                let now = progress.samples.load(Ordering::Relaxed);
                println!(
                    "progress: {:.0} samples/s acked, {} batches, {} errors",
                    (now - last) as f64 / every.as_secs_f64(),
                    progress.batches.load(Ordering::Relaxed),
                    progress.errors.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    });
    if let Some(b) = &plan.backfill {
        println!(
            "backfill: {:?} of past samples every {:?}, {} points per series per batch",
            b.span, b.step, b.points_per_batch
        );
    }
    println!(
        "running {} agents x {} series, {:?}, {} in flight, for {:?} (latency of batches sent after {:?})",
        args.agents, args.series, mode, args.in_flight, args.duration, args.warmup
    );
    let mut report = loadgen::run(agents, args.aggregator, plan, progress).await?;
    if let Some(t) = ticker {
        t.abort();
    }
    if let (Some(before), Some(store)) = (before, &store) {
        let after = loadgen::count_samples(store.as_ref()).await?;
        report.set_stored(after.saturating_sub(before));
    }
    print!("{report}");
    println!(
        "RESULT samples_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} errors={} stored_ok={}",
        report.samples_per_second(),
        report.latency(0.5).as_secs_f64() * 1000.0,
        report.latency(0.99).as_secs_f64() * 1000.0,
        report.latency(1.0).as_secs_f64() * 1000.0,
        report.error_count(),
        match report.stored {
            Some(_) => report.verified().to_string(),
            None => "unchecked".into(),
        }
    );
    Ok(!args.verify || report.verified())
}
