//! `vigil-aggregator`: validate the config before binding anything, start,
//! wait for SIGINT/SIGTERM, drain.
#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc: rule evaluation and queries allocate
/// many small label sets and sample vectors across threads; glibc's malloc
/// and free were ~40 % of an evaluation round (aggregator/examples/rule_bench.rs,
/// docs/benchmarks.md), mimalloc's ~20 %.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod enroll_cli;
mod supervise;
mod users_cli;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use vigil_aggregator::audit::{self, Action};
use vigil_aggregator::config::{Config, Loaded};
use vigil_aggregator::http::access::{ANONYMOUS, Scope};
use vigil_aggregator::{auth, quickstart, store};
use vigil_common::config::EXIT_CONFIG;

#[derive(Parser)]
#[command(
    name = "vigil-aggregator",
    version,
    about = "Vigil's aggregator: ingest, storage, API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the aggregator.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file and report every problem.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// First run on a fresh machine: certificates, keys, admin token, then the
    /// aggregator and a local agent.
    Quickstart {
        #[arg(long, default_value = "vigil-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen_http: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:4433")]
        listen_quic: SocketAddr,
        /// PostgreSQL URL (default: SQLite in the data folder).
        #[arg(long, env = "DATABASE_URL")]
        database: Option<String>,
        /// Do not start a local agent.
        #[arg(long)]
        no_agent: bool,
        /// Also start the demo ML prediction API (vigil-demo-api) and have the
        /// local agent scrape and probe it.
        #[arg(long)]
        demo: bool,
        /// Where the demo API listens (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8000")]
        demo_listen: SocketAddr,
    },
    /// Register (or re-key) an agent's Ed25519 public key.
    RegisterAgent {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        agent_id: String,
        /// 64 hex characters, as `vigil-certs agent` prints.
        #[arg(long)]
        public_key: String,
    },
    /// Revoke an agent: its batches are rejected from then on.
    RevokeAgent {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        agent_id: String,
    },
    /// One-time agent enrollment tokens (`vigil-agent enroll --token ...`).
    EnrollToken {
        #[command(subcommand)]
        command: EnrollTokenCommand,
    },
    /// Create (or replace) a named API token and print it (shown only once).
    CreateToken {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// read, write or admin (`--role` is an alias).
        #[arg(long, alias = "role", default_value = "admin")]
        scope: String,
    },
    /// Revoke a named API token: it is rejected from then on.
    RevokeToken {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// List API tokens: name, scope, created, revoked (never the secret).
    ListTokens {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create a dashboard user. The password is read from stdin when it is
    /// piped, else generated and printed (shown only once).
    CreateUser {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Set a dashboard user's password (read from stdin when piped, else
    /// generated and printed once); the user's sessions end.
    ResetPassword {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Validate rule files and list every problem (exit 64 if any).
    CheckRules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule unit tests (promtool's test-file format). Exit 0: all
    /// passed, 1: a test failed, 64: a file is unreadable or invalid.
    TestRules {
        /// Test files; their `rule_files` are relative to each file.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum EnrollTokenCommand {
    /// Create a token and print it (shown only once) with the command to
    /// run on the agent's host.
    Create {
        #[arg(long)]
        config: PathBuf,
        /// How long the token stays usable, e.g. 1h, 30m, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Bind the token to this agent id (it may then also re-key an
        /// existing agent of that id).
        #[arg(long)]
        host_name: Option<String>,
    },
    /// List tokens: id, host name, created, expires, state (never the secret).
    List {
        #[arg(long)]
        config: PathBuf,
    },
    /// Revoke an unused token by its id (from `list`).
    Revoke {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: String,
    },
}

impl EnrollTokenCommand {
    fn config(&self) -> &Path {
        match self {
            EnrollTokenCommand::Create { config, .. }
            | EnrollTokenCommand::List { config }
            | EnrollTokenCommand::Revoke { config, .. } => config,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    vigil_common::tls::install_default_provider();
    match &cli.command {
        Command::TestRules { files } => return test_rules(files),
        Command::CheckRules { files } => return check_rules(files),
        _ => {}
    }

    // Config first: a bad file must exit 64 before any runtime or port exists.
    let loaded = match &cli.command {
        Command::Run { config }
        | Command::CheckConfig { config }
        | Command::RegisterAgent { config, .. }
        | Command::RevokeAgent { config, .. }
        | Command::CreateToken { config, .. }
        | Command::RevokeToken { config, .. }
        | Command::ListTokens { config }
        | Command::CreateUser { config, .. }
        | Command::ResetPassword { config, .. } => match load(config) {
            Ok(l) => Some(l),
            Err(code) => return code,
        },
        Command::EnrollToken { command } => match load(command.config()) {
            Ok(l) => Some(l),
            Err(code) => return code,
        },
        Command::Quickstart { .. } | Command::TestRules { .. } | Command::CheckRules { .. } => None,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil-aggregator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match (cli.command, loaded) {
            (Command::CheckConfig { config }, _) => {
                println!("{}: config OK", config.display());
                Ok(())
            }
            (Command::Run { .. }, Some(loaded)) => run(loaded).await,
            (
                Command::RegisterAgent {
                    agent_id,
                    public_key,
                    ..
                },
                Some(loaded),
            ) => register_agent(loaded, &agent_id, &public_key).await,
            // A running aggregator on this database closes the agent's
            // connections within a second (ingest/live.rs).
            (Command::RevokeAgent { agent_id, .. }, Some(loaded)) => {
                let store = open_store(&loaded).await?;
                // Audited (once) by revoke_agent itself.
                let revoked = vigil_aggregator::ingest::live::revoke_agent(
                    store.as_ref(),
                    None,
                    &agent_id,
                    audit::Actor::cli(),
                    None,
                )
                .await?;
                if revoked.is_none() {
                    bail!("agent {agent_id:?} is not registered");
                }
                println!("revoked agent {agent_id}");
                Ok(())
            }
            (Command::EnrollToken { command }, Some(loaded)) => {
                enroll_cli::run(loaded, command).await
            }
            (Command::CreateToken { name, scope, .. }, Some(loaded)) => {
                create_token(loaded, &name, &scope).await
            }
            (Command::RevokeToken { name, .. }, Some(loaded)) => {
                let store = open_store(&loaded).await?;
                if !store.revoke_token(&name).await? {
                    bail!("no live token named {name:?} (see list-tokens)");
                }
                cli_audit(&store, Action::TokenRevoke, &name, serde_json::json!({})).await;
                println!("revoked token {name}");
                Ok(())
            }
            (Command::ListTokens { .. }, Some(loaded)) => list_tokens(loaded).await,
            (Command::CreateUser { name, role, .. }, Some(loaded)) => {
                users_cli::create_user(loaded, &name, &role).await
            }
            (Command::ResetPassword { name, .. }, Some(loaded)) => {
                users_cli::reset_password(loaded, &name).await
            }
            (
                Command::Quickstart {
                    data_dir,
                    listen_http,
                    listen_quic,
                    database,
                    no_agent,
                    demo,
                    demo_listen,
                },
                _,
            ) => {
                let opts = quickstart::Options {
                    data_dir,
                    listen_http,
                    listen_quic,
                    database,
                };
                run_quickstart(opts, no_agent, demo.then_some(demo_listen)).await
            }
            _ => bail!("internal: command without its config"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-aggregator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `check-rules`: every problem of every file, as the aggregator would
/// report them on load or reload.
fn check_rules(files: &[PathBuf]) -> ExitCode {
    match vigil_aggregator::alert::rules::load_files(files) {
        Ok(set) => {
            let rules: usize = set.groups.iter().map(|g| g.rules.len()).sum();
            println!(
                "rules OK: {} file(s), {} group(s), {rules} rule(s)",
                files.len(),
                set.groups.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid rules:\n{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `test-rules`: no config, no ports; a small runtime for the engine.
fn test_rules(files: &[PathBuf]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil-aggregator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let code = runtime.block_on(vigil_aggregator::alert::unittest::run_files(
        files, &mut out,
    ));
    ExitCode::from(code)
}

fn load(path: &Path) -> Result<Loaded, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprintln!("{}: invalid configuration:\n{errors}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn open_store(loaded: &Loaded) -> Result<std::sync::Arc<dyn store::Store>> {
    let db = &loaded.config.database;
    let store = store::open(&db.url, &loaded.base_dir, db.max_connections)?;
    store.migrate().await.context("cannot open the database")?;
    Ok(store)
}

/// Records a change made by a command in the audit log (as the local user).
pub(crate) async fn cli_audit(
    store: &std::sync::Arc<dyn store::Store>,
    action: Action,
    target: &str,
    details: serde_json::Value,
) {
    audit::note(
        &store.db(),
        audit::Event::new(audit::Actor::cli(), action, target).details(details),
    )
    .await;
}

async fn register_agent(loaded: Loaded, agent_id: &str, public_key: &str) -> Result<()> {
    if !vigil_certs::is_valid_agent_id(agent_id) {
        bail!("invalid agent id {agent_id:?}");
    }
    let key = vigil_common::sign::public_key_from_hex(public_key)?;
    let store = open_store(&loaded).await?;
    store.register_agent(agent_id, key.as_bytes()).await?;
    cli_audit(
        &store,
        Action::AgentRegister,
        agent_id,
        serde_json::json!({"public_key": public_key.to_ascii_lowercase()}),
    )
    .await;
    println!("registered agent {agent_id}");
    Ok(())
}

async fn create_token(loaded: Loaded, name: &str, scope: &str) -> Result<()> {
    let scope: Scope = scope.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if name.is_empty() || name == ANONYMOUS || name.chars().any(char::is_control) {
        bail!("invalid token name {name:?}");
    }
    let store = open_store(&loaded).await?;
    let token = auth::new_token().map_err(|_| anyhow::anyhow!("random failed"))?;
    store
        .put_token(name, &auth::token_hash(&token), scope.as_str())
        .await?;
    // The scope only: the token itself is printed once and never stored.
    cli_audit(
        &store,
        Action::TokenCreate,
        name,
        serde_json::json!({"scope": scope.as_str()}),
    )
    .await;
    println!("{token}");
    Ok(())
}

async fn list_tokens(loaded: Loaded) -> Result<()> {
    let store = open_store(&loaded).await?;
    let when = |ms: i64| {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<6} {:<21} REVOKED",
        "NAME", "SCOPE", "CREATED"
    )?;
    for t in store.tokens().await? {
        let revoked = t.revoked_at_ms.map_or_else(|| "-".to_string(), when);
        writeln!(
            out,
            "{:<24} {:<6} {:<21} {revoked}",
            t.name,
            t.role,
            when(t.created_at_ms)
        )?;
    }
    Ok(())
}

async fn run(loaded: Loaded) -> Result<()> {
    let signals = Signals::install()?;
    let running = vigil_aggregator::start(loaded).await?;
    signals.wait().await;
    running.shutdown().await;
    Ok(())
}

async fn run_quickstart(
    opts: quickstart::Options,
    no_agent: bool,
    demo: Option<SocketAddr>,
) -> Result<()> {
    let signals = Signals::install()?;
    let setup = quickstart::prepare(&opts)?;
    let loaded = Config::load(&setup.aggregator_config)
        .map_err(|e| anyhow::anyhow!("generated config is invalid:\n{e}"))?;
    let backend = if opts.database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let running = vigil_aggregator::start(loaded).await?;
    if !running.wait_store_ready(Duration::from_secs(30)).await {
        running.shutdown().await;
        bail!("the database did not become reachable within 30 s");
    }
    let token = quickstart::register(&setup, &opts.data_dir, running.state.store.as_ref()).await?;
    let admin = quickstart::ensure_admin_user(running.state.store.as_ref()).await?;
    let demo = match demo {
        Some(addr) if addr.port() == 0 => Some(free_port(addr)?),
        other => other,
    };
    quickstart::write_agent_config(&setup, running.quic_addr, demo)?;

    let http = quickstart::connectable(running.http_addr);
    let token_path = setup.token_path.display();
    // Errors ignored: a closed stdout (`| head`) must not take Vigil down.
    let _ = writeln!(
        std::io::stdout().lock(),
        "Vigil is running ({backend}).\n  \
         Dashboard / API : http://{http}/\n  \
         Agent ingest    : {quic} (QUIC, mutual TLS)\n  \
         Data folder     : {data}\n  \
         Admin token     : {token}\n                    \
         (also in {token_path})\n  \
         Try             : curl -H \"Authorization: Bearer $(cat {token_path})\" http://{http}/api/v1/hosts\n  \
         Dashboard login : {login}",
        quic = running.quic_addr,
        data = opts.data_dir.display(),
        login = match &admin {
            quickstart::AdminUser::Created { password } => format!(
                "user admin, password {password}\n                    \
                 (shown only this once; only its hash is stored)"
            ),
            quickstart::AdminUser::Exists => format!(
                "user admin exists (password unchanged; to set a new one: \
                 vigil-aggregator reset-password --config {} --name admin)",
                setup.aggregator_config.display()
            ),
        },
    );

    let mut children = Vec::new();
    if let Some(addr) = demo {
        let _ = writeln!(
            std::io::stdout().lock(),
            "  Demo API        : http://{}/predict (knobs: POST /admin/knobs)",
            quickstart::connectable(addr)
        );
        children.push(supervise::spawn(
            "demo API",
            supervise::sibling_binary("vigil-demo-api"),
            vec!["--listen".into(), addr.to_string().into()],
        ));
    }
    if !no_agent {
        children.push(supervise::spawn(
            "local agent",
            supervise::sibling_binary("vigil-agent"),
            vec![
                "run".into(),
                "--config".into(),
                setup.agent_config.clone().into_os_string(),
            ],
        ));
    }
    signals.wait().await;
    // The agent first (it drains into the still-running aggregator).
    for child in children.into_iter().rev() {
        child.stop().await;
    }
    running.shutdown().await;
    Ok(())
}

/// `addr` with a port the OS reports free right now.
fn free_port(addr: SocketAddr) -> Result<SocketAddr> {
    let probe = std::net::TcpListener::bind(addr)
        .with_context(|| format!("no free port for the demo API on {addr}"))?;
    Ok(probe.local_addr()?)
}

/// SIGINT and SIGTERM handlers, installed before anything starts so a signal
/// during start-up still leads to a clean shutdown.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
