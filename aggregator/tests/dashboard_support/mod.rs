//! The dashboard tests' fixture: a real aggregator app on a real HTTP
//! listener (127.0.0.1, port 0) over SQLite or PostgreSQL, with hosts,
//! samples, a firing alert whose labels hold `<script>`, and a signed-in
//! session for each role.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use vigil_aggregator::alert::config::AlertingConfig;
use vigil_aggregator::alert::eval::Evaluator;
use vigil_aggregator::alert::{Alert, AlertSink, LabelSet, Muted};
use vigil_aggregator::http::session::{Role, SessionPolicy, Sessions, accounts};
use vigil_aggregator::http::web::config::DashboardConfig;
use vigil_aggregator::http::{AppState, access, app_with_dashboard};
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::query::Engine;
use vigil_aggregator::store;
use vigil_common::wire::PROTOCOL_VERSION;
use vigil_common::{BatchHeader, Label, Point, Series};

/// A label value that must render as text everywhere.
pub const EVIL: &str = "<script>alert(1)</script>";

pub const RULES: &str = r#"groups:
- name: web
  interval: 10s
  rules:
  - alert: EvilHostHot
    expr: evil_temperature > 50
    labels:
      severity: critical
    annotations:
      summary: "hot on {{ $labels.host }}"
      runbook_url: "javascript:alert(1)"
  - alert: CpuBusy
    expr: system_cpu_usage_ratio > 0.3
    labels:
      severity: warning
    annotations:
      runbook_url: "https://runbooks.example/cpu"
"#;

struct Quiet;

impl AlertSink for Quiet {
    fn send(&self, _: Vec<Alert>) {}
    fn escalate(&self, _: Alert, _: &str) {}
    fn muted(&self, _: &LabelSet) -> Option<Muted> {
        None
    }
}

/// A signed-in browser: its cookie header and CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub struct Fixture {
    pub state: AppState,
    pub addr: SocketAddr,
    pub admin: Session,
    pub operator: Session,
    pub viewer: Session,
    pub dir: tempfile::TempDir,
    pub server: tokio::task::JoinHandle<()>,
}

pub enum Backend<'a> {
    Sqlite,
    Postgres(&'a str),
}

