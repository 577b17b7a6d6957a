//! The load generator's library against a real aggregator over the real
//! protocol, on both databases: what it reports as acked is exactly what the
//! database holds, a backfill fills the head with the past, and a wrong
//! signing key gives counted refusals, not a crash.

use std::sync::Arc;
use std::time::Duration;

use vigil_common::{RejectCode, sign};
use vigil_tests::loadgen::{self, Backfill, Mode, Plan, Progress, Report, fleet};
use vigil_tests::{Db, TestAggregator};

/// Runs `agents` simulated agents (registered unless `register` is false)
/// with `plan` and returns the report with the stored count filled in.
async fn run(agg: &TestAggregator, agents: usize, plan: Plan, register: bool) -> Report {
    let work = tempfile::tempdir().expect("tempdir");
    let ids = fleet::agent_ids("lg", agents);
    let fleet = fleet::prepare(agg.pki.path(), work.path(), &ids).expect("identities");
    let store = agg.running().state.store.clone();
    if register {
        fleet::register(store.as_ref(), &fleet)
            .await
            .expect("register");
    }
    let before = loadgen::count_samples(store.as_ref()).await.expect("count");
    let mut report = loadgen::run(fleet, agg.quic, plan, Arc::new(Progress::default()))
        .await
        .expect("run");
    let after = loadgen::count_samples(store.as_ref()).await.expect("count");
    report.set_stored(after - before);
    report
}

fn assert_clean(report: &Report, agents: usize, series: u64) {
    assert!(report.verified(), "stored != acked:\n{report}");
    // Retried refusals (backpressure under a loaded machine: `unavailable`,
    // a timeout, a cut connection) are allowed: stored == acked above says
    // they lost nothing. Anything else is a failure.
    assert!(
        report
            .totals
            .errors
            .keys()
            .all(|k| k == "reject_unavailable" || k == "timeout" || k.starts_with("transport_")),
        "errors:\n{report}"
    );
    assert_eq!(report.totals.samples_unconfirmed, 0, "{report}");
    assert_eq!(report.agents, agents);
    // Every acked batch carried all of the agent's series.
    assert_eq!(
        report.totals.samples_acked,
        report.totals.batches_acked * series,
        "{report}"
    );
    assert_eq!(report.totals.samples_delivered, report.totals.samples_acked);
    assert_eq!(report.totals.sent_batches, report.totals.batches_acked);
    assert!(report.latency(0.99) > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_on_sqlite_stores_exactly_what_was_acked() {
    let agg = TestAggregator::start(Db::Sqlite).await;
    let mut plan = Plan::new(
        Mode::Interval(Duration::from_millis(250)),
        Duration::from_secs(3),
    );
    plan.series = 120;
    let report = run(&agg, 5, plan, true).await;
    assert_clean(&report, 5, 120);
    // 5 agents, 4 batches a second, 3 s: about 60 batches (first ticks are
    // spread over one interval).
    assert!((45..=70).contains(&report.totals.batches_acked), "{report}");
    agg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_on_postgres_stores_exactly_what_was_acked() {
    let agg = TestAggregator::start(Db::Postgres).await;
    let mut plan = Plan::new(Mode::OpenLoop, Duration::from_secs(3));
    plan.in_flight = 2;
    let report = run(&agg, 5, plan, true).await;
    assert_clean(&report, 5, 300);
    assert!(report.totals.batches_acked >= 10, "{report}");
    // The aggregator counted the same batches.
    let m = &agg.running().state.metrics;
    assert_eq!(m.batches_committed.get(), report.totals.batches_acked);
    agg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signing_key_is_counted_not_a_crash() {
    let agg = TestAggregator::start(Db::Sqlite).await;
    let mut plan = Plan::new(
        Mode::Interval(Duration::from_millis(200)),
        Duration::from_secs(2),
    );
    plan.series = 20;
    plan.wrong_key = Some(sign::generate_signing_key().expect("key"));
    let report = run(&agg, 3, plan, true).await;
    let refused = report.totals.errors.get("bad_signature").copied();
    assert!(refused.unwrap_or(0) >= 6, "{report}");
    assert_eq!(report.totals.samples_acked, 0);
    assert_eq!(report.stored, Some(0));
    assert_eq!(report.totals.samples_refused, refused.unwrap_or(0) * 20);
    let m = &agg.running().state.metrics;
    assert_eq!(m.rejected(RejectCode::BadSignature), refused.unwrap_or(0));
    agg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_agents_are_counted_not_a_crash() {
    let agg = TestAggregator::start(Db::Sqlite).await;
    let mut plan = Plan::new(
        Mode::Interval(Duration::from_millis(200)),
        Duration::from_secs(1),
    );
    plan.series = 20;
    let report = run(&agg, 2, plan, false).await;
    assert!(
        report
            .totals
            .errors
            .get("unknown_agent")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{report}"
    );
    assert_eq!(report.stored, Some(0));
    assert!(report.verified());
    agg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_sends_the_past_at_the_interval_into_store_and_head() {
    const MIN: i64 = 60_000;
    let agg = TestAggregator::start(Db::Sqlite).await;
    let mut plan = Plan::new(Mode::Interval(Duration::from_secs(15)), Duration::ZERO);
    plan.series = 50;
    plan.in_flight = 2;
    plan.backfill = Some(Backfill {
        span: Duration::from_secs(600),
        step: Duration::from_secs(15),
        points_per_batch: 4,
    });
    let started = vigil_common::now_ms();
    let report = run(&agg, 3, plan, true).await;
    let ended = vigil_common::now_ms();
    assert!(report.verified(), "stored != acked:\n{report}");
    assert_eq!(report.totals.samples_unconfirmed, 0, "{report}");
    // 10 min at 15 s from a random phase inside the first step: 40 or 41
    // points per series, 4 per batch, for 3 agents x 50 series; then the
    // live part (0 s) sends nothing more.
    let acked = report.totals.samples_acked;
    assert!((3 * 50 * 40..=3 * 50 * 41).contains(&acked), "{report}");
    assert!(
        (3 * 10..=3 * 11).contains(&report.totals.batches_acked),
        "{report}"
    );
    // The head holds every series and every sample (2 h head).
    let storage = &agg.running().state.metrics.storage;
    assert_eq!(storage.head_series.get(), 150);
    assert_eq!(storage.head_samples.get(), acked as i64);
    // The samples span the past ten minutes, 15 s apart per series.
    let store = agg.running().state.store.clone();
    let ids: Vec<i64> = store
        .select_series(&[])
        .await
        .expect("series")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let rows = store
        .read_samples(&ids, 0, i64::MAX, 0)
        .await
        .expect("samples");
    assert_eq!(rows.len() as u64, acked);
    let first = rows.iter().map(|r| r.1).min().expect("rows");
    let last = rows.iter().map(|r| r.1).max().expect("rows");
    assert!(
        first >= started - 10 * MIN && first < started - 10 * MIN + MIN / 4,
        "first sample {} ms before the start",
        started - first
    );
    assert!(last <= ended && last > started - MIN / 4, "last {last}");
    let mut by_series: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (id, ts, _) in rows {
        by_series.entry(id).or_default().push(ts);
    }
    for ts in by_series.values_mut() {
        ts.sort_unstable();
        assert!(ts.windows(2).all(|w| w[1] - w[0] == 15_000), "{ts:?}");
    }
    agg.stop().await;
}
