//! Access control through the real aggregator over real HTTP: the per-IP
//! rate limit sees the TCP peer (the server is wired with connect info), a
//! token's limit is its own, 429 carries Retry-After, and anonymous reads
//! follow `[http] anonymous_read` from the config file.

use vigil_aggregator::auth::{new_token, token_hash};
use vigil_aggregator::config::Config;
use vigil_tests::Pki;

async fn start(http_toml: &str) -> (vigil_aggregator::Running, Pki) {
    vigil_common::tls::install_default_provider();
    let pki = Pki::new();
    let path = pki.path().join("aggregator.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n{http_toml}\n[quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n"
        ),
    )
    .expect("config");
    let loaded = Config::load(&path).expect("valid config");
    let running = vigil_aggregator::start(loaded).await.expect("starts");
    assert!(
        running
            .wait_store_ready(std::time::Duration::from_secs(10))
            .await
    );
    (running, pki)
}

#[tokio::test]
async fn rate_limits_over_real_http() {
    let (running, _pki) = start(
        "rate_limit_per_ip = { per_second = 1, burst = 3 }\nrate_limit_per_token = { per_second = 1, burst = 2 }",
    )
    .await;
    let token = new_token().expect("token");
    running
        .state
        .store
        .put_token("t", &token_hash(&token), "read")
        .await
        .expect("token");
    let url = format!("http://{}/api/v1/hosts", running.http_addr);
    let client = reqwest::Client::new();
    let send = || client.get(&url).bearer_auth(&token).send();

    assert_eq!(send().await.expect("1").status(), 200);
    assert_eq!(send().await.expect("2").status(), 200);
    // The token's burst of 2 is spent; the address still has one left.
    let r = send().await.expect("3");
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    // The address's burst of 3 is spent now too: even without a token.
    let r = client.get(&url).send().await.expect("4");
    assert_eq!(r.status(), 429);
    // The limit is per TCP peer: another loopback address still gets through.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let r = other.get(&url).send().await.expect("other address");
    assert_eq!(r.status(), 401, "not limited, just without a token");
    // Health is never limited.
    let health = format!("http://{}/healthz", running.http_addr);
    assert_eq!(
        client.get(&health).send().await.expect("health").status(),
        200
    );
    running.shutdown().await;
}

#[tokio::test]
async fn anonymous_reads_follow_the_config() {
    for (open, want) in [(true, 200), (false, 401)] {
        let (running, _pki) = start(&format!("anonymous_read = {open}")).await;
        let base = format!("http://{}", running.http_addr);
        let r = reqwest::get(format!("{base}/api/v1/summary"))
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), want, "anonymous_read = {open}");
        let r = reqwest::get(format!("{base}/api/v1/tokens"))
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "admin routes always need a token");
        running.shutdown().await;
    }
}
