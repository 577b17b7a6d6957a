//! The jobs that must run on one aggregator only: started when this node
//! leads (or runs alone), stopped when it stops leading.
//!
//! | job | why once |
//! |---|---|
//! | rule evaluation (`alert::eval`) | alert state and history have one writer; recording rules would write twice |
//! | notification dispatcher (`notify::dispatch`) | grouping state and the notification log have one writer |
//! | outbox delivery (`notify::outbox`) | each notification is sent by one process |
//! | rollups and retention (`store::rollup`) | one writer per watermark; partitions dropped once |
//!
//! Jobs every node runs stay outside: ingest, HTTP, session pruning, the
//! silence / maintenance GC (idempotent deletes).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::info;

use crate::alert::eval::Evaluator;
use crate::notify::dispatch::Dispatcher;
use crate::notify::outbox::{Outbox, OutboxTask};
use crate::store::head::Head;
use crate::store::rollup::Rollups;

/// A leader whose round loop has not gone around for this long is stuck
/// (a query waiting forever on a lock, a bug): it gives up the lead so
/// another node (or itself, afresh) takes over. Rounds are at most a
/// minute apart, and a round is bounded by the query timeouts.
pub const STALL_LIMIT_MS: i64 = 5 * 60 * 1000;

/// How long the loop has been stuck (s), if longer than [`STALL_LIMIT_MS`].
pub fn stalled(last_beat_ms: i64, now_ms: i64) -> Option<i64> {
    let age = now_ms.saturating_sub(last_beat_ms);
    (age > STALL_LIMIT_MS).then_some(age / 1000)
}

/// The notification chain (with `[notify]`).
pub struct NotifyJobs {
    pub dispatcher: Arc<Dispatcher>,
    pub outbox: Outbox,
}

/// Everything [`LeaderJobs::start`] starts.
pub struct LeaderJobs {
    pub evaluator: Arc<Evaluator>,
    pub notify: Option<NotifyJobs>,
    pub rollups: Arc<Rollups>,
    pub head: Arc<Head>,
    /// See [`super::ClusterConfig::takeover_delay`].
    pub takeover_delay: Duration,
}

/// The running jobs of one leadership term.
pub struct Term {
    evaluator: JoinHandle<()>,
    dispatcher: Option<JoinHandle<()>>,
    rollups: JoinHandle<()>,
    outbox: Option<OutboxTask>,
}

impl LeaderJobs {
    /// Starts the jobs as the leader of `epoch` (`None`: a single node).
    /// The evaluator forgets what it held and restores the state from the
    /// database at its first round; the dispatcher reloads the
    /// notification log before it flushes anything.
    pub async fn start(&self, epoch: Option<i64>) -> Term {
        self.evaluator.lead().await;
        let outbox = self
            .notify
            .as_ref()
            .map(|n| n.outbox.spawn_as(epoch, self.takeover_delay));
        let dispatcher = self.notify.as_ref().map(|n| n.dispatcher.spawn());
        let evaluator = self.evaluator.clone().spawn();
        let rollups = self.rollups.clone().spawn(self.head.clone());
        if let Some(epoch) = epoch {
            info!(
                epoch,
                "leader jobs started: rule evaluation, notifications, rollups"
            );
        }
        Term {
            evaluator,
            dispatcher,
            rollups,
            outbox,
        }
    }

    /// After a term ended: a follower of `leader` (for the refusal
    /// message of acknowledgements).
    pub async fn follow(&self, leader: &str) {
        self.evaluator.follow(leader).await;
    }

    /// Whether this term's round loop is stuck (see [`STALL_LIMIT_MS`]).
    pub fn stalled(&self, now_ms: i64) -> Option<i64> {
        stalled(self.evaluator.last_beat_ms(), now_ms)
    }

    /// A follower's periodic refresh of its read-only alert state.
    pub async fn mirror(&self, leader: &str) {
        if let Err(e) = self.evaluator.mirror(leader).await {
            tracing::debug!(error = %e, "follower: cannot read the alert state yet");
        }
    }
}

impl Term {
    /// Stops the jobs, producers first: the evaluator (no new rounds),
    /// the dispatcher (no new notifications), rollups, then the outbox
    /// (sends in flight get a few seconds; what is cut off is retried by
    /// the next leader).
    pub async fn stop(self) {
        for task in [Some(self.evaluator), self.dispatcher, Some(self.rollups)]
            .into_iter()
            .flatten()
        {
            task.abort();
            // Wait until it is gone: nothing of this term runs afterwards.
            let _ = task.await;
        }
        if let Some(outbox) = self.outbox {
            outbox.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_stuck_only_past_the_limit() {
        let now = 10 * STALL_LIMIT_MS;
        assert_eq!(stalled(now - 60_000, now), None);
        assert_eq!(stalled(now - STALL_LIMIT_MS, now), None);
        assert_eq!(stalled(now - STALL_LIMIT_MS - 1_000, now), Some(301));
        // A clock step back is not a stall.
        assert_eq!(stalled(now + 5_000, now), None);
    }
}
