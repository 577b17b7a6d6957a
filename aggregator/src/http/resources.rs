//! `GET /api/v1/system/resources`: the latest CPU, memory, disk, network,
//! database and cache figures per host (the last sample within the 5 minute
//! lookback; rates over 5 minutes). A figure a host does not report is null.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::access::ReadAccess;
use super::error::ApiError;
use super::ops;

pub fn router() -> Router<AppState> {
    Router::new().route("/system/resources", get(resources))
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage_ratio: Option<f64>,
    pub load1: Option<f64>,
    pub cores: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub used_bytes: Option<f64>,
    pub total_bytes: Option<f64>,
    pub used_ratio: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Filesystem {
    pub mount: String,
    pub used_bytes: Option<f64>,
    pub size_bytes: Option<f64>,
    pub used_ratio: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Network {
    pub receive_bytes_per_second: Option<f64>,
    pub transmit_bytes_per_second: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Database {
    pub up: Option<f64>,
    pub connections: Option<f64>,
    pub max_connections: Option<f64>,
    pub cache_hit_ratio: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Cache {
    pub up: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    pub memory_max_bytes: Option<f64>,
    pub hit_ratio: Option<f64>,
    pub connected_clients: Option<f64>,
}

/// One host's figures.
#[derive(Debug, Default, Serialize)]
pub struct HostResources {
    pub host: String,
    pub cpu: Cpu,
    pub memory: Memory,
    pub filesystems: Vec<Filesystem>,
    pub network: Network,
    /// Present when the host reports PostgreSQL metrics.
    pub database: Option<Database>,
    /// Present when the host reports Redis metrics.
    pub cache: Option<Cache>,
}

#[derive(Debug, Serialize)]
pub struct ResourcesResponse {
    pub evaluated_at: String,
    pub hosts: Vec<HostResources>,
}

/// Which field a query fills.
#[derive(Clone, Copy)]
enum Field {
    CpuUsage,
    Load1,
    Cores,
    MemUsed,
    MemTotal,
    FsUsed,
    FsSize,
    NetRx,
    NetTx,
    PgUp,
    PgConnections,
    PgMax,
    PgHit,
    RedisUp,
    RedisUsed,
    RedisMax,
    RedisHit,
    RedisClients,
}

const RATE: &str = "[5m]";

fn queries(filter: &str) -> Vec<(Field, String)> {
    let sel = |metric: &str, extra: &str| {
        let mut m = vec![filter.to_string(), extra.to_string()];
        m.retain(|s| !s.is_empty());
        format!("{metric}{{{}}}", m.join(","))
    };
    vec![
        (
            Field::CpuUsage,
            format!("max by (host) ({})", sel("system_cpu_usage_ratio", "")),
        ),
        (
            Field::Load1,
            format!("max by (host) ({})", sel("system_load1", "")),
        ),
        (
            Field::Cores,
            format!("max by (host) ({})", sel("system_cpu_count", "")),
        ),
        (
            Field::MemUsed,
            format!("max by (host) ({})", sel("system_memory_used_bytes", "")),
        ),
        (
            Field::MemTotal,
            format!("max by (host) ({})", sel("system_memory_total_bytes", "")),
        ),
        (
            Field::FsUsed,
            format!(
                "max by (host, mount) ({})",
                sel("system_filesystem_used_bytes", "")
            ),
        ),
        (
            Field::FsSize,
            format!(
                "max by (host, mount) ({})",
                sel("system_filesystem_size_bytes", "")
            ),
        ),
        (
            Field::NetRx,
            format!(
                "sum by (host) (rate({}{RATE}))",
                sel("system_network_receive_bytes_total", "device!=\"lo\"")
            ),
        ),
        (
            Field::NetTx,
            format!(
                "sum by (host) (rate({}{RATE}))",
                sel("system_network_transmit_bytes_total", "device!=\"lo\"")
            ),
        ),
        (Field::PgUp, format!("min by (host) ({})", sel("pg_up", ""))),
        (
            Field::PgConnections,
            format!("sum by (host) ({})", sel("pg_connections", "")),
        ),
        (
            Field::PgMax,
            format!("max by (host) ({})", sel("pg_max_connections", "")),
        ),
        (
            Field::PgHit,
            format!(
                "sum by (host) (rate({h}{RATE})) / (sum by (host) (rate({h}{RATE})) + sum by (host) (rate({r}{RATE})))",
                h = sel("pg_blks_hit_total", ""),
                r = sel("pg_blks_read_total", "")
            ),
        ),
        (
            Field::RedisUp,
            format!("min by (host) ({})", sel("redis_up", "")),
        ),
        (
            Field::RedisUsed,
            format!("max by (host) ({})", sel("redis_memory_used_bytes", "")),
        ),
        (
            Field::RedisMax,
            format!("max by (host) ({})", sel("redis_memory_max_bytes", "")),
        ),
        (
            Field::RedisHit,
            format!(
                "sum by (host) (rate({h}{RATE})) / (sum by (host) (rate({h}{RATE})) + sum by (host) (rate({m}{RATE})))",
                h = sel("redis_keyspace_hits_total", ""),
                m = sel("redis_keyspace_misses_total", "")
            ),
        ),
        (
            Field::RedisClients,
            format!("max by (host) ({})", sel("redis_connected_clients", "")),
        ),
    ]
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The figures of every host (or only of `host`) at `at_ms`.
pub async fn collect(
    state: &AppState,
    host: Option<&str>,
    at_ms: i64,
) -> Result<Vec<HostResources>, ApiError> {
    let filter = match host {
        // The label value is matched literally: escape it for a PromQL string.
        Some(h) => format!("host=\"{}\"", h.replace('\\', "\\\\").replace('"', "\\\"")),
        None => String::new(),
    };
    let mut hosts: BTreeMap<String, HostResources> = BTreeMap::new();
    for (field, query) in queries(&filter) {
        for p in ops::instant(state, &query, at_ms).await? {
            let Some(name) = p.labels.get("host") else {
                continue;
            };
            let v = (!p.value.is_nan()).then_some(p.value);
            let h = hosts.entry(name.clone()).or_insert_with(|| HostResources {
                host: name.clone(),
                ..HostResources::default()
            });
            let fs = |h: &mut HostResources| -> usize {
                let mount = p.labels.get("mount").cloned().unwrap_or_default();
                match h.filesystems.iter().position(|f| f.mount == mount) {
                    Some(i) => i,
                    None => {
                        h.filesystems.push(Filesystem {
                            mount,
                            ..Filesystem::default()
                        });
                        h.filesystems.len() - 1
                    }
                }
            };
            match field {
                Field::CpuUsage => h.cpu.usage_ratio = v,
                Field::Load1 => h.cpu.load1 = v,
                Field::Cores => h.cpu.cores = v,
                Field::MemUsed => h.memory.used_bytes = v,
                Field::MemTotal => h.memory.total_bytes = v,
                Field::FsUsed => {
                    let i = fs(h);
                    h.filesystems[i].used_bytes = v;
                }
                Field::FsSize => {
                    let i = fs(h);
                    h.filesystems[i].size_bytes = v;
                }
                Field::NetRx => h.network.receive_bytes_per_second = v,
                Field::NetTx => h.network.transmit_bytes_per_second = v,
                Field::PgUp => h.database.get_or_insert_with(Database::default).up = v,
                Field::PgConnections => {
                    h.database.get_or_insert_with(Database::default).connections = v
                }
                Field::PgMax => {
                    h.database
                        .get_or_insert_with(Database::default)
                        .max_connections = v
                }
                Field::PgHit => {
                    h.database
                        .get_or_insert_with(Database::default)
                        .cache_hit_ratio = v
                }
                Field::RedisUp => h.cache.get_or_insert_with(Cache::default).up = v,
                Field::RedisUsed => {
                    h.cache.get_or_insert_with(Cache::default).memory_used_bytes = v
                }
                Field::RedisMax => h.cache.get_or_insert_with(Cache::default).memory_max_bytes = v,
                Field::RedisHit => h.cache.get_or_insert_with(Cache::default).hit_ratio = v,
                Field::RedisClients => {
                    h.cache.get_or_insert_with(Cache::default).connected_clients = v
                }
            }
        }
    }
    let mut out: Vec<HostResources> = hosts.into_values().collect();
    for h in &mut out {
        h.memory.used_ratio = ratio(h.memory.used_bytes, h.memory.total_bytes);
        for f in &mut h.filesystems {
            f.used_ratio = ratio(f.used_bytes, f.size_bytes);
        }
        h.filesystems.sort_by(|a, b| a.mount.cmp(&b.mount));
    }
    Ok(out)
}

async fn resources(
    _caller: ReadAccess,
    State(state): State<AppState>,
) -> Result<Json<ResourcesResponse>, ApiError> {
    let at = ops::now_ms();
    Ok(Json(ResourcesResponse {
        evaluated_at: ops::rfc3339(at),
        hosts: collect(&state, None, at).await?,
    }))
}
