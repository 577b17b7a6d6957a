//! Redis health (`redis_*`), for hosts with the `cache` role.
//!
//! One connection is kept between collections and opened in
//! [`Collector::collect`], never at start-up. Each cycle sends `INFO` (the
//! default sections: server, clients, memory, persistence, stats,
//! replication, CPU, keyspace) over a minimal RESP client (`redis/resp.rs`,
//! which says why it is not the `redis` crate) and turns the reply into series
//! (`redis/info.rs`).
//!
//! Outcomes of one cycle:
//! - INFO answered: `redis_up 1` and its series;
//! - the server cannot be reached, does not answer in time, closes the
//!   connection, or refuses our credentials (AUTH error, or NOAUTH / WRONGPASS /
//!   NOPERM on INFO): `redis_up 0` alone, the collector succeeds, and a
//!   rate-limited warning is logged. A kept connection found dead is replaced
//!   within the same cycle;
//! - the peer breaks the protocol (malformed or oversized reply) or refuses
//!   INFO for another reason: a collector error, counted by the runner.
//!
//! Not supported yet: TLS (`rediss://`), Unix sockets, Sentinel and Cluster
//! discovery (point one collector at each node).

use std::time::Duration;

use async_trait::async_trait;
use vigil_common::{MetricKind, MetricMetadata, Series};

use super::outage::Outage;
use super::{CollectError, Collector, Context};
use crate::config::{RedisCollectConfig, RedisTarget, read_secret_file};

mod info;
mod resp;
#[cfg(test)]
mod tests;

use MetricKind::{Counter, Gauge};
use resp::{Connection, Reply, RespError};

#[rustfmt::skip]
const FAMILIES: &[(&str, MetricKind, &str, &str)] = &[
    ("redis_up", Gauge, "1 if the server answered INFO in the last collection, 0 if it could not be reached or refused the credentials", ""),
    ("redis_info", Gauge, "Always 1; the version label is the server version", ""),
    ("redis_uptime_seconds", Gauge, "Time since the server started", "seconds"),
    ("redis_connected_clients", Gauge, "Client connections (replicas excluded)", ""),
    ("redis_blocked_clients", Gauge, "Clients waiting in a blocking command (BLPOP, XREAD, WAIT, ...)", ""),
    ("redis_max_clients", Gauge, "The maxclients setting", ""),
    ("redis_memory_used_bytes", Gauge, "Memory allocated by Redis", "bytes"),
    ("redis_memory_rss_bytes", Gauge, "Resident memory of the Redis process", "bytes"),
    ("redis_memory_peak_bytes", Gauge, "Peak of redis_memory_used_bytes", "bytes"),
    ("redis_memory_max_bytes", Gauge, "The maxmemory setting; 0 means no limit", "bytes"),
    ("redis_connections_received_total", Counter, "Connections accepted", ""),
    ("redis_rejected_connections_total", Counter, "Connections refused because of maxclients", ""),
    ("redis_commands_processed_total", Counter, "Commands processed", ""),
    ("redis_instantaneous_ops_per_second", Gauge, "Commands per second, as sampled by the server", ""),
    ("redis_net_input_bytes_total", Counter, "Bytes read from the network", "bytes"),
    ("redis_net_output_bytes_total", Counter, "Bytes written to the network", "bytes"),
    ("redis_keyspace_hits_total", Counter, "Key lookups that found the key", ""),
    ("redis_keyspace_misses_total", Counter, "Key lookups that did not find the key", ""),
    ("redis_evicted_keys_total", Counter, "Keys evicted because of maxmemory", ""),
    ("redis_expired_keys_total", Counter, "Keys removed because their TTL passed", ""),
    ("redis_cpu_seconds_total", Counter, "CPU time used by the server, by mode (system, user)", "seconds"),
    ("redis_db_keys", Gauge, "Keys in the database", ""),
    ("redis_db_keys_expiring", Gauge, "Keys with a TTL in the database", ""),
    ("redis_loading", Gauge, "1 while a dump or AOF file is being loaded", ""),
    ("redis_rdb_changes_since_last_save", Gauge, "Writes since the last RDB save", ""),
    ("redis_rdb_last_save_timestamp_seconds", Gauge, "Time of the last successful RDB save, seconds since the Unix epoch", "seconds"),
    ("redis_rdb_bgsave_in_progress", Gauge, "1 while an RDB save runs", ""),
    ("redis_rdb_last_bgsave_ok", Gauge, "1 if the last RDB save succeeded", ""),
    ("redis_aof_enabled", Gauge, "1 if append-only file persistence is on", ""),
    ("redis_aof_rewrite_in_progress", Gauge, "1 while an AOF rewrite runs", ""),
    ("redis_aof_last_write_ok", Gauge, "1 if the last AOF write succeeded", ""),
    ("redis_replication_role", Gauge, "1 on the series whose replication_role (master or replica) is the server's, 0 on the other", ""),
    ("redis_replication_offset", Gauge, "The server's replication offset (master_repl_offset)", "bytes"),
    ("redis_connected_replicas", Gauge, "Master only: connected replicas", ""),
    ("redis_replica_lag_seconds", Gauge, "Master only: seconds since the replica last acknowledged", "seconds"),
    ("redis_replica_lag_bytes", Gauge, "Master only: replication offset minus the replica's acknowledged offset", "bytes"),
    ("redis_master_link_up", Gauge, "Replica only: 1 if the link to the master is up", ""),
    ("redis_master_last_io_seconds", Gauge, "Replica only: seconds since the last interaction with the master (-1 when never)", "seconds"),
    ("redis_master_sync_in_progress", Gauge, "Replica only: 1 while a full sync from the master runs", ""),
];

