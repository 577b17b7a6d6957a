//! `vigil-aggregator quickstart`: from nothing to a running aggregator and a
//! local agent. Idempotent: certificates, keys and the admin token in the data
//! folder are kept across runs; the two config files are rewritten from the
//! flags each time. On the first run it also creates the dashboard user
//! `admin` (role admin) with a random password that is printed once and
//! stored only as its Argon2id hash ([`ensure_admin_user`]).
//!
//! Data folder layout:
//!
//! ```text
//! aggregator.toml  agent.toml  admin.token (0600)  vigil.db (SQLite)
//! certs/ca.{crt,key}  certs/server.{crt,key}
//! certs/<agent-id>.{crt,key,sign.key,pub}
//! rules/vigil-default.rules.yml (the default rule pack, written once)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use thiserror::Error;
use vigil_certs::{AgentPaths, CertError};

use crate::store::{Store, StoreError};
use crate::{audit, auth};

/// Quick start's choices.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub listen_http: SocketAddr,
    pub listen_quic: SocketAddr,
    /// A PostgreSQL URL; SQLite in the data folder when `None`.
    pub database: Option<String>,
}

/// What quick start set up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub aggregator_config: PathBuf,
    pub agent_config: PathBuf,
    pub agent_id: String,
    pub host: String,
    pub token_path: PathBuf,
}

