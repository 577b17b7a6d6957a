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
fn quickstart_with(
    data_dir: &std::path::Path,
    database: Option<&str>,
    extra: &[&str],
) -> (Child, String) {
    let (child, base, _) = quickstart_output(data_dir, database, extra);
    (child, base)
}

/// Everything quickstart printed so far, line by line.
type Output = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Like [`quickstart_with`], also collecting stdout.
fn quickstart_output(
    data_dir: &std::path::Path,
    database: Option<&str>,
    extra: &[&str],
) -> (Child, String, Output) {
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
    let output = Output::default();
    let lines = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut all) = lines.lock() {
                all.push(line.clone());
            }
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
    (child, base, output)
}

/// The first printed line containing `needle` (waits up to 10 s for it).
fn printed(output: &Output, needle: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(line) = output
            .lock()
            .expect("lock")
            .iter()
            .find(|l| l.contains(needle))
        {
            return line.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{needle:?} not printed: {:?}",
            output.lock().expect("lock")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Signs in to the dashboard as a browser would; the status of `POST /login`.
async fn sign_in(base: &str, user: &str, password: &str) -> u16 {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let form = client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(form.status(), 200);
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("vigil_login_csrf="))
        .and_then(|c| c.split(';').next())
        .expect("csrf cookie")
        .to_string();
    let body: String = [
        ("username", user),
        ("password", password),
        ("csrf_token", cookie.as_str()),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "{k}={}",
            v.replace('%', "%25")
                .replace('+', "%2B")
                .replace('&', "%26")
        )
    })
    .collect::<Vec<_>>()
    .join("&");
    let resp = client
        .post(format!("{base}/login"))
        .header("cookie", format!("vigil_login_csrf={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("sign in");
    let status = resp.status().as_u16();
    if status == 303 {
        assert!(
            resp.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().is_ok_and(|c| c.starts_with("vigil_session="))),
            "a session cookie"
        );
    }
    status
}

/// Whether any file under `dir` contains `needle`.
fn any_file_contains(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).expect("dir").any(|entry| {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            any_file_contains(&path, needle)
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        }
    })
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
    let (child, base, output) = quickstart_output(&data, database, &[]);
    // The dashboard's admin user, with its password printed once.
    let line = printed(&output, "Dashboard login : ");
    let password = line
        .split("user admin, password ")
        .nth(1)
        .unwrap_or_else(|| panic!("no password in {line:?}"))
        .trim()
        .to_string();
    assert!(password.len() >= 12, "{password}");
    assert_eq!(sign_in(&base, "admin", &password).await, 303);
    assert_eq!(sign_in(&base, "admin", "not the password").await, 401);
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
    let (child, base, output) = quickstart_output(&data, database, &[]);
    assert_eq!(std::fs::read(data.join("certs/ca.crt")).expect("ca"), ca);
    // The admin exists: no new password, the old one still works.
    let line = printed(&output, "Dashboard login : ");
    assert!(
        line.contains("user admin exists") && !line.contains(&password),
        "{line}"
    );
    assert!(
        printed(&output, "reset-password").contains("--name admin"),
        "how to reset it"
    );
    assert_eq!(sign_in(&base, "admin", &password).await, 303);
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
    // Only the hash is stored: the password is in no file.
    assert!(!any_file_contains(&data, &password));
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
