//! Grafana dashboards and the Prometheus rule file: served, well-formed, and
//! every PromQL expression in them parses.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use vigil_aggregator::http::app;
use vigil_aggregator::http::exports::{DASHBOARDS, DEFAULT_RULES};
use vigil_aggregator::testing;

async fn setup(dir: &std::path::Path) -> (Router, String) {
    let state =
        testing::sqlite_app_state(dir, Arc::new(vigil_aggregator::query::MemorySource::new()))
            .await
            .expect("state");
    let token = testing::add_token(&state, "reader", "read")
        .await
        .expect("token");
    (app(state), token)
}

async fn get(app: &Router, token: &str, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().expect("ascii").to_string());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .expect("body")
        .to_vec();
    (status, ctype, body)
}

/// Grafana's variables replaced by values PromQL accepts.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${datasource}", "x")
        .replace("$host", ".*")
        .replace("$role", ".*")
        .replace("$model", ".*")
        .replace("$version", ".*")
}

fn assert_parses(expr: &str, what: &str) {
    let concrete = substitute(expr);
    assert!(
        !concrete.contains('$'),
        "{what}: unknown variable in {expr}"
    );
    if let Err(e) = promql_parser::parser::parse(&concrete) {
        panic!("{what}: {expr:?} does not parse: {e}");
    }
}

#[tokio::test]
async fn dashboards_are_served_and_sound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, token) = setup(dir.path()).await;

    let (status, _, body) = get(&app, &token, "/api/v1/export/grafana").await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_slice(&body).expect("JSON");
    let titles: BTreeSet<&str> = list["dashboards"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["title"].as_str().expect("title"))
        .collect();
    assert_eq!(
        titles,
        BTreeSet::from([
            "Operations Overview",
            "ML Model Operations",
            "System Infrastructure"
        ])
    );

    let mut uids = BTreeSet::new();
    for entry in list["dashboards"].as_array().expect("list") {
        let uid = entry["uid"].as_str().expect("uid");
        assert!(uids.insert(uid.to_string()), "uid {uid} is unique");
        let (status, _, body) = get(&app, &token, entry["url"].as_str().expect("url")).await;
        assert_eq!(status, StatusCode::OK, "{uid}");
        let d: Value = serde_json::from_slice(&body).expect("dashboard JSON");
        assert_eq!(d["uid"], uid);

        // Variables: the data source, and what the brief names per dashboard.
        let vars = d["templating"]["list"].as_array().expect("variables");
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .expect("datasource variable");
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        let names: BTreeSet<&str> = vars
            .iter()
            .map(|v| v["name"].as_str().expect("name"))
            .collect();
        let wanted: &[&str] = if uid == "vigil-ml-models" {
            &["model", "version"]
        } else {
            &["host", "role"]
        };
        for w in wanted {
            assert!(names.contains(w), "{uid} has variable {w}");
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{uid} variable {}",
                v["name"]
            );
            // label_values(selector, label): the selector must parse.
            let q = v["query"]["query"].as_str().expect("variable query");
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
                .map(|(sel, _)| sel)
                .expect("label_values(selector, label)");
            assert_parses(inner, &format!("{uid} variable {}", v["name"]));
        }

        // Panels: data source variable everywhere, coloured thresholds, PromQL parses.
        let panels: Vec<&Value> = d["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .filter(|p| p["type"] != "row")
            .collect();
        assert!(panels.len() >= 8, "{uid} has {} panels", panels.len());
        let mut coloured = 0;
        let mut ids = BTreeSet::new();
        for p in &panels {
            let title = p["title"].as_str().expect("title");
            assert!(
                ids.insert(p["id"].as_i64().expect("id")),
                "{uid}: panel ids unique"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{uid} / {title}");
            let steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
                .as_array()
                .expect("threshold steps");
            assert!(steps[0]["value"].is_null(), "{uid} / {title}: base step");
            if steps.iter().any(|s| s["color"] == "red") {
                coloured += 1;
            }
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{uid} / {title}");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{uid} / {title}");
                assert_parses(
                    t["expr"].as_str().expect("expr"),
                    &format!("{uid} / {title}"),
                );
            }
        }
        assert!(coloured >= 4, "{uid}: thresholds coloured ({coloured})");
    }
    assert_eq!(uids.len(), DASHBOARDS.len());

    let (status, _, body) = get(&app, &token, "/api/v1/export/grafana/no-such-uid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("no-such-uid"));
}

#[tokio::test]
async fn the_rule_file_is_served_and_sound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, token) = setup(dir.path()).await;
    let (status, ctype, body) = get(&app, &token, "/api/v1/export/prometheus-rules").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.expect("content type").starts_with("application/yaml"));
    assert_eq!(body, DEFAULT_RULES.as_bytes());

    let runbooks =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/runbooks.md"))
            .expect("docs/runbooks.md");
    // GitHub-style heading anchors.
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();

    let file: serde_norway::Value = serde_norway::from_slice(&body).expect("YAML");
    let groups = file["groups"].as_sequence().expect("groups");
    let (mut alerts, mut records) = (BTreeSet::new(), 0);
    let mut group_names = BTreeSet::new();
    for g in groups {
        assert!(group_names.insert(g["name"].as_str().expect("group name").to_string()));
        for r in g["rules"].as_sequence().expect("rules") {
            let expr = r["expr"].as_str().expect("expr");
            if let Some(name) = r["alert"].as_str() {
                assert_parses(expr, name);
                assert!(alerts.insert(name.to_string()), "alert {name} is unique");
                let severity = r["labels"]["severity"].as_str().expect("severity");
                assert!(["warning", "critical"].contains(&severity), "{name}");
                assert!(r["annotations"]["summary"].is_string(), "{name} summary");
                let runbook = r["annotations"]["runbook_url"]
                    .as_str()
                    .expect("runbook_url");
                let anchor = runbook
                    .strip_prefix("docs/runbooks.md#")
                    .expect("runbook in docs/runbooks.md");
                assert!(
                    anchors.contains(anchor),
                    "{name}: docs/runbooks.md has no section #{anchor}"
                );
            } else {
                let name = r["record"].as_str().expect("record or alert");
                assert_parses(expr, name);
                assert_eq!(
                    name.split(':').count(),
                    3,
                    "{name} follows level:metric:operations"
                );
                records += 1;
            }
        }
    }
    assert!(
        alerts.len() >= 15 && records >= 6,
        "{} alerts, {records} records",
        alerts.len()
    );
}
