//! Signing in and out of the dashboard (`http/login.rs`, `http/session/`):
//! cookie attributes, one answer for every failed sign-in, rate limits,
//! login CSRF, open redirects, what a page does with a missing, forged,
//! expired or ended session, and sessions surviving a restart, on SQLite
//! and PostgreSQL.

mod common;

use std::num::NonZeroU32;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::web::{Backend, HOST, PASSWORD, Web};
use vigil_aggregator::http::session::{LoginLimit, Role, SessionPolicy};

/// Default settings without sign-in limits (tests sign in often).
fn policy() -> SessionPolicy {
    SessionPolicy {
        login_per_ip: None,
        login_per_user: None,
        ..SessionPolicy::default()
    }
}

fn page_req(session: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/page?x=1").header(header::HOST, HOST);
    if let Some(s) = session {
        req = req.header(header::COOKIE, format!("other=1; vigil_session={s}"));
    }
    req.body(Body::empty()).expect("request")
}

async fn assert_signed_out(web: &Web, session: Option<&str>) {
    let page = web.send(page_req(session)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), Some("/login?next=%2Fpage%3Fx%3D1"));
}

async fn assert_signed_in(web: &Web, session: &str, user: &str) {
    let page = web.send(page_req(Some(session))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body, format!("hello {user}"));
}

#[tokio::test]
async fn the_login_page_sets_a_double_submit_token_and_is_not_cached_or_framed() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    let page = web
        .send(
            Request::get("/login?next=/alerts")
                .header(header::HOST, HOST)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let cookie = page.set_cookie("vigil_login_csrf").expect("cookie");
    let token = page.form_token().expect("token");
    assert_eq!(token.len(), 64);
    assert_eq!(
        cookie,
        format!("vigil_login_csrf={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600")
    );
    assert!(page.body.contains("id=\"login-form\""));
    assert!(
        page.body.contains("name=\"next\" value=\"&#x2F;alerts\"")
            || page.body.contains("name=\"next\" value=\"/alerts\""),
        "{}",
        page.body
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        page.header("content-security-policy"),
        Some("frame-ancestors 'none'")
    );
    // Each visit gets a new token.
    let (_, again) = web.login_form().await;
    assert_ne!(again, token);
}

