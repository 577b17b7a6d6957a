//! Leader election over a PostgreSQL session advisory lock; see the
//! [module documentation](super) for the protocol.
//!
//! One task per node, an explicit loop over two states:
//!
//! - **follower**: keep one connection; every `check_interval` try the
//!   lock on it. Not granted: read who leads, refresh the read-only alert
//!   state, wait. Any error drops the connection (a new one next time).
//! - **leader**: the lock was granted and the epoch bumped on that same
//!   connection; start the jobs, then check the connection (and that the
//!   epoch is still ours) every `check_interval`. A failed or slow check,
//!   or a round loop stuck for 5 minutes (`jobs::STALL_LIMIT_MS`), stops
//!   the jobs first, then drops the connection (PostgreSQL releases
//!   the lock with the session) and the node follows again.
//!
//! Shutdown stops the jobs, then unlocks and closes the connection, so a
//! follower takes over at its next try instead of after a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::jobs::LeaderJobs;
use super::{Cluster, ClusterConfig, LeaderInfo};

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext('vigil_aggregator_leader'))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext('vigil_aggregator_leader'))";
const BUMP: &str = "INSERT INTO cluster_leader (id, epoch, node, since_ms) VALUES (1, 1, $1, $2)
    ON CONFLICT (id) DO UPDATE
    SET epoch = cluster_leader.epoch + 1, node = EXCLUDED.node, since_ms = EXCLUDED.since_ms
    RETURNING epoch";
const LEADER: &str = "SELECT node, epoch, since_ms FROM cluster_leader WHERE id = 1";
const EPOCH: &str = "SELECT epoch FROM cluster_leader WHERE id = 1";
const USER_TIMEOUT: &str = "SELECT set_config('tcp_user_timeout', $1, false)";

/// How often a follower that cannot reach the database says so.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("{0}")]
    Db(#[from] sqlx::Error),
    #[error("no answer within cluster.check_timeout")]
    Timeout,
}

async fn bounded<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, CheckError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(CheckError::Timeout),
    }
}

/// Why a leadership term ended.
enum End {
    Stopping,
    Lost(String),
}

/// One node's election loop.
pub struct Election {
    pub cluster: Arc<Cluster>,
    pub config: ClusterConfig,
    /// The database URL (`[database] url`).
    pub url: String,
    /// True once the schema is migrated (the `cluster_leader` table exists).
    pub ready: Arc<AtomicBool>,
    pub jobs: LeaderJobs,
}

impl Election {
    /// Runs until `stop` (then leaves the lead cleanly).
    pub fn spawn(self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(stop))
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let node = self.cluster.node();
        self.jobs.follow("not known yet").await;
        info!(%node, "cluster node started as a follower");
        let mut conn: Option<PgConnection> = None;
        let mut last_logged: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            if self.ready.load(Ordering::Acquire) {
                match self.attempt(&mut conn).await {
                    Ok(Some(epoch)) => {
                        let Some(c) = conn.as_mut() else { continue };
                        let end = self.lead(c, epoch, &mut stop).await;
                        match end {
                            End::Stopping => {
                                if let Some(c) = conn.take() {
                                    release(c, self.config.check_timeout).await;
                                }
                                self.cluster.following(None);
                                info!(%node, epoch, "left the cluster lead (shutdown)");
                                return;
                            }
                            End::Lost(reason) => {
                                // Dropping the session releases the lock, if
                                // PostgreSQL still thinks we hold it.
                                conn = None;
                                self.cluster.following(None);
                                self.jobs.follow("not known").await;
                                error!(%node, epoch, %reason, "cluster leadership lost; leader jobs stopped");
                            }
                        }
                    }
                    Ok(None) => {
                        let leader = match conn.as_mut() {
                            Some(c) => self.leader(c).await,
                            None => None,
                        };
                        let name = leader
                            .as_ref()
                            .map_or_else(|| "not known".to_string(), |l| l.node.clone());
                        self.cluster.following(leader);
                        self.jobs.mirror(&name).await;
                    }
                    Err(e) => {
                        conn = None;
                        self.cluster.following(None);
                        if last_logged.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
                            last_logged = Some(Instant::now());
                            warn!(%node, error = %e, "cluster: cannot reach the database to take part in the election; following");
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.check_interval) => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
        if let Some(c) = conn {
            let _ = tokio::time::timeout(self.config.check_timeout, c.close()).await;
        }
    }

    /// Tries the lock; `Some(epoch)` if this node now leads.
    async fn attempt(&self, conn: &mut Option<PgConnection>) -> Result<Option<i64>, CheckError> {
        let limit = self.config.check_timeout;
        if conn.is_none() {
            let mut c = bounded(limit, PgConnection::connect(&self.url)).await?;
            let ms = self.config.tcp_user_timeout().as_millis().to_string();
            bounded(limit, sqlx::query(USER_TIMEOUT).bind(ms).execute(&mut c)).await?;
            *conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(None);
        };
        let granted: bool = bounded(limit, sqlx::query_scalar(TRY_LOCK).fetch_one(&mut *c)).await?;
        if !granted {
            return Ok(None);
        }
        let epoch: i64 = bounded(
            limit,
            sqlx::query_scalar(BUMP)
                .bind(self.cluster.node())
                .bind(vigil_common::now_ms())
                .fetch_one(&mut *c),
        )
        .await?;
        Ok(Some(epoch))
    }

    /// Who leads (`None` if the row cannot be read).
    async fn leader(&self, c: &mut PgConnection) -> Option<LeaderInfo> {
        let row: Option<(String, i64, i64)> = bounded(
            self.config.check_timeout,
            sqlx::query_as(LEADER).fetch_optional(c),
        )
        .await
        .ok()?;
        row.map(|(node, epoch, since_ms)| LeaderInfo {
            node,
            epoch,
            since_ms,
        })
    }

    /// One leadership term: start the jobs, check until lost or told to
    /// stop, stop the jobs.
    async fn lead(
        &self,
        c: &mut PgConnection,
        epoch: i64,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let node = self.cluster.node();
        self.cluster.leading(epoch, vigil_common::now_ms());
        info!(%node, epoch, "this aggregator is now the cluster leader");
        let term = self.jobs.start(Some(epoch)).await;
        let end = loop {
            if *stop.borrow() {
                break End::Stopping;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.check_interval) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break End::Stopping;
                    }
                }
            }
            let check = bounded(
                self.config.check_timeout,
                sqlx::query_scalar::<_, i64>(EPOCH).fetch_optional(&mut *c),
            )
            .await;
            if let Some(secs) = self.jobs.stalled(vigil_common::now_ms()) {
                break End::Lost(format!(
                    "rule evaluation has not gone around for {secs} s; giving up the lead"
                ));
            }
            match check {
                Ok(Some(e)) if e == epoch => {}
                Ok(other) => {
                    break End::Lost(format!("the leader epoch is now {other:?}, not {epoch}"));
                }
                Err(e) => break End::Lost(format!("the lock connection failed: {e}")),
            }
        };
        term.stop().await;
        end
    }
}

/// Unlocks and closes (bounded: a dead connection is simply dropped).
async fn release(mut c: PgConnection, limit: Duration) {
    let _ = bounded(
        limit,
        sqlx::query_scalar::<_, bool>(UNLOCK).fetch_one(&mut c),
    )
    .await;
    let _ = tokio::time::timeout(limit, c.close()).await;
}
