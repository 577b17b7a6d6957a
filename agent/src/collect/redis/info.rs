//! `INFO` text to series.
//!
//! The reply is `key:value` lines grouped under `# Section` headers. Parsing is
//! tolerant: headers, blank lines, lines without a colon, unknown keys and
//! values that do not parse are skipped, so a newer or patched server (or a
//! proxy that adds its own fields) never fails the collection. A field that
//! is missing simply yields no series.

use std::collections::HashMap;

use vigil_common::Series;

use crate::collect::Context;

/// Numeric fields reported as they are: (INFO key, metric).
const NUMERIC: &[(&str, &str)] = &[
    ("uptime_in_seconds", "redis_uptime_seconds"),
    ("connected_clients", "redis_connected_clients"),
    ("blocked_clients", "redis_blocked_clients"),
    ("maxclients", "redis_max_clients"),
    ("used_memory", "redis_memory_used_bytes"),
    ("used_memory_rss", "redis_memory_rss_bytes"),
    ("used_memory_peak", "redis_memory_peak_bytes"),
    ("maxmemory", "redis_memory_max_bytes"),
    (
        "total_connections_received",
        "redis_connections_received_total",
    ),
    ("rejected_connections", "redis_rejected_connections_total"),
    ("total_commands_processed", "redis_commands_processed_total"),
    (
        "instantaneous_ops_per_sec",
        "redis_instantaneous_ops_per_second",
    ),
    ("total_net_input_bytes", "redis_net_input_bytes_total"),
    ("total_net_output_bytes", "redis_net_output_bytes_total"),
    ("keyspace_hits", "redis_keyspace_hits_total"),
    ("keyspace_misses", "redis_keyspace_misses_total"),
    ("evicted_keys", "redis_evicted_keys_total"),
    ("expired_keys", "redis_expired_keys_total"),
    ("loading", "redis_loading"),
    (
        "rdb_changes_since_last_save",
        "redis_rdb_changes_since_last_save",
    ),
    (
        "rdb_last_save_time",
        "redis_rdb_last_save_timestamp_seconds",
    ),
    ("rdb_bgsave_in_progress", "redis_rdb_bgsave_in_progress"),
    ("aof_enabled", "redis_aof_enabled"),
    ("aof_rewrite_in_progress", "redis_aof_rewrite_in_progress"),
    ("connected_slaves", "redis_connected_replicas"),
    ("master_repl_offset", "redis_replication_offset"),
    ("master_last_io_seconds_ago", "redis_master_last_io_seconds"),
    ("master_sync_in_progress", "redis_master_sync_in_progress"),
];

/// Status fields reported as 1 when equal to the healthy value, else 0.
const STATUS: &[(&str, &str, &str)] = &[
    ("rdb_last_bgsave_status", "ok", "redis_rdb_last_bgsave_ok"),
    ("aof_last_write_status", "ok", "redis_aof_last_write_ok"),
    ("master_link_status", "up", "redis_master_link_up"),
];

/// CPU fields: (INFO key, `mode` label).
const CPU: &[(&str, &str)] = &[("used_cpu_sys", "system"), ("used_cpu_user", "user")];

/// `key:value` pairs of an INFO reply; malformed lines are skipped.
pub fn fields(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic()))
        .collect()
}

