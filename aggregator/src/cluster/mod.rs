//! Several aggregators on one PostgreSQL database (`[cluster] mode = "on"`).
//!
//! Every node ingests (agents list several endpoints and fail over) and
//! serves the API. Jobs that must run once run on one **leader** only
//! ([`jobs::LeaderJobs`]): rule evaluation and alert state, the
//! notification dispatcher and its outbox, rollups and retention.
//!
//! - **Election** ([`lock`]): the leader holds the session advisory lock
//!   `hashtext('vigil_aggregator_leader')` on a dedicated connection (not
//!   a pool's, so nothing else can release it). PostgreSQL frees the lock
//!   when that session ends: a killed leader's socket closes at once, a
//!   partitioned one's session is dropped after `tcp_user_timeout`.
//!   Followers try `pg_try_advisory_lock` every `check_interval`, so a dead
//!   leader is replaced within about one interval (2 s by default).
//! - **Health**: the leader reads the epoch row on its lock connection
//!   every `check_interval`; an error, a timeout (`check_timeout`) or an
//!   epoch that is not its own ends the leadership: its jobs stop before
//!   anything else happens, and the connection is closed.
//! - **Fencing**: on taking the lock the new leader bumps `epoch` in
//!   `cluster_leader` (migration 0012). The outbox's claims and inserts
//!   check it in the same statement, so an old leader that has not yet
//!   noticed its loss can neither send nor enqueue.
//! - **Hand-over**: a new leader starts from the database: alert state
//!   and history (`alert_state`), the notification log (what each group
//!   was last notified of), the outbox. Its first rounds therefore notify
//!   only what changed; nothing sent is sent again, nothing pending is
//!   lost (rows the old leader claimed mid-send are due again after
//!   [`config::ClusterConfig::takeover_delay`]).
//! - **Followers** keep a read-only copy of the alert state
//!   ([`crate::alert::eval::Evaluator::mirror`]) for their API and refuse
//!   acknowledgements, which name the leader.
//! - **Head**: off on every node: an agent's samples land on whichever
//!   node it reached, so only the database holds every sample the leader
//!   evaluates.

pub mod config;
pub mod jobs;
pub mod lock;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;

pub use config::{ClusterConfig, Mode};

/// This node's part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `[cluster] mode = "off"`: alone, runs everything.
    Single,
    Leader,
    Follower,
}

/// Who leads, as the `cluster_leader` row says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderInfo {
    pub node: String,
    pub epoch: i64,
    pub since_ms: i64,
}

/// What `/readyz` and `/api/v1/cluster` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// This node's name.
    pub node: String,
    pub role: Role,
    /// The current leader (this node when it leads); unknown until the
    /// first check.
    pub leader: Option<LeaderInfo>,
}

/// The cluster metrics (cheap to clone; clones share values).
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    /// 1 while this node leads (or runs alone), else 0.
    pub leader: Gauge,
    /// Times this node became or stopped being the leader.
    pub leadership_changes: Counter,
    /// The epoch of this node's current leadership (0 when following).
    pub epoch: Gauge,
}

impl ClusterMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "1 while this aggregator runs the single-run jobs (rule evaluation, notification, rollups)",
            self.leader.clone(),
        );
        registry.register(
            "leadership_changes",
            "Times this aggregator became or stopped being the cluster leader",
            self.leadership_changes.clone(),
        );
        registry.register(
            "leader_epoch",
            "Epoch of this aggregator's current leadership (0 when it does not lead)",
            self.epoch.clone(),
        );
    }
}

/// This node's cluster status, shared with the HTTP API.
pub struct Cluster {
    status: watch::Sender<Status>,
    metrics: ClusterMetrics,
}

impl Cluster {
    /// A node named `node`: a follower that knows no leader yet when
    /// `clustered`, else alone (and so leading).
    pub fn new(node: String, clustered: bool, metrics: ClusterMetrics) -> Arc<Cluster> {
        let role = if clustered {
            Role::Follower
        } else {
            Role::Single
        };
        metrics.leader.set(i64::from(!clustered));
        Arc::new(Cluster {
            status: watch::Sender::new(Status {
                node,
                role,
                leader: None,
            }),
            metrics,
        })
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// This node's name.
    pub fn node(&self) -> String {
        self.status.borrow().node.clone()
    }

    /// This node took the lead at `epoch`.
    pub(crate) fn leading(&self, epoch: i64, since_ms: i64) {
        self.metrics.leader.set(1);
        self.metrics.epoch.set(epoch);
        self.metrics.leadership_changes.inc();
        self.status.send_modify(|s| {
            s.role = Role::Leader;
            s.leader = Some(LeaderInfo {
                node: s.node.clone(),
                epoch,
                since_ms,
            });
        });
    }

    /// This node follows `leader` (`None`: not known, e.g. the database
    /// is unreachable).
    pub(crate) fn following(&self, leader: Option<LeaderInfo>) {
        let was_leader = self.status.borrow().role == Role::Leader;
        if was_leader {
            self.metrics.leadership_changes.inc();
        }
        self.metrics.leader.set(0);
        self.metrics.epoch.set(0);
        self.status.send_modify(|s| {
            s.role = Role::Follower;
            s.leader = leader;
        });
    }
}

/// The default node name: the host name and the HTTP port.
pub fn default_node_name(http_port: u16) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "aggregator".into());
    format!("{host}:{http_port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_metrics_follow_the_role() {
        let m = ClusterMetrics::default();
        let single = Cluster::new("a".into(), false, m.clone());
        assert_eq!(single.status().role, Role::Single);
        assert_eq!(m.leader.get(), 1);

        let m = ClusterMetrics::default();
        let c = Cluster::new("b".into(), true, m.clone());
        assert_eq!(c.status().role, Role::Follower);
        assert_eq!(m.leader.get(), 0);
        c.leading(7, 1000);
        let s = c.status();
        assert_eq!(s.role, Role::Leader);
        assert_eq!(
            s.leader.as_ref().map(|l| (l.node.as_str(), l.epoch)),
            Some(("b", 7))
        );
        assert_eq!((m.leader.get(), m.epoch.get()), (1, 7));
        let other = LeaderInfo {
            node: "c".into(),
            epoch: 8,
            since_ms: 2000,
        };
        c.following(Some(other.clone()));
        assert_eq!(c.status().leader, Some(other));
        assert_eq!((m.leader.get(), m.epoch.get()), (0, 0));
        // A follower that stays one is not a change.
        c.following(None);
        assert_eq!(m.leadership_changes.get(), 2);
        assert!(default_node_name(8080).ends_with(":8080"));
    }
}
