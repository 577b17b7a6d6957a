//! The probe's HTTP side: the dashboard user it signs in as (through the
//! real `/login` form, for the live socket's session cookie), and the
//! poller of `GET /prometheus/api/v1/query`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, ORIGIN, SET_COOKIE};
use tokio::sync::watch;
use tokio::time::sleep_until;

use super::config::SEQUENCE_METRIC;
use super::{Plan, ProbeError, Shared, stopped};

/// An HTTP client that does not follow redirects (sign-in answers 303 with
/// the cookie).
pub fn client() -> Result<reqwest::Client, ProbeError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ProbeError::Http(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `name=value` of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| k.trim() == name && !v.is_empty())
        })
        .map(|kv| kv.trim().to_string())
}

/// A viewer the probe created and signed in as.
pub struct SignIn {
    pub user: String,
    /// `vigil_session=...`, for the `Cookie` header.
    pub cookie: String,
}

impl SignIn {
    /// Creates a viewer with a random name and password (`POST
    /// /api/v1/users`, admin token), then signs in through the form: `GET
    /// /login` for the double-submit token, `POST /login` with it and the
    /// page's own `Origin`.
    pub async fn create(client: &reqwest::Client, plan: &Plan) -> Result<SignIn, ProbeError> {
        let base = format!("http://{}", plan.http);
        let user = format!("vigil-probe-{}", hex(&rand::random::<[u8; 4]>()));
        let password = hex(&rand::random::<[u8; 16]>());
        let err =
            |what: &str, e: &dyn std::fmt::Display| ProbeError::SignIn(format!("{what}: {e}"));
        let r = client
            .post(format!("{base}/api/v1/users"))
            .header(AUTHORIZATION, format!("Bearer {}", plan.token))
            .json(&serde_json::json!({"name": user, "role": "viewer", "password": password}))
            .send()
            .await
            .map_err(|e| err("POST /api/v1/users", &e))?;
        if r.status() != StatusCode::CREATED {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            return Err(ProbeError::SignIn(format!(
                "POST /api/v1/users: {status} {body} (the token must have the admin scope)"
            )));
        }
        let r = client
            .get(format!("{base}/login"))
            .send()
            .await
            .map_err(|e| err("GET /login", &e))?;
        let csrf = set_cookie(&r, "vigil_login_csrf").ok_or_else(|| {
            ProbeError::SignIn(format!(
                "GET /login: {} without the CSRF cookie",
                r.status()
            ))
        })?;
        let token = csrf
            .split_once('=')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", &user)
            .append_pair("password", &password)
            .append_pair("csrf_token", &token)
            .append_pair("next", "/")
            .finish();
        let r = client
            .post(format!("{base}/login"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(COOKIE, &csrf)
            .header(ORIGIN, &base)
            .body(body)
            .send()
            .await
            .map_err(|e| err("POST /login", &e))?;
        let cookie = set_cookie(&r, "vigil_session").ok_or_else(|| {
            ProbeError::SignIn(format!(
                "POST /login: {} without a session cookie",
                r.status()
            ))
        })?;
        Ok(SignIn { user, cookie })
    }

    /// Deletes the user (its sessions end with it); a failure is only logged.
    pub async fn delete(&self, client: &reqwest::Client, plan: &Plan) {
        let r = client
            .delete(format!("http://{}/api/v1/users/{}", plan.http, self.user))
            .header(AUTHORIZATION, format!("Bearer {}", plan.token))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => eprintln!(
                "vigil-probe: could not delete user {}: {}",
                self.user,
                r.status()
            ),
            Err(e) => eprintln!("vigil-probe: could not delete user {}: {e}", self.user),
        }
    }
}

/// The instant query for the probe host's sequence.
pub fn query_url(plan: &Plan, host: &str) -> String {
    let query = format!("{SEQUENCE_METRIC}{{host=\"{host}\"}}");
    let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!("http://{}/prometheus/api/v1/query?query={q}", plan.http)
}

/// Polls the query every `plan.poll` (one request at a time) until `stop`.
pub fn start_poller(
    client: reqwest::Client,
    plan: &Plan,
    host: &str,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let url = query_url(plan, host);
    let auth = format!("Bearer {}", plan.token);
    let every = plan.poll;
    tokio::spawn(async move {
        loop {
            let next = tokio::time::Instant::now() + every;
            tokio::select! {
                r = poll_once(&client, &url, &auth) => match r {
                    Ok(Some(v)) => shared.lock().seen_query(v, Instant::now()),
                    Ok(None) => {}
                    Err(kind) => shared.lock().error(&kind),
                },
                _ = stopped(&mut stop) => return,
            }
            tokio::select! {
                _ = sleep_until(next) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    })
}

/// One query: the sequence number it returned (`None`: no result yet).
async fn poll_once(client: &reqwest::Client, url: &str, auth: &str) -> Result<Option<u64>, String> {
    let r = client
        .get(url)
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .map_err(|_| "query_transport".to_string())?;
    if !r.status().is_success() {
        return Err(format!("query_http_{}", r.status().as_u16()));
    }
    let body: serde_json::Value = r.json().await.map_err(|_| "query_decode".to_string())?;
    let Some(first) = body["data"]["result"].as_array().and_then(|a| a.first()) else {
        return Ok(None);
    };
    let value = first["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| "query_decode".to_string())?;
    Ok(Some(value.round() as u64))
}
