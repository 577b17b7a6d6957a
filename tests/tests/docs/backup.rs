//! The backup and restore commands of docs/operations.md, run as written
//! (and its example rule file, loaded).
//!
//! A block is marked with `<!-- tested: NAME -->` on the line before it. Its
//! lines run one by one with `sh -ec`, with the documented paths replaced by
//! the test's: `systemctl stop|start vigil-aggregator` stops / starts the
//! test's aggregator instead, and `chown` lines are left out (the test has no
//! `vigil` user). Every other line must succeed.
//!
//! SQLite: the real `vigil-aggregator` binary runs as a process (so
//! `systemctl stop` is a SIGTERM and an exit, which closes the database as
//! in production); samples imported before the online backup survive the
//! restore, one imported after it is gone (the restore replaced the file).
//! PostgreSQL: the dump, restored into a fresh database, serves the samples
//! (in-process aggregator: the old database is left alone, so nothing of it
//! can leak into the restored one).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_aggregator::config::Config;
use vigil_aggregator::testing::with_database;
use vigil_tests::{Db, Pki, TestAggregator, binary};

use super::read;

/// The lines of the block marked `<!-- tested: name -->`.
fn block(md: &str, name: &str) -> Vec<String> {
    let marker = format!("<!-- tested: {name} -->");
    let at = md
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/operations.md has no {marker}"));
    let rest = &md[at + marker.len()..];
    let blocks = super::code_blocks(rest);
    let (info, body) = blocks.first().expect("a code block after the marker");
    assert_eq!(info, "sh", "{marker}: the block is not `sh`");
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn run(line: &str) {
    let out = Command::new("sh")
        .args(["-ec", line])
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
    assert!(
        out.status.success(),
        "`{line}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: install Debian's {package} (tests/setup.sh does)"
    );
}

async fn import(base: &str, token: &str, case: &str) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let body = format!("vigil_backup_test{{case=\"{case}\"}} 1 {now_ms}\n");
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/import"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("import");
    assert!(resp.status().is_success(), "import: {}", resp.status());
}

