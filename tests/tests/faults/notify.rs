//! A notification receiver that hangs (accepts the connection, reads the
//! request, never answers) and one that is dead (nothing listens) must not
//! hold up ingest or rule evaluation: the evaluator hands alerts to a bounded
//! queue, the dispatcher writes them to the outbox, and the outbox delivers
//! on its own task with timeouts. Measured over 15 s while an alert keeps
//! firing at both: the agent's batches are acked without a gap, every rule
//! group is evaluated every second, and an alert on data that arrives during
//! the hang fires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncReadExt;
use vigil_agent::Agent;
use vigil_tests::faults::{acked_at_least, get, wait_until};
use vigil_tests::{Db, TestAggregator};

const RULES: &str = r#"
groups:
  - name: faults
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: critical}
      - alert: HostReporting
        expr: max by (host) (system_load1) >= 0
        labels: {severity: info}
"#;

/// Accepts connections and holds them open without a reply; counts them.
async fn hanging_receiver() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                // Read whatever comes, answer nothing, until the client gives up.
                let mut buf = [0u8; 4096];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, accepted)
}

/// `lastEvaluation` of group `faults`, from the Prometheus rules API.
async fn last_evaluation(agg: &TestAggregator, token: &str) -> Option<String> {
    let v: Value = reqwest::Client::new()
        .get(agg.url("/prometheus/api/v1/rules"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["data"]["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == "faults")?["lastEvaluation"]
        .as_str()
        .map(str::to_string)
}

async fn firing(agg: &TestAggregator, token: &str, alertname: &str) -> bool {
    let Ok(r) = reqwest::Client::new()
        .get(agg.url("/api/v1/alerts"))
        .bearer_auth(token)
        .send()
        .await
    else {
        return false;
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["alerts"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x["labels"]["alertname"] == alertname && x["state"] == "firing")
    })
}

#[tokio::test]
async fn a_hanging_or_dead_receiver_does_not_delay_ingest_or_evaluation() {
    let (hang, accepted) = hanging_receiver().await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let files = tempfile::tempdir().expect("tempdir");
    let rules = files.path().join("rules.yml");
    let notify = files.path().join("notify.yml");
    std::fs::write(&rules, RULES).expect("rules");
    std::fs::write(
        &notify,
        format!(
            "route:\n  receiver: oncall\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 2s\n\
             receivers:\n  - name: oncall\n    webhook_configs:\n      - url: http://{hang}/hook\n        timeout: 30s\n      - url: http://{dead}/hook\n"
        ),
    )
    .expect("notify config");
    let sections = format!(
        "[alerting]\nrule_files = [{rules:?}]\nevaluation_interval = \"1s\"\n\
         [notify]\nconfig_file = {notify:?}\n\
         [notify.outbox]\npoll_interval = \"100ms\"\nmin_backoff = \"100ms\"\nmax_backoff = \"500ms\"\n",
    );
    let agg = TestAggregator::start_configured(Db::Postgres, "", &sections).await;
    let token = agg.token().await;
    agg.add_agent("notify-load").await;
    let agent = Agent::start(agg.agent_config("notify-load"))
        .await
        .expect("agent starts");
    acked_at_least(&agent, 3, Duration::from_secs(20)).await;

    wait_until("AlwaysFiring fires", Duration::from_secs(15), || async {
        firing(&agg, &token, "AlwaysFiring").await
    })
    .await;
    wait_until(
        "the hanging receiver is called",
        Duration::from_secs(15),
        || async { accepted.load(Ordering::Relaxed) > 0 },
    )
    .await;

    // 15 s with the receiver hanging: ingest and evaluation go on.
    let stats = agent.stats();
    let started = Instant::now();
    let acked_before = get(&stats.batches_acked);
    let (mut last_ack, mut last_ack_at, mut longest_gap) =
        (acked_before, Instant::now(), Duration::ZERO);
    let mut evaluations = std::collections::BTreeSet::new();
    let mut next_eval_check = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        let acked = get(&stats.batches_acked);
        if acked > last_ack {
            longest_gap = longest_gap.max(last_ack_at.elapsed());
            (last_ack, last_ack_at) = (acked, Instant::now());
        }
        if Instant::now() >= next_eval_check {
            if let Some(t) = last_evaluation(&agg, &token).await {
                evaluations.insert(t);
            }
            next_eval_check += Duration::from_millis(500);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    longest_gap = longest_gap.max(last_ack_at.elapsed());
    let acked = get(&stats.batches_acked) - acked_before;
    eprintln!(
        "while the receiver hung: {acked} batches acked, longest gap {longest_gap:?}, {} evaluations seen",
        evaluations.len()
    );
    // One batch each 200 ms: 75 in 15 s.
    assert!(
        acked >= 60,
        "ingest kept its pace: {acked} batches acked in 15 s"
    );
    assert!(
        longest_gap < Duration::from_secs(1),
        "no ack waited on the receiver: longest gap {longest_gap:?}"
    );
    assert!(
        evaluations.len() >= 10,
        "the rule group was evaluated every second: {} distinct evaluations in 15 s",
        evaluations.len()
    );
    assert!(
        firing(&agg, &token, "HostReporting").await,
        "an alert on the agent's fresh data fired during the hang"
    );
    // The receivers really were failing all along.
    let m = &agg.running().state.metrics.notify;
    let sent: u64 = ["webhook"]
        .iter()
        .map(|i| {
            m.sent
                .get_or_create(&vigil_aggregator::metrics::NotifyLabels {
                    receiver: "oncall".into(),
                    integration: (*i).into(),
                })
                .get()
        })
        .sum();
    assert_eq!(sent, 0, "nothing was delivered");
    let failed = m
        .failed
        .get_or_create(&vigil_aggregator::metrics::NotifyLabels {
            receiver: "oncall".into(),
            integration: "webhook".into(),
        })
        .get();
    assert!(
        failed > 0,
        "the dead receiver's attempts failed and were counted"
    );

    agent
        .shutdown(Duration::from_secs(10))
        .await
        .expect("agent stops");
    agg.stop().await;
}
