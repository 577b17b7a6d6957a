//! `GET /api/v1/summary`: green / yellow / red per component (api,
//! ml-models, database, cache, system) and overall, each with a reason a
//! person can act on, computed from the data through the PromQL engine.
//!
//! Every limit is in [`CHECKS`], the one place they are defined (documented
//! in docs/operations-api.md; the dashboards' thresholds and the default
//! rules use the same numbers). A component without data is `unknown` and
//! says so, never green.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::access::ReadAccess;
use super::error::ApiError;
use super::ops::{self, Point};

pub fn router() -> Router<AppState> {
    Router::new().route("/summary", get(summary))
}

/// A status, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Green,
    /// No data to judge by.
    Unknown,
    Yellow,
    Red,
}

/// Which side of a limit is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bad {
    Above,
    Below,
}

/// How a value is shown in a reason.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Percent,
    Seconds,
    Plain,
    UpDown,
}

/// One health check: a query giving one value per entity (host, model
/// version, ...) and its limits.
pub struct Check {
    pub component: &'static str,
    /// Short name in the response.
    pub name: &'static str,
    /// What the value is, for the reason text.
    pub what: &'static str,
    pub query: &'static str,
    pub bad: Bad,
    /// Yellow beyond this (`None`: straight to red).
    pub yellow: Option<f64>,
    /// Red beyond this.
    pub red: f64,
    unit: Unit,
}

/// A component and the query that tells whether it has data at all.
pub struct Component {
    pub name: &'static str,
    pub presence: &'static str,
    pub no_data: &'static str,
}

pub const COMPONENTS: &[Component] = &[
    Component {
        name: "api",
        presence: "count(http_requests_total) or count(up{role=\"api\"})",
        no_data: "no data: no http_requests_total or API scrape series in the last 5 minutes (scrape the API's /metrics, see docs/metrics.md)",
    },
    Component {
        name: "ml-models",
        presence: "count(model_predictions_total) or count(model_accuracy_ratio)",
        no_data: "no data: no model_* series in the last 5 minutes",
    },
    Component {
        name: "database",
        presence: "count(pg_up)",
        no_data: "no data: no pg_up series in the last 5 minutes (enable the agent's postgres collector)",
    },
    Component {
        name: "cache",
        presence: "count(redis_up)",
        no_data: "no data: no redis_up series in the last 5 minutes (enable the agent's redis collector)",
    },
    Component {
        name: "system",
        // An hour back, so hosts that all fell silent show red, not unknown.
        presence: "count(last_over_time(system_cpu_usage_ratio[1h]))",
        no_data: "no data: no agent has sent host metrics in the last hour",
    },
];

macro_rules! check {
    ($component:literal, $name:literal, $what:literal, $query:expr, $bad:ident, $yellow:expr, $red:expr, $unit:ident) => {
        Check {
            component: $component,
            name: $name,
            what: $what,
            query: $query,
            bad: Bad::$bad,
            yellow: $yellow,
            red: $red,
            unit: Unit::$unit,
        }
    };
}

