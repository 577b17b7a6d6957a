//! The aggregator is killed with SIGKILL while agents stream to it (batches
//! in flight, some mid-commit), three times, and restarted each time. A batch
//! whose transaction did not commit was never acked, so the agent resends
//! it; one that committed but whose ack was lost is resent and deduplicated.
//! Either way: stored == sent.

use std::time::Duration;

use vigil_agent::Agent;
use vigil_tests::faults::{acked_at_least, assert_exactly_once, get};
use vigil_tests::{Db, TestAggregator, process};

#[tokio::test]
async fn an_aggregator_killed_mid_stream_loses_and_duplicates_nothing() {
    let mut agg = TestAggregator::start(Db::Postgres).await;
    let ids = ["kill-agg-1", "kill-agg-2"];
    for id in ids {
        agg.add_agent(id).await;
    }
    let url = agg.pg_url().expect("PostgreSQL").to_string();
    // From here on the aggregator is the real binary, on the same ports.
    agg.stop_in_process().await;
    let mut proc = process::aggregator(&agg.config_path, agg.http).await;

    let mut agents = Vec::new();
    for id in ids {
        let mut config = agg.agent_config(id);
        // As fast as the agent allows, so kills land mid-stream.
        config.interval = Duration::from_millis(100);
        agents.push(Agent::start(config).await.expect("agent starts"));
    }
    for a in &agents {
        acked_at_least(a, 5, Duration::from_secs(20)).await;
    }
    for round in 0..3u64 {
        // A random moment within the stream.
        tokio::time::sleep(Duration::from_millis(300 + rand::random_range(0..900))).await;
        proc.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        proc = process::aggregator(&agg.config_path, agg.http).await;
        for a in &agents {
            let now = get(&a.stats().batches_acked);
            acked_at_least(a, now + 5, Duration::from_secs(30)).await;
        }
        eprintln!("kill {round}: done");
    }
    for a in &agents {
        assert!(get(&a.stats().reconnects) >= 3, "the agent reconnected");
    }

    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    for (id, agent) in ids.into_iter().zip(agents) {
        assert_exactly_once(&pool, agent, id, &format!("{id}.test")).await;
    }
    pool.close().await;
    proc.kill9();
    agg.stop().await;
}
