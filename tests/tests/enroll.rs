//! Enrollment, revocation and rotation against a real aggregator over QUIC:
//! tokens from the admin API and the CLI, `vigil-agent enroll` through the
//! library and the binary, every refusal with its message, revocation
//! closing a real agent's connection, and a rotation that loses no batch.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_agent::enroll::{self, EnrollError, EnrollOptions, TrustSource};
use vigil_agent::{Agent, AgentConfig, AgentHandle, Stats};
use vigil_common::enroll::Refusal;
use vigil_tests::{Db, TestAggregator};

const ENROLL: &str = "[enroll]\nca_key = \"ca.key\"\nkey_grace = \"1h\"\n";

async fn aggregator(db: Db) -> TestAggregator {
    TestAggregator::start_configured(db, "", ENROLL).await
}

/// `POST /api/v1/enroll-tokens`; returns the JSON answer.
async fn api_token(agg: &TestAggregator, admin: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(agg.url("/api/v1/enroll-tokens"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn new_token(agg: &TestAggregator, admin: &str, host_name: Option<&str>) -> (String, String) {
    let (status, body) = api_token(agg, admin, json!({"ttl": "10m", "host_name": host_name})).await;
    assert_eq!(status, 201, "{body}");
    (
        body["token"].as_str().expect("token").to_string(),
        body["ca_fingerprint"]
            .as_str()
            .expect("fingerprint")
            .to_string(),
    )
}

fn options(agg: &TestAggregator, token: &str, trust: TrustSource, dir: &Path) -> EnrollOptions {
    EnrollOptions {
        token: token.to_string(),
        aggregator: agg.quic.to_string(),
        trust,
        dir: dir.to_path_buf(),
        config: None,
        agent_id: None,
        server_name: Some("localhost".into()),
        force: false,
        timeout: Duration::from_secs(5),
    }
}

/// One audit record: (actor kind, actor, action, target, details, source).
type Entry = (String, String, String, String, Value, Option<String>);

/// Every audit record, oldest first.
async fn audit_log(agg: &TestAggregator) -> Vec<Entry> {
    let filter = vigil_aggregator::audit::Filter {
        limit: 1000,
        ..Default::default()
    };
    let page = vigil_aggregator::audit::query(&agg.running().state.store.db(), &filter)
        .await
        .expect("audit query");
    page.records
        .into_iter()
        .rev()
        .map(|r| {
            (
                r.actor_kind,
                r.actor,
                r.action,
                r.target,
                serde_json::from_str(&r.details).expect("details are JSON"),
                r.source,
            )
        })
        .collect()
}

/// The audit records of `action`.
async fn audited(agg: &TestAggregator, action: &str) -> Vec<Entry> {
    audit_log(agg)
        .await
        .into_iter()
        .filter(|r| r.2 == action)
        .collect()
}

/// The enrolled agent's config with test pacing.
fn agent_config(path: &Path) -> AgentConfig {
    let mut config = AgentConfig::load(path).expect("the written config loads");
    config.interval = Duration::from_millis(200);
    config.aggregator.connect_timeout = Duration::from_millis(500);
    config.aggregator.backoff_base = Duration::from_millis(50);
    config.aggregator.backoff_max = Duration::from_millis(300);
    config
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn acked(agent: &AgentHandle) -> u64 {
    Stats::get(&agent.stats().batches_acked)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn tokens_state(body: &Value, id_prefix_of: &str) -> String {
    let hash = vigil_aggregator::auth::token_hash(id_prefix_of);
    let id = vigil_aggregator::store::enroll::token_id(&hash);
    body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .map(|t| t["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

async fn list_tokens(agg: &TestAggregator, admin: &str) -> Value {
    reqwest::Client::new()
        .get(agg.url("/api/v1/enroll-tokens"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// Enrolls with a pinned fingerprint, checks the files, ships batches with
/// the new identity, and shows the token cannot be used again.
async fn enroll_and_ship(db: Db) {
    let agg = aggregator(db).await;
    let admin = agg.token().await;
    let (token, fingerprint) = new_token(&agg, &admin, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(
        &agg,
        &token,
        TrustSource::Fingerprint(fingerprint.clone()),
        dir.path(),
    );
    opts.agent_id = Some("enrolled-1".into());
    let done = enroll::enroll(&opts).await.expect("enrolls");
    assert_eq!(done.agent_id, "enrolled-1");
    assert_eq!(done.previous_key_valid_until_ms, None);
    for (file, want) in [
        ("agent.key", 0o600),
        ("agent.sign.key", 0o600),
        ("agent.crt", 0o644),
        ("ca.crt", 0o644),
    ] {
        assert_eq!(mode(&dir.path().join(file)), want, "{file}");
    }
    let cert = vigil_common::tls::load_certs(&dir.path().join("agent.crt")).expect("cert");
    assert_eq!(
        vigil_common::tls::common_name(&cert[0]).as_deref(),
        Some("enrolled-1")
    );
    // The aggregator registered exactly the key that was written.
    let key = vigil_common::sign::load_signing_key(&dir.path().join("agent.sign.key"))
        .expect("signing key");
    let record = agg
        .running()
        .state
        .store
        .agent("enrolled-1")
        .await
        .expect("store")
        .expect("registered");
    assert_eq!(record.public_key, key.verifying_key().to_bytes());
    assert!(!record.revoked);

    // The written config runs as is.
    let config = agent_config(&done.config);
    let host = config.host.clone();
    let agent = Agent::start(config).await.expect("agent starts");
    wait_for("3 acks", Duration::from_secs(20), || acked(&agent) >= 3).await;
    let stats = agent.stats();
    agent
        .shutdown(Duration::from_secs(10))
        .await
        .expect("drains");
    let queued = Stats::get(&stats.samples_queued);
    let stored = agg
        .running()
        .state
        .store
        .count_samples(Some(&host))
        .await
        .expect("count");
    assert_eq!(stored, queued, "stored == sent");

    // A token works once.
    let again = tempfile::tempdir().expect("tempdir");
    let mut opts = options(
        &agg,
        &token,
        TrustSource::Fingerprint(fingerprint),
        again.path(),
    );
    opts.agent_id = Some("enrolled-2".into());
    match enroll::enroll(&opts).await {
        Err(EnrollError::Refused { code, message }) => {
            assert_eq!(code, Refusal::TokenUsed);
            assert!(
                message.contains("already used (a token works once)"),
                "{message}"
            );
        }
        other => panic!("second use: {other:?}"),
    }
    assert!(
        !again.path().join("agent.crt").exists(),
        "nothing written on a refusal"
    );
    let listed = list_tokens(&agg, &admin).await;
    assert_eq!(tokens_state(&listed, &token), "used");
    assert_eq!(listed["tokens"][0]["used_by"], "enrolled-1", "{listed}");
    let m = &agg.running().state.metrics;
    let count = |r: &str| {
        m.enrollments
            .get_or_create(&vigil_aggregator::metrics::Reason::new(r))
            .get()
    };
    assert_eq!(count("enrolled"), 1);
    assert_eq!(count("token_used"), 1);

    // Audited: the token's creation by the admin token (never the secret),
    // the enrollment approved by that token, the refusal; once each.
    let log = audit_log(&agg).await;
    let text = format!("{log:?}");
    assert!(
        !text.contains(&token),
        "the token is never recorded: {text}"
    );
    let created = audited(&agg, "enroll_token.create").await;
    assert_eq!(created.len(), 1, "{log:?}");
    let token_id = created[0].3.clone();
    assert_eq!(
        (created[0].0.as_str(), created[0].1.as_str()),
        ("token", "test")
    );
    assert_eq!(created[0].5.as_deref(), Some("127.0.0.1"));
    let enrolled = audited(&agg, "agent.enroll").await;
    assert_eq!(enrolled.len(), 1, "{log:?}");
    let (kind, actor, _, target, details, source) = &enrolled[0];
    assert_eq!(kind, "token");
    assert_eq!(actor, &format!("enroll:{token_id}"));
    assert_eq!(target, "enrolled-1");
    assert_eq!(details["re_enrolled"], false, "{details}");
    assert_eq!(
        details["public_key"],
        vigil_common::sign::public_key_to_hex(&key.verifying_key()),
        "{details}"
    );
    assert_eq!(source.as_deref(), Some("127.0.0.1"));
    let refused = audited(&agg, "agent.enroll_refused").await;
    assert_eq!(refused.len(), 1, "{log:?}");
    assert_eq!(refused[0].3, "enrolled-2");
    assert_eq!(refused[0].4["code"], "token_used", "{:?}", refused[0]);
    assert_eq!(refused[0].4["request"], "enroll", "{:?}", refused[0]);
    agg.stop().await;
}

#[tokio::test]
async fn enrollment_on_sqlite() {
    enroll_and_ship(Db::Sqlite).await;
}

#[tokio::test]
async fn enrollment_on_postgres() {
    enroll_and_ship(Db::Postgres).await;
}

/// Every way an enrollment can fail, each with its message; none of them
/// writes a file, and those that fail before reaching a trusted aggregator
/// leave the token usable.
#[tokio::test]
async fn enrollment_errors_are_clear() {
    let agg = aggregator(Db::Sqlite).await;
    let admin = agg.token().await;
    let (token, _) = new_token(&agg, &admin, None).await;
    let ca_file = agg.pki.path().join("ca.crt");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let opts = |token: &str, trust: TrustSource| {
        let mut o = options(&agg, token, trust, d);
        o.agent_id = Some("err-1".into());
        o
    };

    // The wrong fingerprint: the token is not sent, so it stays live.
    let wrong = "ab".repeat(32);
    let err = enroll::enroll(&opts(&token, TrustSource::Fingerprint(wrong)))
        .await
        .expect_err("wrong fingerprint");
    assert!(matches!(err, EnrollError::WrongFingerprint(_)), "{err}");
    assert!(err.to_string().contains("the token was not sent"), "{err}");
    // A CA file of another CA: the same.
    let other = vigil_tests::Pki::new();
    let err = enroll::enroll(&opts(
        &token,
        TrustSource::CaFile(other.path().join("ca.crt")),
    ))
    .await
    .expect_err("other CA");
    assert!(matches!(err, EnrollError::Untrusted { .. }), "{err}");
    let err = enroll::enroll(&opts(&token, TrustSource::Fingerprint("xyz".into())))
        .await
        .expect_err("bad fingerprint");
    assert!(
        err.to_string().contains("is not a SHA-256 fingerprint"),
        "{err}"
    );
    assert_eq!(
        tokens_state(&list_tokens(&agg, &admin).await, &token),
        "live"
    );

    // Nobody listening: unreachable, quickly.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut o = opts(&token, TrustSource::CaFile(ca_file.clone()));
    o.aggregator = closed.local_addr().expect("addr").to_string();
    drop(closed);
    o.timeout = Duration::from_millis(800);
    let err = enroll::enroll(&o).await.expect_err("unreachable");
    assert!(matches!(err, EnrollError::Unreachable(_)), "{err}");
    assert!(
        err.to_string()
            .contains("did not answer within the timeout"),
        "{err}"
    );
    let mut o = opts(&token, TrustSource::CaFile(ca_file.clone()));
    o.aggregator = "no-port".into();
    assert!(matches!(
        enroll::enroll(&o).await,
        Err(EnrollError::BadAddress(_))
    ));

    // Unknown, revoked and expired tokens.
    let err = enroll::enroll(&opts(
        "vgl_enroll_nope",
        TrustSource::CaFile(ca_file.clone()),
    ))
    .await
    .expect_err("unknown");
    assert!(
        matches!(
            &err,
            EnrollError::Refused {
                code: Refusal::UnknownToken,
                ..
            }
        ),
        "{err}"
    );
    let (revoked, _) = new_token(&agg, &admin, None).await;
    let id =
        vigil_aggregator::store::enroll::token_id(&vigil_aggregator::auth::token_hash(&revoked));
    let status = reqwest::Client::new()
        .delete(agg.url(&format!("/api/v1/enroll-tokens/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete")
        .status();
    assert_eq!(status, 204);
    let err = enroll::enroll(&opts(&revoked, TrustSource::CaFile(ca_file.clone())))
        .await
        .expect_err("revoked");
    assert!(err.to_string().contains("was revoked"), "{err}");
    let expired = "vgl_enroll_expired";
    let db = agg.running().state.store.db();
    let now = vigil_common::now_ms();
    vigil_aggregator::store::enroll::insert_token(
        &db,
        &vigil_aggregator::auth::token_hash(expired),
        None,
        now - 120_000,
        now - 60_000,
    )
    .await
    .expect("insert");
    let err = enroll::enroll(&opts(expired, TrustSource::CaFile(ca_file.clone())))
        .await
        .expect_err("expired");
    assert!(
        matches!(
            &err,
            EnrollError::Refused {
                code: Refusal::TokenExpired,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("has expired; create a new one"),
        "{err}"
    );

    // A token bound to another id.
    let (bound, _) = new_token(&agg, &admin, Some("db-7")).await;
    let err = enroll::enroll(&opts(&bound, TrustSource::CaFile(ca_file.clone())))
        .await
        .expect_err("mismatch");
    assert!(
        err.to_string()
            .contains("is for agent \"db-7\", not \"err-1\""),
        "{err}"
    );
    assert_eq!(
        tokens_state(&list_tokens(&agg, &admin).await, &bound),
        "live"
    );
    assert!(
        !d.join("agent.crt").exists(),
        "no file written by any refusal"
    );

    // An id already taken: refused, and the token is not burnt.
    agg.add_agent("taken").await;
    let mut o = opts(&token, TrustSource::CaFile(ca_file.clone()));
    o.agent_id = Some("taken".into());
    let err = enroll::enroll(&o).await.expect_err("taken");
    assert!(
        matches!(
            &err,
            EnrollError::Refused {
                code: Refusal::AgentIdTaken,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        tokens_state(&list_tokens(&agg, &admin).await, &token),
        "live"
    );

    // Existing files are refused before anything happens, unless --force.
    std::fs::write(d.join("agent.key"), "old").expect("write");
    let err = enroll::enroll(&opts(&token, TrustSource::CaFile(ca_file.clone())))
        .await
        .expect_err("exists");
    assert!(matches!(err, EnrollError::Exists(_)), "{err}");
    assert!(
        err.to_string().contains("pass --force to overwrite"),
        "{err}"
    );
    assert_eq!(
        tokens_state(&list_tokens(&agg, &admin).await, &token),
        "live"
    );
    let mut o = opts(&token, TrustSource::CaFile(ca_file.clone()));
    o.force = true;
    enroll::enroll(&o).await.expect("forced");
    assert_ne!(std::fs::read(d.join("agent.key")).expect("read"), b"old");

    // The admin API refuses bad token requests clearly.
    for (body, want) in [
        (json!({"ttl": "soon"}), "ttl \"soon\""),
        (json!({"ttl": "1s"}), "between 1m and"),
        (
            json!({"ttl": "1h", "host_name": "bad name"}),
            "invalid host name",
        ),
        (json!({"ttl": "1h", "extra": 1}), "unknown field"),
    ] {
        let (status, answer) = api_token(&agg, &admin, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(want),
            "{body}: {answer}"
        );
    }
    agg.stop().await;

    // An aggregator without [enroll] says so.
    let plain = TestAggregator::start(Db::Sqlite).await;
    let mut o = options(
        &plain,
        &token,
        TrustSource::CaFile(plain.pki.path().join("ca.crt")),
        d,
    );
    o.agent_id = Some("err-1".into());
    o.force = true;
    let err = enroll::enroll(&o).await.expect_err("not enabled");
    assert!(matches!(err, EnrollError::NotEnabled(_)), "{err}");
    let admin = plain.token().await;
    let (status, answer) = api_token(&plain, &admin, json!({"ttl": "1h"})).await;
    assert_eq!(status, 409, "{answer}");
    plain.stop().await;
}

/// The binaries: `enroll-token create` prints a command line that works,
/// and `vigil-agent enroll` reports refusals on stderr with exit code 1.
/// (Multi-threaded: the aggregator keeps serving while the test waits for a
/// child process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_round_trip() {
    let agg = aggregator(Db::Sqlite).await;
    let out = std::process::Command::new(vigil_tests::binary("vigil-aggregator"))
        .args([
            "enroll-token",
            "create",
            "--ttl",
            "5m",
            "--host-name",
            "cli-1",
            "--config",
        ])
        .arg(&agg.config_path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = stdout.lines().next().expect("token").to_string();
    let fp = stdout
        .split("--ca-fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("fingerprint in the printed command")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let enroll_cli = |token: &str| {
        std::process::Command::new(vigil_tests::binary("vigil-agent"))
            .args(["enroll", "--token", token, "--aggregator"])
            .arg(agg.quic.to_string())
            .args([
                "--server-name",
                "localhost",
                "--ca-fingerprint",
                &fp,
                "--timeout",
                "5s",
            ])
            .arg("--dir")
            .arg(dir.path())
            .output()
            .expect("runs")
    };
    let out = enroll_cli(&token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("enrolled as agent cli-1"), "{stdout}");
    // check-config accepts what enroll wrote.
    let check = std::process::Command::new(vigil_tests::binary("vigil-agent"))
        .args(["check-config", "--config"])
        .arg(dir.path().join("agent.toml"))
        .output()
        .expect("runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let out = enroll_cli(&token);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already exists (pass --force to overwrite)"),
        "{stderr}"
    );
    agg.stop().await;
}

/// An enrolled agent at `dir`, running.
async fn running_agent(
    agg: &TestAggregator,
    admin: &str,
    id: &str,
    dir: &Path,
) -> (AgentHandle, PathBuf) {
    let (token, fp) = new_token(agg, admin, Some(id)).await;
    let done = enroll::enroll(&options(agg, &token, TrustSource::Fingerprint(fp), dir))
        .await
        .expect("enrolls");
    assert_eq!(done.agent_id, id, "the token's host name is the id");
    let agent = Agent::start(agent_config(&done.config))
        .await
        .expect("starts");
    wait_for("2 acks", Duration::from_secs(20), || acked(&agent) >= 2).await;
    (agent, done.config)
}

/// Revoking closes the agent's live QUIC connection within seconds (API: at
/// once; CLI: through the watcher) and refuses it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_closes_live_connections() {
    let agg = aggregator(Db::Sqlite).await;
    let admin = agg.token().await;
    let dirs = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (api_agent, _) = running_agent(&agg, &admin, "rev-api", dirs.0.path()).await;
    let (cli_agent, _) = running_agent(&agg, &admin, "rev-cli", dirs.1.path()).await;
    let m = agg.running().state.metrics.clone();
    assert_eq!(m.connections_active.get(), 2);

    // Through the API: the connection is closed before the answer.
    let answer: Value = reqwest::Client::new()
        .post(agg.url("/api/v1/agents/rev-api/revoke"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["connections_closed"], 1, "{answer}");
    let revoked_at = Instant::now();
    wait_for("rev-api disconnected", Duration::from_secs(3), || {
        m.connections_active.get() == 1
    })
    .await;
    // Reconnects are refused (closed with the revoked code, counted)...
    wait_for("a reconnect refused", Duration::from_secs(5), || {
        m.connections_revoked.get() >= 2
    })
    .await;
    let frozen = acked(&api_agent);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        acked(&api_agent),
        frozen,
        "no batch accepted after revocation"
    );
    // ...and the agent keeps its batches (nothing dropped).
    assert_eq!(Stats::get(&api_agent.stats().samples_dropped), 0);
    assert!(revoked_at.elapsed() < Duration::from_secs(10));

    // From another process (the CLI writes the database): the watcher closes
    // the connection within a couple of seconds.
    let out = std::process::Command::new(vigil_tests::binary("vigil-aggregator"))
        .args(["revoke-agent", "--agent-id", "rev-cli", "--config"])
        .arg(&agg.config_path)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    wait_for("rev-cli disconnected", Duration::from_secs(4), || {
        m.connections_active.get() == 0
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(4));
    let frozen = acked(&cli_agent);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        acked(&cli_agent),
        frozen,
        "no batch accepted after revocation"
    );

    // An unknown agent is a 404.
    let status = reqwest::Client::new()
        .post(agg.url("/api/v1/agents/nobody/revoke"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke")
        .status();
    assert_eq!(status, 404);
    // One audit record per revocation: the API's by its token (with the
    // client's address), the CLI's by the local user; none for the 404.
    let revocations = audited(&agg, "agent.revoke").await;
    let who: Vec<(&str, &str, Option<&str>)> = revocations
        .iter()
        .map(|(kind, _, _, target, _, source)| (kind.as_str(), target.as_str(), source.as_deref()))
        .collect();
    assert_eq!(
        who,
        [
            ("token", "rev-api", Some("127.0.0.1")),
            ("cli", "rev-cli", None)
        ],
        "{revocations:?}"
    );
    let _ = api_agent.shutdown(Duration::from_millis(100)).await;
    let _ = cli_agent.shutdown(Duration::from_millis(100)).await;
    agg.stop().await;
}

/// A rotation while batches signed with the old key wait in the spool: the
/// old key is accepted for the grace period, so every sample is stored.
#[tokio::test]
async fn rotation_loses_no_batch() {
    let mut agg = aggregator(Db::Postgres).await;
    let admin = agg.token().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, config_path) = running_agent(&agg, &admin, "rot-1", dir.path()).await;
    let host = agent_config(&config_path).host;
    let spool = agent_config(&config_path).spool.dir;

    // The aggregator goes away; the agent spools batches signed with the old key.
    if let Some(running) = agg.running.take() {
        running.shutdown().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats1 = agent.stats();
    let _ = agent.shutdown(Duration::from_millis(100)).await;
    let queued1 = Stats::get(&stats1.samples_queued);
    let pending: Vec<_> = vigil_agent::spool::inspect(&spool)
        .expect("spool")
        .into_iter()
        .filter(|r| !r.removed)
        .collect();
    let pending_samples: u64 = pending.iter().map(|r| r.samples).sum();
    assert!(!pending.is_empty(), "batches wait in the spool");
    assert_eq!(
        Stats::get(&stats1.samples_acked) + Stats::get(&stats1.samples_duplicate) + pending_samples,
        queued1
    );

    // Back up; rotate (the agent is stopped), then start with the new keys.
    agg.restart_after(Duration::ZERO).await;
    let old_key = std::fs::read(dir.path().join("agent.sign.key")).expect("read");
    let old_cert = std::fs::read(dir.path().join("agent.crt")).expect("read");
    let rotated = enroll::rotate(&config_path, Duration::from_secs(5))
        .await
        .expect("rotates");
    assert_eq!(rotated.agent_id, "rot-1");
    let until = rotated.previous_key_valid_until_ms.expect("grace");
    assert!(
        until > vigil_common::now_ms() + 3_500_000,
        "about an hour of grace"
    );
    assert_ne!(
        std::fs::read(dir.path().join("agent.sign.key")).expect("read"),
        old_key
    );
    assert_ne!(
        std::fs::read(dir.path().join("agent.crt")).expect("read"),
        old_cert
    );
    assert_eq!(mode(&dir.path().join("agent.sign.key")), 0o600);
    assert_eq!(mode(&dir.path().join("agent.key")), 0o600);

    let agent = Agent::start(agent_config(&config_path))
        .await
        .expect("restarts");
    let need = pending.len() as u64 + 3;
    wait_for(
        "spool drained and new batches acked",
        Duration::from_secs(30),
        || acked(&agent) >= need,
    )
    .await;
    let stats2 = agent.stats();
    agent
        .shutdown(Duration::from_secs(15))
        .await
        .expect("drains");
    let queued2 = Stats::get(&stats2.samples_queued);
    assert_eq!(
        Stats::get(&stats1.samples_dropped) + Stats::get(&stats2.samples_dropped),
        0
    );

    let running = agg.running();
    let stored = running
        .state
        .store
        .count_samples(Some(&host))
        .await
        .expect("count");
    assert_eq!(
        stored,
        queued1 + queued2,
        "stored == sent across the rotation"
    );
    let m = &running.state.metrics;
    assert!(
        m.batches_previous_key.get() >= pending.len() as u64,
        "the spooled batches verified with the previous key ({} < {})",
        m.batches_previous_key.get(),
        pending.len()
    );
    assert_eq!(m.rejected(vigil_common::RejectCode::BadSignature), 0);

    // A second rotation with the now-stale identity on disk is impossible:
    // the files were replaced, so rotating again uses the new ones and works.
    enroll::rotate(&config_path, Duration::from_secs(5))
        .await
        .expect("rotates again with the new identity");
    // Each rotation is one audit record by the agent itself.
    let rotations = audited(&agg, "agent.rotate").await;
    assert_eq!(rotations.len(), 2, "{rotations:?}");
    for (kind, actor, _, target, details, source) in &rotations {
        assert_eq!((kind.as_str(), actor.as_str()), ("agent", "rot-1"));
        assert_eq!(target, "rot-1");
        assert!(details["public_key"].is_string(), "{details}");
        assert_eq!(source.as_deref(), Some("127.0.0.1"));
    }
    agg.stop().await;
}

/// With `[enroll]` a client without a certificate completes the handshake,
/// but it can only enroll: an ingest connection is closed (code 1), and a
/// rotation or a malformed request on an enrollment connection is refused.
#[tokio::test]
async fn without_a_certificate_only_enrollment_is_possible() {
    use vigil_common::enroll::{EnrollReply, EnrollRequest, MAX_ENROLL_FRAME, Trust};
    use vigil_common::frame::{read_frame, write_frame};

    let agg = aggregator(Db::Sqlite).await;
    let ca = vigil_common::tls::load_certs(&agg.pki.path().join("ca.crt")).expect("ca");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("udp");

    // Ingest ALPN, no client certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca[0].clone()).expect("root");
    let mut tls = rustls::ClientConfig::builder_with_provider(vigil_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![vigil_common::wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let conn = endpoint
        .connect_with(
            quinn::ClientConfig::new(std::sync::Arc::new(crypto)),
            agg.quic,
            "localhost",
        )
        .expect("connect")
        .await
        .expect("the handshake itself succeeds");
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed at once");
    let no_identity = quinn::VarInt::from_u32(vigil_common::wire::close::NO_IDENTITY);
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == no_identity),
        "{closed}"
    );

    // Enrollment ALPN, no certificate: a rotation and garbage are refused.
    let ask = |request: Vec<u8>| {
        let endpoint = endpoint.clone();
        let config =
            vigil_common::enroll::client_config(Trust::Ca(ca.clone()), None).expect("config");
        let addr = agg.quic;
        async move {
            let conn = endpoint
                .connect_with(config, addr, "localhost")
                .expect("connect")
                .await
                .expect("handshake");
            let (mut send, mut recv) = conn.open_bi().await.expect("stream");
            write_frame(&mut send, &request).await.expect("write");
            send.finish().expect("finish");
            let reply = read_frame(&mut recv, MAX_ENROLL_FRAME)
                .await
                .expect("reply");
            conn.close(0u32.into(), b"");
            EnrollReply::decode(&reply).expect("decode")
        }
    };
    let rotate = EnrollRequest::Rotate {
        csr_pem: "x".into(),
        signing_key: [1; 32],
        proof: vec![0; 64],
    };
    match ask(rotate.encode().expect("encode")).await {
        EnrollReply::Refused { code, message } => {
            assert_eq!(code, Refusal::NotAuthorized);
            assert!(message.contains("current client certificate"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match ask(vec![0xff; 40]).await {
        EnrollReply::Refused { code, .. } => assert_eq!(code, Refusal::BadRequest),
        other => panic!("{other:?}"),
    }
    // A bad CSR with a live token: refused, and the token stays usable.
    let admin = agg.token().await;
    let (token, _) = new_token(&agg, &admin, None).await;
    let bad_csr = EnrollRequest::Enroll {
        token: token.clone(),
        agent_id: Some("csr-1".into()),
        hostname: "h".into(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
        signing_key: [1; 32],
    };
    match ask(bad_csr.encode().expect("encode")).await {
        EnrollReply::Refused { code, message } => {
            assert_eq!(code, Refusal::BadRequest);
            assert!(message.contains("certificate signing request"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        tokens_state(&list_tokens(&agg, &admin).await, &token),
        "live"
    );
    endpoint.wait_idle().await;
    agg.stop().await;
}
