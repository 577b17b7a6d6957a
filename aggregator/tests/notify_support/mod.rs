//! Stand-ins for what cannot run here: an HTTP receiver (webhook, Slack,
//! Alertmanager endpoints) and a small SMTP server, both on 127.0.0.1, plus
//! the outbox set up over a real SQLite or PostgreSQL store.
#![allow(dead_code)]

pub mod smtp;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vigil_aggregator::alert::{Alert, LabelSet};
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::notify::Notification;
use vigil_aggregator::notify::outbox::{Outbox, OutboxConfig, OutboxRow};
use vigil_aggregator::notify::receivers::{GlobalConfig, ReceiverConfig};
use vigil_aggregator::store::{self, Db, Store};
use vigil_aggregator::testing::PgTestDb;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A local HTTP receiver recording every request. It answers with the
/// statuses of `script` in turn, then 200.
#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub fn answering(script: &[u16]) -> Receiver {
        let r = Receiver::default();
        r.script.lock().unwrap().extend(script);
        r
    }

    /// Serves on `listener` until the task is aborted.
    pub fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let app = Router::new().fallback(record).with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    /// Binds 127.0.0.1:0 and serves; returns the base URL.
    pub async fn start(&self) -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        (url, self.serve(listener))
    }

    /// Binds 127.0.0.1:0 and serves HTTPS; returns `127.0.0.1:port`.
    pub async fn start_tls(&self, acceptor: tokio_rustls::TlsAcceptor) -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = Router::new().fallback(record).with_state(self.clone());
        let listener = TlsListener { listener, acceptor };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, task)
    }

    pub fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn record(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    r.got.lock().unwrap().push(Got {
        path: uri.to_string(),
        headers,
        body,
    });
    let code = r.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

/// A TCP listener that completes a TLS handshake before handing the
/// connection to axum (failed handshakes are skipped).
struct TlsListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A TLS acceptor for `localhost` and the CA file that trusts it.
pub fn test_tls(dir: &std::path::Path) -> (tokio_rustls::TlsAcceptor, std::path::PathBuf) {
    vigil_certs::create_ca(dir, "test CA", 2, false).unwrap();
    vigil_certs::issue_server(dir, dir, &["localhost".to_string()], 2, false).unwrap();
    let (cert, key) = vigil_certs::server_paths(dir);
    let certs = vigil_common::tls::load_certs(&cert).unwrap();
    let key = vigil_common::tls::load_key(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(vigil_common::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    (acceptor, vigil_certs::ca_paths(dir).0)
}

/// A store to run the outbox on.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(PgTestDb),
}

/// A migrated store of either kind; PostgreSQL must be running.
pub async fn open(postgres: bool) -> (Arc<dyn Store>, Backend) {
    if postgres {
        let pg = PgTestDb::create().await.unwrap_or_else(|e| panic!("{e}"));
        let store = store::open(&pg.url, std::path::Path::new("."), 4).unwrap();
        store.migrate().await.unwrap();
        (store, Backend::Postgres(pg))
    } else {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open("sqlite:t.db", dir.path(), 2).unwrap();
        store.migrate().await.unwrap();
        (store, Backend::Sqlite(dir))
    }
}

impl Backend {
    pub async fn close(self) {
        if let Backend::Postgres(pg) = self {
            pg.drop_db().await;
        }
    }
}

/// Fast retries so tests take milliseconds, not minutes.
pub fn fast() -> OutboxConfig {
    OutboxConfig {
        max_concurrency: 4,
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_age: Duration::from_secs(60),
        poll_interval: Duration::from_millis(50),
        keep_finished: Duration::from_secs(3600),
    }
}

pub fn receivers(yaml: &str) -> Vec<ReceiverConfig> {
    serde_norway::from_str(yaml).unwrap()
}

/// An outbox over `db` with the receivers in `yaml`.
pub fn outbox(db: Db, yaml: &str, metrics: &Metrics, config: OutboxConfig) -> Outbox {
    Outbox::new(
        db,
        &receivers(yaml),
        &GlobalConfig::default(),
        metrics.notify.clone(),
        "http://vigil.test:8080",
        config,
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

pub fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A firing HighCpu alert on web-1 and a resolved one on web-2.
pub fn notification(receiver: &str, dedup_key: &str) -> Notification {
    let firing = Alert {
        labels: labels(&[
            ("alertname", "HighCpu"),
            ("host", "web-1"),
            ("severity", "critical"),
            ("team", "platform"),
        ]),
        annotations: labels(&[
            ("summary", "CPU above 90% on web-1"),
            ("runbook_url", "https://vigil.test/docs/runbooks/HighCpu.md"),
        ]),
        starts_at_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
        ends_at_ms: None,
        generator_url: "http://vigil.test:8080/graph?g0.expr=cpu".into(),
        flapping: false,
    };
    let mut resolved = firing.clone();
    resolved.labels.insert("host".into(), "web-2".into());
    resolved
        .annotations
        .insert("summary".into(), "CPU above 90% on web-2".into());
    resolved.starts_at_ms = 1_767_225_000_000;
    resolved.ends_at_ms = Some(1_767_225_660_500);
    Notification {
        dedup_key: dedup_key.into(),
        receiver: receiver.into(),
        group_key: "{}/{team=\"platform\"}:{alertname=\"HighCpu\"}".into(),
        group_labels: labels(&[("alertname", "HighCpu")]),
        common_labels: labels(&[
            ("alertname", "HighCpu"),
            ("severity", "critical"),
            ("team", "platform"),
        ]),
        common_annotations: labels(&[(
            "runbook_url",
            "https://vigil.test/docs/runbooks/HighCpu.md",
        )]),
        alerts: vec![firing, resolved],
        truncated_alerts: 0,
        escalation: false,
    }
}

/// The outbox rows, newest first.
pub async fn rows(db: &Db) -> Vec<OutboxRow> {
    Outbox::recent(db, None, 100).await.unwrap()
}

/// Polls until `done(rows)` or fails after `timeout`.
pub async fn wait_rows(
    db: &Db,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[OutboxRow]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = rows(db).await;
        if done(&r) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}: {r:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the receiver got `n` requests.
pub async fn wait_requests(r: &Receiver, n: usize, timeout: Duration) -> Vec<Got> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = r.requests();
        if got.len() >= n {
            return got;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {n} requests: got {got:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
