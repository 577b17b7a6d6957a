//! The API with the dashboard's session cookie (scope from the role, CSRF
//! header on writes) and the users API (`http/users.rs`): CRUD with every
//! 400/401/403/404/409, sessions ended by disabling, deleting or a new
//! password, on SQLite and PostgreSQL.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::web::{Backend, PASSWORD, Web};
use serde_json::json;
use vigil_aggregator::http::session::{Role, SessionPolicy};

fn policy() -> SessionPolicy {
    SessionPolicy {
        login_per_ip: None,
        login_per_user: None,
        ..SessionPolicy::default()
    }
}

fn silence() -> serde_json::Value {
    json!({
        "matchers": [{"name": "host", "value": "web-1", "isRegex": false, "isEqual": true}],
        "endsAt": "2099-01-01T00:00:00Z",
        "comment": "deploy"
    })
}

#[tokio::test]
async fn the_session_cookie_works_on_the_api_with_the_role_scope_and_csrf() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    web.add_user("vera", Role::Viewer).await;
    web.add_user("otto", Role::Operator).await;
    let viewer = web.session_of("vera").await;
    let operator = web.session_of("otto").await;

    // Who am I.
    let me = web
        .with_cookie("GET", "/api/v1/session", &operator, None, None)
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["user"], "otto");
    assert_eq!(me.json()["role"], "operator");
    let csrf = me.json()["csrf_token"].as_str().expect("token").to_string();
    assert_eq!(csrf.len(), 64);

    // Reads work for both; prometheus too.
    for s in [&viewer, &operator] {
        let r = web.with_cookie("GET", "/api/v1/hosts", s, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = web
            .with_cookie("GET", "/prometheus/api/v1/query?query=1", s, None, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // A viewer cannot write (ack, silence), even with the right CSRF token.
    let viewer_csrf = web.csrf_of(&viewer).await;
    let r = web
        .with_cookie(
            "POST",
            "/api/v1/alerts/abc/ack",
            &viewer,
            Some(&viewer_csrf),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("role \\\"viewer\\\""), "{}", r.body);
    let r = web
        .with_cookie(
            "POST",
            "/api/v1/silences",
            &viewer,
            Some(&viewer_csrf),
            Some(silence()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // An operator's write needs the CSRF header.
    let r = web
        .with_cookie("POST", "/api/v1/silences", &operator, None, Some(silence()))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("X-CSRF-Token"), "{}", r.body);
    let r = web
        .with_cookie(
            "POST",
            "/api/v1/silences",
            &operator,
            Some(&viewer_csrf),
            Some(silence()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another session's token");
    let r = web
        .with_cookie(
            "POST",
            "/api/v1/silences",
            &operator,
            Some(&csrf),
            Some(silence()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = web
        .with_cookie(
            "POST",
            "/api/v1/alerts/abc/ack",
            &operator,
            Some(&csrf),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "write scope reached the handler"
    );
    // Silences record the user as their creator.
    let list = web
        .with_cookie("GET", "/api/v1/silences", &operator, None, None)
        .await;
    assert_eq!(list.json()[0]["createdBy"], "otto", "{}", list.body);
    // Operators are not admins.
    let r = web
        .with_cookie("GET", "/api/v1/users", &operator, None, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A forged cookie is no credential at all.
    let r = web
        .with_cookie("GET", "/api/v1/hosts", &"cd".repeat(32), None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bearer_tokens_are_unaffected_by_cookies() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    let tokens = common::tokens(web.state.store.as_ref()).await;
    web.add_user("vera", Role::Viewer).await;
    let viewer = web.session_of("vera").await;
    // A write token with a viewer's cookie: the token decides, no CSRF header needed.
    let req = Request::post("/api/v1/silences")
        .header(header::AUTHORIZATION, &tokens.write)
        .header(header::COOKIE, format!("vigil_session={viewer}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(silence().to_string()))
        .expect("request");
    let r = web.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // /api/v1/session is for cookies only.
    let req = Request::get("/api/v1/session")
        .header(header::AUTHORIZATION, &tokens.admin)
        .body(Body::empty())
        .expect("request");
    let r = web.send(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("session cookie"), "{}", r.body);
    // Neither: 401 as before.
    let r = web
        .send(
            Request::get("/api/v1/hosts")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn users_crud(backend: Backend) {
    let web = Web::new(backend, policy()).await;
    web.add_user("root", Role::Admin).await;
    let admin = web.session_of("root").await;
    let csrf = web.csrf_of(&admin).await;
    let call = |method: &'static str, uri: String, body: Option<serde_json::Value>| {
        let (web, admin, csrf) = (&web, admin.clone(), csrf.clone());
        async move {
            web.with_cookie(method, &uri, &admin, Some(&csrf), body)
                .await
        }
    };

    let r = call(
        "POST",
        "/api/v1/users".into(),
        Some(json!({"name": "ann", "role": "viewer", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["name"], "ann");
    assert_eq!(r.json()["role"], "viewer");
    assert_eq!(r.json()["disabled"], false);
    assert!(r.json()["created_at"].as_str().is_some());

    // 400s: name, role, short password, unknown field, not JSON.
    for (body, needle) in [
        (
            json!({"name": "a b", "role": "viewer", "password": PASSWORD}),
            "invalid user name",
        ),
        (
            json!({"name": "bob", "role": "root", "password": PASSWORD}),
            "unknown role",
        ),
        (
            json!({"name": "bob", "role": "viewer", "password": "short"}),
            "at least 12",
        ),
        (
            json!({"name": "bob", "role": "viewer", "password": PASSWORD, "x": 1}),
            "unknown field",
        ),
    ] {
        let r = call("POST", "/api/v1/users".into(), Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains(needle), "{needle}: {}", r.body);
    }
    // 409: exists.
    let r = call(
        "POST",
        "/api/v1/users".into(),
        Some(json!({"name": "ann", "role": "admin", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let list = call("GET", "/api/v1/users".into(), None).await;
    assert_eq!(list.status, StatusCode::OK);
    let listed = list.json();
    let names: Vec<&str> = listed["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["ann", "root"]);
    assert!(!list.body.contains("argon2"), "never the hash");

    // PATCH: promote, then 400 / 404 cases.
    let r = call(
        "PATCH",
        "/api/v1/users/ann".into(),
        Some(json!({"role": "operator"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["role"], "operator");
    for body in [
        json!({}),
        json!({"role": "god"}),
        json!({"password": "short"}),
    ] {
        let r = call("PATCH", "/api/v1/users/ann".into(), Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    }
    let r = call(
        "PATCH",
        "/api/v1/users/nobody".into(),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call("DELETE", "/api/v1/users/nobody".into(), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The last enabled admin stays: no demotion, disabling or deletion.
    for (method, body) in [
        ("PATCH", Some(json!({"role": "viewer"}))),
        ("PATCH", Some(json!({"disabled": true}))),
        ("DELETE", None),
    ] {
        let r = call(method, "/api/v1/users/root".into(), body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.body.contains("last enabled admin"), "{}", r.body);
    }
    // With a second admin, the first may go.
    let r = call(
        "PATCH",
        "/api/v1/users/ann".into(),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        "PATCH",
        "/api/v1/users/root".into(),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // root is a viewer now: its session no longer administers.
    let r = call("GET", "/api/v1/users".into(), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    web.finish().await;
}

#[tokio::test]
async fn users_crud_and_its_errors_sqlite() {
    users_crud(Backend::Sqlite).await;
}

#[tokio::test]
async fn users_crud_and_its_errors_postgres() {
    users_crud(Backend::Postgres).await;
}

#[tokio::test]
async fn the_users_api_needs_admin_scope() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    let tokens = common::tokens(web.state.store.as_ref()).await;
    let r = common::get(&web.state, "/api/v1/users", Some(&tokens.write)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = common::get(&web.state, "/api/v1/users", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = common::get(&web.state, "/api/v1/users", Some(&tokens.admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["users"], json!([]));
}

async fn disabling_deleting_and_new_passwords_end_sessions(backend: Backend) {
    let web = Web::new(backend, policy()).await;
    let tokens = common::tokens(web.state.store.as_ref()).await;
    for name in ["ann", "bob", "cat"] {
        web.add_user(name, Role::Viewer).await;
    }
    let admin = |method: &str, uri: &str, body: Option<serde_json::Value>| {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, &tokens.admin);
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        web.send(req.body(body).expect("request"))
    };
    let sessions: Vec<String> = {
        let mut v = Vec::new();
        for name in ["ann", "bob", "cat"] {
            let s = web.session_of(name).await;
            // Resolved once, so it sits in the cache.
            assert_eq!(web.csrf_of(&s).await.len(), 64);
            v.push(s);
        }
        v
    };
    let ok = |s: &str| {
        let (web, s) = (&web, s.to_string());
        async move {
            web.with_cookie("GET", "/api/v1/hosts", &s, None, None)
                .await
                .status
        }
    };
    let r = admin(
        "PATCH",
        "/api/v1/users/ann",
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(ok(&sessions[0]).await, StatusCode::UNAUTHORIZED, "disabled");
    let page = web.sign_in_as("ann", PASSWORD, "/").await;
    assert_eq!(
        page.status,
        StatusCode::UNAUTHORIZED,
        "disabled users cannot sign in"
    );

    let r = admin(
        "PATCH",
        "/api/v1/users/bob",
        Some(json!({"password": "a brand new password"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ok(&sessions[1]).await,
        StatusCode::UNAUTHORIZED,
        "new password"
    );
    assert_eq!(
        web.sign_in_as("bob", PASSWORD, "/").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        web.sign_in_as("bob", "a brand new password", "/")
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    let r = admin("DELETE", "/api/v1/users/cat", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(ok(&sessions[2]).await, StatusCode::UNAUTHORIZED, "deleted");
    web.finish().await;
}

#[tokio::test]
async fn disabling_deleting_and_new_passwords_end_sessions_sqlite() {
    disabling_deleting_and_new_passwords_end_sessions(Backend::Sqlite).await;
}

#[tokio::test]
async fn disabling_deleting_and_new_passwords_end_sessions_postgres() {
    disabling_deleting_and_new_passwords_end_sessions(Backend::Postgres).await;
}

#[tokio::test]
async fn users_change_their_own_password() {
    let web = Web::new(Backend::Sqlite, policy()).await;
    web.add_user("ann", Role::Viewer).await;
    let here = web.session_of("ann").await;
    let elsewhere = web.session_of("ann").await;
    let csrf = web.csrf_of(&here).await;
    let change = |current: &str, new: &str, csrf: Option<&str>| {
        let body = json!({"current": current, "new": new});
        let (web, here, csrf) = (&web, here.clone(), csrf.map(str::to_string));
        async move {
            web.with_cookie(
                "POST",
                "/api/v1/account/password",
                &here,
                csrf.as_deref(),
                Some(body),
            )
            .await
        }
    };
    assert_eq!(
        change(PASSWORD, "another good password", None).await.status,
        StatusCode::FORBIDDEN,
        "CSRF header required"
    );
    let r = change("not my password", "another good password", Some(&csrf)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("current password is wrong"));
    let r = change(PASSWORD, "short", Some(&csrf)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least 12"), "{}", r.body);

    let r = change(PASSWORD, "another good password", Some(&csrf)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let renewed = r.cookie("vigil_session").expect("a new session cookie");
    assert_ne!(renewed, here);
    assert_eq!(r.json()["user"], "ann");
    for old in [&here, &elsewhere] {
        let r = web
            .with_cookie("GET", "/api/v1/hosts", old, None, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = web
        .with_cookie("GET", "/api/v1/hosts", &renewed, None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Not signed in: 401.
    let r = web
        .send(
            Request::post("/api/v1/account/password")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
