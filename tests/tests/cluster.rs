//! Two real `vigil-aggregator` processes on one PostgreSQL database
//! (`[cluster] mode = "on"`), two real agents each listing both endpoints
//! (in opposite orders), a rule over a value the test sets, and a local
//! webhook receiver counting notifications. The leader is killed with
//! SIGKILL mid-incident: the follower must take over within 30 s, send
//! nothing that was already sent, and send the resolution. Every group
//! gets exactly one firing and one resolved notification. Then the new
//! leader dies while the second incident's notifications are still
//! pending (the receiver refused them): the first node, back as a
//! follower, takes over and delivers them, once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::Value;
use vigil_agent::collect::scrape::ScrapeConfig;
use vigil_agent::{Agent, AgentConfig, AgentHandle, AggregatorConfig};
use vigil_aggregator::testing::PgTestDb;
use vigil_tests::{Pki, binary};

const ALERT: &str = "ClusterTestHigh";
const HOSTS: [&str; 2] = ["cluster-1.test", "cluster-2.test"];

fn rules() -> String {
    format!(
        "groups:\n  - name: cluster\n    interval: 1s\n    rules:\n      - alert: {ALERT}\n        \
         expr: cluster_test_value > 0\n        labels: {{severity: page}}\n        \
         annotations: {{summary: \"{{{{ $labels.host }}}} is high\"}}\n"
    )
}

fn notify(url: &str) -> String {
    format!(
        "route:\n  receiver: discard\n  group_by: [alertname, host]\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 4h\n  routes:\n    - receiver: hook\n      \
         matchers: ['alertname=\"{ALERT}\"']\n\
         receivers:\n  - name: discard\n  - name: hook\n    webhook_configs:\n      \
         - url: {url:?}\n        send_resolved: true\n"
    )
}

/// One notification as the receiver got it: (host, status).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// The webhook receiver: records what it accepts; while `refuse` is set
/// it answers 503 (the outbox retries) and counts the refusals.
#[derive(Clone, Default)]
struct Hook {
    seen: Seen,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    refused: Arc<AtomicU64>,
}

