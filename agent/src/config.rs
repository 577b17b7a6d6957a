//! The agent's configuration: typed, validated, every problem reported at once.
//!
//! The file is parsed the way the aggregator parses its own, with
//! [`vigil_common::config::parse_toml`]: every unknown key is reported, while a
//! TOML syntax error or a wrongly typed value ends the parse and is reported on
//! its own. Relative paths are then resolved against the config file's folder,
//! and two passes collect every remaining problem: values (ranges, names, ids),
//! then the files the config names (certificates, keys), cross-checked (the
//! client certificate's CN must be the agent id).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use vigil_common::config::{ConfigErrors, parse_toml, read_toml, resolve};

use crate::collect::probe::ProbeConfig;
use crate::collect::scrape::ScrapeConfig;

#[cfg(test)]
mod collect_tests;
mod postgres;
mod redis;
mod secret;
#[cfg(test)]
mod tests;
mod validate;

pub use postgres::{PostgresCollectConfig, StatementsOrder};
pub use redis::{RedisCollectConfig, RedisTarget};
pub use secret::read_secret_file;
pub use validate::check_endpoint;
pub(crate) use validate::{check_range, is_valid_role};

/// Role used when the config names none.
pub const DEFAULT_ROLE: &str = "host";
/// Collection interval when not configured.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest allowed collection interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest allowed collection interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Samples per batch before a collection is split.
pub const DEFAULT_MAX_BATCH_SAMPLES: usize = 10_000;
/// Upper bound on `max_batch_samples`, well inside the 16 MiB frame limit.
pub const MAX_MAX_BATCH_SAMPLES: usize = 100_000;
/// Time allowed for DNS resolution plus the QUIC handshake, per address.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for sending one batch and reading its reply.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Spool folder, relative to the config file (or, for `AgentConfig::new`, the
/// working directory).
pub const DEFAULT_SPOOL_DIR: &str = "spool";
/// Cap on the spool's segment files: 256 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Size at which a spool segment is closed and a new one started: 8 MiB.
pub const DEFAULT_SPOOL_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Smallest allowed `spool.segment_bytes`.
pub const MIN_SPOOL_SEGMENT_BYTES: u64 = 4 * 1024;
/// Largest allowed `spool.segment_bytes`: 1 GiB.
pub const MAX_SPOOL_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Largest allowed `spool.max_bytes`: 1 TiB.
pub const MAX_SPOOL_MAX_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
/// Backlog batches replayed per second after an outage.
pub const DEFAULT_REPLAY_BATCHES_PER_SECOND: f64 = 20.0;
/// Bounds of `spool.replay_batches_per_second`.
pub const REPLAY_RATE_RANGE: (f64, f64) = (0.01, 100_000.0);
/// Time spent delivering spooled batches on shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole agent configuration. Build it with [`AgentConfig::load`] from a file,
/// or with [`AgentConfig::new`] and field assignments in code (then call
/// [`AgentConfig::validate`]; `Agent::start` does).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentConfig {
    /// This agent's id; must equal the client certificate's common name.
    pub agent_id: String,
    /// The `host` label of every sample (default: this machine's hostname).
    #[serde(default = "default_host_label")]
    pub host: String,
    /// Roles of this host; the first is the `role` label of every sample.
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    /// Time between two collections.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A collection with more samples than this is split into several batches.
    #[serde(default = "default_max_batch_samples")]
    pub max_batch_samples: usize,
    /// Where and how to deliver batches.
    pub aggregator: AggregatorConfig,
    /// The on-disk spool of unacked batches.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Behaviour on SIGINT/SIGTERM.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Which collectors run.
    #[serde(default)]
    pub collect: CollectConfig,
}

