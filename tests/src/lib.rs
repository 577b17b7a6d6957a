//! The end-to-end test harness: real certificates, a real aggregator on
//! loopback ports chosen by the OS, a raw QUIC client that can send anything,
//! a TCP proxy that can cut the database off and bring it back, a UDP proxy
//! that damages the QUIC traffic between agent and aggregator, a private
//! PostgreSQL cluster a test may stop, and the real binaries as child
//! processes a test may `kill -9`.
#![forbid(unsafe_code)]

pub mod demo;
pub mod faults;
pub mod loadgen;
pub mod pg_cluster;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use vigil_aggregator::testing::PgTestDb;
use vigil_aggregator::{Config, Running};

/// A CA and a server certificate in a temporary folder, plus agents on demand.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        vigil_certs::create_ca(dir.path(), "Test CA", 30, false).expect("ca");
        vigil_certs::issue_server(
            dir.path(),
            dir.path(),
            &["localhost".into(), "127.0.0.1".into()],
            30,
            false,
        )
        .expect("server cert");
        Pki { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issues agent `id`; returns its public key (hex).
    pub fn agent(&self, id: &str) -> String {
        vigil_certs::issue_agent(self.path(), self.path(), id, 30, false).expect("agent cert")
    }

    pub fn agent_paths(&self, id: &str) -> vigil_certs::AgentPaths {
        vigil_certs::AgentPaths::new(self.path(), id)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// Which database a test aggregator uses.
pub enum Db {
    /// A fresh SQLite file in the test's folder.
    Sqlite,
    /// A fresh PostgreSQL database (see `vigil_aggregator::testing`).
    Postgres,
    /// A URL given by the test (e.g. through [`proxy::TcpProxy`]).
    Url(String),
}

/// A running aggregator with its certificates and database.
pub struct TestAggregator {
    pub running: Option<Running>,
    pub pki: Pki,
    pub http: SocketAddr,
    pub quic: SocketAddr,
    pub config_path: PathBuf,
    pg: Option<PgTestDb>,
}

impl TestAggregator {
    /// Starts an aggregator on 127.0.0.1 ports picked by the OS.
    pub async fn start(db: Db) -> TestAggregator {
        Self::start_with(db, "").await
    }

    /// Like [`start`](Self::start), with extra TOML appended to `[ingest]`.
    pub async fn start_with(db: Db, ingest_toml: &str) -> TestAggregator {
        Self::start_configured(db, "", &format!("[ingest]\n{ingest_toml}")).await
    }

    /// Like [`start`](Self::start), with extra TOML appended to `[http]`
    /// and whole sections (e.g. `[alerting]`, `[notify]`, `[dashboard]`;
    /// relative paths are relative to the PKI folder) after the rest.
    pub async fn start_configured(db: Db, http_toml: &str, sections: &str) -> TestAggregator {
        vigil_common::tls::install_default_provider();
        let pki = Pki::new();
        let (url, pg) = match db {
            Db::Sqlite => ("sqlite:vigil.db".to_string(), None),
            Db::Postgres => {
                let pg = PgTestDb::create().await.expect("PostgreSQL for tests");
                (pg.url.clone(), Some(pg))
            }
            Db::Url(url) => (url, None),
        };
        let config_path = pki.path().join("aggregator.toml");
        let text = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n{http_toml}\n[quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n[database]\nurl = {url:?}\nmax_connections = 4\n{sections}\n"
        );
        std::fs::write(&config_path, text).expect("write config");
        let loaded = Config::load(&config_path).expect("valid test config");
        let running = vigil_aggregator::start(loaded)
            .await
            .expect("aggregator starts");
        TestAggregator {
            http: running.http_addr,
            quic: running.quic_addr,
            running: Some(running),
            pki,
            config_path,
            pg,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// Issues agent `id` and registers its key.
    pub async fn add_agent(&self, id: &str) {
        let public = self.pki.agent(id);
        let key = vigil_common::sign::public_key_from_hex(&public).expect("hex");
        self.running()
            .state
            .store
            .register_agent(id, key.as_bytes())
            .await
            .expect("register agent");
    }

    /// A raw protocol client for agent `id` (issued by this aggregator's CA).
    pub async fn raw(&self, id: &str) -> raw::RawAgent {
        raw::RawAgent::connect(self.pki.path(), id, self.quic)
            .await
            .expect("agent connects")
    }

    pub async fn samples(&self) -> u64 {
        self.running()
            .state
            .store
            .count_samples(None)
            .await
            .expect("count samples")
    }

    /// Creates an API token and returns it.
    pub async fn token(&self) -> String {
        let token = vigil_aggregator::auth::new_token().expect("token");
        self.running()
            .state
            .store
            .put_token("test", &vigil_aggregator::auth::token_hash(&token), "admin")
            .await
            .expect("put token");
        token
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A config for the real agent library as agent `id` (issued and
    /// registered first with [`add_agent`](Self::add_agent)), with a fast
    /// interval and short timeouts.
    pub fn agent_config(&self, id: &str) -> vigil_agent::AgentConfig {
        let p = self.pki.agent_paths(id);
        let mut agg = vigil_agent::AggregatorConfig::new(
            vec![self.quic.to_string()],
            "localhost",
            self.pki.path().join("ca.crt"),
            p.cert,
            p.key,
            p.signing_key,
        );
        agg.connect_timeout = std::time::Duration::from_millis(500);
        agg.ack_timeout = std::time::Duration::from_secs(5);
        agg.backoff_base = std::time::Duration::from_millis(50);
        agg.backoff_max = std::time::Duration::from_millis(500);
        let mut config = vigil_agent::AgentConfig::new(id, agg);
        config.host = format!("{id}.test");
        config.roles = vec!["db".into()];
        config.interval = std::time::Duration::from_millis(200);
        // Each agent its own spool, inside this aggregator's temporary folder.
        config.spool.dir = self.pki.path().join(format!("spool-{id}"));
        config
    }

    /// The PostgreSQL database's URL, when the aggregator uses one it created.
    pub fn pg_url(&self) -> Option<&str> {
        self.pg.as_ref().map(|pg| pg.url.as_str())
    }

    /// Stops the aggregator and starts it again with the same database and
    /// the same ports (an aggregator outage as agents see it).
    pub async fn restart_after(&mut self, outage: std::time::Duration) {
        self.stop_in_process().await;
        tokio::time::sleep(outage).await;
        let loaded = Config::load(&self.config_path).expect("valid test config");
        self.running = Some(
            vigil_aggregator::start(loaded)
                .await
                .expect("aggregator restarts"),
        );
    }

    /// Stops the in-process aggregator (if running) and writes its ports
    /// into the config file, so that a restart, in process or as the
    /// `vigil-aggregator` binary, listens where agents expect it.
    pub async fn stop_in_process(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        let text = std::fs::read_to_string(&self.config_path).expect("config");
        let text = text
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{}\"", self.http),
                1,
            )
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{}\"", self.quic),
                1,
            );
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// Stops the aggregator and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// A binary of the workspace, built next to the test executable
/// (`cargo test --workspace` builds them: their packages have integration tests).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("target folder");
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` (or the README's test command) first",
        path.display()
    );
    path
}