async fn sign_in_and_cookie_attributes(backend: Backend) {
    let web = Web::new(backend, policy()).await;
    web.add_user("ann", Role::Operator).await;
    let page = web.sign_in_as("ann", PASSWORD, "/alerts?x=1").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), Some("/alerts?x=1"));
    let line = page.set_cookie("vigil_session").expect("session cookie");
    let id = page.cookie("vigil_session").expect("id");
    assert_eq!(id.len(), 64, "256 random bits in hex");
    assert_eq!(
        line,
        format!("vigil_session={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=604800"),
        "no Secure without TLS"
    );
    // The double-submit cookie is spent.
    assert!(
        page.set_cookie("vigil_login_csrf")
            .expect("cleared")
            .contains("Max-Age=0")
    );
    assert_signed_in(&web, &id, "ann").await;
    // A second sign-in is a second session, never the same id.
    let other = web.session_of("ann").await;
    assert_ne!(other, id);
    assert_signed_in(&web, &id, "ann").await;
    web.finish().await;
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_sqlite() {
    sign_in_and_cookie_attributes(Backend::Sqlite).await;
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_postgres() {
    sign_in_and_cookie_attributes(Backend::Postgres).await;
}

#[tokio::test]
async fn secure_cookies_setting_marks_cookies_secure() {
    let web = Web::new(
        Backend::Sqlite,
        SessionPolicy {
            secure_cookies: true,
            ..policy()
        },
    )
    .await;
    web.add_user("ann", Role::Viewer).await;
    let page = web.sign_in_as("ann", PASSWORD, "/").await;
    assert!(
        page.set_cookie("vigil_session")
            .expect("cookie")
            .ends_with("; Secure")
    );
}

#[tokio::test]
async fn wrong_password_unknown_user_and_disabled_user_get_the_same_answer() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    web.add_user("ann", Role::Viewer).await;
    web.add_user("bob", Role::Viewer).await;
    vigil_aggregator::store::users::update_user(
        &web.state.store.db(),
        "bob",
        &vigil_aggregator::store::users::UserChange {
            disabled: Some(true),
            ..Default::default()
        },
        1,
    )
    .await
    .expect("disable");
    let (cookie, token) = web.login_form().await;
    let mut answers = Vec::new();
    for (user, password) in [
        ("ann", "wrong password here"),
        ("nobody", "wrong password here"),
        ("bob", PASSWORD),
    ] {
        let page = web
            .post_login(
                Some(&cookie),
                &[
                    ("username", user),
                    ("password", password),
                    ("csrf_token", &token),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(page.set_cookie("vigil_session").is_none());
        assert!(
            page.body.contains("Invalid user name or password."),
            "{}",
            page.body
        );
        answers.push(page.body);
    }
    assert_eq!(
        answers[0], answers[1],
        "unknown user looks like a wrong password"
    );
    assert_eq!(
        answers[0], answers[2],
        "disabled user looks like a wrong password"
    );
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_user_and_per_address() {
    let limit = |burst| {
        Some(LoginLimit {
            per_minute: 1,
            burst: NonZeroU32::new(burst).expect("burst"),
        })
    };
    let web = Web::new(
        Backend::Sqlite,
        SessionPolicy {
            login_per_user: limit(2),
            login_per_ip: limit(5),
            ..policy()
        },
    )
    .await;
    web.add_user("ann", Role::Viewer).await;
    let (cookie, token) = web.login_form().await;
    let attempt = |user: &'static str| {
        let (cookie, token) = (cookie.clone(), token.clone());
        let web = &web;
        async move {
            web.post_login(
                Some(&cookie),
                &[
                    ("username", user),
                    ("password", "wrong password here"),
                    ("csrf_token", &token),
                ],
            )
            .await
        }
    };
    assert_eq!(attempt("ann").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(attempt("ann").await.status, StatusCode::UNAUTHORIZED);
    let limited = attempt("ann").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    assert!(limited.body.contains("Too many sign-in attempts"));
    // Even the right password waits.
    let page = web.sign_in_as("ann", PASSWORD, "/").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    // Another name from the same address: until the address has made 5
    // attempts (every attempt counts against the address).
    assert_eq!(attempt("bob").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(attempt("carl").await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn sign_in_without_or_with_a_wrong_csrf_token_or_origin_is_refused() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    web.add_user("ann", Role::Viewer).await;
    let (cookie, token) = web.login_form().await;
    let form = |t: &str| {
        vec![
            ("username", "ann".to_string()),
            ("password", PASSWORD.to_string()),
            ("csrf_token", t.to_string()),
        ]
    };
    let post = |cookie: Option<String>, form: Vec<(&'static str, String)>| {
        let web = &web;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            web.post_login(cookie.as_deref(), &pairs).await
        }
    };
    // No cookie, no field, a wrong field.
    for page in [
        post(None, form(&token)).await,
        post(Some(cookie.clone()), form("")).await,
        post(Some(cookie.clone()), form(&"0".repeat(64))).await,
    ] {
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("expired or came from another site"));
        assert!(page.set_cookie("vigil_session").is_none());
    }
    // The right token from another site.
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("username", "ann"),
            ("password", PASSWORD),
            ("csrf_token", &token),
        ])
        .finish();
    let page = web
        .send(
            Request::post("/login")
                .header(header::HOST, HOST)
                .header(header::ORIGIN, "https://evil.example")
                .header(header::COOKIE, format!("vigil_login_csrf={cookie}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("request"),
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // A body that is not a form.
    let page = web
        .send(
            Request::post("/login")
                .header(header::HOST, HOST)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    // With both right: in.
    let page = post(Some(cookie), form(&token)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn next_is_followed_only_to_local_paths() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    web.add_user("ann", Role::Viewer).await;
    for (next, expected) in [
        ("//evil.example", "/"),
        ("https://evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        ("/hosts/web-1?range=1h", "/hosts/web-1?range=1h"),
    ] {
        let page = web.sign_in_as("ann", PASSWORD, next).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location(), Some(expected), "next={next:?}");
    }
}

async fn pages_refuse_missing_forged_and_expired_sessions(backend: Backend) {
    let web = Web::new(backend, policy()).await;
    web.add_user("ann", Role::Viewer).await;
    assert_signed_out(&web, None).await;
    assert_signed_out(&web, Some("garbage")).await;
    assert_signed_out(&web, Some(&"ab".repeat(32))).await;

    let db = web.state.store.db();
    let set = |column: &'static str, id: String| {
        let db = db.clone();
        async move {
            let hash = vigil_aggregator::auth::token_hash(&id);
            let sql = format!("UPDATE sessions SET {column} = 0 WHERE id_sha256 = $1");
            match &db {
                vigil_aggregator::store::Db::Postgres(pool) => {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&hash[..])
                        .execute(pool)
                        .await
                        .expect("update")
                        .rows_affected()
                }
                vigil_aggregator::store::Db::Sqlite { writer, .. } => {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&hash[..])
                        .execute(writer)
                        .await
                        .expect("update")
                        .rows_affected()
                }
            }
        }
    };
    // Past its absolute lifetime, and idle too long.
    for column in ["expires_at_ms", "last_seen_ms"] {
        let id = web.session_of("ann").await;
        assert_eq!(set(column, id.clone()).await, 1);
        assert_signed_out(&web, Some(&id)).await;
        // The expired row is gone; nothing is left to prune.
        assert_eq!(set(column, id).await, 0, "{column}");
    }
    // Expired sessions nobody comes back with are pruned; live ones stay.
    let fresh = web.session_of("ann").await;
    let abandoned = web.session_of("ann").await;
    assert_eq!(set("expires_at_ms", abandoned.clone()).await, 1);
    assert_eq!(web.sessions.prune(&db).await.expect("prune"), 1);
    assert_eq!(set("expires_at_ms", abandoned).await, 0, "deleted");
    assert_signed_in(&web, &fresh, "ann").await;
    web.finish().await;
}

#[tokio::test]
async fn pages_refuse_missing_forged_and_expired_sessions_sqlite() {
    pages_refuse_missing_forged_and_expired_sessions(Backend::Sqlite).await;
}

#[tokio::test]
async fn pages_refuse_missing_forged_and_expired_sessions_postgres() {
    pages_refuse_missing_forged_and_expired_sessions(Backend::Postgres).await;
}

#[tokio::test]
async fn logout_ends_the_session() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    web.add_user("ann", Role::Viewer).await;
    let id = web.session_of("ann").await;
    let csrf = web.csrf_of(&id).await;
    let logout = |token: &str| {
        let body = format!("csrf_token={token}");
        Request::post("/logout")
            .header(header::HOST, HOST)
            .header(header::COOKIE, format!("vigil_session={id}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request")
    };
    let refused = web.send(logout("wrong")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_signed_in(&web, &id, "ann").await;

    let page = web.send(logout(&csrf)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/login"));
    assert_eq!(
        page.set_cookie("vigil_session").as_deref(),
        Some("vigil_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    );
    assert_signed_out(&web, Some(&id)).await;
    let api = web
        .with_cookie("GET", "/api/v1/session", &id, None, None)
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    // Signing out again (or without a session) just goes to the login page.
    let page = web.send(logout(&csrf)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

async fn sessions_survive_a_restart(backend: Backend) {
    let web = Web::new(backend, policy()).await;
    web.add_user("ann", Role::Admin).await;
    let id = web.session_of("ann").await;
    // A new app (new caches and limits) over the same database.
    let Web { state, pg, dir, .. } = web;
    let store = match &pg {
        Some(db) => vigil_aggregator::store::open(&db.url, dir.path(), 2).expect("open"),
        None => vigil_aggregator::store::open("sqlite:t.db", dir.path(), 2).expect("open"),
    };
    drop(state);
    store.migrate().await.expect("migrate");
    let again = Web::over(store, pg, dir, policy());
    assert_signed_in(&again, &id, "ann").await;
    again.finish().await;
}

#[tokio::test]
async fn sessions_survive_a_restart_sqlite() {
    sessions_survive_a_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn sessions_survive_a_restart_postgres() {
    sessions_survive_a_restart(Backend::Postgres).await;
}

#[tokio::test]
async fn a_signed_in_visit_to_the_login_page_goes_on_to_next() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    web.add_user("ann", Role::Viewer).await;
    let id = web.session_of("ann").await;
    let page = web
        .send(
            Request::get("/login?next=//evil.example")
                .header(header::HOST, HOST)
                .header(header::COOKIE, format!("vigil_session={id}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/"));
}
