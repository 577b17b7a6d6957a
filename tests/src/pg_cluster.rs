//! A private PostgreSQL cluster for tests that stop the database: `initdb`
//! into a temporary folder, `pg_ctl start` on a free loopback port, and
//! `pg_ctl stop` / `start` on demand. The shared server on 127.0.0.1:5432 is
//! never touched. Run as root (as CI does here), the cluster belongs to the
//! `postgres` user, because PostgreSQL refuses to run as root. The cluster is
//! stopped (immediate mode) and its folder removed when the value is dropped.
//!
//! The binaries come from `VIGIL_PG_BIN` if set, else the newest
//! `/usr/lib/postgresql/<version>/bin`; without them, [`PgCluster::start`]
//! fails with a message saying what to install.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running (or stopped) private PostgreSQL cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    /// Whether commands run as the `postgres` user (we are root).
    as_postgres: bool,
}

impl PgCluster {
    /// Creates and starts a cluster on a free port (trust authentication,
    /// superuser `postgres`).
    pub fn start() -> Result<PgCluster, String> {
        let bin = binaries()?;
        let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .map_err(|e| format!("who am I: {e}"))?;
        if as_postgres {
            let uid = id("-u")?;
            let gid = id("-g")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {} to postgres: {e}", dir.path().display()))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("a free port: {e}"))?;
        let cluster = PgCluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// The URL of database `postgres` in this cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: sessions are disconnected, the server
    /// exits cleanly), waiting until it is gone.
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "fast", "-w", "stop"],
        )
        .map(drop)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=50 -c shared_buffers=16MB",
            self.port,
            path_str(self.dir.path())?
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(drop)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // The cluster's folder, not the test's, is the working directory (the
        // postgres user may not be allowed into the latter).
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("running {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} {args:?} failed ({}): {}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ));
        }
        Ok(out)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Ok(data) = path_str(&self.data()) {
            let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// The folder holding `initdb` and `pg_ctl`.
fn binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("VIGIL_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(format!("VIGIL_PG_BIN={} holds no initdb", dir.display()))
        };
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL's server binaries (initdb, pg_ctl) are not in /usr/lib/postgresql/*/bin: \
         this test starts a private cluster it can stop. Install them (apt-get install \
         postgresql, as tests/setup.sh does) or set VIGIL_PG_BIN"
            .to_string()
    })
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
fn id(flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|e| format!("id {flag} postgres: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            "running as root, the cluster must belong to the `postgres` user, and there is none \
             (install the postgresql package, as tests/setup.sh does)"
                .to_string()
        })
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}