async fn hook(State(h): State<Hook>, body: Bytes) -> axum::http::StatusCode {
    if h.refuse.load(Ordering::SeqCst) {
        h.refused.fetch_add(1, Ordering::SeqCst);
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let host = v["groupLabels"]["host"].as_str().unwrap_or("?").to_string();
    let status = v["status"].as_str().unwrap_or("?").to_string();
    h.seen.lock().expect("lock").push((host, status));
    axum::http::StatusCode::OK
}

/// Serves `app` on a loopback port; returns the address.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free TCP port")
        .port()
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

/// One aggregator process.
struct Node {
    name: &'static str,
    config: PathBuf,
    log: PathBuf,
    http: String,
    quic: String,
    child: Option<Child>,
}

impl Node {
    fn new(dir: &Path, name: &'static str, url: &str) -> Node {
        let (http, quic) = (
            format!("127.0.0.1:{}", free_tcp()),
            format!("127.0.0.1:{}", free_udp()),
        );
        let config = dir.join(format!("{name}.toml"));
        let text = format!(
            "[http]\nlisten = {http:?}\nanonymous_read = true\n\
             rate_limit_per_ip = {{ per_second = 0, burst = 1 }}\n\
             [quic]\nlisten = {quic:?}\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             [database]\nurl = {url:?}\nmax_connections = 4\n\
             [alerting]\nrule_files = [\"cluster.rules.yml\"]\nevaluation_interval = \"1s\"\n\
             [notify]\nconfig_file = \"cluster.notify.yml\"\n\
             [notify.outbox]\nmin_backoff = \"200ms\"\nmax_backoff = \"1s\"\npoll_interval = \"100ms\"\n\
             [cluster]\nmode = \"on\"\nnode_name = {name:?}\ncheck_interval = \"1s\"\ncheck_timeout = \"2s\"\n"
        );
        std::fs::write(&config, text).expect("write config");
        Node {
            name,
            log: dir.join(format!("{name}.log")),
            config,
            http,
            quic,
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(binary("vigil-aggregator"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("vigil-aggregator starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no unlock; PostgreSQL sees the socket close.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/readyz`'s cluster object, once the node answers ready.
async fn cluster_of(http: &reqwest::Client, node: &Node) -> Option<Value> {
    let r = http.get(node.url("/readyz")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    Some(v["cluster"].clone())
}

/// Waits until `node` reports `role` with `leader` leading.
async fn wait_role(http: &reqwest::Client, node: &Node, role: &str, leader: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let c = cluster_of(http, node).await;
        if let Some(c) = &c
            && c["role"] == role
            && c["leader"]["node"] == leader
        {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{} is not {role} under {leader} after {limit:?}: {c:?}\n--- log ---\n{}",
            node.name,
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A metric's value in `node`'s `/metrics` (sum over label sets).
async fn metric(http: &reqwest::Client, node: &Node, name: &str) -> f64 {
    let text = http
        .get(node.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn counts(seen: &Seen) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for k in seen.lock().expect("lock").iter() {
        *out.entry(k.clone()).or_insert(0) += 1;
    }
    out
}

/// Waits until every host's group got `n` notifications with `status`.
async fn wait_notified(seen: &Seen, status: &str, n: usize, limit: Duration, nodes: &[&Node]) {
    let start = Instant::now();
    loop {
        let c = counts(seen);
        if HOSTS
            .iter()
            .all(|h| c.get(&(h.to_string(), status.to_string())) >= Some(&n))
        {
            return;
        }
        if start.elapsed() > limit {
            let logs: Vec<String> = nodes.iter().map(|n| n.log_text()).collect();
            panic!(
                "not every group was notified {status} within {limit:?}: {c:?}\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn agent_config(
    pki: &Pki,
    work: &Path,
    id: &str,
    host: &str,
    endpoints: Vec<String>,
    scrape: &str,
) -> AgentConfig {
    let p = pki.agent_paths(id);
    let mut agg = AggregatorConfig::new(
        endpoints,
        "localhost",
        pki.path().join("ca.crt"),
        p.cert,
        p.key,
        p.signing_key,
    );
    agg.connect_timeout = Duration::from_millis(500);
    agg.ack_timeout = Duration::from_secs(2);
    agg.backoff_base = Duration::from_millis(50);
    agg.backoff_max = Duration::from_millis(500);
    let mut c = AgentConfig::new(id, agg);
    c.host = host.into();
    c.roles = vec!["cluster".into()];
    c.interval = Duration::from_millis(500);
    c.spool.dir = work.join(format!("spool-{id}"));
    c.collect.system.enabled = false;
    c.collect.scrape = vec![
        toml::from_str::<ScrapeConfig>(&format!(
            "name = \"value\"\nurl = \"{scrape}\"\nrole = \"cluster\""
        ))
        .expect("scrape config"),
    ];
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_one_database_the_leader_dies_mid_incident() {
    vigil_common::tls::install_default_provider();
    let pg = PgTestDb::create().await.expect("PostgreSQL for tests");
    let pki = Pki::new();
    let dir = pki.path().to_path_buf();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    // The webhook receiver and the value the agents scrape.
    let receiver = Hook::default();
    let seen = receiver.seen.clone();
    let hook_addr = serve(
        Router::new()
            .route("/hook", post(hook))
            .with_state(receiver.clone()),
    )
    .await;
    let value = Arc::new(AtomicU64::new(0));
    let v = value.clone();
    let scrape_addr = serve(Router::new().route(
        "/metrics",
        get(move || {
            let v = v.load(Ordering::SeqCst);
            async move { format!("# TYPE cluster_test_value gauge\ncluster_test_value {v}\n") }
        }),
    ))
    .await;
    std::fs::write(dir.join("cluster.rules.yml"), rules()).expect("rules");
    std::fs::write(
        dir.join("cluster.notify.yml"),
        notify(&format!("http://{hook_addr}/hook")),
    )
    .expect("notify config");

    // Schema, agents' keys and an API token, as an operator would set them up.
    let store = vigil_aggregator::store::open(&pg.url, &dir, 2).expect("store");
    store.migrate().await.expect("migrate");
    let ids = ["cluster-1", "cluster-2"];
    for id in ids {
        let public = pki.agent(id);
        let key = vigil_common::sign::public_key_from_hex(&public).expect("hex");
        store
            .register_agent(id, key.as_bytes())
            .await
            .expect("register");
    }
    let token = vigil_aggregator::auth::new_token().expect("token");
    store
        .put_token("test", &vigil_aggregator::auth::token_hash(&token), "admin")
        .await
        .expect("token");

    // Node a starts alone and leads; node b follows.
    let mut a = Node::new(&dir, "node-a", &pg.url);
    let mut b = Node::new(&dir, "node-b", &pg.url);
    a.start();
    wait_role(&http, &a, "leader", "node-a", Duration::from_secs(60)).await;
    b.start();
    wait_role(&http, &b, "follower", "node-a", Duration::from_secs(60)).await;
    assert_eq!(metric(&http, &a, "vigil_aggregator_leader").await, 1.0);
    assert_eq!(metric(&http, &b, "vigil_aggregator_leader").await, 0.0);

    // Agent 1 prefers a, agent 2 prefers b: ingest runs on both nodes.
    let work = tempfile::tempdir().expect("tempdir");
    let scrape = format!("http://{scrape_addr}/metrics");
    let agents: Vec<AgentHandle> = vec![
        Agent::start(agent_config(
            &pki,
            work.path(),
            ids[0],
            HOSTS[0],
            vec![a.quic.clone(), b.quic.clone()],
            &scrape,
        ))
        .await
        .expect("agent 1"),
        Agent::start(agent_config(
            &pki,
            work.path(),
            ids[1],
            HOSTS[1],
            vec![b.quic.clone(), a.quic.clone()],
            &scrape,
        ))
        .await
        .expect("agent 2"),
    ];
    // Both nodes stored batches; the follower's query API sees both hosts
    // (it reads the database: node a's samples too).
    let start = Instant::now();
    loop {
        let (ca, cb) = (
            metric(&http, &a, "vigil_aggregator_batches_committed_total").await,
            metric(&http, &b, "vigil_aggregator_batches_committed_total").await,
        );
        let q: Value = http
            .get(b.url("/prometheus/api/v1/query?query=cluster_test_value"))
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        let series = q["data"]["result"].as_array().map_or(0, Vec::len);
        if ca > 0.0 && cb > 0.0 && series == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "ingest on both nodes: a {ca}, b {cb} batches, {series} series on b"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        counts(&seen).is_empty(),
        "nothing notified yet: {:?}",
        counts(&seen)
    );

    // The incident starts: one firing notification per host, from the leader.
    value.store(1, Ordering::SeqCst);
    wait_notified(&seen, "firing", 1, Duration::from_secs(30), &[&a, &b]).await;
    assert_eq!(
        metric(&http, &b, "vigil_aggregator_notifications_sent_total").await,
        0.0
    );
    // (counted once the outbox marked them, right after the receiver's 200)
    let start = Instant::now();
    while metric(&http, &a, "vigil_aggregator_notifications_sent_total").await < 2.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a counts its sends"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The follower shows the leader's alerts and refuses to acknowledge them.
    let start = Instant::now();
    let alerts = loop {
        let v: Value = http
            .get(b.url("/api/v1/alerts"))
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("json");
        let list = v["alerts"].as_array().cloned().unwrap_or_default();
        if list.len() == 2 {
            break list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "follower's alerts: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = alerts[0]["id"].as_str().expect("alert id");
    let refused = http
        .post(b.url(&format!("/api/v1/alerts/{id}/ack")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("ack");
    assert_eq!(refused.status(), 409);
    let body = refused.text().await.expect("body");
    assert!(
        body.contains("follower") && body.contains("node-a"),
        "{body}"
    );

    // SIGKILL the leader mid-incident; b takes over.
    a.kill();
    let killed = Instant::now();
    wait_role(&http, &b, "leader", "node-b", Duration::from_secs(30)).await;
    let takeover = killed.elapsed();
    println!("takeover after {takeover:?}");
    assert!(takeover < Duration::from_secs(30));
    assert_eq!(metric(&http, &b, "vigil_aggregator_leader").await, 1.0);
    // The new leader's first rounds see the same firing alerts: nothing
    // is sent again (agent 1 fails over to b meanwhile).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let c = counts(&seen);
    assert_eq!(c.len(), 2, "only the two firing notifications: {c:?}");
    assert!(c.values().all(|n| *n == 1), "{c:?}");

    // The incident ends: the new leader sends the resolutions.
    value.store(0, Ordering::SeqCst);
    wait_notified(&seen, "resolved", 1, Duration::from_secs(30), &[&b]).await;

    // a comes back and follows b; nothing more is sent.
    a.start();
    wait_role(&http, &a, "follower", "node-b", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = counts(&seen);
    for h in HOSTS {
        for status in ["firing", "resolved"] {
            assert_eq!(
                c.get(&(h.to_string(), status.to_string())),
                Some(&1),
                "one {status} notification for {h}: {c:?}"
            );
        }
    }
    assert_eq!(c.values().sum::<usize>(), 4, "{c:?}");
    assert_eq!(
        metric(&http, &a, "vigil_aggregator_notifications_sent_total").await,
        0.0
    );

    // A second incident whose notifications the leader (b) cannot deliver
    // yet: the receiver refuses them; b dies with them pending.
    receiver.refuse.store(true, Ordering::SeqCst);
    value.store(1, Ordering::SeqCst);
    let start = Instant::now();
    while receiver.refused.load(Ordering::SeqCst) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "b never tried to notify the second incident\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.kill();
    wait_role(&http, &a, "leader", "node-a", Duration::from_secs(30)).await;
    receiver.refuse.store(false, Ordering::SeqCst);
    // a delivers them: none lost.
    wait_notified(&seen, "firing", 2, Duration::from_secs(30), &[&a]).await;
    value.store(0, Ordering::SeqCst);
    wait_notified(&seen, "resolved", 2, Duration::from_secs(30), &[&a]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = counts(&seen);
    for h in HOSTS {
        for status in ["firing", "resolved"] {
            assert_eq!(
                c.get(&(h.to_string(), status.to_string())),
                Some(&2),
                "one {status} notification per incident for {h}: {c:?}"
            );
        }
    }
    assert_eq!(
        metric(&http, &a, "vigil_aggregator_notifications_sent_total").await,
        4.0,
        "a sent the second incident's two firing and two resolved notifications"
    );

    for agent in agents {
        agent
            .shutdown(Duration::from_secs(5))
            .await
            .expect("agent stops");
    }
    a.kill();
    b.kill();
    drop(store);
    pg.drop_db().await;
}

/// Two in-process aggregators on one database: a lost lock connection
/// ends the leadership (jobs stop, the epoch moves on, one leader remains),
/// and a clean shutdown hands the lead over at the follower's next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_connection_ends_leadership_and_a_shutdown_hands_over() {
    use vigil_tests::{Db, TestAggregator};
    let pg = PgTestDb::create().await.expect("PostgreSQL for tests");
    let section = |name: &str| {
        format!(
            "[cluster]\nmode = \"on\"\nnode_name = \"{name}\"\ncheck_interval = \"300ms\"\ncheck_timeout = \"1s\"\n"
        )
    };
    let a = TestAggregator::start_configured(Db::Url(pg.url.clone()), "", &section("in-a")).await;
    let wait = |agg: &TestAggregator, role: vigil_aggregator::cluster::Role, what: &str| {
        let cluster = agg.running().cluster.clone();
        let what = what.to_string();
        async move {
            let start = Instant::now();
            while cluster.status().role != role {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "{what}: {:?}",
                    cluster.status()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    use vigil_aggregator::cluster::Role;
    wait(&a, Role::Leader, "a leads").await;
    let b = TestAggregator::start_configured(Db::Url(pg.url.clone()), "", &section("in-b")).await;
    wait(&b, Role::Follower, "b follows").await;
    let leader_of = |agg: &TestAggregator| {
        agg.running()
            .cluster
            .status()
            .leader
            .map(|l| (l.node, l.epoch))
    };
    let start = Instant::now();
    while leader_of(&b) != Some(("in-a".into(), 1)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "b knows a leads: {:?}",
            leader_of(&b)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The API: the role for a token holder, 401 without one.
    let token = b.token().await;
    let http = reqwest::Client::new();
    let v: Value = http
        .get(b.url("/api/v1/cluster"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cluster")
        .json()
        .await
        .expect("json");
    assert_eq!(v["role"], "follower", "{v}");
    assert_eq!(v["node"], "in-b", "{v}");
    assert_eq!(v["leader"]["node"], "in-a", "{v}");
    let anonymous = http
        .get(b.url("/api/v1/cluster"))
        .send()
        .await
        .expect("cluster");
    assert_eq!(anonymous.status(), 401);

    // PostgreSQL drops a's lock session (as after a network partition).
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url)
        .await
        .expect("admin connection");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(killed, [true], "one session held the leader lock");
    let a_metrics = a.running().state.metrics.clone();
    let start = Instant::now();
    loop {
        let roles = (
            a.running().cluster.status().role,
            b.running().cluster.status().role,
        );
        let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM cluster_leader")
            .fetch_one(&mut admin)
            .await
            .expect("epoch");
        if epoch == 2
            && matches!(
                roles,
                (Role::Leader, Role::Follower) | (Role::Follower, Role::Leader)
            )
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "one new leader: {roles:?}, epoch {epoch}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        a_metrics.cluster.leadership_changes.get() >= 2,
        "a led, then lost it"
    );

    // A clean shutdown of whoever leads hands over at once.
    let (leader, follower) = if a.running().cluster.status().role == Role::Leader {
        (a, b)
    } else {
        (b, a)
    };
    let stopped = Instant::now();
    leader.stop().await;
    wait(&follower, Role::Leader, "the follower takes over").await;
    assert!(stopped.elapsed() < Duration::from_secs(20));
    let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM cluster_leader")
        .fetch_one(&mut admin)
        .await
        .expect("epoch");
    assert_eq!(epoch, 3);
    follower.stop().await;
    drop(admin);
    pg.drop_db().await;
}