/// The `case` labels of `vigil_backup_test` the aggregator serves.
async fn cases(base: &str, token: &str) -> Vec<String> {
    let v: Value = reqwest::Client::new()
        .get(format!(
            "{base}/prometheus/api/v1/query?query=vigil_backup_test"
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {v}"))
        .iter()
        .filter_map(|s| s["metric"]["case"].as_str().map(String::from))
        .collect();
    out.sort();
    out
}

/// The aggregator a documented block stops and starts.
enum Service<'a> {
    /// In this process (PostgreSQL).
    InProcess(&'a mut TestAggregator),
    /// The real binary as a child process (SQLite).
    Process(&'a mut Aggregator),
}

impl Service<'_> {
    async fn stop(&mut self) {
        match self {
            Service::InProcess(agg) => {
                if let Some(running) = agg.running.take() {
                    running.shutdown().await;
                }
            }
            Service::Process(p) => p.stop(),
        }
    }

    async fn start(&mut self) {
        match self {
            Service::InProcess(agg) => {
                let loaded = Config::load(&agg.config_path).expect("config");
                agg.running = Some(vigil_aggregator::start(loaded).await.expect("restarts"));
                agg.http = agg.running().http_addr;
            }
            Service::Process(p) => p.start(),
        }
    }
}

/// Runs a documented block: paths replaced, service control by the test.
async fn run_block(mut service: Service<'_>, lines: &[String], replace: &[(&str, String)]) {
    for line in lines {
        let mut line = line.clone();
        for (from, to) in replace {
            line = line.replace(from, to);
        }
        if line.contains("systemctl stop vigil-aggregator") {
            service.stop().await;
        } else if line.contains("systemctl start vigil-aggregator") {
            service.start().await;
        } else if !line.starts_with("chown ") {
            run(&line);
        }
    }
}

/// `vigil-aggregator run` as a child process, as systemd runs it.
struct Aggregator {
    config: PathBuf,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the running process.
    base: String,
}

impl Aggregator {
    fn start(&mut self) {
        let mut child = Command::new(binary("vigil-aggregator"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vigil-aggregator starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the log to the end, like journald; report the HTTP address.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("aggregator started")
                    && let Some(addr) = line.split("http_addr=").nth(1)
                {
                    let addr = addr.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => self.base = format!("http://{addr}"),
            Err(_) => {
                self.stop();
                panic!("vigil-aggregator did not log its address");
            }
        }
    }

    /// SIGTERM, then wait for the exit, as `systemctl stop` does.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vigil-aggregator did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_and_restore_as_documented() {
    require("sqlite3", "sqlite3");
    let md = read("docs/operations.md");
    let backup = block(&md, "sqlite-backup");
    let restore = block(&md, "sqlite-restore");

    let pki = Pki::new();
    let data = pki.path().to_path_buf();
    let config = data.join("aggregator.toml");
    std::fs::write(
        &config,
        "[http]\nlisten = \"127.0.0.1:0\"\n[quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\n\
         cert = \"server.crt\"\nkey = \"server.key\"\n[database]\nurl = \"sqlite:vigil.db\"\n",
    )
    .expect("config");
    let out = Command::new(binary("vigil-aggregator"))
        .args([
            "create-token",
            "--name",
            "backup",
            "--scope",
            "admin",
            "--config",
        ])
        .arg(&config)
        .output()
        .expect("create-token runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut agg = Aggregator {
        config,
        child: None,
        base: String::new(),
    };
    agg.start();
    import(&agg.base, &token, "before").await;
    let backups = tempfile::tempdir().expect("tempdir");
    let replace = [
        ("/var/lib/vigil", data.display().to_string()),
        (
            "/var/backups/vigil",
            backups.path().join("b").display().to_string(),
        ),
    ];
    // Online: the aggregator keeps running (and writing) during the backup.
    run_block(Service::Process(&mut agg), &backup, &replace).await;
    assert!(agg.child.is_some(), "the backup must not stop Vigil");
    assert!(backups.path().join("b/vigil.db").exists(), "{backup:?}");
    import(&agg.base, &token, "after").await;
    assert_eq!(cases(&agg.base, &token).await, ["after", "before"]);

    run_block(Service::Process(&mut agg), &restore, &replace).await;
    assert!(
        agg.child.is_some(),
        "the restore block ends with Vigil started"
    );
    assert_eq!(cases(&agg.base, &token).await, ["before"]);
    agg.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_and_restore_as_documented() {
    require("pg_dump", "postgresql-client");
    require("pg_restore", "postgresql-client");
    let md = read("docs/operations.md");
    let backup = block(&md, "postgres-backup");
    let restore = block(&md, "postgres-restore");

    let mut agg = TestAggregator::start(Db::Postgres).await;
    let token = agg.token().await;
    import(&agg.url(""), &token, "before").await;
    let url = agg.pg_url().expect("a PostgreSQL database").to_string();
    let name = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .expect("database name")
        .to_string();
    // The restore goes to a new database named after the test's own (so
    // the test databases' stale-database sweep drops it after a crash).
    let restored_name = format!("{name}_r");
    let restored = with_database(&url, &restored_name);
    let admin = with_database(&url, "postgres");
    let backups = tempfile::tempdir().expect("tempdir");
    let dump = backups.path().join("vigil.dump").display().to_string();
    run_block(
        Service::InProcess(&mut agg),
        &backup,
        &[
            ("postgres://vigil@db.example.com/vigil", url.clone()),
            ("/var/backups/vigil/vigil.dump", dump.clone()),
        ],
    )
    .await;
    assert!(Path::new(&dump).exists(), "{backup:?}");
    import(&agg.url(""), &token, "after").await;

    // The documented restore, then `[database] url` pointed at the new database.
    let config = std::fs::read_to_string(&agg.config_path).expect("config");
    std::fs::write(&agg.config_path, config.replace(&url, &restored)).expect("config");
    let replace = [
        ("sudo -u postgres psql", format!("psql '{admin}'")),
        (
            "postgres://vigil@db.example.com/vigil_restored",
            restored.clone(),
        ),
        ("/var/backups/vigil/vigil.dump", dump),
        ("vigil_restored", restored_name.clone()),
        ("OWNER vigil", "OWNER postgres".to_string()),
        ("--role=vigil", "--role=postgres".to_string()),
    ];
    run_block(Service::InProcess(&mut agg), &restore, &replace).await;
    let got = cases(&agg.url(""), &token).await;
    if let Some(running) = agg.running.take() {
        running.shutdown().await;
    }
    run(&format!(
        "psql -q '{admin}' -c 'DROP DATABASE IF EXISTS {restored_name} WITH (FORCE)'"
    ));
    agg.stop().await;
    assert_eq!(got, ["before"]);
}

/// The rule file operations.md shows (the `yaml` block whose first line is
/// `# /etc/vigil/rules/...`) passes the loader `check-rules` uses.
#[test]
fn the_documented_rule_file_loads() {
    let md = read("docs/operations.md");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (info, body) in super::code_blocks(&md) {
        if info == "yaml" && body.starts_with("# /etc/vigil/rules/") {
            let path = dir.path().join(format!("{}.rules.yml", files.len()));
            std::fs::write(&path, &body).expect("write");
            files.push(path);
        }
    }
    assert!(
        !files.is_empty(),
        "no rule file example in docs/operations.md"
    );
    let rules = vigil_aggregator::alert::rules::load_files(&files)
        .unwrap_or_else(|e| panic!("the documented rule file is refused: {e}"));
    assert_eq!(rules.groups.len(), files.len());
}