fn header(agent: &str, host: &str, roles: &[&str], seq: u64) -> BatchHeader {
    BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: agent.into(),
        boot_id: [7; 16],
        sequence: seq,
        created_at_ms: 0,
        host: host.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn series(name: &str, host: &str, extra: &[(&str, &str)], t: i64, v: f64) -> Series {
    let mut labels = vec![Label::new("host", host)];
    for (k, val) in extra {
        labels.push(Label::new(*k, *val));
    }
    Series::new(
        name,
        labels,
        vec![Point {
            timestamp_ms: t,
            value: v,
        }],
    )
}

/// One batch of host metrics from `agent` at `t`.
pub async fn report(state: &AppState, agent: &str, host: &str, seq: u64, t: i64, cpu: f64) {
    let batch = vec![
        series("system_cpu_usage_ratio", host, &[], t, cpu),
        series("system_memory_used_bytes", host, &[], t, 3.0e9),
        series("system_memory_total_bytes", host, &[], t, 8.0e9),
        series(
            "system_filesystem_used_bytes",
            host,
            &[("mount", "/")],
            t,
            40.0e9,
        ),
        series(
            "system_filesystem_size_bytes",
            host,
            &[("mount", "/")],
            t,
            100.0e9,
        ),
        series(
            "model_accuracy_ratio",
            host,
            &[("model", "ranker"), ("version", "v1")],
            t,
            0.93,
        ),
        series(
            "model_accuracy_ratio",
            host,
            &[("model", "ranker"), ("version", "v2")],
            t,
            0.88,
        ),
        series(
            "model_drift_score",
            host,
            &[("model", "ranker"), ("version", "v2")],
            t,
            0.1,
        ),
    ];
    state
        .store
        .commit_batch(&header(agent, host, &["api"], seq), &batch)
        .await
        .expect("commit");
}

async fn sign_in(state: &AppState, sessions: &Sessions, name: &str, role: Role) -> Session {
    accounts::create(
        &state.store.db(),
        name,
        role,
        "correct horse battery staple",
    )
    .await
    .expect("user");
    let created = sessions
        .create(&state.store.db(), name)
        .await
        .expect("session");
    Session {
        cookie: format!("vigil_session={}", created.id),
        csrf: created.csrf_token,
    }
}

/// Starts the app over `backend` on a listener whose accepted sockets get
/// `send_buffer` bytes of kernel send buffer (a small one makes a client
/// that does not read fall behind quickly).
pub async fn start_with(
    backend: Backend<'_>,
    dashboard: DashboardConfig,
    send_buffer: Option<u32>,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.yml"), RULES).expect("rules");
    let inner = match backend {
        Backend::Sqlite => store::open("sqlite:t.db", dir.path(), 2).expect("open"),
        Backend::Postgres(url) => store::open(url, Path::new("."), 4).expect("open"),
    };
    let metrics = Arc::new(Metrics::new());
    let layers = store::layered(
        inner,
        &store::config::StorageConfig::default(),
        metrics.storage.clone(),
    );
    layers.store.migrate().await.expect("migrate");
    let engine = Arc::new(Engine::default());
    let alerting = Arc::new(Evaluator::new(
        layers.store.clone(),
        layers.source.clone(),
        engine.clone(),
        Arc::new(Quiet),
        metrics.alerting.clone(),
        AlertingConfig {
            rule_files: vec!["rules.yml".into()],
            ..AlertingConfig::default()
        },
        dir.path().to_path_buf(),
    ));
    alerting.reload().await.expect("rules load");
    let mutes = vigil_aggregator::testing::mutes(layers.store.as_ref());
    mutes.load().await.expect("mutes");
    let state = AppState {
        mutes,
        store: layers.store,
        metrics,
        store_ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        source: layers.source,
        engine,
        alerting,
    };
    let now = vigil_common::now_ms();
    report(&state, "agent-web-1", "web-1", 1, now - 1000, 0.42).await;
    report(&state, "agent-evil", EVIL, 1, now - 1000, 0.2).await;
    state
        .store
        .write_series(&[series("evil_temperature", EVIL, &[], now - 1000, 90.0)])
        .await
        .expect("write");
    state.alerting.round_at(now).await.expect("round");

    let sessions = Arc::new(Sessions::new(SessionPolicy::default()));
    let admin = sign_in(&state, &sessions, "ada", Role::Admin).await;
    let operator = sign_in(&state, &sessions, "otto", Role::Operator).await;
    let viewer = sign_in(&state, &sessions, "vic", Role::Viewer).await;

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = send_buffer {
        // Accepted sockets inherit the listener's buffer size on Linux.
        socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
    }
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(64).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let app = app_with_dashboard(
        state.clone(),
        &access::AccessPolicy::default(),
        sessions,
        dashboard,
    )
    .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Fixture {
        state,
        addr,
        admin,
        operator,
        viewer,
        dir,
        server,
    }
}

pub async fn start(backend: Backend<'_>) -> Fixture {
    start_with(backend, DashboardConfig::default(), None).await
}

/// A client that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

impl Fixture {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path` as `who` (or signed out): status, headers, body.
    pub async fn get(
        &self,
        path: &str,
        who: Option<&Session>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = client().get(self.url(path));
        if let Some(s) = who {
            req = req.header("cookie", &s.cookie);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.expect("body"))
    }

    /// POSTs a form as `who`.
    pub async fn post_form(
        &self,
        path: &str,
        who: &Session,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = client()
            .post(self.url(path))
            .header("cookie", &who.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.expect("body"))
    }

    /// The id of the active alert named `name`.
    pub fn alert_id(&self, name: &str) -> String {
        let a = self
            .state
            .alerting
            .active()
            .into_iter()
            .find(|a| a.labels.get("alertname").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no active alert {name}"));
        vigil_aggregator::alert::state::fp_hex(a.fingerprint)
    }
}