/// `[aggregator]`: endpoints, TLS identity and timeouts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AggregatorConfig {
    /// `host:port` addresses, resolved at connect time and tried in order.
    pub endpoints: Vec<String>,
    /// Name the aggregator's certificate must carry (DNS name or IP address).
    pub server_name: String,
    /// The Vigil CA certificate (PEM).
    pub ca: PathBuf,
    /// This agent's client certificate (PEM).
    pub cert: PathBuf,
    /// This agent's client certificate key (PEM).
    pub key: PathBuf,
    /// This agent's Ed25519 batch signing key (PKCS#8 PEM).
    pub signing_key: PathBuf,
    /// Time allowed to resolve and connect to one address.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed to send one batch and receive its reply.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// First reconnect/retry delay (exponential, equal jitter).
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest reconnect/retry delay.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
}

/// `[spool]`: where unacked batches wait (see `agent/src/spool/mod.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SpoolConfig {
    /// The spool folder (created with mode 0700 if missing); one per agent.
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Cap on the segment files' total size; when full the oldest batches are
    /// dropped and counted. At least twice `segment_bytes`.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// A segment file is closed and a new one started at this size.
    #[serde(default = "default_spool_segment_bytes")]
    pub segment_bytes: u64,
    /// Make spooled batches survive a power failure too (a `kill -9` never
    /// loses a spooled batch either way): a batch still unacked when the next
    /// one is spooled is `fdatasync`ed then (group commit; acked batches need
    /// no sync), and everything pending when the agent stops.
    #[serde(default = "default_true")]
    pub fsync: bool,
    /// After an outage, backlog batches sent per second (fresh ones are not paced).
    #[serde(default = "default_replay_rate")]
    pub replay_batches_per_second: f64,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShutdownConfig {
    /// After collectors stop, how long to keep delivering spooled batches (the
    /// rest stays in the spool for the next start).
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// `[collect]`: one table per collector.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct CollectConfig {
    /// `[collect.system]`.
    #[serde(default)]
    pub system: SystemCollectConfig,
    /// `[collect.postgres]` (default: on for hosts with the `db` role).
    #[serde(default)]
    pub postgres: PostgresCollectConfig,
    /// `[collect.redis]` (default: on for hosts with the `cache` role).
    #[serde(default)]
    pub redis: RedisCollectConfig,
    /// `[[collect.scrape]]`: Prometheus/OpenMetrics endpoints to scrape.
    #[serde(default)]
    pub scrape: Vec<ScrapeConfig>,
    /// `[[collect.probe]]`: URLs to health-check.
    #[serde(default)]
    pub probe: Vec<ProbeConfig>,
}

/// `[collect.system]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SystemCollectConfig {
    /// Whether host metrics (CPU, memory, disks, network, ...) are collected.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: default_spool_dir(),
            max_bytes: default_spool_max_bytes(),
            segment_bytes: default_spool_segment_bytes(),
            fsync: default_true(),
            replay_batches_per_second: default_replay_rate(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: default_drain_timeout(),
        }
    }
}

impl Default for SystemCollectConfig {
    fn default() -> Self {
        SystemCollectConfig {
            enabled: default_true(),
        }
    }
}

/// Empty when the hostname cannot be read; the value check then reports `host`.
fn default_host_label() -> String {
    default_host().unwrap_or_default()
}
fn default_roles() -> Vec<String> {
    vec![DEFAULT_ROLE.to_string()]
}
fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
fn default_max_batch_samples() -> usize {
    DEFAULT_MAX_BATCH_SAMPLES
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_ack_timeout() -> Duration {
    DEFAULT_ACK_TIMEOUT
}
fn default_backoff_base() -> Duration {
    crate::backoff::DEFAULT_BASE
}
fn default_backoff_max() -> Duration {
    crate::backoff::DEFAULT_MAX
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from(DEFAULT_SPOOL_DIR)
}
fn default_spool_max_bytes() -> u64 {
    DEFAULT_SPOOL_MAX_BYTES
}
fn default_spool_segment_bytes() -> u64 {
    DEFAULT_SPOOL_SEGMENT_BYTES
}
fn default_replay_rate() -> f64 {
    DEFAULT_REPLAY_BATCHES_PER_SECOND
}
fn default_drain_timeout() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}
fn default_true() -> bool {
    true
}

