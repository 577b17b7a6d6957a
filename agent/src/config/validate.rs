//! Value and file checks; each returns every problem it finds.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use vigil_common::{sign, tls};

use super::{
    AgentConfig, MAX_INTERVAL, MAX_MAX_BATCH_SAMPLES, MAX_SPOOL_MAX_BYTES, MAX_SPOOL_SEGMENT_BYTES,
    MIN_INTERVAL, MIN_SPOOL_SEGMENT_BYTES, REPLAY_RATE_RANGE,
};

/// A problem line, `key: what is wrong`, as every check reports it.
pub(super) fn problem(key: &str, message: impl fmt::Display) -> String {
    format!("{key}: {message}")
}

pub(crate) fn check_range(key: &str, d: Duration, min: Duration, max: Duration) -> Option<String> {
    use humantime_serde::re::humantime::format_duration;
    (d < min || d > max).then(|| {
        problem(
            key,
            format!(
                "{} is out of range ({} to {})",
                format_duration(d),
                format_duration(min),
                format_duration(max)
            ),
        )
    })
}

/// Checks a `host:port` endpoint (`[v6]:port` for IPv6 literals).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{endpoint:?}: {why}"));
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return bad("expected host:port");
    };
    if host.is_empty() {
        return bad("missing host");
    }
    if host.chars().any(char::is_whitespace) {
        return bad("host contains whitespace");
    }
    if let Some(inner) = host.strip_prefix('[') {
        if !inner.ends_with(']') || inner.len() < 2 {
            return bad("unterminated [ in IPv6 address");
        }
    } else if host.contains(':') {
        return bad("IPv6 addresses must be written in brackets, e.g. [::1]:4433");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bad("port must be a number from 1 to 65535"),
        Ok(_) => Ok(()),
    }
}

