//! The Prometheus side of a real aggregator over real HTTP: samples pushed
//! by the real agent over QUIC, and samples imported over HTTP, both read
//! back through `/prometheus/api/v1`; `[http_ingest]` from the config file
//! in force.

use std::time::Duration;

use serde_json::Value;
use vigil_agent::{Agent, Stats};
use vigil_tests::{Db, TestAggregator};

/// A form body (the values used here need no escaping beyond these).
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('%', "%25")
                .replace('+', "%2B")
                .replace(' ', "+")
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
                .replace('~', "%7E");
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: &str,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let r = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let r = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn agent_and_imported_samples_are_queryable_over_http() {
    // A tiny import cap, set in the config file, proves the section is wired.
    let agg =
        TestAggregator::start_with(Db::Sqlite, "[http_ingest]\nmax_import_bytes = 2048\n").await;
    let token = agg.token().await;
    let client = reqwest::Client::new();
    let api = |path: &str| agg.url(&format!("/prometheus/api/v1/{path}"));
    const FORM: &str = "application/x-www-form-urlencoded";

    // The agent pushes for a while over QUIC.
    agg.add_agent("prom-1").await;
    let agent = Agent::start(agg.agent_config("prom-1"))
        .await
        .expect("agent starts");
    let stats = agent.stats();
    let start = std::time::Instant::now();
    while Stats::get(&stats.batches_acked) < 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "no acks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent
        .shutdown(Duration::from_secs(10))
        .await
        .expect("agent stops");

    // Its series are visible to the metric browser and to queries.
    let (status, body) = post(
        &client,
        api("series"),
        &token,
        FORM,
        form(&[("match[]", r#"{host="prom-1.test"}"#)]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let series = body["data"].as_array().expect("series");
    assert!(series.len() > 5, "{body}");
    assert!(series.iter().all(|s| s["role"] == "db"));
    let (status, body) = post(
        &client,
        api("query"),
        &token,
        FORM,
        form(&[("query", r#"count({host="prom-1.test"}) > 0"#)]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "vector");
    let count: f64 = body["data"]["result"][0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("number");
    assert_eq!(count as usize, series.len());

    // The metadata the agent sends with its batches is served as Prometheus does.
    let (status, body) = get(&client, api("metadata"), &token).await;
    assert_eq!(status, 200, "{body}");
    let all = body["data"].as_object().expect("metadata map");
    assert!(all.len() > 5, "{body}");
    let sent = &all["vigil_agent_batches_sent_total"];
    assert_eq!(sent[0]["type"], "counter", "{body}");
    assert!(
        !sent[0]["help"].as_str().expect("help").is_empty(),
        "{body}"
    );
    let (status, body) = get(
        &client,
        api("metadata?metric=vigil_agent_batches_sent_total&limit_per_metric=1"),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_object().expect("map").len(), 1, "{body}");
    assert_eq!(body["data"]["vigil_agent_batches_sent_total"], *sent);

    // Backfill over HTTP, then read it back with query_range.
    let t0 = (vigil_common::now_ms() / 60_000 - 30) * 60_000;
    let mut text =
        String::from("# HELP backfill_total Jobs backfilled.\n# TYPE backfill_total counter\n");
    text += &(0..5)
        .map(|i| {
            format!(
                "backfill_total{{job=\"e2e\"}} {} {}\n",
                i * 10,
                t0 + i * 60_000
            )
        })
        .collect::<String>();
    let (status, body) = post(
        &client,
        agg.url("/api/v1/import"),
        &token,
        "text/plain",
        text,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["samples_accepted"], 5);
    let (status, body) = get(&client, api("metadata?metric=backfill_total"), &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        serde_json::json!({"backfill_total": [{"type": "counter", "help": "Jobs backfilled.", "unit": ""}]})
    );
    let (status, body) = post(
        &client,
        api("query_range"),
        &token,
        FORM,
        form(&[
            ("query", "backfill_total"),
            ("start", &(t0 / 1000).to_string()),
            ("end", &((t0 + 240_000) / 1000).to_string()),
            ("step", "1m"),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let values: Vec<(i64, String)> = body["data"]["result"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            (
                p[0].as_i64().expect("whole seconds"),
                p[1].as_str().expect("value").to_string(),
            )
        })
        .collect();
    let want: Vec<(i64, String)> = (0..5)
        .map(|i| ((t0 + i * 60_000) / 1000, (i * 10).to_string()))
        .collect();
    assert_eq!(values, want);

    // The configured cap, announced by Content-Length over real HTTP.
    let big = "x 1 1\n".repeat(1000);
    let (status, body) = post(
        &client,
        agg.url("/api/v1/import"),
        &token,
        "text/plain",
        big,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().expect("msg").contains("2048"));
    agg.stop().await;
}
