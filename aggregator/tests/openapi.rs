//! `/api/openapi.json` matches the routes the app serves, both ways:
//! - every documented operation, sent to the real app, is routed (neither
//!   the fallback's 404 "no such route" nor 405);
//! - every path registered in `src/http/` (`.route("...")` in a module that
//!   `http/mod.rs` nests or merges, or in `mod.rs` itself) answers, for each
//!   method it accepts (anything but 405 and the fallback 404), with an
//!   operation in the document.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use regex::Regex;
use serde_json::Value;
use tower::ServiceExt;
use vigil_aggregator::http::app;
use vigil_aggregator::testing;

/// Documented routes that work in progress does not serve yet (none now);
/// a path listed here may answer 404 until its router is merged.
const PENDING: &[&str] = &[];

async fn setup(dir: &Path) -> (Router, String) {
    let state =
        testing::sqlite_app_state(dir, Arc::new(vigil_aggregator::query::MemorySource::new()))
            .await
            .expect("state");
    let token = testing::add_token(&state, "admin", "admin")
        .await
        .expect("token");
    (app(state), token)
}

/// Whether the app routes `method path` (the status, and whether it was the
/// fallback's "no such route").
async fn probe(app: &Router, token: &str, method: &Method, path: &str) -> (StatusCode, bool) {
    let concrete = path.replace("{id}", "no-such-host").replace(['{', '}'], "");
    let req = Request::builder()
        .method(method.clone())
        .uri(concrete)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .expect("body");
    let fallback = status == StatusCode::NOT_FOUND
        && String::from_utf8_lossy(&bytes).contains("no such route");
    (status, fallback)
}

/// (method, path) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// Paths registered with `.route("...")`, joined to their nest prefix.
fn registered_paths() -> BTreeSet<String> {
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mod_rs = std::fs::read_to_string(http.join("mod.rs")).expect("mod.rs");
    let route = Regex::new(r#"\.route\(\s*"([^"]+)""#).expect("regex");
    let mount =
        Regex::new(r#"\.(?:nest\(\s*"([^"]*)"\s*,|merge\()\s*(\w+)::router\(\)"#).expect("regex");
    let routes_in = |text: &str, prefix: &str, out: &mut BTreeSet<String>| {
        for c in route.captures_iter(text) {
            out.insert(format!("{prefix}{}", &c[1]));
        }
    };
    let mut out = BTreeSet::new();
    routes_in(&mod_rs, "", &mut out);
    let mut modules = 0;
    for c in mount.captures_iter(&mod_rs) {
        let prefix = c.get(1).map_or("", |m| m.as_str());
        let module = &c[2];
        let file = http.join(format!("{module}.rs"));
        let text = if file.exists() {
            std::fs::read_to_string(file).expect("module")
        } else {
            let dir = http.join(module);
            let mut all = String::new();
            for entry in std::fs::read_dir(&dir).expect("module dir") {
                all += &std::fs::read_to_string(entry.expect("entry").path()).expect("file");
            }
            all
        };
        routes_in(&text, prefix, &mut out);
        modules += 1;
    }
    assert!(modules >= 4, "the scan found the routers ({modules})");
    out
}

#[tokio::test]
async fn the_document_and_the_routes_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, token) = setup(dir.path()).await;

    let (status, _) = probe(&app, &token, &Method::GET, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let req = Request::get("/api/openapi.json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .expect("body");
    let doc: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = documented(&doc);
    assert!(ops.len() >= 30, "{}", ops.len());

    // Documented -> served.
    for (method, path) in &ops {
        if PENDING.contains(&path.as_str()) {
            continue;
        }
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, fallback) = probe(&app, &token, &m, path).await;
        assert!(
            !fallback && status != StatusCode::METHOD_NOT_ALLOWED,
            "documented {method} {path} is not served ({status})"
        );
    }

    // Served -> documented.
    let paths = registered_paths();
    assert!(paths.contains("/api/v1/hosts"), "{paths:?}");
    for path in &paths {
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let (status, fallback) = probe(&app, &token, &m, path).await;
            if fallback || status == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            assert!(
                ops.contains(&(m.to_string(), path.clone())),
                "{m} {path} is served ({status}) but not in /api/openapi.json"
            );
        }
    }
}

#[tokio::test]
async fn every_guarded_operation_declares_its_scope_and_errors() {
    let doc = vigil_aggregator::http::openapi::document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let open =
                ["/healthz", "/readyz", "/metrics", "/login", "/logout"].contains(&path.as_str());
            assert_eq!(
                op["security"].as_array().expect("security").is_empty(),
                open,
                "{method} {path}"
            );
            if !open {
                for code in ["401", "403", "429"] {
                    assert!(op["responses"][code].is_object(), "{method} {path} {code}");
                }
            }
            for name in path.split('/').filter_map(|s| s.strip_prefix('{')) {
                let name = name.trim_end_matches('}');
                assert!(
                    op["parameters"]
                        .as_array()
                        .expect("params")
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path} documents {name}"
                );
            }
        }
    }
}
