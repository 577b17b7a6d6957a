//! `vigil-certs`: create the CA, the aggregator's certificate, and agents'
//! certificates and signing keys.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vigil-certs",
    version,
    about = "Create Vigil's CA, server and agent certificates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a certificate authority (ca.crt, ca.key) in DIR.
    Ca {
        #[arg(long)]
        dir: PathBuf,
        /// Common name of the CA.
        #[arg(long, default_value = "Vigil CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue the aggregator's certificate (server.crt, server.key).
    Server {
        #[arg(long)]
        dir: PathBuf,
        /// Folder holding ca.crt and ca.key (default: DIR).
        #[arg(long)]
        ca_dir: Option<PathBuf>,
        /// DNS name or IP address the agents connect to; repeat for several.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: u32,
        #[arg(long)]
        force: bool,
    },
    /// Issue an agent's client certificate and Ed25519 signing key; prints the public key.
    Agent {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        ca_dir: Option<PathBuf>,
        /// The agent id (the certificate's common name).
        #[arg(long)]
        agent_id: String,
        #[arg(long, default_value_t = 825)]
        days: u32,
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ca {
            dir,
            name,
            days,
            force,
        } => vigil_certs::create_ca(&dir, &name, days, force)
            .map(|()| format!("created {}", dir.join("ca.crt").display())),
        Command::Server {
            dir,
            ca_dir,
            names,
            days,
            force,
        } => {
            let ca_dir = ca_dir.unwrap_or_else(|| dir.clone());
            vigil_certs::issue_server(&ca_dir, &dir, &names, days, force)
                .map(|()| format!("created {}", dir.join("server.crt").display()))
        }
        Command::Agent {
            dir,
            ca_dir,
            agent_id,
            days,
            force,
        } => {
            let ca_dir = ca_dir.unwrap_or_else(|| dir.clone());
            vigil_certs::issue_agent(&ca_dir, &dir, &agent_id, days, force).map(|public| {
                let p = vigil_certs::AgentPaths::new(&dir, &agent_id);
                format!(
                    "created {} and {}\npublic key: {public}\nregister it with: vigil-aggregator register-agent --config <aggregator.toml> --agent-id {agent_id} --public-key {public}",
                    p.cert.display(),
                    p.signing_key.display()
                )
            })
        }
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil-certs: {e}");
            ExitCode::from(1)
        }
    }
}
