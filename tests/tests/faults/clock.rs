//! Agents whose clock is an hour off, over the real protocol. The rule
//! (`aggregator/src/ingest/clock.rs`, docs/ARCHITECTURE.md "Clock skew"):
//! timestamps are never rewritten; a point inside `[now - max_sample_age,
//! now + max_future_skew]` (30 d, 10 min) is stored, one outside is refused
//! and counted, and the batch is acked either way. So an agent an hour ahead
//! has every sample refused (`too_new`, reported in its ack), one an hour
//! behind has them stored at its own times. The skew of each is measured
//! from the batch headers, exported as
//! `vigil_aggregator_agent_clock_skew_seconds{agent}`, returned by
//! `/api/v1/hosts` and shown on the host page.

use serde_json::Value;
use vigil_aggregator::http::session::{Role, accounts};
use vigil_common::{Batch, ServerMessage, sign};
use vigil_tests::faults::{page, sign_in, stored_for_host};
use vigil_tests::raw::batch;
use vigil_tests::{Db, TestAggregator};

const HOUR_MS: i64 = 3_600_000;

/// A batch of 4 samples from `id` as its clock (off by `offset_ms`) sees now.
fn skewed(id: &str, sequence: u64, offset_ms: i64) -> Batch {
    let mut b = batch(id, sequence, 4);
    // Distinct timestamps per batch: one collection a second.
    let shift = offset_ms - (3 - sequence as i64) * 1000;
    b.header.created_at_ms += shift;
    for s in &mut b.series {
        for p in &mut s.points {
            p.timestamp_ms += shift;
        }
    }
    b
}

fn metric(text: &str, agent: &str) -> Option<f64> {
    let prefix = format!("vigil_aggregator_agent_clock_skew_seconds{{agent=\"{agent}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn clocks_an_hour_off_follow_the_rule_and_their_skew_is_shown() {
    let agg = TestAggregator::start(Db::Postgres).await;
    let cases = [
        ("clock-ahead", HOUR_MS),
        ("clock-behind", -HOUR_MS),
        ("clock-right", 0),
    ];
    for (id, offset) in cases {
        agg.add_agent(id).await;
        let raw = agg.raw(id).await;
        let key = sign::load_signing_key(&agg.pki.agent_paths(id).signing_key).expect("key");
        for seq in 1..=3 {
            let reply = raw
                .send_batch(&skewed(id, seq, offset), &key)
                .await
                .expect("reply");
            let ServerMessage::Ack(ack) = reply else {
                panic!("{id}: batch {seq} not acked: {reply:?}");
            };
            let expect = if offset > 0 { (0, 4) } else { (4, 0) };
            assert_eq!(
                (ack.samples_stored, ack.samples_rejected),
                expect,
                "{id}: batch {seq} (stored, refused)"
            );
        }
    }
    let m = &agg.running().state.metrics;
    let too_new = m
        .samples_rejected
        .get_or_create(&vigil_aggregator::metrics::Reason::new("too_new"))
        .get();
    assert_eq!(
        too_new, 12,
        "the ahead agent's samples were refused and counted"
    );

    let pool = sqlx::PgPool::connect(agg.pg_url().expect("PostgreSQL"))
        .await
        .expect("connect");
    assert_eq!(stored_for_host(&pool, "clock-ahead.example").await, 0);
    assert_eq!(stored_for_host(&pool, "clock-behind.example").await, 12);
    assert_eq!(stored_for_host(&pool, "clock-right.example").await, 12);
    // Stored at the agent's own times: an hour ago.
    let newest: i64 = sqlx::query_scalar(
        "SELECT max(s.ts) FROM samples s JOIN series r ON r.id = s.series_id
         WHERE r.labels::jsonb ->> 'host' = 'clock-behind.example'",
    )
    .fetch_one(&pool)
    .await
    .expect("newest sample");
    let age = vigil_common::now_ms() - newest;
    assert!(
        (HOUR_MS..HOUR_MS + 60_000).contains(&age),
        "stored at the agent's time: {age} ms old"
    );
    pool.close().await;

    // The skew: exported, in the hosts API, on the host page.
    let text = reqwest::get(agg.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for (id, offset) in cases {
        let skew = metric(&text, id).unwrap_or_else(|| panic!("no skew metric for {id}"));
        assert!(
            (skew - offset as f64 / 1000.0).abs() < 15.0,
            "{id}: skew {skew} s, expected about {} s",
            offset / 1000
        );
    }
    let token = agg.token().await;
    let hosts: Value = reqwest::Client::new()
        .get(agg.url("/api/v1/hosts"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("hosts")
        .json()
        .await
        .expect("JSON");
    for (id, offset) in cases {
        let host = hosts["hosts"]
            .as_array()
            .and_then(|a| a.iter().find(|h| h["agent_id"] == id))
            .unwrap_or_else(|| panic!("{id} is listed, whatever its clock: {hosts}"));
        let skew = host["clock_skew_seconds"]
            .as_f64()
            .expect("skew in the API");
        assert!((skew - offset as f64 / 1000.0).abs() < 15.0, "{id}: {skew}");
    }

    let db = agg.running().state.store.db();
    accounts::create(&db, "oncall", Role::Viewer, "a long enough password")
        .await
        .expect("dashboard user");
    let base = agg.url("");
    let session = sign_in(&base, "oncall", "a long enough password").await;
    let (code, ahead) = page(&base, "/hosts/clock-ahead", &session).await;
    assert_eq!(code, 200, "{ahead}");
    assert!(
        ahead.contains("id=\"clock-skew\""),
        "the skew is on the page"
    );
    assert!(
        ahead.contains("1h 0m") && ahead.contains("ahead of") && ahead.contains("NTP"),
        "an hour ahead, flagged"
    );
    let (_, behind) = page(&base, "/hosts/clock-behind", &session).await;
    assert!(behind.contains("1h 0m") && behind.contains("behind") && behind.contains("NTP"));
    let (_, right) = page(&base, "/hosts/clock-right", &session).await;
    assert!(right.contains("id=\"clock-skew\"") && !right.contains("NTP"));
    agg.stop().await;
}
