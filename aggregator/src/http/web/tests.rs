//! Rendering tests: every template parses, and data is escaped.

use super::*;
use crate::http::session::Role;

fn user(role: Role) -> serde_json::Value {
    serde_json::json!({"name": "ann", "role": role.as_str(), "can_operate": role.can_operate(), "is_admin": role.is_admin()})
}

#[test]
fn every_template_parses() {
    if let Err(e) = &*TERA {
        panic!("templates do not parse: {e}");
    }
}

#[test]
fn login_label_values_are_escaped() {
    let mut context = tera::Context::new();
    context.insert("error", "<script>alert(1)</script>");
    context.insert("next", "/");
    context.insert("csrf_token", "t");
    let html = render_string("login.html", &context).expect("renders");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
}

#[test]
fn alerts_table_escapes_labels_and_shows_actions_by_role() {
    let mut c = tera::Context::new();
    c.insert("csrf_token", "tok");
    c.insert("nav", "alerts");
    c.insert("maintenance", &Vec::<serde_json::Value>::new());
    c.insert("back", "/");
    c.insert(
        "alerts",
        &serde_json::json!([{
            "id": "00000000000000ab", "name": "HighCpu", "state": "firing",
            "severity": format::severity(Some("critical")),
            "labels": [["host", "<script>alert(1)</script>"]],
            "summary": "s", "runbook": "https://runbooks.example/cpu", "since": "1m ago",
            "value": "0.95", "ack": null, "muted": false, "can_ack": true
        }]),
    );
    c.insert("user", &user(Role::Operator));
    let html = render_string("alerts_table.html", &c).expect("renders");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(html.contains("/alerts/00000000000000ab/ack"), "{html}");
    assert!(html.contains("https://runbooks.example/cpu"), "{html}");
    c.insert("user", &user(Role::Viewer));
    let html = render_string("alerts_table.html", &c).expect("renders");
    assert!(
        !html.contains("/ack"),
        "a viewer sees no ack button: {html}"
    );
}
