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

/// Whether a `vigil` key appears anywhere in the tree.
fn has_vigil_key(v: &serde_norway::Value) -> bool {
    match v {
        serde_norway::Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| k.as_str() == Some("vigil") || has_vigil_key(v)),
        serde_norway::Value::Sequence(s) => s.iter().any(has_vigil_key),
        _ => false,
    }
}

/// (alert names, recording rule count) of a rule file's YAML tree.
fn rule_names(file: &serde_norway::Value) -> (BTreeSet<String>, usize) {
    let (mut alerts, mut records) = (BTreeSet::new(), 0);
    for g in file["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            match r["alert"].as_str() {
                Some(name) => assert!(alerts.insert(name.to_string()), "alert {name} is unique"),
                None => records += 1,
            }
        }
    }
    (alerts, records)
}

#[tokio::test]
async fn the_rule_file_is_served_as_plain_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, token) = setup(dir.path()).await;
    let (status, ctype, body) = get(&app, &token, "/api/v1/export/prometheus-rules").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.expect("content type").starts_with("application/yaml"));

    let source: serde_norway::Value = serde_norway::from_str(DEFAULT_RULES).expect("source YAML");
    assert!(has_vigil_key(&source), "the source uses vigil: extensions");
    let file: serde_norway::Value = serde_norway::from_slice(&body).expect("exported YAML");
    assert!(!has_vigil_key(&file), "no vigil key in the export");
    let (alerts, records) = rule_names(&file);
    assert_eq!((alerts.clone(), records), rule_names(&source), "same rules");
    assert!(
        alerts.len() >= 15 && records >= 6,
        "{} alerts, {records} records",
        alerts.len()
    );

    // promtool is not available here (no Go toolchain can be fetched), so the
    // export is checked with Vigil's own strict loader, which rejects what
    // `promtool check rules` rejects (unknown keys, bad durations,
    // expressions, names, templates) and more.
    let path = dir.path().join("exported.rules.yml");
    std::fs::write(&path, &body).expect("write");
    let set = vigil_aggregator::alert::rules::load_files(&[path])
        .unwrap_or_else(|e| panic!("exported file does not load:\n{e}"));
    let mut loaded = 0;
    for rule in set.groups.iter().flat_map(|g| &g.rules) {
        let vigil_aggregator::alert::rules::Rule::Alerting(a) = rule else {
            continue;
        };
        loaded += 1;
        assert_eq!(
            a.vigil,
            Default::default(),
            "{}: extensions stripped",
            a.name
        );
        assert_parses(&a.expr, &a.name);
        let runbook = a.annotations.get("runbook_url").expect("runbook_url");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(runbook);
        assert!(path.is_file(), "{}: {runbook} exists", a.name);
    }
    assert_eq!(loaded, alerts.len());

    // Without a token: 401, as every export.
    let req = Request::get("/api/v1/export/prometheus-rules")
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
