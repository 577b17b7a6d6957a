//! A bad network between agent and aggregator: a UDP proxy the test
//! controls sits on the QUIC path. First it drops, delays, duplicates and
//! reorders datagrams (QUIC must recover each stream; a batch whose ack is
//! lost is resent and deduplicated), then it cuts the link for 12 s, longer
//! than the agent's ack timeout (the agent spools, gives the connection up
//! and reconnects), then the link is clean again. Stored == sent, exactly.

use std::time::Duration;

use vigil_agent::Agent;
use vigil_tests::faults::{acked_at_least, assert_exactly_once, get};
use vigil_tests::proxy::{Faults, UdpProxy};
use vigil_tests::{Db, TestAggregator};

const ID: &str = "net-faults";

#[tokio::test]
async fn a_lossy_then_cut_network_delays_data_and_loses_none() {
    let agg = TestAggregator::start(Db::Postgres).await;
    agg.add_agent(ID).await;
    let proxy = UdpProxy::start(agg.quic).await.expect("UDP proxy");
    let mut config = agg.agent_config(ID);
    config.aggregator.endpoints = vec![proxy.addr.to_string()];
    // Long enough for a batch to cross a lossy link, short enough that a
    // lost ack is retried (and deduplicated) within the test.
    config.aggregator.ack_timeout = Duration::from_secs(2);
    let agent = Agent::start(config).await.expect("agent starts");
    acked_at_least(&agent, 3, Duration::from_secs(20)).await;

    // A bad link: 10% loss, 5% duplicates, 10% reordered, 20-60 ms of delay.
    proxy.set(Faults {
        drop: 0.10,
        duplicate: 0.05,
        reorder: 0.10,
        reorder_by: Duration::from_millis(30),
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(40),
        cut: false,
    });
    let before = get(&agent.stats().batches_acked);
    acked_at_least(&agent, before + 15, Duration::from_secs(40)).await;
    let (forwarded, dropped, duplicated, reordered) = proxy.counts().snapshot();
    eprintln!(
        "lossy link: {forwarded} forwarded, {dropped} dropped, {duplicated} duplicated, {reordered} reordered"
    );
    assert!(
        dropped > 0 && duplicated > 0 && reordered > 0,
        "the faults happened: {dropped} dropped, {duplicated} duplicated, {reordered} reordered"
    );

    // A full cut, longer than the ack timeout.
    proxy.cut(true);
    let cut_at = get(&agent.stats().batches_acked);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let spooled = agent.spool_len();
    assert!(
        get(&agent.stats().batches_acked) <= cut_at + 1,
        "nothing crosses a cut link (one ack may have been in flight)"
    );
    assert!(spooled >= 20, "the agent spooled during the cut: {spooled}");
    assert_eq!(
        get(&agent.stats().connected),
        0,
        "the agent saw the link die"
    );

    // The link returns, clean.
    proxy.set(Faults::default());
    acked_at_least(&agent, cut_at + spooled as u64, Duration::from_secs(40)).await;
    assert!(get(&agent.stats().reconnects) > 0, "the agent reconnected");

    let pool = sqlx::PgPool::connect(agg.pg_url().expect("PostgreSQL"))
        .await
        .expect("connect");
    assert_exactly_once(&pool, agent, ID, &format!("{ID}.test")).await;
    pool.close().await;
    agg.stop().await;
}
