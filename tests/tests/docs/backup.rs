//! The backup and restore commands of docs/operations.md, run as written.
//!
//! A block is marked with `<!-- tested: NAME -->` on the line before it. Its
//! lines run one by one with `sh -ec`, with the documented paths replaced by
//! the test's: `systemctl stop|start vigil-aggregator` stops / starts the
//! test's aggregator instead, and `chown` lines are left out (the test has no
//! `vigil` user). Every other line must succeed.
//!
//! SQLite: samples imported before the online backup survive the restore;
//! one imported after it is gone (the restore really replaced the file).
//! PostgreSQL: the dump restored into a fresh database serves the samples.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vigil_aggregator::config::Config;
use vigil_aggregator::testing::with_database;
use vigil_tests::{Db, TestAggregator};

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

async fn import(agg: &TestAggregator, token: &str, case: &str) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let body = format!("vigil_backup_test{{case=\"{case}\"}} 1 {now_ms}\n");
    let resp = reqwest::Client::new()
        .post(agg.url("/api/v1/import"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("import");
    assert!(resp.status().is_success(), "import: {}", resp.status());
}

/// The `case` labels of `vigil_backup_test` the aggregator serves.
async fn cases(agg: &TestAggregator, token: &str) -> Vec<String> {
    let v: Value = reqwest::Client::new()
        .get(agg.url("/prometheus/api/v1/query?query=vigil_backup_test"))
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

async fn restart(agg: &mut TestAggregator) {
    let loaded = Config::load(&agg.config_path).expect("config");
    agg.running = Some(vigil_aggregator::start(loaded).await.expect("restarts"));
    agg.http = agg.running().http_addr;
}

/// Runs a documented block: paths replaced, service control by the test.
async fn run_block(agg: &mut TestAggregator, lines: &[String], replace: &[(&str, String)]) {
    for line in lines {
        let mut line = line.clone();
        for (from, to) in replace {
            line = line.replace(from, to);
        }
        if line.contains("systemctl stop vigil-aggregator") {
            if let Some(running) = agg.running.take() {
                running.shutdown().await;
            }
        } else if line.contains("systemctl start vigil-aggregator") {
            restart(agg).await;
        } else if !line.starts_with("chown ") {
            run(&line);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_and_restore_as_documented() {
    require("sqlite3", "sqlite3");
    let md = read("docs/operations.md");
    let backup = block(&md, "sqlite-backup");
    let restore = block(&md, "sqlite-restore");

    let mut agg = TestAggregator::start(Db::Sqlite).await;
    let token = agg.token().await;
    import(&agg, &token, "before").await;
    let data = agg.pki.path().to_path_buf();
    let backups = tempfile::tempdir().expect("tempdir");
    let replace = [
        ("/var/lib/vigil", data.display().to_string()),
        (
            "/var/backups/vigil",
            backups.path().join("b").display().to_string(),
        ),
    ];
    // Online: the aggregator keeps running (and writing) during the backup.
    run_block(&mut agg, &backup, &replace).await;
    assert!(agg.running.is_some(), "the backup must not stop Vigil");
    assert!(backups.path().join("b/vigil.db").exists(), "{backup:?}");
    import(&agg, &token, "after").await;
    assert_eq!(cases(&agg, &token).await, ["after", "before"]);

    run_block(&mut agg, &restore, &replace).await;
    assert!(
        agg.running.is_some(),
        "the restore block ends with Vigil started"
    );
    assert_eq!(cases(&agg, &token).await, ["before"]);
    agg.stop().await;
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
    import(&agg, &token, "before").await;
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
        &mut agg,
        &backup,
        &[
            ("postgres://vigil@db.example.com/vigil", url.clone()),
            ("/var/backups/vigil/vigil.dump", dump.clone()),
        ],
    )
    .await;
    assert!(Path::new(&dump).exists(), "{backup:?}");
    import(&agg, &token, "after").await;

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
    run_block(&mut agg, &restore, &replace).await;
    let got = cases(&agg, &token).await;
    if let Some(running) = agg.running.take() {
        running.shutdown().await;
    }
    run(&format!(
        "psql -q '{admin}' -c 'DROP DATABASE IF EXISTS {restored_name} WITH (FORCE)'"
    ));
    agg.stop().await;
    assert_eq!(got, ["before"]);
}