/// Why a cycle produced no INFO.
enum Failure {
    /// Unreachable, hung, closed, or credentials refused: `redis_up 0`.
    Down(String),
    /// Protocol violation or unexpected refusal: a collector error.
    Broken(String),
}

impl From<RespError> for Failure {
    fn from(e: RespError) -> Self {
        match e {
            RespError::Io(_) | RespError::Timeout(_) => Failure::Down(e.to_string()),
            RespError::Protocol(_) | RespError::TooLarge(_) => Failure::Broken(e.to_string()),
        }
    }
}

/// Error replies that mean "your credentials are wrong", not "INFO is broken".
fn is_auth_error(message: &str) -> bool {
    [
        "NOAUTH",
        "WRONGPASS",
        "NOPERM",
        "ERR AUTH",
        "ERR invalid password",
    ]
    .iter()
    .any(|p| message.starts_with(p))
}

/// Redis statistics over one kept connection.
pub struct RedisCollector {
    config: RedisCollectConfig,
    target: RedisTarget,
    shown: String,
    conn: Option<Connection>,
    outage: Outage,
}

impl RedisCollector {
    /// Checks the URL; connects only when collecting.
    pub fn new(config: RedisCollectConfig) -> Result<Self, CollectError> {
        let target = config.target().map_err(CollectError::Source)?;
        let shown = format!("{}:{}", target.host, target.port);
        Ok(RedisCollector {
            config,
            target,
            shown,
            conn: None,
            outage: Outage::default(),
        })
    }

    /// Caps the timeouts so that the worst cycle (INFO on a dead kept
    /// connection, then connect, AUTH and INFO) fits in the runner's `budget`:
    /// a hung server must show as `redis_up 0`, not as a collector timeout.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        let cap = budget.mul_f64(0.2);
        self.config.connect_timeout = self.config.connect_timeout.min(cap);
        self.config.timeout = self.config.timeout.min(cap);
        self
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        let t = &self.target;
        let mut conn = Connection::connect(
            &t.host,
            t.port,
            self.config.connect_timeout,
            self.config.timeout,
        )
        .await?;
        let password = match &self.config.password_file {
            Some(path) => Some(read_secret_file(path).map_err(Failure::Down)?),
            None => t.password.as_ref().map(|s| s.expose().to_string()),
        };
        if let Some(password) = password {
            let reply = match &t.username {
                Some(user) => conn.command(&["AUTH", user, &password]).await?,
                None => conn.command(&["AUTH", &password]).await?,
            };
            match reply {
                Reply::Status(_) => {}
                Reply::Error(e) => return Err(Failure::Down(format!("AUTH refused: {e}"))),
                other => return Err(Failure::Broken(format!("unexpected AUTH reply {other:?}"))),
            }
        }
        Ok(conn)
    }

    /// One attempt: connect if needed, then INFO.
    async fn cycle(
        &self,
        conn: Option<Connection>,
        ctx: &Context,
    ) -> Result<(Connection, Vec<Series>), Failure> {
        let mut conn = match conn {
            Some(c) => c,
            None => self.connect().await?,
        };
        match conn.command(&["INFO"]).await? {
            Reply::Bulk(Some(body)) => {
                let text = String::from_utf8_lossy(&body);
                Ok((conn, info::series(&text, ctx)))
            }
            Reply::Error(e) if is_auth_error(&e) => {
                Err(Failure::Down(format!("INFO refused: {e}")))
            }
            Reply::Error(e) => Err(Failure::Broken(format!("INFO refused: {e}"))),
            other => Err(Failure::Broken(format!("unexpected INFO reply {other:?}"))),
        }
    }
}

#[async_trait]
impl Collector for RedisCollector {
    fn name(&self) -> &str {
        "redis"
    }

    fn role(&self) -> Option<&str> {
        Some("cache")
    }

    fn metadata(&self) -> Vec<MetricMetadata> {
        super::metadata(FAMILIES)
    }

    async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError> {
        // Taken for the cycle, so a cancelled cycle never leaves a connection
        // with an unread reply behind.
        let kept = self.conn.take();
        let reused = kept.is_some();
        let mut result = self.cycle(kept, ctx).await;
        if reused && matches!(result, Err(Failure::Down(_))) {
            result = self.cycle(None, ctx).await;
        }
        match result {
            Ok((conn, series)) => {
                self.conn = Some(conn);
                self.outage.recovered("redis", &self.shown);
                let mut out = Vec::with_capacity(series.len() + 1);
                out.push(ctx.series("redis_up", &[], 1.0));
                out.extend(series);
                Ok(out)
            }
            Err(Failure::Down(why)) => {
                self.outage.failed("redis", &self.shown, &why);
                Ok(vec![ctx.series("redis_up", &[], 0.0)])
            }
            Err(Failure::Broken(why)) => Err(CollectError::Source(why)),
        }
    }
}