/// Every check and its limits: the one place they are defined. `host_silent`
/// yields 1 for each host that sent metrics in the last hour but none in the
/// last 5 minutes (the lookback), so any result is red.
#[rustfmt::skip]
pub const CHECKS: &[Check] = &[
    check!("api", "scrape_up", "API scrape target", "min by (host, job) (up{role=\"api\"})", Below, None, 1.0, UpDown),
    check!("api", "error_ratio", "5xx ratio", "sum by (host) (rate(http_requests_total{status=~\"5..\"}[5m])) / sum by (host) (rate(http_requests_total[5m]))", Above, Some(0.01), 0.05, Percent),
    check!("api", "latency_p99", "p99 latency", "histogram_quantile(0.99, sum by (host, le) (rate(http_request_duration_seconds_bucket[5m])))", Above, Some(0.5), 1.0, Seconds),
    check!("api", "probe_success", "probe", "min by (host, probe) (probe_success)", Below, None, 1.0, UpDown),
    check!("ml-models", "accuracy", "accuracy", "min by (model, version) (model_accuracy_ratio)", Below, Some(0.9), 0.85, Percent),
    check!("ml-models", "drift", "drift score", "max by (model, version) (model_drift_score)", Above, Some(0.2), 0.3, Plain),
    check!("database", "pg_up", "PostgreSQL", "min by (host) (pg_up)", Below, None, 1.0, UpDown),
    check!("database", "connection_saturation", "connections in use of max_connections", "sum by (host) (pg_connections) / max by (host) (pg_max_connections)", Above, Some(0.8), 0.95, Percent),
    check!("cache", "redis_up", "Redis", "min by (host) (redis_up)", Below, None, 1.0, UpDown),
    check!("cache", "hit_ratio", "keyspace hit ratio", "sum by (host) (rate(redis_keyspace_hits_total[5m])) / (sum by (host) (rate(redis_keyspace_hits_total[5m])) + sum by (host) (rate(redis_keyspace_misses_total[5m])))", Below, Some(0.9), 0.8, Percent),
    check!("cache", "memory", "memory used of maxmemory", "max by (host) (redis_memory_used_bytes) / max by (host) (redis_memory_max_bytes > 0)", Above, Some(0.8), 0.9, Percent),
    check!("system", "cpu", "CPU busy", "avg by (host) (system_cpu_usage_ratio)", Above, Some(0.8), 0.9, Percent),
    check!("system", "memory", "memory used", "sum by (host) (system_memory_used_bytes) / sum by (host) (system_memory_total_bytes)", Above, Some(0.8), 0.9, Percent),
    check!("system", "disk", "filesystem used", "max by (host, mount) (system_filesystem_used_bytes / system_filesystem_size_bytes)", Above, Some(0.8), 0.9, Percent),
    check!("system", "host_silent", "agent silent", "(max by (host) (last_over_time(system_cpu_usage_ratio[1h])) unless max by (host) (system_cpu_usage_ratio)) * 0 + 1", Above, None, 0.5, Plain),
];

impl Check {
    fn judge(&self, v: f64) -> Status {
        let beyond = |limit: f64| match self.bad {
            Bad::Above => v > limit,
            Bad::Below => v < limit,
        };
        if beyond(self.red) {
            Status::Red
        } else if self.yellow.is_some_and(beyond) {
            Status::Yellow
        } else {
            Status::Green
        }
    }

    fn show(&self, v: f64) -> String {
        match self.unit {
            Unit::Percent => format!("{:.1}%", v * 100.0),
            Unit::Seconds if v < 1.0 => format!("{:.0} ms", v * 1000.0),
            Unit::Seconds => format!("{v:.2} s"),
            Unit::Plain => format!("{v:.2}"),
            Unit::UpDown => (if v >= 1.0 { "up" } else { "down" }).to_string(),
        }
    }

    /// The reason text for one entity.
    fn reason(&self, p: &Point, status: Status) -> String {
        let who: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let who = who.join(" ");
        if self.name == "host_silent" {
            return format!("{who}: no metrics for over 5 minutes");
        }
        let limit = match status {
            Status::Red => Some(self.red),
            Status::Yellow => self.yellow,
            _ => None,
        };
        match (self.unit, limit) {
            (Unit::UpDown, _) => format!("{} {} on {who}", self.what, self.show(p.value)),
            (_, Some(limit)) => format!(
                "{} {} on {who} ({} {} {})",
                self.what,
                self.show(p.value),
                if status == Status::Red {
                    "red"
                } else {
                    "yellow"
                },
                if self.bad == Bad::Above {
                    "above"
                } else {
                    "below"
                },
                self.show(limit)
            ),
            (_, None) => format!("{} {} on {who}", self.what, self.show(p.value)),
        }
    }
}

