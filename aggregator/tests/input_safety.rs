//! No label value, annotation or user input is interpreted as HTML, SQL or
//! template code:
//!
//! - HTML: tera autoescapes every `.html` template; label values holding
//!   `<script>` render as text on the host detail page and the alert pages
//!   (the list pages are covered in `dashboard.rs`).
//! - SQL: sqlx 0.9 only runs `&'static str` SQL or text wrapped in
//!   `AssertSqlSafe`; the few wrapped texts are listed here and build their
//!   SQL from constants and `$n` placeholders. Label values, silence
//!   matchers and audit filters full of quotes and SQL round-trip exactly on
//!   SQLite and PostgreSQL, and every table is still there afterwards.
//! - Templates: a rule's annotations are expanded once; template syntax in
//!   a label value lands in the result as text and is never expanded, not
//!   by the evaluator, the Slack or webhook payloads, nor the dashboard.

mod dashboard_support;
mod notify_support;

use serde_json::{Value, json};
use vigil_aggregator::auth::{new_token, token_hash};
use vigil_aggregator::notify::receivers::webhook;
use vigil_aggregator::testing::PgTestDb;

use dashboard_support::{Backend, EVIL, Fixture, client, start};

/// Values a hostile agent or user might send.
const HOSTILE: &[&str] = &[
    "it's \"quoted\" \\ back",
    "'; DROP TABLE samples; --",
    "x' OR '1'='1",
    "$1",
    "{{ $value }}",
];

async fn admin_token(f: &Fixture) -> String {
    let t = new_token().expect("token");
    f.state
        .store
        .put_token("safety", &token_hash(&t), "admin")
        .await
        .expect("token");
    format!("Bearer {t}")
}

