//! The web dashboard over a real HTTP listener: pages for signed-in users
//! and redirects for the signed-out, escaping of label values, the operator
//! forms and their errors, the alert history's pages, static files. The live
//! WebSocket is tested in `dashboard_live.rs`.

mod dashboard_support;

use dashboard_support::{Backend, EVIL, Fixture, start};
use vigil_aggregator::testing::PgTestDb;

const PAGES: &[&str] = &[
    "/",
    "/hosts",
    "/hosts/agent-web-1",
    "/hosts/web-1?range=15m",
    "/hosts/web-1?range=custom&from=2026-01-01T00:00&to=2026-01-01T06:00",
    "/models",
    "/models/ranker",
    "/models/ranker?a=v1&b=v2",
    "/alerts",
    "/alerts?event=firing&severity=critical",
    "/rules",
    "/explore",
    "/explore?q=sum(system_cpu_usage_ratio)&range=15m",
    "/admin",
];

async fn pages_render_and_redirect(f: &Fixture) {
    for page in PAGES {
        let (status, headers, body) = f.get(page, Some(&f.admin)).await;
        assert_eq!(status, 200, "{page}: {body}");
        let csp = headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{page}: CSP {csp:?}");
        assert!(
            body.contains(&format!(
                "<meta name=\"csrf-token\" content=\"{}\">",
                f.admin.csrf
            )),
            "{page}"
        );
        assert!(
            !body.contains("<script>alert"),
            "{page} shows a label unescaped"
        );
        // No inline script: every <script> has a src.
        assert_eq!(
            body.matches("<script").count(),
            body.matches("<script src=").count(),
            "{page}"
        );

        let (status, headers, _) = f.get(page, None).await;
        assert_eq!(status, 303, "{page} signed out");
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(location.starts_with("/login?next="), "{page}: {location}");
    }
    // The overview's content: tiles, the eight key metrics, the alerts.
    let (_, _, body) = f.get("/", Some(&f.operator)).await;
    for needle in [
        "tile-system",
        "tile-api",
        "metric-request_rate",
        "metric-cache_hit_ratio",
        "EvilHostHot",
        "CpuBusy",
        "https://runbooks.example/cpu",
    ] {
        assert!(body.contains(needle), "overview lacks {needle}");
    }
    assert!(
        !body.contains("javascript:alert"),
        "a javascript: runbook URL must not become a link"
    );
    // Critical first.
    assert!(
        body.find("EvilHostHot") < body.find("CpuBusy"),
        "alerts sorted by severity"
    );
}

#[tokio::test]
async fn every_page_renders_for_a_signed_in_user_on_sqlite() {
    let f = start(Backend::Sqlite).await;
    pages_render_and_redirect(&f).await;
}

#[tokio::test]
async fn every_page_renders_for_a_signed_in_user_on_postgres() {
    let db = PgTestDb::create().await.expect("postgres");
    let f = start(Backend::Postgres(&db.url)).await;
    pages_render_and_redirect(&f).await;
    drop(f);
    db.drop_db().await;
}

#[tokio::test]
async fn label_values_render_as_text_on_hosts_and_alerts() {
    let f = start(Backend::Sqlite).await;
    let escaped = "&lt;script&gt;alert(1)&lt;";
    for page in ["/hosts", "/alerts", "/"] {
        let (status, _, body) = f.get(page, Some(&f.viewer)).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            body.contains(escaped),
            "{page} does not show the label as text"
        );
        assert!(!body.contains(EVIL), "{page} renders the label as markup");
    }
    // A maintenance window shows as a banner on every page, its text escaped too.
    let now = vigil_common::now_ms();
    f.state
        .mutes
        .maintenance
        .start(
            Some("web-1".into()),
            None,
            format!("kernel update {EVIL}"),
            "otto".into(),
            now,
        )
        .await
        .expect("maintenance");
    for page in ["/", "/hosts", "/rules"] {
        let (_, _, body) = f.get(page, Some(&f.viewer)).await;
        assert!(
            body.contains("class=\"banner\""),
            "{page}: no maintenance banner"
        );
        assert!(
            body.contains("kernel update &lt;script&gt;"),
            "{page}: banner text"
        );
        assert!(!body.contains(EVIL), "{page}");
    }
    // A viewer gets no ack or silence buttons.
    let (_, _, body) = f.get("/alerts", Some(&f.viewer)).await;
    assert!(!body.contains("/ack\""), "viewer sees an ack form");
}

