//! Host metrics via sysinfo, named like node_exporter's (base units, `_total`
//! counters).
//!
//! One `System`, `Disks` and `Networks` live for the agent's lifetime and are
//! refreshed each cycle: CPU usage is a difference between two reads, and
//! recreating them would also re-list everything. The refresh reads /proc and
//! calls statvfs, so it runs in `spawn_blocking`.
//!
//! Filesystems: sysinfo already skips pseudo filesystems (proc, sysfs, cgroup,
//! devpts, devtmpfs, tmpfs, squashfs, ...) and mounts under /proc, /sys and /run.
//! On top of that we skip the types in [`SKIPPED_FSTYPES`] (overlay except when
//! mounted at `/`, the root of a container), mounts under container-runtime
//! directories ([`SKIPPED_MOUNT_PREFIXES`]) and filesystems reporting size 0.
//! A mount point listed twice (mounted over) is reported once, from its last
//! (visible) entry.
//!
//! Kernel counters sysinfo does not expose (CPU time by mode, context switches,
//! pressure, TCP, disk operations and bytes per whole disk, ...) come from
//! [`procfs`], in the same collection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, System};
use vigil_common::{MetricKind, MetricMetadata, Series};

use super::{CollectError, Collector, Context, procfs};

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

use MetricKind::{Counter, Gauge};

#[rustfmt::skip]
const FAMILIES: &[(&str, MetricKind, &str, &str)] = &[
    ("system_cpu_usage_ratio", Gauge, "CPU busy time over all cores since the previous collection", "ratio"),
    ("system_cpu_core_usage_ratio", Gauge, "CPU busy time of one core since the previous collection", "ratio"),
    ("system_cpu_count", Gauge, "Number of logical CPUs", ""),
    ("system_load1", Gauge, "1-minute load average", ""),
    ("system_load5", Gauge, "5-minute load average", ""),
    ("system_load15", Gauge, "15-minute load average", ""),
    ("system_memory_total_bytes", Gauge, "Total physical memory", "bytes"),
    ("system_memory_used_bytes", Gauge, "Physical memory in use", "bytes"),
    ("system_memory_available_bytes", Gauge, "Memory available to new programs without swapping", "bytes"),
    ("system_swap_total_bytes", Gauge, "Total swap space", "bytes"),
    ("system_swap_used_bytes", Gauge, "Swap space in use", "bytes"),
    ("system_filesystem_size_bytes", Gauge, "Size of the filesystem", "bytes"),
    ("system_filesystem_used_bytes", Gauge, "Size minus the space available to unprivileged users (root-reserved blocks count as used)", "bytes"),
    ("system_filesystem_available_bytes", Gauge, "Space available to unprivileged users", "bytes"),
    ("system_network_receive_bytes_total", Counter, "Bytes received on the interface", "bytes"),
    ("system_network_transmit_bytes_total", Counter, "Bytes sent on the interface", "bytes"),
    ("system_network_receive_packets_total", Counter, "Packets received on the interface", ""),
    ("system_network_transmit_packets_total", Counter, "Packets sent on the interface", ""),
    ("system_network_receive_errors_total", Counter, "Receive errors on the interface", ""),
    ("system_network_transmit_errors_total", Counter, "Transmit errors on the interface", ""),
    ("system_uptime_seconds", Gauge, "Time since boot", "seconds"),
    ("system_boot_time_seconds", Gauge, "Boot time, seconds since the Unix epoch", "seconds"),
    ("system_processes", Gauge, "Number of processes (threads excluded)", ""),
];

struct State {
    system: System,
    disks: Disks,
    networks: Networks,
    last_cpu_refresh: Instant,
}

/// Host metrics: CPU, load, memory, swap, filesystems, disk I/O, network, uptime, processes.
pub struct SystemCollector {
    state: Arc<Mutex<State>>,
}

impl SystemCollector {
    /// Lists CPUs, disks and interfaces and takes the first CPU reading, so the
    /// first collection already has a usage figure. Blocking (reads /proc).
    pub fn new() -> Result<Self, CollectError> {
        let err = |what: &str, e: sysinfo::Error| CollectError::Source(format!("{what}: {e}"));
        let mut system = System::new().map_err(|e| err("system", e))?;
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        let disks = Disks::new_with_refreshed_list_specifics(disk_refresh())
            .map_err(|e| err("disks", e))?;
        let networks = Networks::new_with_refreshed_list().map_err(|e| err("networks", e))?;
        Ok(SystemCollector {
            state: Arc::new(Mutex::new(State {
                system,
                disks,
                networks,
                last_cpu_refresh: Instant::now(),
            })),
        })
    }
}

