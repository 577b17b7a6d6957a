//! Helpers shared by the integration tests: certificates in a tempdir and
//! agent configs pointing at them.
#![allow(dead_code)]

pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_agent::{AgentConfig, AggregatorConfig};

/// A CA, a server certificate for localhost/127.0.0.1 and agent `id`'s files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub agent_id: String,
}

impl Pki {
    pub fn new(agent_id: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        vigil_certs::create_ca(d, "Test CA", 30, false).expect("ca");
        vigil_certs::issue_server(d, d, &["localhost".into(), "127.0.0.1".into()], 30, false)
            .expect("server cert");
        vigil_certs::issue_agent(d, d, agent_id, 30, false).expect("agent cert");
        Pki {
            dir,
            agent_id: agent_id.to_string(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An agent config with short timeouts and a fast interval for tests.
    pub fn agent_config(&self, endpoints: Vec<String>) -> AgentConfig {
        let id = &self.agent_id;
        let mut agg = AggregatorConfig::new(
            endpoints,
            "localhost",
            self.path("ca.crt"),
            self.path(&format!("{id}.crt")),
            self.path(&format!("{id}.key")),
            self.path(&format!("{id}.sign.key")),
        );
        agg.connect_timeout = Duration::from_millis(500);
        agg.ack_timeout = Duration::from_secs(3);
        agg.backoff_base = Duration::from_millis(20);
        agg.backoff_max = Duration::from_millis(200);
        let mut config = AgentConfig::new(id.clone(), agg);
        config.host = "test-host".into();
        config.roles = vec!["api".into(), "cache".into()];
        config.interval = Duration::from_millis(150);
        config.collect.system.enabled = false;
        config.spool.dir = self.path("spool");
        config.spool.fsync = false;
        config
    }
}

/// Polls `done` every 10 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port nothing listens on (bound, read back, released).
pub fn free_udp_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr")
}
