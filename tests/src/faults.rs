//! What the fault tests (`tests/tests/faults/`) share: waiting for an agent's
//! acks and counting, in the database itself, what was stored, so each test
//! can assert "stored == sent" exactly (nothing lost, nothing twice).

use std::time::{Duration, Instant};

use sqlx::PgPool;
use vigil_agent::{AgentHandle, Stats};

/// A relaxed read of an agent counter.
pub fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    Stats::get(c)
}

/// Waits until `agent` has had `n` batches acked, or panics after `limit`.
pub async fn acked_at_least(agent: &AgentHandle, n: u64, limit: Duration) {
    let stats = agent.stats();
    let start = Instant::now();
    while get(&stats.batches_acked) < n {
        assert!(
            start.elapsed() < limit,
            "only {} of {n} batches acked after {limit:?}",
            get(&stats.batches_acked)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 100 ms until it is true, or panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples stored for `host` (its `host` label), counted in PostgreSQL.
pub async fn stored_for_host(pool: &PgPool, host: &str) -> u64 {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id
         WHERE r.labels::jsonb ->> 'host' = $1",
    )
    .bind(host)
    .fetch_one(pool)
    .await
    .expect("count samples");
    n as u64
}

/// One `ingested_batches` row: the dedup record of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Committed {
    pub boot_id: Vec<u8>,
    pub sequence: u64,
    pub samples: u64,
}

/// Every batch of `agent` the database committed.
pub async fn committed(pool: &PgPool, agent: &str) -> Vec<Committed> {
    let rows: Vec<(Vec<u8>, i64, i64)> = sqlx::query_as(
        "SELECT boot_id, sequence, samples FROM ingested_batches WHERE agent_id = $1
         ORDER BY boot_id, sequence",
    )
    .bind(agent)
    .fetch_all(pool)
    .await
    .expect("read ingested_batches");
    rows.into_iter()
        .map(|(boot_id, sequence, samples)| Committed {
            boot_id,
            sequence: sequence as u64,
            samples: samples as u64,
        })
        .collect()
}

/// Stops `agent` (draining its spool), then checks, for host `host`:
/// nothing dropped, every queued sample acked, and the database holding
/// exactly the samples queued, in exactly the batches acked. Returns the
/// number of samples.
pub async fn assert_exactly_once(pool: &PgPool, agent: AgentHandle, id: &str, host: &str) -> u64 {
    let stats = agent.stats();
    agent
        .shutdown(Duration::from_secs(30))
        .await
        .expect("the agent drains its spool");
    let queued = get(&stats.samples_queued);
    let acked = get(&stats.samples_acked);
    let duplicate = get(&stats.samples_duplicate);
    assert!(queued > 0, "{id} sent something");
    assert_eq!(get(&stats.samples_dropped), 0, "{id} dropped nothing");
    assert_eq!(acked + duplicate, queued, "{id}: every queued sample acked");
    let batches = committed(pool, id).await;
    assert_eq!(
        batches.len() as u64,
        get(&stats.batches_queued),
        "{id}: one committed batch per batch sent"
    );
    let in_batches: u64 = batches.iter().map(|b| b.samples).sum();
    assert_eq!(
        in_batches, queued,
        "{id}: committed batches hold every sample"
    );
    let stored = stored_for_host(pool, host).await;
    assert_eq!(stored, queued, "{id}: stored == sent, exactly");
    stored
}

/// Signs in to the dashboard at `base` as a browser would and returns the
/// session cookie's value.
pub async fn sign_in(base: &str, user: &str, password: &str) -> String {
    let client = no_redirects();
    let form = client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(form.status(), 200, "the login page answers");
    let csrf = cookie(&form, "vigil_login_csrf").expect("login CSRF cookie");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("csrf_token", &csrf)
        .finish();
    let resp = client
        .post(format!("{base}/login"))
        .header("cookie", format!("vigil_login_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), 303, "signed in");
    cookie(&resp, "vigil_session").expect("session cookie")
}

/// `GET base+path` with the session cookie, not following redirects:
/// (status, body).
pub async fn page(base: &str, path: &str, session: &str) -> (u16, String) {
    let resp = no_redirects()
        .get(format!("{base}{path}"))
        .header("cookie", format!("vigil_session={session}"))
        .send()
        .await
        .expect("dashboard page");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The status of `GET url`.
pub async fn status(url: &str) -> u16 {
    match reqwest::get(url).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

fn cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
        .and_then(|c| c.split(';').next().map(str::to_string))
}
