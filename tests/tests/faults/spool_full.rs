//! The spool fills while the aggregator is down, two ways (the policy is in
//! `agent/src/spool/mod.rs` and DESIGN.md: backpressure or a counted drop,
//! never a silent loss):
//!
//! - at its size cap (`spool.max_bytes`): the oldest batches are evicted
//!   and counted (`reason="spool_full"`), the rest is delivered;
//! - on a full disk (the spool on a 256 KiB tmpfs): appends fail with
//!   ENOSPC, are counted as write errors, and the batches are held in
//!   memory (within a cap) and delivered when the aggregator returns.
//!
//! Either way the agent's own metrics report it to the aggregator (the
//! samples are read back from the database), and every batch not counted
//! as dropped is stored exactly once: queued == stored + dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::PgPool;
use vigil_agent::{Agent, AgentHandle, DropReason};
use vigil_tests::faults::{committed, get, stored_for_host, wait_until};
use vigil_tests::{Db, TestAggregator};

/// The largest value the agent reported for a `vigil_agent_*` counter.
async fn reported(pool: &PgPool, host: &str, metric: &str, reason: Option<&str>) -> f64 {
    let v: Option<f64> = sqlx::query_scalar(
        "SELECT max(s.value) FROM samples s JOIN series r ON r.id = s.series_id
         WHERE r.metric = $1 AND r.labels::jsonb ->> 'host' = $2
           AND ($3::text IS NULL OR r.labels::jsonb ->> 'reason' = $3)",
    )
    .bind(metric)
    .bind(host)
    .bind(reason)
    .fetch_one(pool)
    .await
    .expect("read a reported counter");
    v.unwrap_or(0.0)
}

/// Brings the aggregator back, lets the agent deliver, stops it, and checks
/// queued == stored + dropped, batch by batch and sample by sample.
async fn deliver_and_count(agg: &mut TestAggregator, agent: AgentHandle, id: &str) -> PgPool {
    agg.restart_after(Duration::ZERO).await;
    wait_until("the spool drains", Duration::from_secs(60), || async {
        agent.spool_len() <= 1
    })
    .await;
    let stats = agent.stats();
    agent
        .shutdown(Duration::from_secs(30))
        .await
        .expect("the agent drains");
    let pool = PgPool::connect(agg.pg_url().expect("PostgreSQL"))
        .await
        .expect("connect");
    let batches = committed(&pool, id).await;
    let dropped_batches = get(&stats.batches_dropped);
    assert_eq!(
        batches.len() as u64 + dropped_batches,
        get(&stats.batches_queued),
        "every batch is committed or counted as dropped"
    );
    let queued = get(&stats.samples_queued);
    let dropped = get(&stats.samples_dropped);
    let stored = stored_for_host(&pool, &format!("{id}.test")).await;
    assert_eq!(
        stored + dropped,
        queued,
        "stored + dropped == sent, exactly"
    );
    assert_eq!(
        get(&stats.samples_acked) + get(&stats.samples_duplicate),
        stored,
        "every stored sample was acked"
    );
    pool
}

#[tokio::test]
async fn a_spool_at_its_cap_evicts_the_oldest_counts_and_reports_it() {
    const ID: &str = "spool-cap";
    let mut agg = TestAggregator::start(Db::Postgres).await;
    agg.add_agent(ID).await;
    agg.stop_in_process().await;
    let mut config = agg.agent_config(ID);
    config.interval = Duration::from_millis(100);
    config.spool.segment_bytes = 16 * 1024;
    config.spool.max_bytes = 64 * 1024;
    let agent = Agent::start(config).await.expect("agent starts");
    let stats = agent.stats();
    wait_until("the spool evicts", Duration::from_secs(30), || async {
        stats.dropped(DropReason::SpoolFull).0 >= 5
    })
    .await;
    assert!(
        get(&stats.spool_bytes) <= 64 * 1024,
        "the spool stays under its cap: {} bytes",
        get(&stats.spool_bytes)
    );

    let pool = deliver_and_count(&mut agg, agent, ID).await;
    let (batches, samples) = stats.dropped(DropReason::SpoolFull);
    assert!(batches >= 5 && samples > 0);
    assert_eq!(
        get(&stats.batches_dropped),
        batches,
        "spool_full is the only reason"
    );
    let host = format!("{ID}.test");
    let told = reported(
        &pool,
        &host,
        "vigil_agent_batches_dropped_total",
        Some("spool_full"),
    )
    .await;
    assert!(
        told >= 1.0 && told <= batches as f64,
        "the agent reported its drops: {told} of {batches}"
    );
    let told = reported(
        &pool,
        &host,
        "vigil_agent_spool_dropped_samples_total",
        None,
    )
    .await;
    assert!(told >= 1.0, "and the samples dropped: {told}");
    pool.close().await;
    agg.stop().await;
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("running mount: {e}"));
        assert!(
            out.status.success(),
            "this test fills a real file system: it mounts a {size} tmpfs, which needs root \
             (CAP_SYS_ADMIN); mount said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_spool_on_a_full_disk_holds_batches_in_memory_and_loses_none() {
    const ID: &str = "spool-disk";
    let mut agg = TestAggregator::start(Db::Postgres).await;
    agg.add_agent(ID).await;
    agg.stop_in_process().await;
    let mount = agg.pki.path().join("small-disk");
    let disk = Tmpfs::mount(&mount, "256k");
    let mut config = agg.agent_config(ID);
    config.interval = Duration::from_millis(100);
    config.spool.dir = mount.join("spool");
    config.spool.segment_bytes = 16 * 1024;
    let agent = Agent::start(config).await.expect("agent starts");
    let stats = agent.stats();
    wait_until("the disk fills", Duration::from_secs(30), || async {
        get(&stats.spool_write_errors) >= 3 && get(&stats.spool_memory_batches) >= 3
    })
    .await;
    assert_eq!(get(&stats.batches_dropped), 0, "nothing dropped yet");

    let pool = deliver_and_count(&mut agg, agent, ID).await;
    assert_eq!(
        get(&stats.samples_dropped),
        0,
        "the memory fallback held every batch"
    );
    let told = reported(
        &pool,
        &format!("{ID}.test"),
        "vigil_agent_spool_write_errors_total",
        None,
    )
    .await;
    assert!(told >= 1.0, "the agent reported its write errors: {told}");
    pool.close().await;
    drop(disk);
    agg.stop().await;
}
