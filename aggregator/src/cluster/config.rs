//! `[cluster]`: several aggregators on one PostgreSQL database.

use std::time::Duration;

use serde::Deserialize;

/// Whether this aggregator runs alone or as one node of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The only aggregator on its database: it runs every job and reads
    /// recent samples from its in-memory head.
    #[default]
    Off,
    /// One of several aggregators on one PostgreSQL database: all ingest
    /// and serve the API; one leader, elected with a PostgreSQL advisory
    /// lock, evaluates rules, notifies and maintains rollups. The head is
    /// off (reads go to the database, the only place every node's samples
    /// meet).
    On,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `off` (default: the only aggregator on this database) or `on`
    /// (several aggregators share one PostgreSQL database).
    #[serde(default)]
    pub mode: Mode,
    /// This node's name in `/api/v1/cluster`, `/readyz` and the logs
    /// (default: the host name and the HTTP port).
    #[serde(default)]
    pub node_name: Option<String>,
    /// How often a follower tries to take the lead and the leader checks
    /// the connection that holds its lock.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long the leader's check may take; a check that fails or takes
    /// longer ends the leadership (its jobs stop at once).
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub check_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            mode: Mode::Off,
            node_name: None,
            check_interval: default_check_interval(),
            check_timeout: default_check_timeout(),
        }
    }
}

fn default_check_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(3)
}

/// Most a check interval plus timeout may be: a dead leader's successor
/// must be running well within 30 s.
const MAX_DETECTION: Duration = Duration::from_secs(15);

impl ClusterConfig {
    /// Whether this node takes part in leader election.
    pub fn enabled(&self) -> bool {
        self.mode == Mode::On
    }

    /// Adds every problem to `problems`; `is_postgres` is the database kind.
    pub fn validate(&self, is_postgres: bool, problems: &mut Vec<String>) {
        if self.enabled() && !is_postgres {
            problems.push(
                "cluster.mode = \"on\" needs PostgreSQL: SQLite is one file on one host, so it has one aggregator".into(),
            );
        }
        if let Some(name) = &self.node_name
            && (name.trim().is_empty() || name.len() > 200)
        {
            problems.push("cluster.node_name must be 1 to 200 characters".into());
        }
        let min = Duration::from_millis(100);
        if self.check_interval < min {
            problems.push("cluster.check_interval must be at least 100ms".into());
        }
        if self.check_timeout < min {
            problems.push("cluster.check_timeout must be at least 100ms".into());
        }
        if self.check_interval + self.check_timeout > MAX_DETECTION {
            problems.push(format!(
                "cluster.check_interval + cluster.check_timeout must be at most {}s (a dead leader is replaced within 30 s)",
                MAX_DETECTION.as_secs()
            ));
        }
    }

    /// The longest time between the moment a leader's lock is gone and the
    /// moment it has stopped sending: one check interval, one check
    /// timeout, and the outbox's grace for sends in flight (5 s). A new
    /// leader re-sends what the old one left claimed only after this.
    pub fn takeover_delay(&self) -> Duration {
        self.check_interval + self.check_timeout + Duration::from_secs(5)
    }

    /// How long PostgreSQL waits for an unacknowledged write on the lock
    /// connection before it drops the session (and with it the lock):
    /// twice the time the leader needs to notice it lost the database, so
    /// a partitioned leader stops itself before another one can start.
    pub fn tcp_user_timeout(&self) -> Duration {
        (self.check_interval + self.check_timeout) * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_problem() {
        let c: ClusterConfig = toml::from_str("").expect("parse");
        assert_eq!(c.mode, Mode::Off);
        assert!(!c.enabled());
        assert_eq!(c.check_interval, Duration::from_secs(2));
        assert_eq!(c.takeover_delay(), Duration::from_secs(10));
        assert_eq!(c.tcp_user_timeout(), Duration::from_secs(10));
        let mut problems = Vec::new();
        c.validate(false, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        let on: ClusterConfig = toml::from_str(
            "mode = \"on\"\nnode_name = \" \"\ncheck_interval = \"10ms\"\ncheck_timeout = \"15s\"",
        )
        .expect("parse");
        let mut problems = Vec::new();
        on.validate(false, &mut problems);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("needs PostgreSQL"), "{problems:?}");
        let mut problems = Vec::new();
        on.validate(true, &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");

        assert!(toml::from_str::<ClusterConfig>("mode = \"maybe\"").is_err());
        assert!(toml::from_str::<ClusterConfig>("nodes = 2").is_err());
    }
}