#[derive(Debug, Error)]
pub enum QuickstartError {
    #[error("certificates: {0}")]
    Certs(#[from] CertError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the system random number generator failed")]
    Random,
    #[error("{0} is not a valid token (delete it to get a new one)")]
    BadToken(PathBuf),
    #[error("admin user: {0}")]
    Account(#[from] crate::http::session::accounts::AccountError),
}

/// The dashboard user quick start creates.
pub const ADMIN_USER: &str = "admin";

/// What [`ensure_admin_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminUser {
    /// Created now with this password (print it once; it is not stored).
    Created { password: String },
    /// It existed already; its password is unchanged.
    Exists,
}

/// Creates the dashboard user `admin` with a random password unless it
/// exists.
pub async fn ensure_admin_user(store: &dyn Store) -> Result<AdminUser, QuickstartError> {
    use crate::http::session::{Role, accounts, password};
    let db = store.db();
    if crate::store::users::user(&db, ADMIN_USER).await?.is_some() {
        return Ok(AdminUser::Exists);
    }
    let password = password::generate().map_err(|_| QuickstartError::Random)?;
    match accounts::create(&db, ADMIN_USER, Role::Admin, &password).await {
        Ok(()) => {
            note(
                store,
                audit::Action::UserCreate,
                ADMIN_USER,
                serde_json::json!({"role": "admin"}),
            )
            .await;
            Ok(AdminUser::Created { password })
        }
        // Created by a concurrent run in between.
        Err(accounts::AccountError::Exists(_)) => Ok(AdminUser::Exists),
        Err(e) => Err(e.into()),
    }
}

/// This host's name, and an agent id derived from it.
pub fn local_identity() -> (String, String) {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let mut id: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if !vigil_certs::is_valid_agent_id(&id) {
        id = format!("agent-{}", id.trim_start_matches(['.', '-']));
    }
    if !vigil_certs::is_valid_agent_id(&id) {
        id = "local-agent".into();
    }
    (host, id)
}

/// Creates the folder, certificates, keys and `aggregator.toml`.
pub fn prepare(opts: &Options) -> Result<Setup, QuickstartError> {
    let dir = &opts.data_dir;
    let certs = dir.join("certs");
    create_private_dir(dir)?;
    create_private_dir(&certs)?;
    let (host, agent_id) = local_identity();

    if !certs.join("ca.crt").exists() {
        vigil_certs::create_ca(&certs, "Vigil quickstart CA", 3650, false)?;
    }
    if !certs.join("server.crt").exists() {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        if vigil_common::tls::is_valid_server_name(&host) && host != "localhost" {
            names.push(host.clone());
        }
        vigil_certs::issue_server(&certs, &certs, &names, 825, false)?;
    }
    if !AgentPaths::new(&certs, &agent_id).signing_key.exists() {
        vigil_certs::issue_agent(&certs, &certs, &agent_id, 825, true)?;
    }

    // The default rule pack, written once: an operator's edits are kept.
    let rules = dir.join("rules");
    create_private_dir(&rules)?;
    let pack = rules.join("vigil-default.rules.yml");
    if !pack.exists() {
        vigil_certs::write_file(&pack, crate::http::exports::DEFAULT_RULES.as_bytes(), false)?;
    }

    let database = opts
        .database
        .clone()
        .unwrap_or_else(|| "sqlite:vigil.db".to_string());
    let aggregator_config = dir.join("aggregator.toml");
    let text = format!(
        "# Written by `vigil-aggregator quickstart`; rewritten on every quickstart run.\n\
         [http]\nlisten = {http}\n\n\
         [quic]\nlisten = {quic}\nca = \"certs/ca.crt\"\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n\n\
         [database]\nurl = {db}\n\n\
         [alerting]\nrule_files = [\"rules/*.yml\"]\n\n\
         # Other hosts join with `vigil-aggregator enroll-token create` (docs/access.md).\n\
         [enroll]\nca_key = \"certs/ca.key\"\n",
        http = toml_str(&opts.listen_http.to_string()),
        quic = toml_str(&opts.listen_quic.to_string()),
        db = toml_str(&database),
    );
    // 0600: the database URL may hold a password.
    vigil_certs::write_file(&aggregator_config, text.as_bytes(), true)?;
    Ok(Setup {
        aggregator_config,
        agent_config: dir.join("agent.toml"),
        agent_id,
        host,
        token_path: dir.join("admin.token"),
    })
}

/// Registers the local agent's key and the admin token in the store; returns
/// the token (created on first run, then reused from `admin.token`).
pub async fn register(
    setup: &Setup,
    data_dir: &Path,
    store: &dyn Store,
) -> Result<String, QuickstartError> {
    let certs = data_dir.join("certs");
    let public = vigil_certs::read_public_key(&certs, &setup.agent_id)?;
    let key = vigil_common::sign::public_key_from_hex(&public)
        .map_err(|e| QuickstartError::Certs(CertError::Key(e)))?;
    store
        .register_agent(&setup.agent_id, key.as_bytes())
        .await?;

    let mut first_run = false;
    let token = match std::fs::read_to_string(&setup.token_path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if !token.starts_with(auth::TOKEN_PREFIX) {
                return Err(QuickstartError::BadToken(setup.token_path.clone()));
            }
            token
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = auth::new_token().map_err(|_| QuickstartError::Random)?;
            vigil_certs::write_file(&setup.token_path, format!("{token}\n").as_bytes(), true)?;
            first_run = true;
            token
        }
        Err(source) => {
            return Err(QuickstartError::Io {
                path: setup.token_path.clone(),
                source,
            });
        }
    };
    store
        .put_token("admin", &auth::token_hash(&token), "admin")
        .await?;
    if first_run {
        note(
            store,
            audit::Action::AgentRegister,
            &setup.agent_id,
            serde_json::json!({"public_key": public}),
        )
        .await;
        note(
            store,
            audit::Action::TokenCreate,
            "admin",
            serde_json::json!({"scope": "admin"}),
        )
        .await;
    }
    Ok(token)
}

/// Records what quick start set up, as `system:quickstart`.
async fn note(store: &dyn Store, action: audit::Action, target: &str, details: serde_json::Value) {
    audit::note(
        &store.db(),
        audit::Event::new(audit::Actor::system("quickstart"), action, target).details(details),
    )
    .await;
}