#[tokio::test]
async fn unknown_things_are_404_and_bad_parameters_400() {
    let f = start(Backend::Sqlite).await;
    for (page, status, needle) in [
        ("/hosts/nope", 404, "no host"),
        ("/models/nope", 404, "no model"),
        ("/models/ranker?a=v9", 404, "no version"),
        ("/hosts/web-1?range=3y", 400, "range"),
        (
            "/hosts/web-1?range=custom",
            400,
            "custom range needs a start",
        ),
        (
            "/hosts/web-1?range=custom&from=2026-01-02T00:00&to=2026-01-01T00:00",
            400,
            "before",
        ),
        ("/alerts?event=exploded", 400, "event"),
        ("/alerts?before=xyz", 400, "before"),
        ("/alerts?from=yesterday", 400, "from"),
        ("/explore?q=sum(", 400, "error-text"),
        ("/explore?q=up&range=1y", 400, "range"),
        ("/static/nope.js", 404, "no such static file"),
    ] {
        let (got, _, body) = f.get(page, Some(&f.admin)).await;
        assert_eq!(got, status, "{page}: {body}");
        assert!(body.contains(needle), "{page}: {needle} not in {body}");
    }
    let (got, _, body) = f.get("/admin", Some(&f.admin)).await;
    assert_eq!(got, 200);
    for name in ["ada", "otto", "vic"] {
        assert!(
            body.contains(&format!("<td>{name}</td>")),
            "admin page lists {name}"
        );
    }
    let (got, _, body) = f.get("/admin", Some(&f.operator)).await;
    assert_eq!(got, 403, "{body}");
    assert!(body.contains("admin role"), "{body}");
}

