//! The storage read path as the running aggregator wires it: a batch acked
//! over QUIC is in the head and visible to PromQL through `AppState.source`
//! at once, on both databases.

use vigil_aggregator::query::Value;
use vigil_common::{ServerMessage, sign};
use vigil_tests::raw::batch;
use vigil_tests::{Db, TestAggregator};

async fn acked_batch_is_queryable(db: Db) {
    let agg = TestAggregator::start(db).await;
    assert!(
        agg.running()
            .wait_store_ready(std::time::Duration::from_secs(10))
            .await
    );
    agg.add_agent("a1").await;
    let key = sign::load_signing_key(&agg.pki.agent_paths("a1").signing_key).expect("key");
    let a1 = agg.raw("a1").await;
    match a1
        .send_batch(&batch("a1", 1, 3), &key)
        .await
        .expect("reply")
    {
        ServerMessage::Ack(ack) => assert_eq!(ack.samples_stored, 3),
        other => panic!("not acked: {other:?}"),
    }
    let state = &agg.running().state;
    let now = vigil_common::now_ms();
    let value = state
        .engine
        .instant(
            state.source.as_ref(),
            r#"test_metric{host="a1.example"}"#,
            now,
        )
        .await
        .expect("query");
    match value {
        Value::Vector(v) => assert_eq!(v.len(), 3, "{v:?}"),
        other => panic!("not a vector: {other:?}"),
    }
    let text = state.metrics.render();
    assert!(
        text.contains("vigil_aggregator_head_series 3"),
        "the batch went into the head:\n{text}"
    );
}

#[tokio::test]
async fn sqlite_acked_batch_is_queryable_at_once() {
    acked_batch_is_queryable(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_acked_batch_is_queryable_at_once() {
    acked_batch_is_queryable(Db::Postgres).await;
}
