//! Permission checks for files that hold private keys.
//!
//! Vigil writes key files mode 0600 (`vigil-certs`, quick start) and refuses
//! to load one that others could read, the rule PostgreSQL applies to its
//! TLS key:
//!
//! - no permission at all for other users (`o=`), ever;
//! - group read is accepted only when the file is owned by root, i.e. an
//!   administrator deliberately gave the service's group read access
//!   (`root:vigil 0640` from a package, a Kubernetes secret volume with
//!   `defaultMode: 0440` and `fsGroup`); group write or execute never.
//!
//! A key another user could read lets them impersonate the agent or the
//! aggregator; failing at start with the fix in the message is better than
//! running with a leaked identity.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a key file is refused; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path} is {who} (mode {mode:04o}): a private key must be readable only by its owner; \
     run `chmod 600 {path}` (to share it with the service's group instead: owner root, mode 640)"
)]
pub struct TooOpen {
    pub path: String,
    pub mode: u32,
    who: &'static str,
}

/// Checks `path` (symlinks followed, as a read would) against the rule in
/// the module docs. A file that cannot be inspected passes: reading it
/// reports that problem better.
pub fn check_private(path: &Path) -> Result<(), TooOpen> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    check_mode(path, meta.mode() & 0o777, meta.uid())
}

fn check_mode(path: &Path, mode: u32, owner: u32) -> Result<(), TooOpen> {
    let refuse = |who| {
        Err(TooOpen {
            path: path.display().to_string(),
            mode,
            who,
        })
    };
    if mode & 0o007 != 0 {
        return refuse("accessible to every user");
    }
    if mode & 0o030 != 0 {
        return refuse("writable or executable by its group");
    }
    if mode & 0o040 != 0 && owner != 0 {
        return refuse("readable by its group and not owned by root");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(mode: u32, owner: u32) -> bool {
        check_mode(Path::new("k.key"), mode, owner).is_err()
    }

    #[test]
    fn only_owner_access_or_root_owned_group_read_passes() {
        for (mode, owner, ok) in [
            (0o600, 1000, true),
            (0o400, 1000, true),
            (0o600, 0, true),
            (0o640, 0, true),
            (0o440, 0, true),
            (0o640, 1000, false),
            (0o644, 0, false),
            (0o604, 1000, false),
            (0o660, 0, false),
            (0o601, 1000, false),
        ] {
            assert_eq!(!refused(mode, owner), ok, "mode {mode:o} owner {owner}");
        }
    }

    #[test]
    fn the_message_names_the_file_the_mode_and_the_fix() {
        let e = check_mode(Path::new("/etc/vigil/a.key"), 0o644, 0).expect_err("open");
        let m = e.to_string();
        assert!(m.contains("/etc/vigil/a.key") && m.contains("0644"), "{m}");
        assert!(m.contains("chmod 600 /etc/vigil/a.key"), "{m}");
    }

    #[test]
    fn a_world_readable_file_on_disk_is_refused_and_0600_passes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        std::fs::write(&path, "x").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(check_private(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(check_private(&path).is_ok());
        assert!(check_private(&dir.path().join("missing")).is_ok());
    }
}
