//! Configured secrets never leave the process except to the service they
//! are for: a run whose deliveries fail every way (receiver down, SMTP
//! down, a refusing receiver) with every log line captured at TRACE, the
//! configs' `Debug`, the config checker's problems and the notifications
//! API's answer hold none of them.

mod cli_support;
mod common;
mod notify_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use vigil_aggregator::config::Config;
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::notify::Deliver;
use vigil_aggregator::query::{Engine, MemorySource};

use notify_support::{Receiver, fast, notification, outbox, receivers, wait_rows};

/// Every secret the test configures; none may appear in any output.
const SECRETS: &[&str] = &[
    "SECRET-PATH-1",
    "SECRET-QUERY-2",
    "SECRET-BEARER-3",
    "SECRET-SLACK-4",
    "SECRET-SMTP-5",
    "SECRET-PATH-6",
    "SECRET-BASIC-7",
    "SECRET-DB-8",
    "SECRET-DB-9",
];

/// Everything the process logs, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

fn capture() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber in this test binary");
    captured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_secrets_never_reach_logs_errors_or_api_answers() {
    let logs = capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let state = common::state(
        store.clone(),
        Arc::new(MemorySource::new()),
        Engine::default(),
    );
    let tokens = common::tokens(store.as_ref()).await;

    // A port nothing listens on, and a receiver that refuses everything.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let refusing = Receiver::answering(&[403, 403, 403]);
    let (url, server) = refusing.start().await;
    let yaml = format!(
        "- name: down\n  webhook_configs:\n    - url: http://{closed}/hook/SECRET-PATH-1?token=SECRET-QUERY-2\n      \
         http_config: {{bearer_token: SECRET-BEARER-3}}\n\
         - name: slack\n  slack_configs:\n    - api_url: http://{closed}/services/SECRET-SLACK-4\n      channel: '#ops'\n\
         - name: mail\n  email_configs:\n    - to: ops@example.com\n      from: vigil@example.com\n      \
         smarthost: '{closed}'\n      auth_username: vigil\n      auth_password: SECRET-SMTP-5\n      require_tls: false\n\
         - name: refused\n  webhook_configs:\n    - url: {url}/hook/SECRET-PATH-6\n      \
         http_config:\n        basic_auth: {{username: vigil, password: SECRET-BASIC-7}}\n"
    );
    let metrics = Metrics::new();
    let outbox = outbox(store.db(), &yaml, &metrics, fast());
    let task = outbox.spawn();
    for (i, receiver) in ["down", "slack", "mail", "refused"].iter().enumerate() {
        outbox
            .enqueue(notification(receiver, &format!("k-{i}")))
            .await
            .expect("enqueue");
    }
    // Every delivery failed at least twice, or for good.
    wait_rows(&store.db(), Duration::from_secs(20), "failures", |rows| {
        rows.len() == 4
            && rows
                .iter()
                .all(|r| r.status == "failed" || (r.status == "pending" && r.attempts >= 2))
    })
    .await;
    task.stop().await;
    server.abort();
    assert!(
        !refusing.requests().is_empty(),
        "the refusing receiver was called"
    );

    // What the admin API shows of those rows (last errors included).
    let reply = common::get(&state, "/api/v1/notifications", Some(&tokens.admin)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let api = reply.json.to_string();
    assert!(api.contains("HTTP 403"), "the refusal is reported: {api}");

    // The parsed receivers' Debug.
    let debug = format!("{:?}", receivers(&yaml));
    assert!(debug.contains("<secret>"), "{debug}");

    // The aggregator's config: a good PostgreSQL URL in Debug, and a
    // mistyped one in the checker's problems.
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let path = cli_support::minimal_config(cfg_dir.path());
    let base = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        format!("{base}[database]\nurl = \"postgres://vigil:SECRET-DB-8@db.invalid/vigil\"\n"),
    )
    .expect("write");
    let loaded = Config::load(&path).expect("a valid config");
    let config_debug = format!("{:?}", loaded.config);
    assert!(
        config_debug.contains("postgres://vigil:***@db.invalid/vigil"),
        "{config_debug}"
    );
    std::fs::write(
        &path,
        format!("{base}[database]\nurl = \"postgress://vigil:SECRET-DB-9@db.invalid/vigil\"\n"),
    )
    .expect("write");
    let problems = Config::load(&path).expect_err("a bad scheme").to_string();
    assert!(problems.contains("database.url"), "{problems}");
    let bad_url = vigil_aggregator::store::open(
        "postgress://vigil:SECRET-DB-9@db.invalid/vigil",
        cfg_dir.path(),
        1,
    )
    .err()
    .expect("unsupported")
    .to_string();

    let logged = logs.text();
    // The failure paths really ran and were logged.
    for needle in [
        "notification delivery failed; will retry",
        "connect:",
        "SMTP:",
        "notification rejected by the receiver",
    ] {
        assert!(logged.contains(needle), "{needle:?} not logged:\n{logged}");
    }
    for (what, text) in [
        ("logs", &logged),
        ("API", &api),
        ("Debug", &debug),
        ("config Debug", &config_debug),
        ("config problems", &problems),
        ("store error", &bad_url),
    ] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in the {what}:\n{text}");
        }
    }
}
