//! `vigil-agent run|check-config --config FILE`.
//!
//! Validate the whole config before anything starts (every problem printed,
//! exit 64), run until SIGINT/SIGTERM, then stop collectors and deliver from
//! the spool for at most `shutdown.drain_timeout` (the rest stays spooled).
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use vigil_agent::{Agent, AgentConfig, AgentError};
use vigil_common::config::EXIT_CONFIG;

#[derive(Parser)]
#[command(name = "vigil-agent", version, about = "Vigil's host agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Collect metrics and push them to the aggregator until stopped.
    Run {
        /// The agent's TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file (and the files it names), then exit.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Enroll this host with a one-time token: generate the TLS and signing
    /// keys here, have the aggregator sign the certificate and register the
    /// key, write the files and the config.
    Enroll {
        /// The token `vigil-aggregator enroll-token create` printed.
        #[arg(long)]
        token: String,
        /// The aggregator's QUIC address, HOST:PORT.
        #[arg(long)]
        aggregator: String,
        /// The Vigil CA certificate (PEM) to verify the aggregator with.
        #[arg(
            long,
            conflicts_with = "ca_fingerprint",
            required_unless_present = "ca_fingerprint"
        )]
        ca_cert: Option<PathBuf>,
        /// Or the CA certificate's SHA-256 fingerprint (as enroll-token create prints it).
        #[arg(long)]
        ca_fingerprint: Option<String>,
        /// Where the keys, certificates and config go.
        #[arg(long, default_value = "/etc/vigil")]
        dir: PathBuf,
        /// The config file to write (default DIR/agent.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The agent id to ask for (default: the token's host name, else this host's name).
        #[arg(long)]
        agent_id: Option<String>,
        /// The name on the aggregator's certificate (default: HOST of --aggregator).
        #[arg(long)]
        server_name: Option<String>,
        /// Overwrite existing key, certificate and config files.
        #[arg(long)]
        force: bool,
        /// Time allowed to reach the aggregator and get its answer.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Replace this agent's TLS key, certificate and signing key, authenticated
    /// by the current ones; restart the agent afterwards. Batches signed with
    /// the old key stay accepted for the aggregator's enroll.key_grace.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    vigil_common::tls::install_default_provider();

    let path = match cli.command {
        Command::Run { ref config } | Command::CheckConfig { ref config } => config.clone(),
        Command::Enroll { .. } | Command::Rotate { .. } => return enroll_command(cli.command),
    };
    let config = match load(&path) {
        Some(c) => c,
        None => return ExitCode::from(EXIT_CONFIG),
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            println!("config OK");
            ExitCode::SUCCESS
        }
        Command::Run { .. } => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vigil-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Enroll { .. } | Command::Rotate { .. } => ExitCode::FAILURE,
    }
}

/// `enroll` and `rotate`: one exchange with the aggregator, then files.
fn enroll_command(command: Command) -> ExitCode {
    use vigil_agent::enroll::{self, EnrollOptions, TrustSource};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Enroll {
                token,
                aggregator,
                ca_cert,
                ca_fingerprint,
                dir,
                config,
                agent_id,
                server_name,
                force,
                timeout,
            } => {
                let trust = match (ca_cert, ca_fingerprint) {
                    (Some(file), _) => TrustSource::CaFile(file),
                    (None, Some(fp)) => TrustSource::Fingerprint(fp),
                    // clap requires one of the two.
                    (None, None) => TrustSource::Fingerprint(String::new()),
                };
                let opts = EnrollOptions {
                    token,
                    aggregator,
                    trust,
                    dir,
                    config,
                    agent_id,
                    server_name,
                    force,
                    timeout,
                };
                enroll::enroll(&opts).await.map(|done| {
                    format!(
                        "enrolled as agent {}; config {}\nstart it with: vigil-agent run --config {}",
                        done.agent_id,
                        done.config.display(),
                        done.config.display()
                    )
                })
            }
            Command::Rotate { config, timeout } => {
                enroll::rotate(&config, timeout).await.map(|done| {
                    let until = done
                        .previous_key_valid_until_ms
                        .and_then(|ms| u64::try_from(ms).ok())
                        .map(|ms| {
                            humantime::format_rfc3339_seconds(
                                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                            )
                            .to_string()
                        })
                        .unwrap_or_else(|| "the grace period ends".into());
                    format!(
                        "rotated agent {}: new certificate and signing key written.\n\
                         Restart the agent to use them; batches signed with the old key are \
                         accepted until {until}.",
                        done.agent_id
                    )
                })
            }
            Command::Run { .. } | Command::CheckConfig { .. } => Ok(String::new()),
        }
    });
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config, printing every problem to stderr on failure.
fn load(path: &Path) -> Option<AgentConfig> {
    match AgentConfig::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            // One `- problem` line each, as the aggregator prints them.
            eprintln!(
                "vigil-agent: invalid configuration {}:\n{e}",
                path.display()
            );
            None
        }
    }
}

fn run(config: AgentConfig) -> anyhow::Result<()> {
    // One thread is plenty for an agent that wakes once per interval, and it
    // keeps the footprint small (no worker threads, fewer malloc arenas).
    // Blocking reads (/proc, fsync) still go to tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let drain = config.shutdown.drain_timeout;
        let agent = Agent::start(config).await.context("starting the agent")?;
        let signal = wait_for_signal().await?;
        tracing::info!(%signal, ?drain, "stopping: collectors first, then delivering what is spooled");
        match agent.shutdown(drain).await {
            Ok(()) => Ok(()),
            // Undelivered data at shutdown is worth a warning, not a failed unit.
            Err(e @ AgentError::DrainTimeout { .. }) => {
                tracing::warn!(error = %e, "shutdown incomplete");
                Ok(())
            }
            Err(e) => Err(e).context("shutting down"),
        }
    })
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
