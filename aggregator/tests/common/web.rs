//! Dashboard sign-in helpers: an app with sessions over a real store (SQLite
//! or a fresh PostgreSQL database), one page route that needs a signed-in
//! user, and the form dance a browser does.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::get;
use tower::ServiceExt;
use vigil_aggregator::http::access::AccessPolicy;
use vigil_aggregator::http::session::{Role, SessionPolicy, Sessions, WebUser, accounts};
use vigil_aggregator::http::{AppState, app_with};
use vigil_aggregator::query::MemorySource;
use vigil_aggregator::store::Store;
use vigil_aggregator::testing::PgTestDb;

/// The host every test request names.
pub const HOST: &str = "vigil.test:8080";
/// A password that passes the rules.
pub const PASSWORD: &str = "correct horse battery staple";

/// An app with sessions over one store; keep it alive for the test.
pub struct Web {
    pub state: AppState,
    pub sessions: Arc<Sessions>,
    pub app: Router,
    pub pg: Option<PgTestDb>,
    pub dir: tempfile::TempDir,
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated store of `backend` (the PostgreSQL one in a new database).
pub async fn open(backend: Backend, dir: &std::path::Path) -> (Arc<dyn Store>, Option<PgTestDb>) {
    match backend {
        Backend::Sqlite => (super::sqlite(dir).await, None),
        Backend::Postgres => {
            let pg = PgTestDb::create().await.unwrap_or_else(|e| panic!("{e}"));
            let store =
                vigil_aggregator::store::open(&pg.url, dir, 4).expect("open PostgreSQL store");
            store.migrate().await.expect("migrate");
            (store, Some(pg))
        }
    }
}

impl Web {
    pub async fn new(backend: Backend, policy: SessionPolicy) -> Web {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, pg) = open(backend, dir.path()).await;
        Web::over(store, pg, dir, policy)
    }

    /// An app over an existing store (e.g. a "restarted" aggregator).
    pub fn over(
        store: Arc<dyn Store>,
        pg: Option<PgTestDb>,
        dir: tempfile::TempDir,
        policy: SessionPolicy,
    ) -> Web {
        let state = super::state(
            store,
            Arc::new(MemorySource::new()),
            vigil_aggregator::query::Engine::default(),
        );
        let sessions = Arc::new(Sessions::new(policy));
        let page = Router::new()
            .route(
                "/page",
                get(|user: WebUser| async move { format!("hello {}", user.name) }),
            )
            .layer(axum::Extension(sessions.clone()))
            .with_state(state.clone());
        let app = app_with(state.clone(), &AccessPolicy::default(), sessions.clone()).merge(page);
        Web {
            state,
            sessions,
            app,
            pg,
            dir,
        }
    }

    pub async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_db().await;
        }
    }

    pub async fn add_user(&self, name: &str, role: Role) {
        accounts::create(&self.state.store.db(), name, role, PASSWORD)
            .await
            .expect("create user");
    }

    pub async fn send(&self, req: Request<Body>) -> Page {
        let resp = self.app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .expect("body");
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET /login`: the double-submit cookie value and the form's token.
    pub async fn login_form(&self) -> (String, String) {
        let page = self
            .send(
                Request::get("/login")
                    .header(header::HOST, HOST)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let cookie = page.cookie("vigil_login_csrf").expect("csrf cookie");
        let token = page.form_token().expect("csrf_token field");
        (cookie, token)
    }

    /// `POST /login` as a browser on this site sends it.
    pub async fn post_login(&self, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = Request::post("/login")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, format!("http://{HOST}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, format!("vigil_login_csrf={c}"));
        }
        self.send(req.body(Body::from(body)).expect("request"))
            .await
    }

    /// Signs in through the form; returns the whole `Set-Cookie` of the
    /// session and the response.
    pub async fn sign_in_as(&self, user: &str, password: &str, next: &str) -> Page {
        let (cookie, token) = self.login_form().await;
        self.post_login(
            Some(&cookie),
            &[
                ("username", user),
                ("password", password),
                ("csrf_token", &token),
                ("next", next),
            ],
        )
        .await
    }

    /// Signs in and returns the session id.
    pub async fn session_of(&self, user: &str) -> String {
        let page = self.sign_in_as(user, PASSWORD, "/").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page.cookie("vigil_session").expect("session cookie")
    }

    /// A request with the session cookie (and, if given, the CSRF header).
    pub async fn with_cookie(
        &self,
        method: &str,
        uri: &str,
        session: &str,
        csrf: Option<&str>,
        json: Option<serde_json::Value>,
    ) -> Page {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, HOST)
            .header(header::COOKIE, format!("vigil_session={session}"));
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        let body = match json {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).expect("request")).await
    }

    /// The session's CSRF token from `GET /api/v1/session`.
    pub async fn csrf_of(&self, session: &str) -> String {
        let page = self
            .with_cookie("GET", "/api/v1/session", session, None, None)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page.json()["csrf_token"]
            .as_str()
            .expect("csrf_token")
            .to_string()
    }
}

/// A response with its body as text.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect()
    }

    /// The whole `Set-Cookie` line of cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value cookie `name` is set to.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let line = self.set_cookie(name)?;
        let value = line.split(';').next()?.split_once('=')?.1.to_string();
        (!value.is_empty()).then_some(value)
    }

    /// The login form's `csrf_token` field.
    pub fn form_token(&self) -> Option<String> {
        let after = self.body.split("name=\"csrf_token\" value=\"").nth(1)?;
        Some(after.split('"').next()?.to_string())
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}