fn disk_refresh() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_storage()
}

#[async_trait]
impl Collector for SystemCollector {
    fn name(&self) -> &str {
        "system"
    }

    fn metadata(&self) -> Vec<MetricMetadata> {
        let mut all = super::metadata(FAMILIES);
        all.extend(super::metadata(procfs::FAMILIES));
        all
    }

    async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError> {
        let state = self.state.clone();
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside sysinfo would poison the lock; the state is still
            // usable (it is only ever refreshed), so carry on with it.
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            collect_blocking(&mut state, &ctx)
        })
        .await
        .map_err(|e| CollectError::Task(e.to_string()))
    }
}

fn collect_blocking(st: &mut State, ctx: &Context) -> Vec<Series> {
    // CPU usage needs two reads at least MINIMUM_CPU_UPDATE_INTERVAL apart.
    let since = st.last_cpu_refresh.elapsed();
    if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
    }
    st.system
        .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
    st.last_cpu_refresh = Instant::now();
    st.system
        .refresh_memory_specifics(MemoryRefreshKind::everything());
    st.disks.refresh_specifics(true, disk_refresh());
    st.networks.refresh(true);

    let mut out = Vec::new();
    let mut emit = |name: &str, labels: &[(&str, &str)], value: f64| {
        out.push(ctx.series(name, labels, value));
    };
    let sys = &st.system;

    let cpus = sys.cpus();
    emit("system_cpu_usage_ratio", &[], ratio(sys.global_cpu_usage()));
    for (i, cpu) in cpus.iter().enumerate() {
        let index = i.to_string();
        emit(
            "system_cpu_core_usage_ratio",
            &[("cpu", &index)],
            ratio(cpu.usage()),
        );
    }
    emit("system_cpu_count", &[], cpus.len() as f64);

    match System::load_average() {
        Ok(load) => {
            emit("system_load1", &[], load.one);
            emit("system_load5", &[], load.five);
            emit("system_load15", &[], load.fifteen);
        }
        Err(e) => tracing::debug!(error = %e, "load average unavailable"),
    }

    emit("system_memory_total_bytes", &[], sys.total_memory() as f64);
    emit("system_memory_used_bytes", &[], sys.used_memory() as f64);
    emit(
        "system_memory_available_bytes",
        &[],
        sys.available_memory() as f64,
    );
    emit("system_swap_total_bytes", &[], sys.total_swap() as f64);
    emit("system_swap_used_bytes", &[], sys.used_swap() as f64);

    // Filesystems, one per mount point, last entry wins (see the module docs).
    let mut mounts = BTreeMap::new();
    for disk in st.disks.iter() {
        let mount = disk.mount_point().to_string_lossy().into_owned();
        let fstype = disk.file_system().to_string_lossy().into_owned();
        let device = disk.name().to_string_lossy().into_owned();
        if !keep_filesystem(&mount, &fstype, disk.total_space()) {
            continue;
        }
        mounts.insert(
            mount,
            (device, fstype, disk.total_space(), disk.available_space()),
        );
    }
    for (mount, (device, fstype, size, available)) in &mounts {
        let labels = [
            ("device", device.as_str()),
            ("fstype", fstype),
            ("mount", mount),
        ];
        emit("system_filesystem_size_bytes", &labels, *size as f64);
        // sysinfo reports what unprivileged users can use; "used" is what is
        // not, which counts root-reserved blocks as used (df's view differs).
        emit(
            "system_filesystem_used_bytes",
            &labels,
            size.saturating_sub(*available) as f64,
        );
        emit(
            "system_filesystem_available_bytes",
            &labels,
            *available as f64,
        );
    }

    for (name, data) in st.networks.iter() {
        let name = name.to_string_lossy();
        let labels = [("device", name.as_ref())];
        for (metric, value) in [
            ("system_network_receive_bytes_total", data.total_received()),
            (
                "system_network_transmit_bytes_total",
                data.total_transmitted(),
            ),
            (
                "system_network_receive_packets_total",
                data.total_packets_received(),
            ),
            (
                "system_network_transmit_packets_total",
                data.total_packets_transmitted(),
            ),
            (
                "system_network_receive_errors_total",
                data.total_errors_on_received(),
            ),
            (
                "system_network_transmit_errors_total",
                data.total_errors_on_transmitted(),
            ),
        ] {
            emit(metric, &labels, value as f64);
        }
    }

    match System::uptime() {
        Ok(up) => emit("system_uptime_seconds", &[], up as f64),
        Err(e) => tracing::debug!(error = %e, "uptime unavailable"),
    }
    match System::boot_time() {
        Ok(boot) => emit("system_boot_time_seconds", &[], boot as f64),
        Err(e) => tracing::debug!(error = %e, "boot time unavailable"),
    }
    // Listing /proc is enough: it shows processes, not threads, and costs one
    // getdents per 1 000 processes instead of sysinfo's open+read of every
    // /proc/<pid>/stat and status (most of this collector's CPU time before).
    if let Some(processes) = procfs::count_processes(std::path::Path::new("/proc")) {
        emit("system_processes", &[], processes as f64);
    }
    for (name, labels, value) in procfs::read_all(std::path::Path::new("/proc")) {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        out.push(ctx.series(name, &labels, value));
    }
    out
}