#[tokio::test]
async fn acknowledge_and_silence_through_the_forms() {
    let f = start(Backend::Sqlite).await;
    let id = f.alert_id("EvilHostHot");
    let ack = format!("/alerts/{id}/ack");
    // Wrong CSRF token, then a viewer: refused.
    let (s, _, body) = f
        .post_form(&ack, &f.operator, &[("csrf_token", "forged")])
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (s, _, body) = f
        .post_form(&ack, &f.viewer, &[("csrf_token", &f.viewer.csrf)])
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("operator role"), "{body}");
    let (s, _, body) = f
        .post_form(
            "/alerts/ffffffffffffffff/ack",
            &f.operator,
            &[("csrf_token", &f.operator.csrf)],
        )
        .await;
    assert_eq!(s, 404, "{body}");
    // The operator acknowledges; back to the overview.
    let (s, h, _) = f
        .post_form(
            &ack,
            &f.operator,
            &[
                ("csrf_token", &f.operator.csrf),
                ("next", "/"),
                ("comment", "on it"),
            ],
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(h.get("location").and_then(|v| v.to_str().ok()), Some("/"));
    let (_, _, body) = f.get("/", Some(&f.viewer)).await;
    assert!(body.contains("acknowledged by otto"), "ack not shown");
    // Twice: conflict. An off-site `next` is not followed.
    let (s, _, body) = f
        .post_form(&ack, &f.operator, &[("csrf_token", &f.operator.csrf)])
        .await;
    assert_eq!(s, 409, "{body}");
    let cpu = f.alert_id("CpuBusy");
    let (s, h, _) = f
        .post_form(
            &format!("/alerts/{cpu}/ack"),
            &f.admin,
            &[("csrf_token", &f.admin.csrf), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(
        h.get("location").and_then(|v| v.to_str().ok()),
        Some("/alerts")
    );

    // Silence from the alert: the form is prefilled with its labels.
    let (s, _, form) = f
        .get(&format!("/alerts/{cpu}/silence"), Some(&f.operator))
        .await;
    assert_eq!(s, 200);
    assert!(form.contains("alertname=&quot;CpuBusy&quot;"), "{form}");
    let (s, _, _) = f
        .get("/alerts/ffffffffffffffff/silence", Some(&f.operator))
        .await;
    assert_eq!(s, 404);
    for (matchers, duration, needle) in [
        ("not a matcher", "2h", "matchers"),
        ("alertname=\"CpuBusy\"", "forever", "duration"),
        ("", "2h", "matcher"),
    ] {
        let (s, _, body) = f
            .post_form(
                "/silences",
                &f.operator,
                &[
                    ("csrf_token", &f.operator.csrf),
                    ("matchers", matchers),
                    ("duration", duration),
                    ("comment", "x"),
                ],
            )
            .await;
        assert_eq!(s, 400, "{matchers}: {body}");
        assert!(body.contains(needle), "{needle}: {body}");
    }
    let (s, h, body) = f
        .post_form(
            "/silences",
            &f.operator,
            &[
                ("csrf_token", &f.operator.csrf),
                ("matchers", "alertname=\"CpuBusy\"\nhost=~\"web-.*\""),
                ("duration", "2h"),
                ("comment", "deploy"),
            ],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    assert_eq!(
        h.get("location").and_then(|v| v.to_str().ok()),
        Some("/alerts#silences")
    );
    let silence = f.state.mutes.silences.list().pop().expect("a silence");
    assert_eq!(silence.created_by, "otto");
    assert_eq!(silence.matchers.len(), 2);
    let (_, _, page) = f.get("/alerts", Some(&f.viewer)).await;
    assert!(
        page.contains("deploy") && page.contains("active"),
        "silence listed"
    );
    // Expire it; an unknown one is 404.
    let expire = format!("/silences/{}/expire", silence.id);
    let (s, _, _) = f
        .post_form(&expire, &f.operator, &[("csrf_token", &f.operator.csrf)])
        .await;
    assert_eq!(s, 303);
    let (s, _, _) = f
        .post_form(
            "/silences/nope/expire",
            &f.operator,
            &[("csrf_token", &f.operator.csrf)],
        )
        .await;
    assert_eq!(s, 404);
    let now = vigil_common::now_ms();
    assert!(
        f.state
            .mutes
            .silences
            .get(&silence.id)
            .is_some_and(|s| s.ends_at_ms <= now)
    );
}

#[tokio::test]
async fn static_files_have_types_and_cache_validators() {
    let f = start(Backend::Sqlite).await;
    let (_, _, page) = f.get("/", Some(&f.admin)).await;
    for (name, ctype) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("uPlot.iife.min.js", "text/javascript"),
        ("uPlot.min.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let start = page
            .find(&format!("/static/{name}?v="))
            .unwrap_or_else(|| panic!("{name} not linked"));
        let url: String = page[start..].chars().take_while(|c| *c != '"').collect();
        let (status, headers, body) = f.get(&url, None).await;
        assert_eq!(status, 200, "{url}");
        let h = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            h("content-type").starts_with(ctype),
            "{name}: {}",
            h("content-type")
        );
        assert!(h("cache-control").contains("immutable"), "{name}");
        assert!(!body.is_empty());
        // Unversioned: revalidated with the ETag.
        let etag = h("etag");
        let resp = dashboard_support::client()
            .get(f.url(&format!("/static/{name}")))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 304, "{name}");
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-cache")
        );
    }
}

#[tokio::test]
async fn the_alert_history_pages_and_filters() {
    let f = start(Backend::Sqlite).await;
    let now = vigil_common::now_ms();
    let hot: Vec<vigil_common::Series> = (0..40)
        .map(|i| {
            vigil_common::Series::new(
                "evil_temperature",
                vec![vigil_common::Label::new("host", format!("rack-{i:02}"))],
                vec![vigil_common::Point {
                    timestamp_ms: now,
                    value: 99.0,
                }],
            )
        })
        .collect();
    f.state.store.write_series(&hot).await.expect("write");
    f.state
        .alerting
        .round_at(now + 10_000)
        .await
        .expect("round");
    let (s, _, first) = f.get("/alerts", Some(&f.viewer)).await;
    assert_eq!(s, 200);
    let rows = |body: &str| body.matches("<tr><td>20").count();
    assert_eq!(rows(&first), 50, "a full first page");
    let start = first
        .find("/alerts?before=")
        .expect("a link to older events");
    let next: String = first[start..].chars().take_while(|c| *c != '"').collect();
    let next = next.replace("&amp;", "&");
    let (s, _, second) = f.get(&next, Some(&f.viewer)).await;
    assert_eq!(s, 200, "{next}");
    assert!(rows(&second) > 0, "older events on the second page");
    // Filters narrow it down (and are kept in the form).
    let (s, _, rack) = f
        .get("/alerts?host=rack-07&event=firing", Some(&f.viewer))
        .await;
    assert_eq!(s, 200);
    assert_eq!(rows(&rack), 1, "one firing event of rack-07");
    assert!(
        rack.contains("value=\"rack-07\""),
        "the filter stays in the form"
    );
}