pub(crate) fn is_valid_role(role: &str) -> bool {
    !role.is_empty()
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl AgentConfig {
    pub(super) fn value_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !vigil_certs::is_valid_agent_id(&self.agent_id) {
            p.push(problem(
                "agent_id",
                format!(
                    "{:?} is not a valid agent id (1-128 characters from A-Z a-z 0-9 . _ -, \
                     not starting with '.' or '-')",
                    self.agent_id
                ),
            ));
        }
        if self.host.trim().is_empty() {
            p.push(problem(
                "host",
                "must not be empty (it defaults to this machine's hostname, when readable)",
            ));
        }
        if self.roles.is_empty() {
            p.push(problem("roles", "must list at least one role"));
        }
        let mut seen = HashSet::new();
        for role in &self.roles {
            if !is_valid_role(role) {
                p.push(problem(
                    "roles",
                    format!("{role:?} is not a valid role (use [a-zA-Z0-9_-]+)"),
                ));
            } else if !seen.insert(role) {
                p.push(problem("roles", format!("{role:?} is listed twice")));
            }
        }
        p.extend(check_range(
            "interval",
            self.interval,
            MIN_INTERVAL,
            MAX_INTERVAL,
        ));
        if !(1..=MAX_MAX_BATCH_SAMPLES).contains(&self.max_batch_samples) {
            p.push(problem(
                "max_batch_samples",
                format!("must be from 1 to {MAX_MAX_BATCH_SAMPLES}"),
            ));
        }
        let a = &self.aggregator;
        if a.endpoints.is_empty() {
            p.push(problem(
                "aggregator.endpoints",
                "must list at least one host:port",
            ));
        }
        for e in &a.endpoints {
            if let Err(why) = check_endpoint(e) {
                p.push(problem("aggregator.endpoints", why));
            }
        }
        if !tls::is_valid_server_name(&a.server_name) {
            p.push(problem(
                "aggregator.server_name",
                format!("{:?} is not a DNS name or IP address", a.server_name),
            ));
        }
        for (key, path) in [
            ("aggregator.ca", &a.ca),
            ("aggregator.cert", &a.cert),
            ("aggregator.key", &a.key),
            ("aggregator.signing_key", &a.signing_key),
        ] {
            if path.as_os_str().is_empty() {
                p.push(problem(key, "must name a file"));
            }
        }
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        p.extend(check_range(
            "aggregator.connect_timeout",
            a.connect_timeout,
            ms(100),
            s(300),
        ));
        p.extend(check_range(
            "aggregator.ack_timeout",
            a.ack_timeout,
            ms(100),
            s(600),
        ));
        p.extend(check_range(
            "aggregator.backoff_base",
            a.backoff_base,
            ms(1),
            s(60),
        ));
        p.extend(check_range(
            "aggregator.backoff_max",
            a.backoff_max,
            a.backoff_base.max(ms(1)),
            s(3600),
        ));
        p.extend(self.spool_problems());
        p.extend(check_range(
            "shutdown.drain_timeout",
            self.shutdown.drain_timeout,
            Duration::ZERO,
            s(600),
        ));
        self.collect.postgres.value_problems(&mut p);
        self.collect.redis.value_problems(&mut p);
        p.extend(crate::collect::scrape::config_problems(self));
        p
    }

    fn spool_problems(&self) -> Vec<String> {
        let s = &self.spool;
        let mut p = Vec::new();
        if s.dir.as_os_str().is_empty() {
            p.push(problem("spool.dir", "must name a folder"));
        }
        let (min, max) = (MIN_SPOOL_SEGMENT_BYTES, MAX_SPOOL_SEGMENT_BYTES);
        if !(min..=max).contains(&s.segment_bytes) {
            p.push(problem(
                "spool.segment_bytes",
                format!("{} is out of range ({min} to {max})", s.segment_bytes),
            ));
        }
        let floor = s.segment_bytes.clamp(min, max).saturating_mul(2);
        if !(floor..=MAX_SPOOL_MAX_BYTES).contains(&s.max_bytes) {
            p.push(problem(
                "spool.max_bytes",
                format!(
                    "{} is out of range ({floor}, twice spool.segment_bytes, to {MAX_SPOOL_MAX_BYTES})",
                    s.max_bytes
                ),
            ));
        }
        let rate = s.replay_batches_per_second;
        let (lo, hi) = REPLAY_RATE_RANGE;
        if !(lo..=hi).contains(&rate) {
            p.push(problem(
                "spool.replay_batches_per_second",
                format!("{rate} is out of range ({lo} to {hi})"),
            ));
        }
        p
    }

    /// Loads every file the config names; reports each one that fails.
    pub(super) fn file_problems(&self) -> Vec<String> {
        let a = &self.aggregator;
        let mut p = Vec::new();
        self.collect.postgres.file_problems(&self.roles, &mut p);
        self.collect.redis.file_problems(&self.roles, &mut p);
        let ca = load_file(&mut p, "aggregator.ca", &a.ca, tls::load_certs);
        let chain = load_file(&mut p, "aggregator.cert", &a.cert, tls::load_certs);
        let key = load_file(&mut p, "aggregator.key", &a.key, tls::load_key);
        load_file(
            &mut p,
            "aggregator.signing_key",
            &a.signing_key,
            sign::load_signing_key,
        );
        if let Some(first) = chain.as_ref().and_then(|c| c.first()) {
            match tls::common_name(first) {
                Some(cn) if cn == self.agent_id => {}
                Some(cn) => p.push(problem(
                    "aggregator.cert",
                    format!(
                        "certificate common name {cn:?} does not match agent_id {:?}",
                        self.agent_id
                    ),
                )),
                None => p.push(problem(
                    "aggregator.cert",
                    "certificate has no subject common name (the agent id)",
                )),
            }
        }
        if let (Some(ca), Some(chain), Some(key)) = (ca, chain, key) {
            let material = tls::TlsMaterial { ca, chain, key };
            if let Err(e) = tls::quic_client_config(&material) {
                p.push(problem("aggregator.key", e));
            }
        }
        p.extend(check_spool_dir(&self.spool.dir).map(|why| problem("spool.dir", why)));
        p.extend(crate::collect::scrape::file_problems(self));
        p
    }
}

/// Runs `load` on `path` (unless empty: already reported), recording a failure.
fn load_file<T, E: fmt::Display>(
    problems: &mut Vec<String>,
    key: &str,
    path: &Path,
    load: impl FnOnce(&Path) -> Result<T, E>,
) -> Option<T> {
    if path.as_os_str().is_empty() {
        return None;
    }
    load(path).map_err(|e| problems.push(problem(key, e))).ok()
}

/// Whether the spool folder exists as a writable folder, or can be created:
/// its nearest existing ancestor must be a writable folder. Creates nothing.
fn check_spool_dir(dir: &Path) -> Option<String> {
    use rustix::fs::{Access, access};
    if dir.as_os_str().is_empty() {
        return None; // reported by the value checks
    }
    let existing = dir.ancestors().find(|a| a.symlink_metadata().is_ok())?;
    let what = if existing == dir {
        "the spool folder"
    } else {
        "the folder it would be created in"
    };
    if !existing.is_dir() {
        return Some(format!(
            "{}: {what} exists and is not a folder",
            existing.display()
        ));
    }
    access(existing, Access::WRITE_OK | Access::EXEC_OK)
        .err()
        .map(|e| format!("{}: {what} is not writable ({e})", existing.display()))
}