/// Writes `agent.toml` for the local agent, pointing at `quic_addr`; with a
/// demo API at `demo`, the host also takes the `api` role and the agent
/// scrapes the API's metrics and probes its health.
pub fn write_agent_config(
    setup: &Setup,
    quic_addr: SocketAddr,
    demo: Option<SocketAddr>,
) -> Result<(), QuickstartError> {
    let target = connectable(quic_addr);
    let id = &setup.agent_id;
    let roles = if demo.is_some() {
        "[\"host\", \"api\"]"
    } else {
        "[\"host\"]"
    };
    let mut text = format!(
        "# Written by `vigil-aggregator quickstart`; rewritten on every quickstart run.\n\
         agent_id = {id_s}\nhost = {host}\nroles = {roles}\ninterval = \"10s\"\n\n\
         [aggregator]\nendpoints = [{target}]\nserver_name = \"localhost\"\n\
         ca = \"certs/ca.crt\"\ncert = \"certs/{id}.crt\"\nkey = \"certs/{id}.key\"\nsigning_key = \"certs/{id}.sign.key\"\n",
        id_s = toml_str(id),
        host = toml_str(&setup.host),
        target = toml_str(&target.to_string()),
    );
    if let Some(api) = demo {
        let api = connectable(api);
        text.push_str(&format!(
            "\n# The demo prediction API (vigil-demo-api).\n\
             [[collect.scrape]]\nname = \"api\"\nurl = {metrics}\nrole = \"api\"\n\n\
             [[collect.probe]]\nname = \"api-health\"\nurl = {health}\n",
            metrics = toml_str(&format!("http://{api}/metrics")),
            health = toml_str(&format!("http://{api}/health")),
        ));
    }
    vigil_certs::write_file(&setup.agent_config, text.as_bytes(), false)?;
    Ok(())
}

/// An address a local client can dial: the wildcard becomes loopback.
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// A TOML basic string (quoted, escaped).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn create_private_dir(dir: &Path) -> Result<(), QuickstartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| QuickstartError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_a_valid_agent_id() {
        let (_, id) = local_identity();
        assert!(vigil_certs::is_valid_agent_id(&id), "{id}");
    }

    #[test]
    fn wildcard_listen_addresses_become_loopback() {
        let a: SocketAddr = "0.0.0.0:4433".parse().expect("addr");
        assert_eq!(connectable(a).to_string(), "127.0.0.1:4433");
        let b: SocketAddr = "[::]:1".parse().expect("addr");
        assert_eq!(connectable(b).to_string(), "[::1]:1");
        let c: SocketAddr = "10.0.0.1:5".parse().expect("addr");
        assert_eq!(connectable(c), c);
    }

    #[test]
    fn prepare_is_idempotent_and_config_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            data_dir: dir.path().join("data"),
            listen_http: "127.0.0.1:0".parse().expect("addr"),
            listen_quic: "127.0.0.1:0".parse().expect("addr"),
            database: None,
        };
        let setup = prepare(&opts).expect("prepare");
        let ca = std::fs::read(opts.data_dir.join("certs/ca.crt")).expect("ca");
        let again = prepare(&opts).expect("prepare again");
        assert_eq!(
            std::fs::read(opts.data_dir.join("certs/ca.crt")).expect("ca"),
            ca
        );
        assert_eq!(again.agent_id, setup.agent_id);
        // Every private key, and the config naming them, is the owner's only.
        let agent = vigil_certs::AgentPaths::new(&opts.data_dir.join("certs"), &setup.agent_id);
        for private in [
            opts.data_dir.join("certs/ca.key"),
            opts.data_dir.join("certs/server.key"),
            agent.key.clone(),
            agent.signing_key.clone(),
            setup.aggregator_config.clone(),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", private.display());
            vigil_common::keyfile::check_private(&private).expect("loadable");
        }
        let loaded = crate::Config::load(&setup.aggregator_config).expect("config loads");
        assert_eq!(loaded.config.database.url, "sqlite:vigil.db");
        // The default rule pack is in place and loaded by the config.
        let paths = loaded
            .config
            .alerting
            .rule_paths(&loaded.base_dir)
            .expect("rule paths");
        assert_eq!(paths, [opts.data_dir.join("rules/vigil-default.rules.yml")]);
        let set = crate::alert::rules::load_files(&paths).expect("rules load");
        assert!(!set.groups.is_empty());
    }
}