impl AggregatorConfig {
    /// The required settings; timeouts and backoff take their defaults.
    pub fn new(
        endpoints: Vec<String>,
        server_name: impl Into<String>,
        ca: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        signing_key: impl Into<PathBuf>,
    ) -> Self {
        AggregatorConfig {
            endpoints,
            server_name: server_name.into(),
            ca: ca.into(),
            cert: cert.into(),
            key: key.into(),
            signing_key: signing_key.into(),
            connect_timeout: default_connect_timeout(),
            ack_timeout: default_ack_timeout(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
        }
    }
}

/// This machine's hostname, if it can be read and is valid UTF-8.
pub fn default_host() -> Option<String> {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
}

/// Why a configuration cannot be used: every problem found, one per line
/// when displayed (as the aggregator prints its own).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ConfigError(pub ConfigErrors);

impl ConfigError {
    /// Every problem as a line of text.
    pub fn problems(&self) -> Vec<String> {
        self.0.0.clone()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        e.0
    }
}

/// `Ok` when nothing was found wrong.
fn check(problems: Vec<String>) -> Result<(), ConfigError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError(ConfigErrors(problems)))
    }
}

impl AgentConfig {
    /// A configuration with every optional setting at its default. The host is
    /// this machine's hostname, or the agent id when it cannot be read.
    pub fn new(agent_id: impl Into<String>, aggregator: AggregatorConfig) -> Self {
        let agent_id = agent_id.into();
        AgentConfig {
            host: default_host().unwrap_or_else(|| agent_id.clone()),
            agent_id,
            roles: default_roles(),
            interval: default_interval(),
            max_batch_samples: default_max_batch_samples(),
            aggregator,
            spool: SpoolConfig::default(),
            shutdown: ShutdownConfig::default(),
            collect: CollectConfig::default(),
        }
    }

    /// The `role` label value: the first configured role.
    pub fn role(&self) -> &str {
        self.roles.first().map_or(DEFAULT_ROLE, String::as_str)
    }

    /// Reads, parses and fully validates a config file, including the files it names.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let mut problems = Vec::new();
        let Some(config) = read_toml::<AgentConfig>(path, &mut problems) else {
            return Err(ConfigError(ConfigErrors(problems)));
        };
        let config = config.checked(path, &mut problems);
        problems.extend(config.file_problems());
        check(problems)?;
        Ok(config)
    }

    /// Parses TOML text and checks its values, without touching the files it
    /// names (relative paths are joined to `base_dir`).
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<AgentConfig, ConfigError> {
        let mut problems = Vec::new();
        let Some(config) = parse_toml::<AgentConfig>(text, &mut problems) else {
            return Err(ConfigError(ConfigErrors(problems)));
        };
        // `resolve` wants the config file's path; only its folder matters.
        let config = config.checked(&base_dir.join("agent.toml"), &mut problems);
        check(problems)?;
        Ok(config)
    }

    /// Resolves relative paths against `config_path` and adds the value problems.
    fn checked(mut self, config_path: &Path, problems: &mut Vec<String>) -> Self {
        let a = &mut self.aggregator;
        let paths = [&mut a.ca, &mut a.cert, &mut a.key, &mut a.signing_key];
        for p in paths.into_iter().chain([&mut self.spool.dir]) {
            // An empty path stays empty, so the value check reports it.
            if !p.as_os_str().is_empty() {
                *p = resolve(config_path, p);
            }
        }
        let c = &mut self.collect;
        for p in [&mut c.postgres.password_file, &mut c.redis.password_file]
            .into_iter()
            .flatten()
        {
            if !p.as_os_str().is_empty() {
                *p = resolve(config_path, p);
            }
        }
        self.collect
            .scrape
            .iter_mut()
            .for_each(|s| s.resolve(config_path));
        self.collect
            .probe
            .iter_mut()
            .for_each(|p| p.resolve(config_path));
        problems.extend(self.value_problems());
        self
    }

    /// Checks every value and every file; lists all problems.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.value_problems();
        problems.extend(self.file_problems());
        check(problems)
    }
}