/// `a=1,b=x` (keyspace and replica lines) to pairs.
fn subfields(value: &str) -> HashMap<&str, &str> {
    value.split(',').filter_map(|p| p.split_once('=')).collect()
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Every series an INFO reply yields (`redis_up` excluded).
pub fn series(text: &str, ctx: &Context) -> Vec<Series> {
    let f = fields(text);
    let mut out = Vec::new();
    if let Some(v) = f.get("redis_version") {
        out.push(ctx.series("redis_info", &[("version", v.trim())], 1.0));
    }
    for (key, name) in NUMERIC {
        if let Some(v) = f.get(key).and_then(|v| number(v)) {
            out.push(ctx.series(name, &[], v));
        }
    }
    for (key, healthy, name) in STATUS {
        if let Some(v) = f.get(key) {
            out.push(ctx.series(name, &[], f64::from(u8::from(v.trim() == *healthy))));
        }
    }
    for (key, mode) in CPU {
        if let Some(v) = f.get(key).and_then(|v| number(v)) {
            out.push(ctx.series("redis_cpu_seconds_total", &[("mode", mode)], v));
        }
    }
    // Redis says "slave"; the label says "replica", as Redis 5+ commands do.
    if let Some(role) = f.get("role").map(|r| r.trim()) {
        let replica = role == "slave" || role == "replica";
        for (label, on) in [("master", role == "master"), ("replica", replica)] {
            out.push(ctx.series(
                "redis_replication_role",
                &[("replication_role", label)],
                f64::from(u8::from(on)),
            ));
        }
    }
    let master_offset = f.get("master_repl_offset").and_then(|v| number(v));
    let mut keyed: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, *v)).collect();
    keyed.sort_unstable();
    for (key, value) in keyed {
        if key
            .strip_prefix("db")
            .is_some_and(|n| n.parse::<u32>().is_ok())
        {
            let sub = subfields(value);
            if let Some(keys) = sub.get("keys").and_then(|v| number(v)) {
                out.push(ctx.series("redis_db_keys", &[("db", key)], keys));
            }
            if let Some(exp) = sub.get("expires").and_then(|v| number(v)) {
                out.push(ctx.series("redis_db_keys_expiring", &[("db", key)], exp));
            }
        } else if key
            .strip_prefix("slave")
            .is_some_and(|n| n.parse::<u32>().is_ok())
        {
            let sub = subfields(value);
            let (Some(ip), Some(port)) = (sub.get("ip"), sub.get("port")) else {
                continue;
            };
            let replica = format!("{ip}:{port}");
            let labels = [("replica", replica.as_str())];
            if let Some(lag) = sub.get("lag").and_then(|v| number(v)) {
                out.push(ctx.series("redis_replica_lag_seconds", &labels, lag));
            }
            if let (Some(m), Some(o)) = (master_offset, sub.get("offset").and_then(|v| number(v))) {
                out.push(ctx.series("redis_replica_lag_bytes", &labels, (m - o).max(0.0)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(series: &[Series], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        series
            .iter()
            .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.points[0].value)
    }

    const REPLICA: &str = "# Server\r\nredis_version:7.2.4\r\nuptime_in_seconds:100\r\n\
        # Replication\r\nrole:slave\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:0\r\nmaster_repl_offset:500\r\n";

    #[test]
    fn a_replica_reports_its_link() {
        let ctx = Context::new(1, "h", "cache");
        let s = series(REPLICA, &ctx);
        assert_eq!(
            value(
                &s,
                "redis_replication_role",
                Some(("replication_role", "replica"))
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "redis_replication_role",
                Some(("replication_role", "master"))
            ),
            Some(0.0)
        );
        assert_eq!(value(&s, "redis_master_link_up", None), Some(0.0));
        assert_eq!(value(&s, "redis_master_last_io_seconds", None), Some(-1.0));
        assert_eq!(
            value(&s, "redis_info", Some(("version", "7.2.4"))),
            Some(1.0)
        );
    }

    #[test]
    fn a_master_reports_replicas_keyspace_and_persistence() {
        let text = "role:master\nconnected_slaves:2\nmaster_repl_offset:1000\n\
            slave0:ip=10.0.0.2,port=6379,state=online,offset=990,lag=1\n\
            slave1:ip=10.0.0.3,port=6380,state=wait_bgsave,offset=0,lag=7\n\
            db0:keys=12,expires=3,avg_ttl=100\ndb15:keys=1,expires=0,avg_ttl=0,subexpiry=0\n\
            rdb_last_bgsave_status:err\naof_last_write_status:ok\nused_cpu_sys:1.5\n";
        let s = series(text, &Context::new(1, "h", "cache"));
        let replica = |r| Some(("replica", r));
        assert_eq!(
            value(&s, "redis_replica_lag_bytes", replica("10.0.0.2:6379")),
            Some(10.0)
        );
        assert_eq!(
            value(&s, "redis_replica_lag_seconds", replica("10.0.0.3:6380")),
            Some(7.0)
        );
        assert_eq!(value(&s, "redis_connected_replicas", None), Some(2.0));
        assert_eq!(value(&s, "redis_db_keys", Some(("db", "db0"))), Some(12.0));
        assert_eq!(
            value(&s, "redis_db_keys_expiring", Some(("db", "db0"))),
            Some(3.0)
        );
        assert_eq!(value(&s, "redis_db_keys", Some(("db", "db15"))), Some(1.0));
        assert_eq!(value(&s, "redis_rdb_last_bgsave_ok", None), Some(0.0));
        assert_eq!(value(&s, "redis_aof_last_write_ok", None), Some(1.0));
        assert_eq!(
            value(&s, "redis_cpu_seconds_total", Some(("mode", "system"))),
            Some(1.5)
        );
    }

    #[test]
    fn garbage_is_skipped() {
        let text = "garbage\n:novalue\nkeyspace_hits:notanumber\nkeyspace_misses:5\n\
            used_memory:inf\ndbx:keys=1\ndb1:keys=oops\nslave0:port=1\n\u{0}\u{ff}:1\n\
            key with space:1\nconnected_clients: 3 \n";
        let s = series(text, &Context::new(1, "h", "cache"));
        assert_eq!(value(&s, "redis_keyspace_misses_total", None), Some(5.0));
        assert_eq!(value(&s, "redis_connected_clients", None), Some(3.0));
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        for s in &s {
            s.validate().expect("valid series");
        }
    }
}
