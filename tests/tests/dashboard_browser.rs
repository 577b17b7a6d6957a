//! The dashboard in a real browser: a real aggregator (rule file with an
//! alert that fires), a real agent pushing host metrics over QUIC, and an
//! "API" agent pushing request and ML-model samples through the real
//! ingest, and a user made with `vigil-aggregator create-user`; then
//! `tests/browser/dashboard.mjs` drives Debian's chromium with
//! playwright-core: signs in through the form, watches the overview update
//! over the WebSocket, acknowledges an alert, screenshots every page into
//! `target/screenshots/` and fails on any console or page error.
//!
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`) and
//! `npm ci` in `tests/browser`; without them the test fails and says so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use vigil_agent::Agent;
use vigil_common::wire::{BatchHeader, PROTOCOL_VERSION};
use vigil_common::{Batch, Label, Point, Series, sign};
use vigil_tests::{Db, TestAggregator};

const USER: &str = "ops-admin";
const PASSWORD: &str = "a long browser test password";
const ALERT: &str = "BrowserTestHot";

const RULES: &str = r#"groups:
- name: browser
  interval: 1s
  rules:
  - alert: BrowserTestHot
    expr: max by (host) (model_drift_score) > 0.2
    labels:
      severity: critical
      team: ml
    annotations:
      summary: "drift {{ $value }} on {{ $labels.host }}"
      runbook_url: "https://runbooks.example/drift"
  - alert: BrowserTestAgentUp
    expr: count by (host) (system_cpu_usage_ratio) > 0
    labels:
      severity: info
  - record: host:cpu:max
    expr: max by (host) (system_cpu_usage_ratio)
"#;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn series(name: &str, labels: &[(&str, &str)], t: i64, v: f64) -> Series {
    Series::new(
        name,
        labels.iter().map(|(k, v)| Label::new(*k, *v)).collect(),
        vec![Point {
            timestamp_ms: t,
            value: v,
        }],
    )
}

/// What the API host reports at step `i`: requests, latency, two model
/// versions, confidence buckets; counters grow, gauges wobble.
fn api_batch(seq: u64, i: f64) -> Batch {
    let t = vigil_common::now_ms();
    let h = ("host", "ml-api.example");
    let mut s = vec![
        series(
            "http_requests_total",
            &[
                h,
                ("handler", "/predict"),
                ("method", "POST"),
                ("status", "200"),
            ],
            t,
            1000.0 + 50.0 * i,
        ),
        series(
            "http_requests_total",
            &[
                h,
                ("handler", "/predict"),
                ("method", "POST"),
                ("status", "500"),
            ],
            t,
            2.0 + 0.5 * i,
        ),
        series(
            "model_accuracy_ratio",
            &[h, ("model", "ranker"), ("version", "v1")],
            t,
            0.93 + 0.002 * (i % 3.0),
        ),
        series(
            "model_accuracy_ratio",
            &[h, ("model", "ranker"), ("version", "v2")],
            t,
            0.91,
        ),
        series(
            "model_drift_score",
            &[h, ("model", "ranker"), ("version", "v1")],
            t,
            0.08,
        ),
        series(
            "model_drift_score",
            &[h, ("model", "ranker"), ("version", "v2")],
            t,
            0.25,
        ),
    ];
    for (version, speed) in [("v1", 1.0), ("v2", 1.6)] {
        s.push(series(
            "model_predictions_total",
            &[h, ("model", "ranker"), ("version", version)],
            t,
            500.0 * i * speed,
        ));
        for (le, share) in [
            ("0.01", 0.2),
            ("0.05", 0.7),
            ("0.1", 0.9),
            ("0.5", 0.99),
            ("+Inf", 1.0),
        ] {
            s.push(series(
                "model_inference_duration_seconds_bucket",
                &[h, ("model", "ranker"), ("version", version), ("le", le)],
                t,
                500.0 * i * speed * share,
            ));
        }
    }
    for (le, share) in [
        ("0.5", 0.05),
        ("0.7", 0.2),
        ("0.9", 0.6),
        ("1", 1.0),
        ("+Inf", 1.0),
    ] {
        s.push(series(
            "model_prediction_confidence_bucket",
            &[h, ("model", "ranker"), ("le", le)],
            t,
            800.0 * i * share,
        ));
    }
    for (le, share) in [
        ("0.05", 0.5),
        ("0.1", 0.8),
        ("0.25", 0.95),
        ("1", 1.0),
        ("+Inf", 1.0),
    ] {
        s.push(series(
            "http_request_duration_seconds_bucket",
            &[h, ("handler", "/predict"), ("le", le)],
            t,
            (1000.0 + 50.0 * i) * share,
        ));
    }
    Batch {
        header: BatchHeader {
            protocol_version: PROTOCOL_VERSION,
            agent_id: "ml-api".into(),
            boot_id: [9; 16],
            sequence: seq,
            created_at_ms: t,
            host: "ml-api.example".into(),
            roles: vec!["api".into()],
        },
        series: s,
        metadata: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_chromium() {
    let browser_dir = workspace().join("tests/browser");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium is missing: install Debian's (apt-get install -y chromium); .ci/run does"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (.ci/run does)"
    );
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(node_ok, "node is missing: install Node.js 18 or later");

    let rules_dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir.path().join("browser.rules.yml");
    std::fs::write(&rules, RULES).expect("rules");
    let extra = format!(
        "\n[alerting]\nrule_files = [{:?}]\nevaluation_interval = \"1s\"\n[dashboard]\nlive_interval = \"1s\"\n",
        rules.display().to_string()
    );
    let agg = TestAggregator::start_with(Db::Sqlite, &extra).await;
    let state = &agg.running().state;
    // The user, made as an operator would: the CLI, password on stdin.
    let mut cli = std::process::Command::new(vigil_tests::binary("vigil-aggregator"))
        .args(["create-user", "--config"])
        .arg(&agg.config_path)
        .args(["--name", USER, "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigil-aggregator create-user runs");
    {
        use std::io::Write;
        let mut stdin = cli.stdin.take().expect("stdin");
        writeln!(stdin, "{PASSWORD}").expect("password");
    }
    let made = cli.wait_with_output().expect("create-user finishes");
    assert!(
        made.status.success(),
        "create-user failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );

    // A real agent (system metrics every 200 ms) and an API host through the ingest.
    agg.add_agent("browser-db").await;
    let agent = Agent::start(agg.agent_config("browser-db"))
        .await
        .expect("agent starts");
    agg.add_agent("ml-api").await;
    let raw = agg.raw("ml-api").await;
    let key = sign::load_signing_key(&agg.pki.agent_paths("ml-api").signing_key).expect("key");
    let pusher = tokio::spawn(async move {
        for seq in 1.. {
            let reply = raw.send_batch(&api_batch(seq, seq as f64), &key).await;
            assert!(reply.is_ok(), "ingest refused a batch: {reply:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    // Wait for the alert to fire.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let firing = state.alerting.active().into_iter().any(|a| {
            a.labels.get("alertname").map(String::as_str) == Some(ALERT)
                && a.phase.as_str() == "firing"
        });
        if firing {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ALERT} never fired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let shots = workspace().join("target/screenshots");
    let run = tokio::process::Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&browser_dir)
        .env("VIGIL_URL", agg.url(""))
        .env("VIGIL_USER", USER)
        .env("VIGIL_PASSWORD", PASSWORD)
        .env("VIGIL_ALERT", ALERT)
        .env("SCREENSHOT_DIR", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser run finished within 180 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed\n{stdout}\n{stderr}"
    );

    // The acknowledgement reached the alert state.
    let acked = state
        .alerting
        .active()
        .into_iter()
        .find(|a| a.labels.get("alertname").map(String::as_str) == Some(ALERT))
        .and_then(|a| a.ack)
        .expect("the alert is acknowledged");
    assert_eq!(acked.by, USER);
    for name in [
        "01-overview",
        "03-host",
        "06-model",
        "07-alerts",
        "10-explore",
        "13-overview-phone",
    ] {
        assert!(
            shots.join(format!("{name}.png")).exists(),
            "no screenshot {name}"
        );
    }
    pusher.abort();
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("agent stops");
}
