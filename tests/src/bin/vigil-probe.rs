//! `vigil-probe`: one probe agent against a running aggregator that
//! measures freshness (sample created -> acked, -> returned by
//! `/prometheus/api/v1/query`, -> pushed on the dashboard's `/ws/live`) and
//! alert latency (threshold crossing created -> webhook received). Exit 1
//! if any measured sample or crossing was never seen. See docs/loadgen.md.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use vigil_tests::loadgen::fleet;
use vigil_tests::probe::{self, Plan, config};

#[derive(Parser)]
#[command(
    name = "vigil-probe",
    about = "Freshness and alert latency of a Vigil aggregator, measured by a probe agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the probe's rule file and notification config (probe.rules.yml,
    /// probe.notify.yml) for the aggregator to load.
    WriteConfig {
        /// Folder to write them to.
        #[arg(long)]
        dir: PathBuf,
        /// Where `run` will listen for webhooks (the URL goes in the notify config).
        #[arg(long)]
        webhook_listen: SocketAddr,
        /// The probe rule group's evaluation interval.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "250ms")]
        rule_interval: Duration,
    },
    /// Run the probe.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The aggregator's QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    aggregator: SocketAddr,
    /// Name the aggregator's certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// The aggregator's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// An admin API token (`vigil-aggregator create-token --scope admin`).
    #[arg(long, env = "VIGIL_PROBE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the token (e.g. quick start's admin.token).
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Folder with the Vigil CA (`ca.crt`, `ca.key`) that issues the probe's certificate.
    #[arg(long)]
    ca_dir: PathBuf,
    /// Folder for the probe's certificate and keys (reused across runs).
    #[arg(long, default_value = "probe-work")]
    work_dir: PathBuf,
    /// The probe's agent id (its host is `<id>.probe`).
    #[arg(long, default_value = "vigil-probe")]
    id: String,
    /// The aggregator's database (`postgres://...` or `sqlite:PATH`), for `--register`.
    #[arg(long, env = "VIGIL_PROBE_DATABASE")]
    database: Option<String>,
    /// Register the probe's signing key in `--database` first.
    #[arg(long)]
    register: bool,
    /// Address of the webhook receiver (as given to `write-config`).
    #[arg(long, default_value = "127.0.0.1:0")]
    webhook_listen: SocketAddr,
    /// One batch per interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    interval: Duration,
    /// Create each batch at the start of its interval, not at a random
    /// point of it (the phase against the aggregator's tickers then stays fixed).
    #[arg(long)]
    no_jitter: bool,
    /// How long to send batches (after a warm-up batch).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    duration: Duration,
    /// How often to poll /prometheus/api/v1/query.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20ms")]
    poll: Duration,
    /// How long after the last batch samples and crossings may still be seen.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    grace: Duration,
    /// Threshold series crossing in turn (0: do not measure alerts).
    #[arg(long, default_value_t = 3)]
    lanes: usize,
    /// A crossing not notified this long after it was created counts as missed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    alert_timeout: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil-probe: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::WriteConfig {
            dir,
            webhook_listen,
            rule_interval,
        } => config::write(&dir, &config::webhook_url(webhook_listen), rule_interval)
            .with_context(|| format!("writing into {}", dir.display()))
            .map(|()| true),
        Command::Run(args) => rt.block_on(run(*args)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vigil-probe: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    vigil_common::tls::install_default_provider();
    if args.interval.is_zero() || args.poll.is_zero() {
        bail!("--interval and --poll must not be zero");
    }
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("give --token (or VIGIL_PROBE_TOKEN) or --token-file"),
    };
    let ids = vec![args.id.clone()];
    let (ca_dir, work_dir) = (args.ca_dir.clone(), args.work_dir.clone());
    let mut me = tokio::task::spawn_blocking(move || fleet::prepare(&ca_dir, &work_dir, &ids))
        .await??
        .pop()
        .context("no identity")?;
    me.host = format!("{}.probe", args.id);
    me.role = probe::agent::ROLE;
    if args.register {
        let Some(url) = &args.database else {
            bail!("--register needs --database URL");
        };
        let store = vigil_aggregator::store::open(url, &std::env::current_dir()?, 2)
            .with_context(|| format!("database {url}"))?;
        fleet::register(store.as_ref(), std::slice::from_ref(&me)).await?;
    }
    let webhook = tokio::net::TcpListener::bind(args.webhook_listen)
        .await
        .with_context(|| format!("webhook receiver on {}", args.webhook_listen))?;
    let mut plan = Plan::new(args.aggregator, args.http, token);
    plan.server_name = args.server_name;
    plan.interval = args.interval;
    plan.jitter = !args.no_jitter;
    plan.duration = args.duration;
    plan.poll = args.poll;
    plan.grace = args.grace;
    plan.lanes = args.lanes;
    plan.alert_timeout = args.alert_timeout;
    println!(
        "probe {} ({}) -> QUIC {} / HTTP {}, webhook on {}, for {:?}",
        me.id,
        me.host,
        args.aggregator,
        args.http,
        webhook.local_addr()?,
        args.duration
    );
    let report = probe::run(plan, me, webhook).await?;
    print!("{report}");
    println!("{}", report.result_line());
    Ok(report.complete())
}
