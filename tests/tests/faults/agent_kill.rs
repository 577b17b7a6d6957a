//! The agent (the real binary) is killed with SIGKILL at random moments while
//! the aggregator is down, so every batch it builds goes to its spool: kills
//! land during collection, during a spool append or its fsync, during segment
//! rollover (small segments) and during the start-up scan of the previous
//! run's segments. Each restart recovers the spool (truncating a torn tail)
//! and goes on. Since a random kill rarely lands inside the microseconds of
//! an append, every third kill also tears the newest record (cuts it short,
//! which is what a kill mid-append leaves), and each must be cut off at the
//! next start. Then the aggregator comes back and the agent delivers.
//!
//! What "sent" means here: a batch whose spool append returned. The batch
//! being built or appended at the moment of a kill was never spooled (its
//! torn record is cut at the next start), so at most the last sequence of
//! each run may be missing; any other gap in a run's sequences is a lost
//! batch. Every batch found in the spool before delivery must be committed
//! exactly once, with its sample count, and the database must hold exactly
//! the samples of the committed batches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use vigil_agent::spool::inspect;
use vigil_tests::faults::{committed, stored_for_host, wait_until};
use vigil_tests::{Db, TestAggregator, process};

const ID: &str = "kill-agent";
const KILLS: usize = 15;

/// Cuts 1-64 bytes off the newest segment file (always inside its last
/// record: records are kilobytes); false if it holds no record.
fn tear_newest_segment(spool: &Path) -> bool {
    let newest = std::fs::read_dir(spool)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max();
    let Some(path) = newest else { return false };
    let Ok(len) = std::fs::metadata(&path).map(|m| m.len()) else {
        return false;
    };
    // The 28-byte header, then at least one record.
    if len <= 28 + 64 {
        return false;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the segment");
    file.set_len(len - rand::random_range(1..=64))
        .expect("tear the segment");
    true
}

#[tokio::test]
async fn an_agent_killed_while_spooling_delivers_every_spooled_batch_once() {
    let mut agg = TestAggregator::start(Db::Postgres).await;
    agg.add_agent(ID).await;
    let url = agg.pg_url().expect("PostgreSQL").to_string();
    agg.stop_in_process().await;

    let spool = agg.pki.path().join("spool-kill");
    let config = agg.pki.path().join("agent-kill.toml");
    std::fs::write(
        &config,
        process::agent_toml(
            agg.pki.path(),
            ID,
            agg.quic,
            &spool,
            "100ms",
            // Small segments: many rollovers for the kills to land in.
            "segment_bytes = 16384\n",
        ),
    )
    .expect("agent config");

    let mut tears = 0;
    for kill in 0..KILLS {
        let agent = process::agent(&config);
        tokio::time::sleep(Duration::from_millis(rand::random_range(200..1500))).await;
        agent.kill9();
        // A random kill rarely lands inside the microseconds of an append,
        // so every third one also leaves what such a kill leaves: the last
        // record cut short (a prefix of it on disk). Its append had not
        // returned, so it was never sent; the next start must cut it off.
        if kill % 3 == 1 && tear_newest_segment(&spool) {
            tears += 1;
        }
    }
    let records = inspect(&spool).expect("read the spool");
    assert!(
        records.iter().all(|r| !r.removed),
        "nothing was acked or evicted: the aggregator was down"
    );
    let mut runs: BTreeMap<[u8; 16], BTreeSet<u64>> = BTreeMap::new();
    for r in &records {
        assert!(
            runs.entry(r.boot_id).or_default().insert(r.sequence),
            "sequence {} spooled twice in one run",
            r.sequence
        );
    }
    assert!(
        runs.len() >= KILLS / 2,
        "most runs spooled something: {} of {KILLS}",
        runs.len()
    );
    for (boot, seqs) in &runs {
        let last = seqs.last().copied().unwrap_or(0);
        let missing: Vec<u64> = (1..last).filter(|s| !seqs.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "run {boot:02x?} lost spooled batches {missing:?} (it spooled up to {last})"
        );
    }
    let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    let cut = log.lines().filter(|l| l.contains("; discarded")).count();
    assert!(
        cut >= tears,
        "each torn record was found and cut at the next start: {cut} cuts for {tears} tears"
    );
    eprintln!(
        "{} batches spooled by {} runs of {KILLS} killed; {tears} records torn, {cut} tails cut at start-up",
        records.len(),
        runs.len(),
    );

    // The aggregator returns, the agent starts once more and delivers.
    agg.restart_after(Duration::ZERO).await;
    let agent = process::agent(&config);
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let wanted: BTreeSet<([u8; 16], u64)> =
        records.iter().map(|r| (r.boot_id, r.sequence)).collect();
    wait_until(
        "every spooled batch is committed",
        Duration::from_secs(60),
        || async {
            let got: BTreeSet<([u8; 16], u64)> = committed(&pool, ID)
                .await
                .into_iter()
                .filter_map(|c| Some((c.boot_id.try_into().ok()?, c.sequence)))
                .collect();
            wanted.is_subset(&got)
        },
    )
    .await;
    assert_eq!(
        agent.terminate(Duration::from_secs(30)).await,
        Some(0),
        "the agent stops cleanly on SIGTERM"
    );
    let left: Vec<_> = inspect(&spool)
        .expect("read the spool")
        .into_iter()
        .filter(|r| !r.removed)
        .collect();
    let all = committed(&pool, ID).await;
    if !left.is_empty() {
        let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let which: Vec<String> = left
            .iter()
            .map(|r| {
                let stored = all
                    .iter()
                    .any(|c| c.boot_id == r.boot_id && c.sequence == r.sequence);
                let killed = runs.contains_key(&r.boot_id);
                format!(
                    "seq {} of {} run (segment {}, committed: {stored})",
                    r.sequence,
                    if killed { "a killed" } else { "the last" },
                    r.segment
                )
            })
            .collect();
        panic!(
            "{} batches left in the spool: {which:?}\nagent log (newest first):\n{}",
            left.len(),
            tail.join("\n")
        );
    }

    for r in &records {
        let rows: Vec<_> = all
            .iter()
            .filter(|c| c.boot_id == r.boot_id && c.sequence == r.sequence)
            .collect();
        assert_eq!(rows.len(), 1, "batch {} committed once", r.sequence);
        assert_eq!(rows[0].samples, r.samples, "batch {} whole", r.sequence);
    }
    let killed_runs: BTreeSet<Vec<u8>> = runs.keys().map(|b| b.to_vec()).collect();
    let from_killed = all
        .iter()
        .filter(|c| killed_runs.contains(&c.boot_id))
        .count();
    assert_eq!(
        from_killed,
        records.len(),
        "no batch of the killed runs arrived that was not spooled"
    );
    let in_batches: u64 = all.iter().map(|c| c.samples).sum();
    let stored = stored_for_host(&pool, &format!("{ID}.test")).await;
    assert_eq!(stored, in_batches, "stored == sent, exactly");
    pool.close().await;
    agg.stop().await;
}
