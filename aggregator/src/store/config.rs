//! `[storage]`: the head, rollups and retention.

use std::time::Duration;

use serde::Deserialize;

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// How far back the in-memory head holds samples.
    #[serde(default = "default_head_duration", with = "humantime_serde")]
    pub head_duration: Duration,
    /// Most series the head holds; further series are read from the store
    /// only (counted in `vigil_aggregator_head_series_refused_total`).
    #[serde(default = "default_head_max_series")]
    pub head_max_series: usize,
    /// How long raw samples are kept.
    #[serde(default = "default_retention_raw", with = "humantime_serde")]
    pub retention_raw: Duration,
    /// How long 1-minute rollups are kept.
    #[serde(default = "default_retention_1m", with = "humantime_serde")]
    pub retention_1m: Duration,
    /// How long 1-hour rollups are kept.
    #[serde(default = "default_retention_1h", with = "humantime_serde")]
    pub retention_1h: Duration,
    /// How often rollups are extended, the head trimmed and retention applied.
    #[serde(default = "default_maintenance_interval", with = "humantime_serde")]
    pub maintenance_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            head_duration: default_head_duration(),
            head_max_series: default_head_max_series(),
            retention_raw: default_retention_raw(),
            retention_1m: default_retention_1m(),
            retention_1h: default_retention_1h(),
            maintenance_interval: default_maintenance_interval(),
        }
    }
}

fn default_head_duration() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_head_max_series() -> usize {
    1_000_000
}
fn default_retention_raw() -> Duration {
    Duration::from_secs(15 * 86_400)
}
fn default_retention_1m() -> Duration {
    Duration::from_secs(90 * 86_400)
}
fn default_retention_1h() -> Duration {
    Duration::from_secs(2 * 365 * 86_400)
}
fn default_maintenance_interval() -> Duration {
    Duration::from_secs(60)
}

impl StorageConfig {
    /// Adds every problem to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.head_duration < Duration::from_secs(60) {
            problems.push("storage.head_duration must be at least 1m".into());
        }
        if self.retention_raw < Duration::from_secs(3600) {
            problems.push("storage.retention_raw must be at least 1h".into());
        }
        if self.retention_1m < self.retention_raw {
            problems.push("storage.retention_1m must be at least storage.retention_raw".into());
        }
        if self.retention_1h < self.retention_1m {
            problems.push("storage.retention_1h must be at least storage.retention_1m".into());
        }
        if self.maintenance_interval < Duration::from_secs(1) {
            problems.push("storage.maintenance_interval must be at least 1s".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_bad_values_are_all_reported() {
        let c: StorageConfig = toml::from_str("head_duration = \"30m\"").expect("parse");
        assert_eq!(c.head_duration, Duration::from_secs(1800));
        assert_eq!(c.retention_raw, Duration::from_secs(15 * 86_400));
        let mut problems = Vec::new();
        c.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad: StorageConfig = toml::from_str(
            "head_duration = \"1s\"\nretention_raw = \"30d\"\nretention_1m = \"7d\"",
        )
        .expect("parse");
        let mut problems = Vec::new();
        bad.validate(&mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(toml::from_str::<StorageConfig>("nope = 1").is_err());
    }
}
