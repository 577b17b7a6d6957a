//! Filesystem usage via sysinfo's `Disks` (it reads /proc/mounts and calls
//! statvfs per mount).
//!
//! sysinfo already skips pseudo filesystems (proc, sysfs, cgroup, devpts,
//! devtmpfs, tmpfs, squashfs, ...) and mounts under /proc, /sys and /run. On top
//! of that we skip the types in [`SKIPPED_FSTYPES`] (overlay except when mounted
//! at `/`, the root of a container), mounts under container-runtime directories
//! ([`SKIPPED_MOUNT_PREFIXES`]) and filesystems reporting size 0. A mount point
//! listed twice (mounted over) is reported once, from its last (visible) entry.

use std::collections::BTreeMap;

use sysinfo::{DiskRefreshKind, Disks};

use super::procfs::Sample;

/// Filesystem types never reported, beyond those sysinfo already skips.
pub const SKIPPED_FSTYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "configfs",
    "debugfs",
    "fusectl",
    "fuse.lxcfs",
    "mqueue",
    "nsfs",
    "overlay",
    "ramfs",
    "securityfs",
    "selinuxfs",
    "tracefs",
];

/// Mount point prefixes of container runtimes' private filesystems.
pub const SKIPPED_MOUNT_PREFIXES: &[&str] = &[
    "/var/lib/docker/",
    "/var/lib/containers/",
    "/var/lib/kubelet/",
    "/run/containerd/",
    "/snap/",
];

/// Storage figures only: no I/O counters (those come from /proc/diskstats).
pub fn refresh_kind() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_storage()
}

/// Size, used and available bytes of every kept filesystem.
pub fn samples(disks: &mut Disks) -> Vec<Sample> {
    disks.refresh_specifics(true, refresh_kind());
    let mut mounts = BTreeMap::new();
    for disk in disks.iter() {
        let mount = disk.mount_point().to_string_lossy().into_owned();
        let fstype = disk.file_system().to_string_lossy().into_owned();
        if !keep_filesystem(&mount, &fstype, disk.total_space()) {
            continue;
        }
        let device = disk.name().to_string_lossy().into_owned();
        mounts.insert(
            mount,
            (device, fstype, disk.total_space(), disk.available_space()),
        );
    }
    let mut out = Vec::with_capacity(mounts.len() * 3);
    for (mount, (device, fstype, size, available)) in mounts {
        let labels = vec![("device", device), ("fstype", fstype), ("mount", mount)];
        out.push(("system_filesystem_size_bytes", labels.clone(), size as f64));
        // sysinfo reports what unprivileged users can use; "used" is what is
        // not, which counts root-reserved blocks as used (df's view differs).
        out.push((
            "system_filesystem_used_bytes",
            labels.clone(),
            size.saturating_sub(available) as f64,
        ));
        out.push((
            "system_filesystem_available_bytes",
            labels,
            available as f64,
        ));
    }
    out
}

/// The filesystem rule of the module docs.
pub fn keep_filesystem(mount: &str, fstype: &str, size: u64) -> bool {
    if size == 0 {
        return false;
    }
    if SKIPPED_FSTYPES.contains(&fstype) && !(fstype == "overlay" && mount == "/") {
        return false;
    }
    !SKIPPED_MOUNT_PREFIXES.iter().any(|p| mount.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_rule() {
        assert!(keep_filesystem("/", "ext4", 10));
        assert!(keep_filesystem("/", "overlay", 10));
        assert!(!keep_filesystem("/mnt/x", "overlay", 10));
        assert!(!keep_filesystem("/", "ext4", 0));
        assert!(!keep_filesystem(
            "/var/lib/docker/overlay2/abc/merged",
            "xfs",
            10
        ));
        assert!(!keep_filesystem("/sys/kernel/tracing", "tracefs", 10));
        assert!(keep_filesystem("/data", "xfs", 10));
    }
}
