//! `[dashboard]`: the operator web dashboard's live updates.

use std::time::Duration;

use serde::Deserialize;

/// `[dashboard]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// How often the server pushes fresh figures to each open page.
    #[serde(default = "default_live_interval", with = "humantime_serde")]
    pub live_interval: Duration,
    /// Frames queued for one WebSocket client; a client that falls this far
    /// behind is disconnected (counted), never buffered without bound.
    #[serde(default = "default_client_queue")]
    pub client_queue: usize,
    /// Live connections open at once; more are refused with 503.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Span of the overview's rolling charts.
    #[serde(default = "default_chart_window", with = "humantime_serde")]
    pub chart_window: Duration,
    /// Origins (`https://vigil.example.com`) allowed to open the live
    /// WebSocket besides the page's own host; empty: same origin only.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            live_interval: default_live_interval(),
            client_queue: default_client_queue(),
            max_clients: default_max_clients(),
            chart_window: default_chart_window(),
            allowed_origins: Vec::new(),
        }
    }
}

fn default_live_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_client_queue() -> usize {
    8
}
fn default_max_clients() -> usize {
    256
}
fn default_chart_window() -> Duration {
    Duration::from_secs(15 * 60)
}

impl DashboardConfig {
    /// Adds every problem to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.live_interval < Duration::from_millis(250)
            || self.live_interval > Duration::from_secs(60)
        {
            problems.push("dashboard.live_interval must be between 250ms and 1m".into());
        }
        if self.client_queue == 0 || self.client_queue > 1024 {
            problems.push("dashboard.client_queue must be between 1 and 1024".into());
        }
        if self.max_clients == 0 || self.max_clients > 100_000 {
            problems.push("dashboard.max_clients must be between 1 and 100000".into());
        }
        if self.chart_window < Duration::from_secs(60)
            || self.chart_window > Duration::from_secs(6 * 3600)
        {
            problems.push("dashboard.chart_window must be between 1m and 6h".into());
        }
        for o in &self.allowed_origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && o.split("://")
                    .nth(1)
                    .is_some_and(|h| !h.is_empty() && !h.contains('/'));
            if !ok {
                problems.push(format!(
                    "dashboard.allowed_origins: {o:?} is not an origin (scheme://host[:port], no path)"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_all_reported() {
        let mut problems = Vec::new();
        DashboardConfig::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = DashboardConfig {
            live_interval: Duration::from_millis(10),
            client_queue: 0,
            max_clients: 0,
            chart_window: Duration::from_secs(1),
            allowed_origins: vec!["vigil.example.com".into(), "https://ok.example".into()],
        };
        bad.validate(&mut problems);
        let text = problems.join("\n");
        for needle in [
            "live_interval",
            "client_queue",
            "max_clients",
            "chart_window",
            "\"vigil.example.com\"",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert_eq!(problems.len(), 5, "{text}");
    }
}
