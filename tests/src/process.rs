//! The real `vigil-aggregator` and `vigil-agent` binaries as child processes,
//! so a test can `kill -9` them: what a crash, an OOM kill or a power cut
//! does to a process. Their logs go to a file next to their config, shown
//! when a start fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary;

/// A child process that is killed (SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Runs `exe args...` with stdout and stderr appended to `log`.
    pub fn spawn(exe: &Path, args: &[&str], log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the process log");
        let err = out.try_clone().expect("clone the log handle");
        let child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reaps the process.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop), then waits up to `limit` for the exit
    /// code. Async: an in-process aggregator on the test's runtime must keep
    /// answering while the agent drains.
    pub async fn terminate(mut self, limit: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vigil-aggregator run --config <config>` and waits (up to 30 s)
/// until `http` answers `/readyz` with 200.
pub async fn aggregator(config: &Path, http: SocketAddr) -> Proc {
    let log = config.with_extension("log");
    let mut proc = Proc::spawn(
        &binary("vigil-aggregator"),
        &["run", "--config", path_str(config)],
        &log,
    );
    let url = format!("http://{http}/readyz");
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return proc;
            }
        }
        assert!(
            proc.alive(),
            "vigil-aggregator exited at start:\n{}",
            proc.log_tail(30)
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "vigil-aggregator not ready after 30 s:\n{}",
            proc.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `vigil-agent run --config <config>` (the log is `<config>.log`).
pub fn agent(config: &Path) -> Proc {
    let log = config.with_extension("log");
    Proc::spawn(
        &binary("vigil-agent"),
        &["run", "--config", path_str(config)],
        &log,
    )
}

/// The TOML of an agent config for `id` issued by the PKI in `pki`, sending
/// to `quic`, spooling in `spool`, collecting host metrics every `interval`,
/// plus `extra` lines at the end of `[spool]`.
pub fn agent_toml(
    pki: &Path,
    id: &str,
    quic: SocketAddr,
    spool: &Path,
    interval: &str,
    extra_spool: &str,
) -> String {
    let p = vigil_certs::AgentPaths::new(pki, id);
    format!(
        "agent_id = {id:?}\nhost = \"{id}.test\"\nroles = [\"fault\"]\ninterval = {interval:?}\n\
         [aggregator]\nendpoints = [\"{quic}\"]\nserver_name = \"localhost\"\nca = {ca:?}\n\
         cert = {cert:?}\nkey = {key:?}\nsigning_key = {sk:?}\nconnect_timeout = \"500ms\"\n\
         ack_timeout = \"5s\"\nbackoff_base = \"50ms\"\nbackoff_max = \"500ms\"\n\
         [spool]\ndir = {spool:?}\n{extra_spool}\n[shutdown]\ndrain_timeout = \"20s\"\n",
        ca = path_str(&pki.join("ca.crt")),
        cert = path_str(&p.cert),
        key = path_str(&p.key),
        sk = path_str(&p.signing_key),
        spool = path_str(spool),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
