//! `[enroll]`: agent enrollment and key rotation, on when the section is
//! present (docs/access.md, "Enrolling agents").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// `[enroll]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollConfig {
    /// The Vigil CA's private key (PEM, mode 0600), to sign agents'
    /// certificates; the CA certificate is `[quic] ca`.
    pub ca_key: PathBuf,
    /// Validity of the certificates enrollment and rotation issue, in days.
    #[serde(default = "default_cert_days")]
    pub cert_days: u32,
    /// After a rotation or re-enrollment, how long batches signed with the
    /// agent's previous key are still accepted (its spool drains meanwhile).
    #[serde(default = "default_key_grace", with = "humantime_serde")]
    pub key_grace: Duration,
    /// Longest lifetime an enrollment token may be given.
    #[serde(default = "default_max_token_ttl", with = "humantime_serde")]
    pub max_token_ttl: Duration,
}

fn default_cert_days() -> u32 {
    825
}
fn default_key_grace() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_token_ttl() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// Shortest allowed `key_grace`.
pub const MIN_KEY_GRACE: Duration = Duration::from_secs(1);
/// Shortest token lifetime.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);

impl EnrollConfig {
    /// Resolves `ca_key` against the config file's folder.
    pub fn resolve(&mut self, config_path: &Path) {
        self.ca_key = vigil_common::config::resolve(config_path, &self.ca_key);
    }

    /// Checks the values and loads the CA (certificate `ca_cert`, key
    /// `ca_key`), pushing every problem.
    pub fn validate(
        &self,
        ca_cert: &Path,
        problems: &mut Vec<String>,
    ) -> Option<Arc<vigil_certs::Ca>> {
        if self.cert_days == 0 || self.cert_days > 36_500 {
            problems.push("enroll.cert_days must be between 1 and 36500".into());
        }
        if self.key_grace < MIN_KEY_GRACE {
            problems.push("enroll.key_grace must be at least 1s".into());
        }
        if self.max_token_ttl < MIN_TOKEN_TTL {
            problems.push("enroll.max_token_ttl must be at least 1m".into());
        }
        if let Err(e) = std::fs::metadata(&self.ca_key) {
            problems.push(format!(
                "enroll.ca_key: cannot read {}: {e}",
                self.ca_key.display()
            ));
            return None;
        }
        // Ca::load refuses a key other users could read (the rule of
        // vigil_common::keyfile, as for every private key Vigil loads).
        vigil_certs::Ca::load(ca_cert, &self.ca_key)
            .map(Arc::new)
            .map_err(|e| problems.push(format!("enroll.ca_key: {e}")))
            .ok()
    }
}
