//! The README's promise: `vigil-aggregator quickstart` on a fresh data folder
//! brings up the aggregator and a local agent, and within 15 s
//! `GET /api/v1/hosts` lists this host with samples stored, on SQLite and on
//! PostgreSQL. Runs the real binaries as a user would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_aggregator::testing::PgTestDb;
use vigil_tests::binary;

/// Starts quickstart and returns the child and the HTTP base URL it printed.
fn quickstart(data_dir: &std::path::Path, database: Option<&str>) -> (Child, String) {
    quickstart_with(data_dir, database, &[])
}

fn quickstart_with(
    data_dir: &std::path::Path,
    database: Option<&str>,
    extra: &[&str],
) -> (Child, String) {
    let mut cmd = Command::new(binary("vigil-aggregator"));
    cmd.arg("quickstart")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen-http",
            "127.0.0.1:0",
            "--listen-quic",
            "127.0.0.1:0",
        ])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    cmd.args(extra);
    let mut child = cmd.spawn().expect("quickstart starts");
    let stdout = child.stdout.take().expect("stdout");
    // Read stdout to the end in the background, like a terminal would.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split("Dashboard / API : ").nth(1) {
                let _ = tx.send(url.trim().trim_end_matches('/').to_string());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60)).ok();
    let base = base.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("quickstart did not print its URL")
    });
    (child, base)
}

/// Polls the hosts API until this host has more than `min` samples stored.
async fn hosts_within(base: &str, token: &str, min: i64, limit: Duration) -> Value {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let resp = client
            .get(format!("{base}/api/v1/hosts"))
            .bearer_auth(token)
            .send()
            .await
            .expect("HTTP reachable");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        let stored = body["hosts"][0]["samples_stored"].as_i64().unwrap_or(0);
        if stored > min {
            return body;
        }
        assert!(
            started.elapsed() < limit,
            "no samples within {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn stop(mut child: Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "quickstart exited with {status}");
            return;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("quickstart did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn check(database: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("vigil-data");
    let (child, base) = quickstart(&data, database);
    let token = std::fs::read_to_string(data.join("admin.token")).expect("admin.token written");
    let token = token.trim();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("admin.token"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let body = hosts_within(&base, token, 0, Duration::from_secs(15)).await;
    let (host, agent_id) = vigil_aggregator::quickstart::local_identity();
    assert_eq!(body["hosts"][0]["hostname"], host.as_str());
    assert_eq!(body["hosts"][0]["agent_id"], agent_id.as_str());
    let unauth = reqwest::get(format!("{base}/api/v1/hosts"))
        .await
        .expect("reachable");
    assert_eq!(unauth.status(), 401);
    stop(child);

    // Idempotent: a second run reuses certificates, keys and token.
    let ca = std::fs::read(data.join("certs/ca.crt")).expect("ca");
    let (child, base) = quickstart(&data, database);
    assert_eq!(std::fs::read(data.join("certs/ca.crt")).expect("ca"), ca);
    let again = std::fs::read_to_string(data.join("admin.token")).expect("token");
    assert_eq!(again.trim(), token);
    let before = body["hosts"][0]["samples_stored"].as_i64().expect("count");
    let after = hosts_within(&base, token, before, Duration::from_secs(15)).await;
    assert_eq!(
        after["hosts"].as_array().expect("hosts").len(),
        1,
        "same agent, same host"
    );
    stop(child);
    if database.is_none() {
        assert!(data.join("vigil.db").exists());
    }
}

#[tokio::test]
async fn quickstart_on_sqlite_lists_this_host_within_15s() {
    check(None).await;
}

#[tokio::test]
async fn quickstart_on_postgres_lists_this_host_within_15s() {
    let db = PgTestDb::create().await.expect("PostgreSQL for tests");
    check(Some(&db.url)).await;
    db.drop_db().await;
}

/// `quickstart --demo`: the demo prediction API runs, and the local agent's
/// scrape of its metrics and probe of its health reach the store.
#[tokio::test]
async fn quickstart_demo_scrapes_and_probes_the_prediction_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("vigil-data");
    let (child, base) = quickstart_with(&data, None, &["--demo", "--demo-listen", "127.0.0.1:0"]);
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");
    hosts_within(&base, token.trim(), 0, Duration::from_secs(15)).await;

    let db = format!("sqlite://{}?mode=ro", data.join("vigil.db").display());
    let pool = sqlx::SqlitePool::connect(&db)
        .await
        .expect("open the SQLite store");
    let started = Instant::now();
    let wanted = [
        "model_predictions_total",
        "model_inference_duration_seconds_bucket",
        "http_requests_total",
        "up",
        "probe_success",
    ];
    loop {
        let mut missing = Vec::new();
        for metric in wanted {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id WHERE r.metric = ?1",
            )
            .bind(metric)
            .fetch_one(&pool)
            .await
            .expect("query");
            if n == 0 {
                missing.push(metric);
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not stored within 20 s: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let labels: String = sqlx::query_scalar(
        "SELECT labels FROM series WHERE metric = 'model_predictions_total' LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("labels");
    for needle in [
        "\"role\":\"api\"",
        "\"job\":\"api\"",
        "\"model\":\"fraud-detector\"",
    ] {
        assert!(labels.contains(needle), "{needle} not in {labels}");
    }
    pool.close().await;
    stop(child);
}
