//! The audit log end to end, on SQLite and PostgreSQL, over a real HTTP
//! listener (so the client address is known): every state-changing route
//! writes exactly one record with the right actor, refused changes write
//! none, `GET /api/v1/audit` and the `/audit` page are admin-only, every bad
//! filter is a 400 naming the parameter, pages follow the cursor; and the
//! CLI's commands are audited as the local user; an audit write that fails
//! neither fails nor undoes the change, and is logged instead.

mod cli_support;
mod common;
mod dashboard_support;

use serde_json::{Value, json};
use vigil_aggregator::auth::{new_token, token_hash};
use vigil_aggregator::testing::PgTestDb;

use dashboard_support::{Backend, EVIL, Fixture, Session, client, start};

/// An API token of `role` named `name`; the bearer header value.
async fn token(f: &Fixture, name: &str, role: &str) -> String {
    let t = new_token().expect("token");
    f.state
        .store
        .put_token(name, &token_hash(&t), role)
        .await
        .expect("put token");
    format!("Bearer {t}")
}

/// A request to the API with a bearer token or a session (cookie + CSRF).
enum As<'a> {
    Token(&'a str),
    User(&'a Session),
    Nobody,
}

async fn api(
    f: &Fixture,
    method: reqwest::Method,
    path: &str,
    who: As<'_>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, f.url(path));
    match who {
        As::Token(t) => req = req.header("authorization", t),
        As::User(s) => {
            req = req
                .header("cookie", &s.cookie)
                .header("x-csrf-token", &s.csrf)
        }
        As::Nobody => {}
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Reads the audit log as the admin token and checks that exactly one
/// record was added since `last` (an id), by `actor` of `kind`, doing
/// `action`; returns it and moves `last` on.
struct Audit<'a> {
    f: &'a Fixture,
    admin: String,
    last: i64,
}

impl Audit<'_> {
    async fn entries(&self, query: &str) -> Vec<Value> {
        let (s, body) = api(
            self.f,
            reqwest::Method::GET,
            &format!("/api/v1/audit?limit=1000{query}"),
            As::Token(&self.admin),
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        body["entries"].as_array().expect("entries").clone()
    }

    async fn new_ones(&self) -> Vec<Value> {
        self.entries("")
            .await
            .into_iter()
            .filter(|e| e["id"].as_i64().expect("id") > self.last)
            .collect()
    }

    async fn one(&mut self, action: &str, kind: &str, actor: &str) -> Value {
        let new = self.new_ones().await;
        assert_eq!(
            new.len(),
            1,
            "{action}: expected one new record, got {new:#?}"
        );
        let e = new[0].clone();
        assert_eq!(e["action"], action, "{e}");
        assert_eq!(e["actor_kind"], kind, "{e}");
        assert_eq!(e["actor"], actor, "{e}");
        assert_eq!(e["source"], "127.0.0.1", "{e}");
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        self.last = e["id"].as_i64().expect("id");
        e
    }

    async fn none(&self, why: &str) {
        let new = self.new_ones().await;
        assert!(
            new.is_empty(),
            "{why}: nothing should be recorded, got {new:#?}"
        );
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The sign-in form's CSRF cookie and token.
async fn login_form(f: &Fixture) -> (String, String) {
    let resp = client().get(f.url("/login")).send().await.expect("login");
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("vigil_login_csrf="))
        .and_then(|c| c.split(';').next())
        .expect("csrf cookie")
        .to_string();
    let token = cookie.split_once('=').expect("=").1.to_string();
    (cookie, token)
}

async fn sign_in(f: &Fixture, user: &str, password: &str) -> (u16, Option<String>) {
    let (cookie, token) = login_form(f).await;
    let resp = client()
        .post(f.url("/login"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("username", user),
            ("password", password),
            ("csrf_token", &token),
            ("next", "/"),
        ]))
        .send()
        .await
        .expect("sign in");
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("vigil_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string);
    (resp.status().as_u16(), session)
}

const PASSWORD: &str = "correct horse battery staple";

async fn every_change_is_audited_once(f: Fixture) {
    use reqwest::Method as M;
    let admin = token(&f, "ci-admin", "admin").await;
    let write = token(&f, "ci-write", "write").await;
    let read = token(&f, "ci-read", "read").await;
    let mut audit = Audit {
        f: &f,
        admin: admin.clone(),
        last: 0,
    };
    audit.none("the fixture's own setup").await;

    // Acknowledgements: API (token) and dashboard form (user).
    let cpu = f.alert_id("CpuBusy");
    let (s, body) = api(
        &f,
        M::POST,
        &format!("/api/v1/alerts/{cpu}/ack"),
        As::Token(&write),
        Some(json!({"comment": "api ack"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let e = audit.one("alert.ack", "token", "ci-write").await;
    assert_eq!(e["target"], cpu.as_str());
    assert_eq!(e["details"]["comment"], "api ack");
    let (s, _) = api(
        &f,
        M::POST,
        &format!("/api/v1/alerts/{cpu}/ack"),
        As::Token(&write),
        None,
    )
    .await;
    assert_eq!(s, 409);
    audit.none("a refused acknowledgement").await;
    let evil = f.alert_id("EvilHostHot");
    let (s, _, body) = f
        .post_form(
            &format!("/alerts/{evil}/ack"),
            &f.operator,
            &[("csrf_token", &f.operator.csrf), ("comment", "form ack")],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    let e = audit.one("alert.ack", "user", "otto").await;
    assert_eq!(e["target"], evil.as_str());

    // Silences: create, edit, expire over the API; create and expire by form.
    let ends = |h: i64| {
        let ms = vigil_common::now_ms() + h * 3_600_000;
        (ms / 1000).to_string()
    };
    let matchers =
        json!([{"name": "alertname", "value": "CpuBusy", "isRegex": false, "isEqual": true}]);
    let (s, body) = api(
        &f,
        M::POST,
        "/api/v1/silences",
        As::Token(&write),
        Some(json!({"matchers": matchers, "endsAt": ends(1), "comment": format!("deploy {EVIL}")})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let id = body["silenceID"].as_str().expect("id").to_string();
    let e = audit.one("silence.create", "token", "ci-write").await;
    assert_eq!(e["target"], id.as_str());
    assert_eq!(e["details"]["matchers"][0]["value"], "CpuBusy");
    let (s, body) = api(
        &f,
        M::POST,
        "/api/v1/silences",
        As::Token(&write),
        Some(json!({"id": id, "matchers": matchers, "endsAt": ends(2), "comment": "longer"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let e = audit.one("silence.update", "token", "ci-write").await;
    assert_eq!(e["details"]["edited"], id.as_str());
    let edited = body["silenceID"].as_str().expect("id").to_string();
    let (s, _) = api(
        &f,
        M::DELETE,
        &format!("/api/v1/silences/{edited}"),
        As::Token(&write),
        None,
    )
    .await;
    assert_eq!(s, 200);
    audit.one("silence.expire", "token", "ci-write").await;
    let (s, _) = api(
        &f,
        M::DELETE,
        "/api/v1/silences/no-such",
        As::Token(&write),
        None,
    )
    .await;
    assert_eq!(s, 404);
    audit.none("expiring an unknown silence").await;
    let (s, _, body) = f
        .post_form(
            "/silences",
            &f.operator,
            &[
                ("csrf_token", &f.operator.csrf),
                ("matchers", "alertname=\"CpuBusy\""),
                ("duration", "2h"),
                ("comment", "form silence"),
            ],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    let e = audit.one("silence.create", "user", "otto").await;
    let form_silence = e["target"].as_str().expect("target").to_string();
    let (s, _, _) = f
        .post_form(
            &format!("/silences/{form_silence}/expire"),
            &f.operator,
            &[("csrf_token", &f.operator.csrf)],
        )
        .await;
    assert_eq!(s, 303);
    audit.one("silence.expire", "user", "otto").await;

    // Maintenance: API and dashboard.
    let (s, body) = api(
        &f,
        M::POST,
        "/api/v1/maintenance",
        As::Token(&write),
        Some(json!({"host": "web-1", "duration": "1h", "comment": "kernel"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let window = body["id"].as_str().expect("id").to_string();
    let e = audit.one("maintenance.start", "token", "ci-write").await;
    assert_eq!(e["details"]["host"], "web-1");
    let (s, _) = api(
        &f,
        M::POST,
        &format!("/api/v1/maintenance/{window}/stop"),
        As::Token(&write),
        None,
    )
    .await;
    assert_eq!(s, 200);
    audit.one("maintenance.stop", "token", "ci-write").await;
    let (s, _, body) = f
        .post_form(
            "/maintenance",
            &f.operator,
            &[
                ("csrf_token", &f.operator.csrf),
                ("host", "web-1"),
                ("duration", "30m"),
                ("comment", "form"),
            ],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    let e = audit.one("maintenance.start", "user", "otto").await;
    let form_window = e["target"].as_str().expect("target").to_string();
    let (s, _, _) = f
        .post_form(
            &format!("/maintenance/{form_window}/stop"),
            &f.operator,
            &[("csrf_token", &f.operator.csrf)],
        )
        .await;
    assert_eq!(s, 303);
    audit.one("maintenance.stop", "user", "otto").await;

    // Rule reloads: a good one, then a broken file (recorded as not taken).
    let (s, body) = api(&f, M::POST, "/api/v1/rules/reload", As::Token(&admin), None).await;
    assert_eq!(s, 200, "{body}");
    let e = audit.one("rules.reload", "token", "ci-admin").await;
    assert_eq!(e["details"]["ok"], true);
    assert_eq!(e["details"]["rules"], 2);
    std::fs::write(
        f.dir.path().join("rules.yml"),
        "groups: [{name: x, rules: [{alert: 1}]}]",
    )
    .expect("break the rules");
    let (s, _) = api(&f, M::POST, "/api/v1/rules/reload", As::Token(&admin), None).await;
    assert_eq!(s, 400);
    let e = audit.one("rules.reload", "token", "ci-admin").await;
    assert_eq!(e["details"]["ok"], false);
    let (s, _) = api(&f, M::POST, "/api/v1/rules/reload", As::Token(&write), None).await;
    assert_eq!(s, 403);
    audit.none("a reload without the admin scope").await;

    // Users over the API: by an admin token, then by an admin's session.
    let secret_password = "zebra-Kettle-Moon-42";
    let (s, body) = api(
        &f,
        M::POST,
        "/api/v1/users",
        As::Token(&admin),
        Some(json!({"name": "newbie", "role": "viewer", "password": secret_password})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let e = audit.one("user.create", "token", "ci-admin").await;
    assert_eq!(e["target"], "newbie");
    assert_eq!(e["details"], json!({"role": "viewer"}));
    let (s, _) = api(
        &f,
        M::PATCH,
        "/api/v1/users/newbie",
        As::User(&f.admin),
        Some(json!({"role": "operator", "password": format!("{secret_password}!")})),
    )
    .await;
    assert_eq!(s, 200);
    let e = audit.one("user.update", "user", "ada").await;
    assert_eq!(
        e["details"],
        json!({"role": "operator", "password": "changed"})
    );
    let (s, _) = api(
        &f,
        M::PATCH,
        "/api/v1/users/ada",
        As::Token(&admin),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(s, 409, "the last admin");
    audit.none("a refused demotion").await;
    let (s, _) = api(
        &f,
        M::DELETE,
        "/api/v1/users/newbie",
        As::Token(&admin),
        None,
    )
    .await;
    assert_eq!(s, 204);
    audit.one("user.delete", "token", "ci-admin").await;

    // Sign-ins, a failed one, a password change by its user, a sign-out.
    let (s, session) = sign_in(&f, "otto", "wrong password here").await;
    assert_eq!((s, session), (401, None));
    let e = audit.one("session.login_failed", "anonymous", "otto").await;
    assert_eq!(e["target"], "otto");
    let (s, session) = sign_in(&f, "otto", PASSWORD).await;
    assert_eq!(s, 303);
    let cookie = session.expect("session cookie");
    audit.one("session.login", "user", "otto").await;
    let (_, who) = api(
        &f,
        M::GET,
        "/api/v1/session",
        As::User(&Session {
            cookie: cookie.clone(),
            csrf: String::new(),
        }),
        None,
    )
    .await;
    let otto = Session {
        cookie,
        csrf: who["csrf_token"].as_str().expect("csrf").to_string(),
    };
    let (s, body) = api(
        &f,
        M::POST,
        "/api/v1/account/password",
        As::User(&otto),
        Some(json!({"current": PASSWORD, "new": secret_password})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let e = audit.one("user.password", "user", "otto").await;
    assert_eq!(e["details"]["password"], "changed");
    // Signed in with the new password, then out again.
    let otto = Session {
        cookie: sign_in(&f, "otto", secret_password)
            .await
            .1
            .expect("session"),
        csrf: String::new(),
    };
    audit.one("session.login", "user", "otto").await;
    let (_, who) = api(&f, M::GET, "/api/v1/session", As::User(&otto), None).await;
    let csrf = who["csrf_token"].as_str().expect("csrf").to_string();
    let resp = client()
        .post(f.url("/logout"))
        .header("cookie", &otto.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf_token", csrf.as_str())]))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status().as_u16(), 303);
    audit.one("session.logout", "user", "otto").await;

    // No password ever reached the log.
    let all = audit.entries("").await;
    let text = serde_json::to_string(&all).expect("json");
    for secret in [secret_password, PASSWORD, "wrong password here"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }

    // Filters and pages.
    let acks = audit.entries("&action=alert.ack").await;
    assert_eq!(acks.len(), 2);
    let by_otto = audit.entries("&actor=otto").await;
    assert!(by_otto.iter().all(|e| e["actor"] == "otto"));
    assert_eq!(by_otto.len(), 10, "{by_otto:#?}");
    let later = audit
        .entries(&format!("&since={}", vigil_common::now_ms() / 1000 + 3600))
        .await;
    assert!(later.is_empty());
    let (s, first) = api(&f, M::GET, "/api/v1/audit?limit=3", As::Token(&admin), None).await;
    assert_eq!(s, 200);
    let page1 = first["entries"].as_array().expect("entries").clone();
    assert_eq!(page1.len(), 3);
    let next = first["next"].as_i64().expect("a next page");
    assert_eq!(page1[2]["id"].as_i64(), Some(next));
    let (_, second) = api(
        &f,
        M::GET,
        &format!("/api/v1/audit?limit=3&before={next}"),
        As::Token(&admin),
        None,
    )
    .await;
    let page2 = second["entries"].as_array().expect("entries");
    assert_eq!(page2.len(), 3);
    assert!(page2.iter().all(|e| e["id"].as_i64() < Some(next)));
    let (_, tail) = api(
        &f,
        M::GET,
        &format!("/api/v1/audit?limit=1000&before={next}"),
        As::Token(&admin),
        None,
    )
    .await;
    assert_eq!(tail["next"], Value::Null, "last page");
    assert_eq!(
        tail["entries"].as_array().expect("entries").len() + 3,
        all.len()
    );

    // Admin only: tokens and sessions without the admin role are refused.
    // (otto's fixture session ended with the password change.)
    let operator = Session {
        cookie: sign_in(&f, "otto", secret_password)
            .await
            .1
            .expect("session"),
        csrf: String::new(),
    };
    for who in [
        As::Token(&read),
        As::Token(&write),
        As::User(&f.viewer),
        As::User(&operator),
    ] {
        let (s, body) = api(&f, M::GET, "/api/v1/audit", who, None).await;
        assert_eq!(s, 403, "{body}");
    }
    let (s, _) = api(&f, M::GET, "/api/v1/audit", As::Nobody, None).await;
    assert_eq!(s, 401);
    let (s, _) = api(&f, M::GET, "/api/v1/audit", As::User(&f.admin), None).await;
    assert_eq!(s, 200);

    // Bad filters: 400 naming the parameter.
    for (query, needle) in [
        ("since=yesterday", "since:"),
        ("until=13:00", "until:"),
        ("since=2000&until=1000", "since: must not be after until"),
        ("limit=0", "limit:"),
        ("limit=1001", "limit:"),
        ("limit=ten", "limit:"),
        ("before=0", "before:"),
        ("before=x", "before:"),
        ("action=user.hack", "action: unknown action \"user.hack\""),
        ("actor=", "actor:"),
        ("who=ada", "unknown field"),
    ] {
        let (s, body) = api(
            &f,
            M::GET,
            &format!("/api/v1/audit?{query}"),
            As::Token(&admin),
            None,
        )
        .await;
        assert_eq!(s, 400, "{query}: {body}");
        assert_eq!(body["errorType"], "bad_request", "{query}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{query}: {needle:?} not in {msg:?}");
    }

    // The dashboard page: admins only, the link only for them, every value
    // (a silence comment holding <script>) rendered as text.
    for who in [&f.viewer, &operator] {
        let (s, _, body) = f.get("/audit", Some(who)).await;
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("admin role"), "{body}");
        let (_, _, home) = f.get("/", Some(who)).await;
        assert!(!home.contains("href=\"/audit\""), "non-admins get no link");
    }
    let (_, _, home) = f.get("/", Some(&f.admin)).await;
    assert!(home.contains("href=\"/audit\""), "admins get the link");
    let (s, _, page) = f.get("/audit", Some(&f.admin)).await;
    assert_eq!(s, 200);
    for needle in [
        "silence.create",
        "ci-write",
        "session.login_failed",
        "127.0.0.1",
    ] {
        assert!(page.contains(needle), "{needle} not on the page");
    }
    assert!(page.contains("deploy &lt;script&gt;"), "escaped comment");
    assert!(!page.contains(EVIL), "the page renders a comment as markup");
    let (s, _, page) = f
        .get("/audit?action=alert.ack&limit=1", Some(&f.admin))
        .await;
    assert_eq!(s, 200);
    assert!(page.contains("Older entries"), "a next-page link");
    assert!(
        page.contains("action=alert.ack"),
        "the link keeps the filter"
    );
    let (s, _, page) = f.get("/audit?limit=nope", Some(&f.admin)).await;
    assert_eq!(s, 400);
    assert!(page.contains("limit:"), "{page}");
    // An empty form field is no filter.
    let (s, _, _) = f
        .get("/audit?since=&until=&actor=&action=", Some(&f.admin))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn every_change_is_audited_once_on_sqlite() {
    every_change_is_audited_once(start(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn every_change_is_audited_once_on_postgres() {
    let db = PgTestDb::create().await.unwrap_or_else(|e| panic!("{e}"));
    every_change_is_audited_once(start(Backend::Postgres(&db.url)).await).await;
    db.drop_db().await;
}

/// The CLI's commands, through the real binary, on `config`; the records
/// read back from `store`.
fn cli(args: &[&str], config: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "operator-jo")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn cli_commands_are_audited(config: &std::path::Path, url: &str, base: &std::path::Path) {
    let token = cli(
        &["create-token", "--name", "grafana", "--scope", "read"],
        config,
    );
    cli(&["revoke-token", "--name", "grafana"], config);
    let key = vigil_common::sign::public_key_to_hex(
        &vigil_common::sign::generate_signing_key()
            .expect("key")
            .verifying_key(),
    );
    cli(
        &["register-agent", "--agent-id", "db-1", "--public-key", &key],
        config,
    );
    cli(&["revoke-agent", "--agent-id", "db-1"], config);
    let created = cli(
        &["create-user", "--name", "jo", "--role", "operator"],
        config,
    );
    let reset = cli(&["reset-password", "--name", "jo"], config);
    // Enrollment tokens (the config gains an [enroll] section for them).
    let mut text = std::fs::read_to_string(config).expect("config");
    text.push_str("\n[enroll]\nca_key = \"ca.key\"\n");
    std::fs::write(config, text).expect("config");
    let enroll_out = cli(
        &[
            "enroll-token",
            "create",
            "--ttl",
            "1h",
            "--host-name",
            "db-2",
        ],
        config,
    );
    let enroll_token = enroll_out.lines().next().expect("token").to_string();
    let enroll_id = enroll_out
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("id "))
        .and_then(|l| l.split(',').next())
        .expect("token id")
        .to_string();
    cli(&["enroll-token", "revoke", "--id", &enroll_id], config);

    let store = vigil_aggregator::store::open(url, base, 2).expect("open");
    let page = vigil_aggregator::audit::query(
        &store.db(),
        &vigil_aggregator::audit::Filter {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .expect("query");
    let got: Vec<(String, String, String, String)> = page
        .records
        .iter()
        .rev()
        .map(|r| {
            (
                r.actor_kind.clone(),
                r.actor.clone(),
                r.action.clone(),
                r.target.clone(),
            )
        })
        .collect();
    let want: Vec<(String, String, String, String)> = [
        ("token.create", "grafana"),
        ("token.revoke", "grafana"),
        ("agent.register", "db-1"),
        ("agent.revoke", "db-1"),
        ("user.create", "jo"),
        ("user.password", "jo"),
        ("enroll_token.create", enroll_id.as_str()),
        ("enroll_token.revoke", enroll_id.as_str()),
    ]
    .iter()
    .map(|(a, t)| {
        (
            "cli".into(),
            "operator-jo".into(),
            a.to_string(),
            t.to_string(),
        )
    })
    .collect();
    assert_eq!(got, want);
    assert!(page.records.iter().all(|r| r.source.is_none()));
    // Neither the token nor a generated password is in the log.
    let details: String = page.records.iter().map(|r| r.details.clone()).collect();
    assert!(details.contains("\"scope\":\"read\""), "{details}");
    assert!(details.contains("\"host_name\":\"db-2\""), "{details}");
    let password = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("password: "))
            .expect("a generated password")
            .to_string()
    };
    for secret in [
        token.trim().to_string(),
        enroll_token,
        password(&created),
        password(&reset),
    ] {
        assert!(secret.len() >= 12, "{secret}");
        assert!(!details.contains(&secret), "{secret} in {details}");
    }
}

#[tokio::test]
async fn cli_commands_are_audited_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = cli_support::minimal_config(dir.path());
    cli_commands_are_audited(&config, "sqlite:vigil.db", dir.path()).await;
}

#[tokio::test]
async fn cli_commands_are_audited_on_postgres() {
    let db = PgTestDb::create().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = cli_support::minimal_config(dir.path());
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!("\n[database]\nurl = \"{}\"\n", db.url));
    std::fs::write(&config, text).expect("config");
    cli_commands_are_audited(&config, &db.url, dir.path()).await;
    db.drop_db().await;
}

/// Log lines written on this thread, for [`a_failed_audit_write_keeps_the_change_and_logs_it`].
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
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

#[tokio::test]
async fn a_failed_audit_write_keeps_the_change_and_logs_it() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on one thread, and the app answers in it (oneshot).
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let tokens = common::tokens(store.as_ref()).await;
    let state = common::state(
        store.clone(),
        std::sync::Arc::new(vigil_aggregator::query::MemorySource::new()),
        vigil_aggregator::query::Engine::default(),
    );
    let vigil_aggregator::store::Db::Sqlite { writer, .. } = store.db() else {
        panic!("a SQLite store");
    };
    sqlx::query("DROP TABLE audit_log")
        .execute(&writer)
        .await
        .expect("drop the audit table");
    let req = axum::http::Request::post("/api/v1/maintenance")
        .header("authorization", &tokens.write)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({"host": "web-1", "comment": "audit down"}).to_string(),
        ))
        .expect("request");
    let reply = common::send(&state, req).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.json);
    let windows = state.mutes.maintenance.list();
    assert_eq!(windows.len(), 1, "the change stands");
    let logged = String::from_utf8_lossy(&lines.0.lock().expect("lock")).into_owned();
    assert!(logged.contains("cannot write the audit record"), "{logged}");
    assert!(
        logged.contains("maintenance.start")
            && logged.contains("write")
            && logged.contains("audit down"),
        "the whole event is in the log: {logged}"
    );
}