async fn api_get(f: &Fixture, token: &str, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let qs = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let resp = client()
        .get(f.url(&format!("{path}?{qs}")))
        .header("authorization", token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A PromQL string literal of `v` (double-quoted, escaped).
fn promql_str(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn hostile_values_round_trip(f: Fixture) {
    let token = admin_token(&f).await;
    let now = vigil_common::now_ms();
    let series: Vec<vigil_common::Series> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, v)| {
            vigil_common::Series::new(
                "hostile_metric",
                vec![
                    vigil_common::Label::new("host", *v),
                    vigil_common::Label::new("n", i.to_string()),
                ],
                vec![vigil_common::Point {
                    timestamp_ms: now - 1000,
                    value: i as f64,
                }],
            )
        })
        .collect();
    f.state.store.write_series(&series).await.expect("write");

    // Each value selects exactly its own series, by equality and by regex.
    for (i, v) in HOSTILE.iter().enumerate() {
        let selector = format!("hostile_metric{{host={}}}", promql_str(v));
        let (s, body) = api_get(
            &f,
            &token,
            "/prometheus/api/v1/series",
            &[("match[]", selector.as_str())],
        )
        .await;
        assert_eq!(s, 200, "{selector}: {body}");
        let found = body["data"].as_array().expect("data");
        assert_eq!(found.len(), 1, "{selector}: {body}");
        assert_eq!(found[0]["host"], *v);
        assert_eq!(found[0]["n"], i.to_string());
        let (s, body) = api_get(
            &f,
            &token,
            "/prometheus/api/v1/query",
            &[(
                "query",
                &format!("hostile_metric{{host=~{}}}", promql_str(&regex_quote(v))),
            )],
        )
        .await;
        assert_eq!(s, 200, "{v}: {body}");
        let result = body["data"]["result"].as_array().expect("result");
        assert_eq!(result.len(), 1, "{v}: {body}");
        assert_eq!(result[0]["metric"]["host"], *v);
    }
    let (_, values) = api_get(&f, &token, "/prometheus/api/v1/label/host/values", &[]).await;
    for v in HOSTILE {
        assert!(
            values["data"]
                .as_array()
                .expect("values")
                .contains(&json!(v)),
            "{v} not among {values}"
        );
    }

    // Silences: matchers full of quotes and SQL are stored and read back
    // exactly (a fresh load from the database, not the in-memory copy).
    let matchers: Vec<Value> = HOSTILE
        .iter()
        .map(|v| json!({"name": "host", "value": v, "isRegex": false, "isEqual": true}))
        .collect();
    let ends = ((now / 1000) + 3600).to_string();
    let resp = client()
        .post(f.url("/api/v1/silences"))
        .header("authorization", &token)
        .json(&json!({"matchers": matchers, "endsAt": ends, "comment": "'); DELETE FROM silences; --"}))
        .send()
        .await
        .expect("silence");
    assert_eq!(resp.status().as_u16(), 200);
    let reloaded = vigil_aggregator::testing::mutes(f.state.store.as_ref());
    reloaded.load().await.expect("load silences");
    let stored = reloaded.silences.list();
    assert_eq!(stored.len(), 1);
    let values: Vec<&str> = stored[0]
        .matchers
        .iter()
        .map(|m| m.value.as_str())
        .collect();
    assert_eq!(values, HOSTILE);
    assert_eq!(stored[0].comment, "'); DELETE FROM silences; --");

    // Audit filters are binds too: a quote matches nothing, errors nothing.
    let (s, body) = api_get(&f, &token, "/api/v1/audit", &[("actor", "x' OR '1'='1")]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["entries"], json!([]));
    let (_, all) = api_get(&f, &token, "/api/v1/audit", &[]).await;
    assert!(!all["entries"].as_array().expect("entries").is_empty());

    // Every table is still there and still answers.
    let (s, body) = api_get(
        &f,
        &token,
        "/prometheus/api/v1/query",
        &[("query", "count(hostile_metric)")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["data"]["result"][0]["value"][1],
        HOSTILE.len().to_string()
    );
    assert!(f.state.store.tokens().await.expect("tokens").len() == 1);
}

/// `v` as a regex matching exactly itself.
fn regex_quote(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[tokio::test]
async fn hostile_values_round_trip_on_sqlite() {
    hostile_values_round_trip(start(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn hostile_values_round_trip_on_postgres() {
    let db = PgTestDb::create().await.unwrap_or_else(|e| panic!("{e}"));
    hostile_values_round_trip(start(Backend::Postgres(&db.url)).await).await;
    db.drop_db().await;
}

/// Where SQL text is built at run time; each use is reviewed to build it
/// from constants and placeholders only. Anything else cannot compile:
/// sqlx 0.9's `query*` take `&'static str` or `AssertSqlSafe`.
const REVIEWED_DYNAMIC_SQL: &[&str] = &["audit/store.rs", "store/users.rs", "testing.rs"];

#[test]
fn run_time_sql_text_is_only_built_where_reviewed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                if text.contains("AssertSqlSafe") {
                    let rel = path.strip_prefix(&root).expect("under src");
                    found.push(rel.display().to_string());
                }
            }
        }
    }
    found.sort();
    assert_eq!(
        found, REVIEWED_DYNAMIC_SQL,
        "a new place builds SQL at run time: review that only constants and $n placeholders \
         go into it, then list it here"
    );
}

#[tokio::test]
async fn label_values_render_as_text_on_the_host_and_alert_pages() {
    let f = start(Backend::Sqlite).await;
    let escaped = "&lt;script&gt;alert(1)&lt;";
    for page in ["/hosts/agent-evil", "/alerts", "/"] {
        let (status, _, body) = f.get(page, Some(&f.viewer)).await;
        assert_eq!(status, 200, "{page}: {body}");
        assert!(
            body.contains(escaped),
            "{page} does not show the label as text"
        );
        assert!(!body.contains(EVIL), "{page} renders the label as markup");
    }
    // The alert's summary ("hot on {{ $labels.host }}") holds the value too.
    let (_, _, alerts) = f.get("/alerts", Some(&f.viewer)).await;
    assert!(alerts.contains("hot on &lt;script&gt;"), "escaped summary");
    // And the silence form prefilled from the alert's labels.
    let id = f.alert_id("EvilHostHot");
    let (s, _, form) = f
        .get(&format!("/alerts/{id}/silence"), Some(&f.operator))
        .await;
    assert_eq!(s, 200);
    assert!(
        !form.contains(EVIL),
        "silence form renders the label as markup"
    );
    assert!(
        form.contains("&lt;script&gt;"),
        "silence form shows the label"
    );
}

const INJECTED_RULES: &str = r#"groups:
- name: injected
  interval: 10s
  rules:
  - alert: Injected
    expr: injected_metric > 0
    labels:
      origin: "{{ $labels.job }}"
    annotations:
      summary: "value {{ $value }} on {{ $labels.host }}"
      description: "{{ $labels.job }}"
"#;

/// What a hostile exporter puts in label values: template actions that
/// would print something else if they were ever run.
const HOST_ACTION: &str = "{{ $value }}";
const JOB_ACTION: &str = "{{ printf \"%s\" \"pwned\" }}";

#[tokio::test]
async fn template_syntax_in_label_values_is_never_evaluated() {
    let f = start(Backend::Sqlite).await;
    std::fs::write(f.dir.path().join("rules.yml"), INJECTED_RULES).expect("rules");
    f.state.alerting.reload().await.expect("reload");
    let now = vigil_common::now_ms();
    f.state
        .store
        .write_series(&[vigil_common::Series::new(
            "injected_metric",
            vec![
                vigil_common::Label::new("host", HOST_ACTION),
                vigil_common::Label::new("job", JOB_ACTION),
            ],
            vec![vigil_common::Point {
                timestamp_ms: now - 1000,
                value: 7.0,
            }],
        )])
        .await
        .expect("write");
    f.state.alerting.round_at(now).await.expect("round");
    let alert = f
        .state
        .alerting
        .active()
        .into_iter()
        .find(|a| a.labels.get("alertname").map(String::as_str) == Some("Injected"))
        .expect("the alert fires");
    // Expanded once: the rule's own actions ran, the values' did not.
    assert_eq!(
        alert.annotations["summary"],
        format!("value 7 on {HOST_ACTION}")
    );
    assert_eq!(alert.annotations["description"], JOB_ACTION);
    assert_eq!(alert.labels["origin"], JOB_ACTION);

    // The notification built from it: the webhook payload carries the text
    // as is; a Slack title template that quotes the labels does not run
    // what they hold.
    let mut n = notify_support::notification("team", "k-injected");
    n.common_labels = alert.labels.clone();
    n.common_annotations = alert.annotations.clone();
    n.alerts.truncate(1);
    n.alerts[0].labels = alert.labels.clone();
    n.alerts[0].annotations = alert.annotations.clone();
    let payload =
        serde_json::to_value(webhook::payload(&n, true, 0, "http://vigil").expect("payload"))
            .expect("json");
    assert_eq!(
        payload["alerts"][0]["annotations"]["description"],
        JOB_ACTION
    );
    assert_eq!(payload["commonLabels"]["host"], HOST_ACTION);
    let receivers = notify_support::receivers(
        "- name: team\n  slack_configs:\n    - api_url: http://127.0.0.1:9/x\n      \
         title: '{{ $labels.alertname }} on {{ $labels.host }}'\n      \
         text: 'job {{ $labels.job }}'\n",
    );
    let message = receivers[0].slack_configs[0]
        .message(&n, "http://vigil")
        .expect("a message");
    assert_eq!(
        message.attachments[0].title,
        format!("Injected on {HOST_ACTION}")
    );
    assert_eq!(message.attachments[0].text, format!("job {JOB_ACTION}"));
    let text = serde_json::to_string(&message).expect("json");
    assert!(!text.contains("job pwned"), "{text}");

    // The dashboard shows the text; tera does not evaluate data either.
    let (_, _, page) = f.get("/alerts", Some(&f.viewer)).await;
    assert!(page.contains("value 7 on {{ $value }}"), "summary as text");
    assert!(
        !page.contains("value 7 on 7"),
        "the value's action never ran"
    );
}