/// One entity's result of one check.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub value: f64,
    pub labels: std::collections::BTreeMap<String, String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct ComponentHealth {
    pub name: &'static str,
    pub status: Status,
    pub reason: String,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub status: Status,
    pub reason: String,
    pub evaluated_at: String,
    pub components: Vec<ComponentHealth>,
}

/// Computes the summary at `at_ms`.
pub async fn compute(state: &AppState, at_ms: i64) -> Result<Summary, ApiError> {
    let mut components = Vec::new();
    for c in COMPONENTS {
        let present = ops::instant(state, c.presence, at_ms).await?;
        if present.iter().all(|p| p.value <= 0.0 || p.value.is_nan()) {
            components.push(ComponentHealth {
                name: c.name,
                status: Status::Unknown,
                reason: c.no_data.to_string(),
                findings: Vec::new(),
            });
            continue;
        }
        let mut findings = Vec::new();
        for check in CHECKS.iter().filter(|k| k.component == c.name) {
            for p in ops::instant(state, check.query, at_ms).await? {
                // NaN: no traffic in the window (0/0); nothing to judge.
                if p.value.is_nan() {
                    continue;
                }
                let status = check.judge(p.value);
                findings.push(Finding {
                    check: check.name,
                    status,
                    value: p.value,
                    reason: check.reason(&p, status),
                    labels: p.labels,
                });
            }
        }
        let status = findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Green);
        let reason = if status == Status::Green {
            format!("{} checks within limits", findings.len())
        } else {
            let mut bad: Vec<&Finding> = findings.iter().filter(|f| f.status == status).collect();
            bad.sort_by(|a, b| a.reason.cmp(&b.reason));
            bad.iter()
                .map(|f| f.reason.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        components.push(ComponentHealth {
            name: c.name,
            status,
            reason,
            findings,
        });
    }
    let known: Vec<&ComponentHealth> = components
        .iter()
        .filter(|c| c.status != Status::Unknown)
        .collect();
    let status = known
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    let reason = match status {
        Status::Unknown => "no data from any component yet".to_string(),
        Status::Green => {
            let unknown: Vec<&str> = components
                .iter()
                .filter(|c| c.status == Status::Unknown)
                .map(|c| c.name)
                .collect();
            if unknown.is_empty() {
                "all components green".to_string()
            } else {
                format!("green; no data for {}", unknown.join(", "))
            }
        }
        worst => known
            .iter()
            .filter(|c| c.status == worst)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect::<Vec<_>>()
            .join(" | "),
    };
    Ok(Summary {
        status,
        reason,
        evaluated_at: ops::rfc3339(at_ms),
        components,
    })
}

async fn summary(
    _caller: ReadAccess,
    State(state): State<AppState>,
) -> Result<Json<Summary>, ApiError> {
    Ok(Json(compute(&state, ops::now_ms()).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_ordered_and_queries_parse() {
        for c in CHECKS {
            assert!(
                COMPONENTS.iter().any(|k| k.name == c.component),
                "{}",
                c.name
            );
            promql_parser::parser::parse(c.query).expect(c.query);
            if let Some(y) = c.yellow {
                match c.bad {
                    Bad::Above => assert!(y < c.red, "{}", c.name),
                    Bad::Below => assert!(y > c.red, "{}", c.name),
                }
            }
        }
        for c in COMPONENTS {
            promql_parser::parser::parse(c.presence).expect(c.presence);
        }
    }

    #[test]
    fn judging() {
        let cpu = CHECKS.iter().find(|c| c.name == "cpu").expect("cpu");
        assert_eq!(cpu.judge(0.5), Status::Green);
        assert_eq!(cpu.judge(0.85), Status::Yellow);
        assert_eq!(cpu.judge(0.95), Status::Red);
        let up = CHECKS.iter().find(|c| c.name == "pg_up").expect("pg_up");
        assert_eq!(up.judge(1.0), Status::Green);
        assert_eq!(up.judge(0.0), Status::Red);
        assert!(Status::Red > Status::Yellow && Status::Yellow > Status::Unknown);
    }
}
