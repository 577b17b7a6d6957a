//! Group commit: batches that arrive while the database is busy are
//! committed together, in one transaction, by the next free committer.
//!
//! `ingest.max_concurrent_commits` committers take batches from one queue.
//! A committer takes the first waiting batch, then every other batch
//! already waiting (up to [`MAX_GROUP_BATCHES`] batches or
//! `ingest.max_group_samples` samples), and commits them with
//! [`Store::commit_batches`]. At low load each batch is committed alone as
//! soon as it arrives (no added latency); under load, one transaction, one
//! WAL flush and one statement per table carry many agents' batches, which
//! is where the database's per-batch cost went (see docs/benchmarks.md).
//! Every batch of a group gets the group's result: committed (each with its
//! own outcome) or failed (each is told to retry; nothing was written).

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::warn;
use vigil_common::Batch;

use crate::metrics::Metrics;
use crate::store::{BatchRef, Committed, Store};

/// Most batches one transaction carries.
pub const MAX_GROUP_BATCHES: usize = 64;

/// Default of `ingest.max_group_samples`: most samples one transaction
/// carries (a group stops growing past it). A transaction's time grows
/// with its samples, and a batch arriving behind it waits for all of
/// them; 4,096 (a dozen 300-series batches) keeps most of what grouping
/// gains (one commit and one statement per table for many agents) while
/// bounding that wait (docs/benchmarks.md has the figures).
pub const MAX_GROUP_SAMPLES: usize = 4_096;

/// A batch waiting for its commit, with where its result goes.
struct Job {
    batch: Arc<Batch>,
    reply: oneshot::Sender<Result<Committed, String>>,
}

/// The queue in front of the committers.
pub struct Committer {
    queue: mpsc::UnboundedSender<Job>,
}

impl Committer {
    /// Starts `workers` committers on `store`. The queue is unbounded
    /// here; the caller bounds the batches in it (ingest's semaphore).
    pub fn start(
        store: Arc<dyn Store>,
        workers: usize,
        max_group_samples: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(
                store.clone(),
                rx.clone(),
                max_group_samples,
                metrics.clone(),
            ));
        }
        Committer { queue }
    }

    /// Commits `batch` (in a group with whatever else is waiting); an error
    /// says the store failed and nothing of the batch was written.
    pub async fn commit(&self, batch: Arc<Batch>) -> Result<Committed, String> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send(Job { batch, reply })
            .map_err(|_| "the committers have stopped".to_string())?;
        result
            .await
            .map_err(|_| "the committer stopped before answering".to_string())?
    }
}

/// One committer: takes a group off the queue, commits it, answers each batch.
async fn work(
    store: Arc<dyn Store>,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    max_group_samples: usize,
    metrics: Arc<Metrics>,
) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut samples = first.batch.sample_count();
            let mut group = vec![first];
            while group.len() < MAX_GROUP_BATCHES && samples < max_group_samples {
                match rx.try_recv() {
                    Ok(job) => {
                        samples += job.batch.sample_count();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let refs: Vec<BatchRef<'_>> = group
            .iter()
            .map(|j| BatchRef {
                header: &j.batch.header,
                series: &j.batch.series,
            })
            .collect();
        metrics.commit_group_batches.observe(group.len() as f64);
        let result = store.commit_batches(&refs).await;
        drop(refs);
        match result {
            Ok(outcomes) if outcomes.len() == group.len() => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                // A store bug; the batches were written, but to be safe
                // the agents retry and dedup makes that harmless.
                warn!(
                    batches = group.len(),
                    outcomes = outcomes.len(),
                    "group commit returned the wrong number of outcomes"
                );
                for job in group {
                    let _ = job.reply.send(Err("commit returned no outcome".into()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in group {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use vigil_common::wire::PROTOCOL_VERSION;
    use vigil_common::{BatchHeader, Label, Point, Series};

    use super::*;

    fn batch(agent: usize, seq: u64) -> Arc<Batch> {
        let series = (0..10)
            .map(|i| {
                Series::new(
                    "m",
                    vec![
                        Label::new("host", format!("h{agent}")),
                        Label::new("i", format!("{i}")),
                    ],
                    vec![Point {
                        timestamp_ms: 1_764_115_200_000 + seq as i64,
                        value: 1.0,
                    }],
                )
            })
            .collect();
        Arc::new(Batch {
            header: BatchHeader {
                protocol_version: PROTOCOL_VERSION,
                agent_id: format!("a{agent}"),
                boot_id: [1; 16],
                sequence: seq,
                created_at_ms: 0,
                host: format!("h{agent}"),
                roles: vec![],
            },
            series,
            metadata: vec![],
        })
    }

    /// Value of the `_count` and `_sum` lines of the group histogram.
    fn groups(metrics: &Metrics) -> (f64, f64) {
        let text = metrics.render();
        let value = |suffix: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("vigil_aggregator_commit_group_batches_{suffix} "))
                })
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(-1.0)
        };
        (value("count"), value("sum"))
    }

    #[tokio::test]
    async fn batches_waiting_together_are_committed_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open("sqlite:v.db", dir.path(), 2).expect("open");
        store.migrate().await.expect("migrate");
        let metrics = Arc::new(Metrics::new());
        let committer = Arc::new(Committer::start(
            store.clone(),
            1,
            MAX_GROUP_SAMPLES,
            metrics.clone(),
        ));
        // 40 agents x 3 batches at once, and one batch sent twice.
        let mut tasks = Vec::new();
        for (agent, seq) in (0..40)
            .flat_map(|a| (1..=3).map(move |s| (a, s)))
            .chain([(0, 1)])
        {
            let committer = committer.clone();
            tasks.push(tokio::spawn(async move {
                committer.commit(batch(agent, seq)).await
            }));
        }
        let mut stored = 0;
        let mut duplicates = 0;
        for t in tasks {
            let c = t.await.expect("join").expect("committed");
            stored += c.outcome.samples_stored;
            duplicates += usize::from(c.outcome.duplicate);
            assert_eq!(c.series_ids.len(), if c.outcome.duplicate { 0 } else { 10 });
        }
        assert_eq!((stored, duplicates), (40 * 3 * 10, 1));
        assert_eq!(store.count_samples(None).await.expect("count"), 1200);
        let (transactions, batches) = groups(&metrics);
        assert_eq!(batches, 121.0, "every batch went through a group");
        assert!(
            (2.0..121.0).contains(&transactions),
            "one committer with 121 batches waiting makes groups: {transactions} transactions"
        );
    }

    #[tokio::test]
    async fn a_failed_group_fails_every_batch_in_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Never migrated: the tables do not exist, so the commit fails.
        let store = crate::store::open("sqlite:v.db", dir.path(), 2).expect("open");
        let committer = Arc::new(Committer::start(
            store.clone(),
            1,
            MAX_GROUP_SAMPLES,
            Arc::new(Metrics::new()),
        ));
        let mut tasks = Vec::new();
        for agent in 0..10 {
            let committer = committer.clone();
            tasks.push(tokio::spawn(async move {
                committer.commit(batch(agent, 1)).await
            }));
        }
        for t in tasks {
            let err = t.await.expect("join").expect_err("no tables");
            assert!(err.contains("ingested_batches"), "{err}");
        }
    }
}
