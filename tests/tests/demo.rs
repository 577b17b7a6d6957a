//! The demo prediction API over real HTTP: predictions, metrics, health and
//! the knobs that make it misbehave.

use serde_json::{Value, json};
use vigil_tests::demo::{Demo, Knobs, app};

async fn serve(knobs: Knobs, synthetic: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app(Demo::new(knobs, synthetic))).await;
    });
    format!("http://{addr}")
}

fn quiet() -> Knobs {
    Knobs {
        error_rate: 0.0,
        self_traffic_rps: 0.0,
        ..Knobs::default()
    }
}

#[tokio::test]
async fn predictions_show_up_in_the_metrics() {
    let base = serve(quiet(), 0).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let resp = client
            .post(format!("{base}/predict"))
            .json(&json!({"features": [0.1, 2.0, 3.5]}))
            .send()
            .await
            .expect("predict");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["model"], "fraud-detector");
        assert!(body["version"] == "v1" || body["version"] == "v2");
        assert!((0.0..=1.0).contains(&body["confidence"].as_f64().expect("confidence")));
    }
    let bad = client
        .post(format!("{base}/predict"))
        .body("not json")
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status(), 400);

    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for needle in [
        "http_requests_total{handler=\"/predict\",method=\"POST\",status=\"200\"} 20",
        "http_requests_total{handler=\"/predict\",method=\"POST\",status=\"400\"} 1",
        "http_request_duration_seconds_bucket{le=\"+Inf\",handler=\"/predict\"}",
        "model_predictions_total{model=\"fraud-detector\",version=\"v1\"}",
        "model_predictions_total{model=\"fraud-detector\",version=\"v2\"}",
        "model_inference_duration_seconds_count{model=\"fraud-detector\",version=\"v2\"}",
        "model_accuracy_ratio{model=\"fraud-detector\",version=\"v1\"}",
        "model_drift_score{model=\"fraud-detector\",version=\"v2\"}",
        "model_prediction_confidence_bucket{le=\"0.5\",model=\"fraud-detector\"}",
        "# TYPE model_inference_duration_seconds histogram",
        "# EOF",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let count = |version: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "model_predictions_total{{model=\"fraud-detector\",version=\"{version}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("a count")
    };
    assert_eq!(count("v1") + count("v2"), 20);
}

#[tokio::test]
async fn knobs_break_it_and_bad_knobs_are_refused() {
    let base = serve(quiet(), 0).await;
    let client = reqwest::Client::new();
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .expect("health")
            .status(),
        200
    );

    let set = client
        .post(format!("{base}/admin/knobs"))
        .json(&json!({"error_rate": 1.0, "healthy": false}))
        .send()
        .await
        .expect("knobs");
    assert_eq!(set.status(), 200);
    let knobs: Value = set.json().await.expect("json");
    assert_eq!(knobs["error_rate"], 1.0);
    assert_eq!(knobs["drift"], 0.0, "other knobs untouched");
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .expect("health")
            .status(),
        503
    );
    let failed = client
        .post(format!("{base}/predict"))
        .json(&json!({"features": [1.0]}))
        .send()
        .await
        .expect("predict");
    assert_eq!(failed.status(), 500);

    for bad in [
        json!({"error_rate": 2.0}),
        json!({"colour": 1}),
        json!([1]),
        json!({"drift": "high"}),
    ] {
        let resp = client
            .post(format!("{base}/admin/knobs"))
            .json(&bad)
            .send()
            .await
            .expect("knobs");
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let now: Value = reqwest::get(format!("{base}/admin/knobs"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(now["error_rate"], 1.0, "refused patches change nothing");
}

#[tokio::test]
async fn synthetic_series_pad_the_exposition() {
    async fn samples(padding: usize) -> (usize, String) {
        let base = serve(quiet(), padding).await;
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        let n = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        (n, text)
    }
    let (plain, _) = samples(0).await;
    let (padded, text) = samples(400).await;
    assert_eq!(padded, plain + 400);
    assert!(text.contains("demo_synthetic_value{series=\"399\"} 399"));
}
