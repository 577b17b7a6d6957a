//! The real agent library -> QUIC with mutual TLS -> the real aggregator ->
//! PostgreSQL (and SQLite), counting every sample: what the agent sent must be
//! exactly what was stored, including across database and aggregator outages.

use std::collections::BTreeSet;
use std::time::Duration;

use vigil_agent::spool::{RecordInfo, inspect};
use vigil_agent::{Agent, AgentHandle, Stats};
use vigil_aggregator::testing::{PgTestDb, database_url};
use vigil_common::{Batch, RejectCode, SignedBatch};
use vigil_tests::proxy::TcpProxy;
use vigil_tests::{Db, TestAggregator};

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    Stats::get(c)
}

/// Waits until the agent has had `n` batches acked.
async fn acked_at_least(agent: &AgentHandle, n: u64, limit: Duration) {
    let stats = agent.stats();
    let start = std::time::Instant::now();
    while get(&stats.batches_acked) < n {
        assert!(
            start.elapsed() < limit,
            "only {} batches acked after {limit:?}",
            get(&stats.batches_acked)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shuts the agent down and checks sent == stored, exactly.
async fn assert_nothing_lost(agg: &TestAggregator, agent: AgentHandle, host: &str) {
    let stats = agent.stats();
    agent
        .shutdown(Duration::from_secs(15))
        .await
        .expect("agent drains cleanly");
    let queued = get(&stats.samples_queued);
    let acked = get(&stats.samples_acked);
    let duplicate = get(&stats.samples_duplicate);
    assert!(queued > 0, "the agent sent something");
    assert_eq!(get(&stats.samples_dropped), 0, "nothing dropped");
    assert_eq!(acked + duplicate, queued, "every queued sample was acked");

    let store = &agg.running().state.store;
    let stored = store.count_samples(Some(host)).await.expect("count");
    assert_eq!(stored, queued, "stored == sent, exactly");
    let hosts = store.hosts().await.expect("hosts");
    let row = hosts.iter().find(|h| h.hostname == host).expect("host row");
    assert_eq!(row.samples_stored as u64, stored);
}

async fn steady_state(db: Db) {
    let agg = TestAggregator::start(db).await;
    agg.add_agent("e2e-1").await;
    let agent = Agent::start(agg.agent_config("e2e-1"))
        .await
        .expect("agent starts");
    acked_at_least(&agent, 5, Duration::from_secs(20)).await;
    let stats = agent.stats();
    assert_nothing_lost(&agg, agent, "e2e-1.test").await;

    let m = &agg.running().state.metrics;
    assert_eq!(
        m.batches_committed.get(),
        get(&stats.batches_acked) - get(&stats.batches_duplicate)
    );
    assert_eq!(m.samples_stored.get(), get(&stats.samples_acked));
    for code in RejectCode::ALL {
        assert_eq!(m.rejected(code), 0, "{code}");
    }
    // The system collector's series made it, labelled.
    let samples = agg.samples().await;
    assert!(samples > 20, "only {samples} samples");
    agg.stop().await;
}

#[tokio::test]
async fn agent_to_postgres_stores_exactly_what_was_sent() {
    steady_state(Db::Postgres).await;
}

#[tokio::test]
async fn agent_to_sqlite_stores_exactly_what_was_sent() {
    steady_state(Db::Sqlite).await;
}

#[tokio::test]
async fn a_database_outage_delays_data_and_loses_none() {
    let pg = PgTestDb::create().await.expect("PostgreSQL for tests");
    let target = database_url();
    let host_port = target
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432");
    let target_addr = tokio::net::lookup_host(host_port)
        .await
        .expect("resolve PostgreSQL")
        .next()
        .expect("an address");
    let proxy = TcpProxy::start(target_addr).await;
    let via_proxy = pg.url.replacen(host_port, &proxy.addr.to_string(), 1);
    assert_ne!(via_proxy, pg.url);

    let agg = TestAggregator::start(Db::Url(via_proxy)).await;
    agg.add_agent("e2e-db").await;
    let agent = Agent::start(agg.agent_config("e2e-db"))
        .await
        .expect("agent starts");
    acked_at_least(&agent, 2, Duration::from_secs(20)).await;

    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = &agg.running().state.metrics;
    assert!(
        m.rejected(RejectCode::Unavailable) > 0,
        "the outage was seen by ingest"
    );
    let during = get(&agent.stats().batches_acked);
    proxy.restore();
    acked_at_least(&agent, during + 5, Duration::from_secs(30)).await;
    assert_nothing_lost(&agg, agent, "e2e-db.test").await;
    agg.stop().await;
    pg.drop_db().await;
}

#[tokio::test]
async fn an_aggregator_restart_delays_data_and_loses_none() {
    let mut agg = TestAggregator::start(Db::Postgres).await;
    agg.add_agent("e2e-agg").await;
    let agent = Agent::start(agg.agent_config("e2e-agg"))
        .await
        .expect("agent starts");
    acked_at_least(&agent, 2, Duration::from_secs(20)).await;
    agg.restart_after(Duration::from_secs(2)).await;
    let after = get(&agent.stats().batches_acked);
    acked_at_least(&agent, after + 5, Duration::from_secs(30)).await;
    assert!(get(&agent.stats().reconnects) > 0, "the agent reconnected");
    assert_nothing_lost(&agg, agent, "e2e-agg.test").await;
    agg.stop().await;
}

/// The acceptance test: the aggregator is down for 30 s while the
/// agent collects every second; once it is back, every sample collected during
/// the outage is stored, exactly once. The outage's batches are read from the
/// agent's spool just before the aggregator returns, then counted in the
/// database: one dedup row each with its sample count, and exactly that many
/// samples at their timestamps.
#[tokio::test]
async fn a_30s_aggregator_outage_stores_every_outage_sample_exactly_once() {
    const HOST: &str = "e2e-outage.test";
    let mut agg = TestAggregator::start(Db::Postgres).await;
    agg.add_agent("e2e-outage").await;
    let mut config = agg.agent_config("e2e-outage");
    config.interval = Duration::from_secs(1);
    let spool = config.spool.dir.clone();
    let agent = Agent::start(config).await.expect("agent starts");
    acked_at_least(&agent, 2, Duration::from_secs(20)).await;

    let outage = Duration::from_secs(30);
    let read_spool = async {
        tokio::time::sleep(outage - Duration::from_secs(1)).await;
        inspect(&spool).expect("read the spool")
    };
    let ((), spooled) = tokio::join!(agg.restart_after(outage), read_spool);
    let waiting: Vec<RecordInfo> = spooled.into_iter().filter(|r| !r.removed).collect();
    assert!(
        waiting.len() >= 25,
        "only {} batches spooled during a 30 s outage at 1 s",
        waiting.len()
    );
    let stats = agent.stats();
    let after = get(&stats.batches_acked);
    acked_at_least(
        &agent,
        after + waiting.len() as u64,
        Duration::from_secs(60),
    )
    .await;
    assert_nothing_lost(&agg, agent, HOST).await;

    let pool = sqlx::PgPool::connect(agg.pg_url().expect("PostgreSQL"))
        .await
        .expect("connect");
    let mut timestamps = BTreeSet::new();
    let mut outage_samples = 0u64;
    for r in &waiting {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT samples FROM ingested_batches
             WHERE agent_id = $1 AND boot_id = $2 AND sequence = $3",
        )
        .bind("e2e-outage")
        .bind(&r.boot_id[..])
        .bind(r.sequence as i64)
        .fetch_all(&pool)
        .await
        .expect("query ingested_batches");
        assert_eq!(
            rows,
            vec![r.samples as i64],
            "batch {} committed once, whole",
            r.sequence
        );
        let signed = SignedBatch::decode(&r.payload).expect("spooled bytes decode");
        let batch = Batch::decode(&signed.batch).expect("batch decodes");
        for s in &batch.series {
            timestamps.extend(s.points.iter().map(|p| p.timestamp_ms));
        }
        outage_samples += r.samples;
    }
    assert_eq!(timestamps.len(), waiting.len(), "one collection per batch");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id
         WHERE r.labels::jsonb ->> 'host' = $1 AND s.ts = ANY($2)",
    )
    .bind(HOST)
    .bind(timestamps.into_iter().collect::<Vec<i64>>())
    .fetch_one(&pool)
    .await
    .expect("count samples");
    assert_eq!(
        stored as u64, outage_samples,
        "every outage sample stored once"
    );
    pool.close().await;
    agg.stop().await;
}
