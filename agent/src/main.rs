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

    let (Command::Run { config: path } | Command::CheckConfig { config: path }) = &cli.command;
    let config = match load(path) {
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