/// sysinfo's percentage (0..100) as a 0..1 ratio.
fn ratio(percent: f32) -> f64 {
    (f64::from(percent) / 100.0).clamp(0.0, 1.0)
}

/// The filesystem rule of the module docs.
fn keep_filesystem(mount: &str, fstype: &str, size: u64) -> bool {
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
    use std::collections::HashSet;

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

    #[rustfmt::skip]
    const ALWAYS_PRESENT: &[&str] = &[
        "system_cpu_usage_ratio", "system_cpu_core_usage_ratio", "system_cpu_count",
        "system_load1", "system_load5", "system_load15",
        "system_memory_total_bytes", "system_memory_used_bytes", "system_memory_available_bytes",
        "system_swap_total_bytes", "system_swap_used_bytes",
        "system_network_receive_bytes_total", "system_network_transmit_bytes_total",
        "system_network_receive_packets_total", "system_network_transmit_packets_total",
        "system_network_receive_errors_total", "system_network_transmit_errors_total",
        "system_uptime_seconds", "system_boot_time_seconds", "system_processes",
    ];

    #[tokio::test]
    async fn collects_valid_unique_series_with_host_and_role() {
        let mut collector = SystemCollector::new().expect("sysinfo");
        let ctx = Context::new(1_700_000_000_000, "h1", "api");
        let series = collector.collect(&ctx).await.expect("collect");
        let again = collector.collect(&ctx).await.expect("second collect");
        assert!(!again.is_empty());

        let names: HashSet<&str> = series.iter().map(|s| s.name.as_str()).collect();
        let families: HashSet<&str> = FAMILIES
            .iter()
            .chain(procfs::FAMILIES)
            .map(|f| f.0)
            .collect();
        // Every family that does not depend on which disks are mounted.
        for expected in ALWAYS_PRESENT {
            assert!(names.contains(expected), "missing {expected}");
        }
        assert!(
            names.is_subset(&families),
            "undocumented family in {names:?}"
        );

        let mut seen = HashSet::new();
        for s in &series {
            s.validate().expect("valid series");
            assert!(
                seen.insert((&s.name, &s.labels)),
                "duplicate {} {:?}",
                s.name,
                s.labels
            );
            assert_eq!(s.label("host"), Some("h1"));
            assert_eq!(s.label("role"), Some("api"));
            assert_eq!(s.points.len(), 1);
            assert_eq!(s.points[0].timestamp_ms, 1_700_000_000_000);
            assert!(
                s.points[0].value.is_finite(),
                "{} = {}",
                s.name,
                s.points[0].value
            );
        }
        let get = |name: &str| {
            series
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.points[0].value)
        };
        let cpus = get("system_cpu_count").expect("cpu count");
        assert!(cpus >= 1.0);
        let cores = series
            .iter()
            .filter(|s| s.name == "system_cpu_core_usage_ratio")
            .count();
        assert_eq!(cores as f64, cpus);
        let usage = get("system_cpu_usage_ratio").expect("usage");
        assert!((0.0..=1.0).contains(&usage));
        assert!(get("system_memory_total_bytes").expect("mem") > 0.0);
        assert!(get("system_processes").expect("procs") >= 1.0);
        for s in series
            .iter()
            .filter(|s| s.name.starts_with("system_filesystem_"))
        {
            for label in ["mount", "device", "fstype"] {
                assert!(s.label(label).is_some(), "{} lacks {label}", s.name);
            }
        }
        assert_eq!(
            collector.metadata().len(),
            FAMILIES.len() + procfs::FAMILIES.len()
        );
        // The kernel counters this machine certainly has.
        for expected in [
            "system_cpu_seconds_total",
            "system_context_switches_total",
            "system_filefd_allocated",
        ] {
            assert!(names.contains(expected), "missing {expected}");
        }
    }
}