#[tokio::test]
async fn maintenance_starts_on_the_host_page_and_stops_from_the_banner() {
    let f = start(Backend::Sqlite).await;
    // The host page offers the form to operators only.
    let (_, _, page) = f.get("/hosts/web-1", Some(&f.operator)).await;
    assert!(
        page.contains("action=\"/maintenance\""),
        "no form for operators"
    );
    let (_, _, page) = f.get("/hosts/web-1", Some(&f.viewer)).await;
    assert!(
        !page.contains("action=\"/maintenance\""),
        "form shown to a viewer"
    );
    let form = |user: &dashboard_support::Session, duration: &str| {
        vec![
            ("csrf_token".to_string(), user.csrf.clone()),
            ("host".to_string(), "web-1".to_string()),
            ("duration".to_string(), duration.to_string()),
            ("comment".to_string(), "<b>kernel</b> upgrade".to_string()),
            ("next".to_string(), "/hosts/agent-web-1".to_string()),
        ]
    };
    fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }
    // Forged token, a viewer, a bad duration: refused, nothing started.
    let mut forged = form(&f.operator, "1h");
    forged[0].1 = "forged".into();
    let (s, _, _) = f
        .post_form("/maintenance", &f.operator, &pairs(&forged))
        .await;
    assert_eq!(s, 403);
    let (s, _, body) = f
        .post_form("/maintenance", &f.viewer, &pairs(&form(&f.viewer, "1h")))
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, _, body) = f
        .post_form(
            "/maintenance",
            &f.operator,
            &pairs(&form(&f.operator, "soon")),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("duration"), "{body}");
    assert!(f.state.mutes.maintenance.list().is_empty());

    // Started: back to the host page, the banner shows it (escaped) on every
    // page with a stop button.
    let (s, h, body) = f
        .post_form(
            "/maintenance",
            &f.operator,
            &pairs(&form(&f.operator, "2h")),
        )
        .await;
    assert_eq!(s, 303, "{body}");
    assert_eq!(
        h.get("location").and_then(|v| v.to_str().ok()),
        Some("/hosts/agent-web-1")
    );
    let w = f.state.mutes.maintenance.list().pop().expect("a window");
    assert_eq!(
        (w.host.as_deref(), w.created_by.as_str()),
        (Some("web-1"), "otto")
    );
    let (_, _, page) = f.get("/alerts", Some(&f.operator)).await;
    assert!(
        page.contains("&lt;b&gt;kernel&lt;&#x2F;b&gt; upgrade")
            || page.contains("&lt;b&gt;kernel&lt;/b&gt; upgrade"),
        "banner"
    );
    let stop = format!("/maintenance/{}/stop", w.id);
    assert!(
        page.contains(&format!("action=\"{stop}\"")),
        "no stop button"
    );

    // Stopped; an unknown window is 404.
    let (s, _, _) = f
        .post_form(&stop, &f.viewer, &[("csrf_token", &f.viewer.csrf)])
        .await;
    assert_eq!(s, 403);
    let (s, h, _) = f
        .post_form(&stop, &f.operator, &[("csrf_token", &f.operator.csrf)])
        .await;
    assert_eq!(s, 303);
    assert_eq!(h.get("location").and_then(|v| v.to_str().ok()), Some("/"));
    let now = vigil_common::now_ms();
    assert!(
        !f.state
            .mutes
            .maintenance
            .get(&w.id)
            .expect("window")
            .is_active(now)
    );
    let (s, _, _) = f
        .post_form(
            "/maintenance/nope/stop",
            &f.operator,
            &[("csrf_token", &f.operator.csrf)],
        )
        .await;
    assert_eq!(s, 404);
}
