//! Host metrics, named like node_exporter's (base units, `_total` counters).
//!
//! Almost everything comes from /proc, parsed by [`procfs`] (kernel counters,
//! memory, load, network, disks, pressure) and [`cpu`] (busy ratios from two
//! reads of /proc/stat); one read of each file per cycle. Filesystem usage
//! comes from sysinfo's `Disks` ([`filesystems`]), kept alive between cycles.
//! (Earlier versions took CPU, memory and network from sysinfo too; it re-read
//! the same /proc files plus six /sys files per interface, so reading the
//! files ourselves halved this collector's CPU time.)
//!
//! /proc files are generated from kernel memory and never wait on a device,
//! so they are read inline on the runtime (about 0.1 ms a cycle; a hop to the
//! blocking pool cost two thread wake-ups, more than the reads). Two sources
//! are slow and change slowly: the process count (listing /proc makes the
//! kernel walk every task) and filesystem usage (statvfs, which can hang on a
//! dead network mount). They are refreshed on the blocking pool at most every
//! [`SLOW_REFRESH`] and their last values are sent every cycle.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sysinfo::Disks;
use tokio::task::JoinHandle;
use vigil_common::{MetricKind, MetricMetadata, Series};

use super::{CollectError, Collector, Context};

pub mod cpu;
mod files;
pub mod filesystems;
pub mod procfs;

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
    ("system_network_receive_drop_total", Counter, "Received packets dropped on the interface", ""),
    ("system_network_transmit_drop_total", Counter, "Outgoing packets dropped on the interface", ""),
    ("system_uptime_seconds", Gauge, "Time since boot", "seconds"),
    ("system_boot_time_seconds", Gauge, "Boot time, seconds since the Unix epoch", "seconds"),
    ("system_processes", Gauge, "Number of processes (threads excluded)", ""),
];

/// How often the process count and filesystem usage are read again.
pub const SLOW_REFRESH: Duration = Duration::from_secs(10);

/// How long a cycle waits for a slow refresh (normally done in about a
/// millisecond) before sending the previous values; the first refresh gets
/// longer. A refresh stuck on a hung mount then costs one blocked thread,
/// never the host metrics.
const REFRESH_WAIT: Duration = Duration::from_millis(100);
const FIRST_REFRESH_WAIT: Duration = Duration::from_millis(500);

type Samples = Vec<procfs::Sample>;

/// Host metrics: CPU, load, memory, swap, filesystems, disk I/O, network,
/// kernel counters, uptime, processes.
pub struct SystemCollector {
    cpu: cpu::CpuUsage,
    /// Only ever used on the blocking pool, one refresh at a time.
    disks: Arc<Mutex<Disks>>,
    /// The slow sources' last samples, and when they were read.
    slow: Option<(Instant, Samples)>,
    /// A refresh of them still running (kept across cycles, and across a
    /// cycle the runner cut off, so there is never more than one).
    refresh: Option<JoinHandle<Samples>>,
    proc_root: &'static Path,
    files: procfs::ProcFiles,
}

fn read_stat(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("stat")).ok()
}

impl SystemCollector {
    /// Lists the filesystems and takes the first CPU reading, so the first
    /// collection already has a usage figure. Blocking (reads /proc).
    pub fn new() -> Result<Self, CollectError> {
        let proc_root = Path::new("/proc");
        let disks = Disks::new_with_refreshed_list_specifics(filesystems::refresh_kind())
            .map_err(|e| CollectError::Source(format!("disks: {e}")))?;
        let first = read_stat(proc_root)
            .map(|text| cpu::parse(&text))
            .unwrap_or_default();
        Ok(SystemCollector {
            cpu: cpu::CpuUsage::new(first),
            disks: Arc::new(Mutex::new(disks)),
            slow: None,
            refresh: None,
            proc_root,
            files: procfs::ProcFiles::new(proc_root),
        })
    }

    /// The slow sources' samples, read again on the blocking pool when
    /// [`SLOW_REFRESH`] has passed (the previous ones while that runs).
    async fn slow_samples(&mut self) -> Samples {
        let due = (self.slow.as_ref()).is_none_or(|(at, _)| at.elapsed() >= SLOW_REFRESH);
        if due && self.refresh.is_none() {
            let disks = self.disks.clone();
            let root = self.proc_root;
            self.refresh = Some(tokio::task::spawn_blocking(move || {
                // A panic while reading would poison the lock; the list is
                // still usable (it is only ever refreshed), so carry on.
                let mut disks = disks.lock().unwrap_or_else(PoisonError::into_inner);
                let mut samples = filesystems::samples(&mut disks);
                // Listing /proc is enough: it shows processes, not threads.
                if let Some(processes) = procfs::count_processes(root) {
                    samples.push(("system_processes", vec![], processes as f64));
                }
                samples
            }));
        }
        if let Some(handle) = &mut self.refresh {
            let wait = match self.slow {
                None => FIRST_REFRESH_WAIT,
                Some(_) => REFRESH_WAIT,
            };
            match tokio::time::timeout(wait, handle).await {
                Ok(Ok(samples)) => {
                    self.slow = Some((Instant::now(), samples));
                    self.refresh = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading filesystems and processes failed");
                    self.refresh = None;
                }
                Err(_) => {} // still running: the previous values this cycle
            }
        }
        self.slow
            .as_ref()
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
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
        let wait = self.cpu.wait_needed();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let mut samples = read_fast(&mut self.cpu, &mut self.files);
        samples.extend(self.slow_samples().await);
        Ok(samples
            .into_iter()
            .map(|(name, labels, value)| {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ctx.series(name, &labels, value)
            })
            .collect())
    }
}

/// CPU usage and every /proc file but the slow sources.
fn read_fast(usage: &mut cpu::CpuUsage, files: &mut procfs::ProcFiles) -> Vec<procfs::Sample> {
    let mut samples = Vec::new();
    if let Some(text) = files.read("stat") {
        samples.extend(procfs::stat(text));
        let times = cpu::parse(text);
        samples.push(("system_cpu_count", vec![], times.cores.len() as f64));
        let (total, cores) = usage.update(times);
        if let Some(ratio) = total {
            samples.push(("system_cpu_usage_ratio", vec![], ratio));
        }
        for (i, ratio) in cores.into_iter().enumerate() {
            if let Some(ratio) = ratio {
                samples.push((
                    "system_cpu_core_usage_ratio",
                    vec![("cpu", i.to_string())],
                    ratio,
                ));
            }
        }
    }
    samples.extend(procfs::read_all(files));
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
        let read_at = collector.slow.as_ref().map(|(at, _)| *at);
        let again = collector.collect(&ctx).await.expect("second collect");
        assert!(!again.is_empty());
        // The slow sources were not read again, but their series still go out.
        assert_eq!(collector.slow.as_ref().map(|(at, _)| *at), read_at);
        assert!(again.iter().any(|s| s.name == "system_processes"));
        // A refresh stuck (a hung mount) holds up no cycle: the previous values go out.
        let stale = collector.slow.take().map(|(at, s)| (at - SLOW_REFRESH, s));
        collector.slow = stale;
        collector.refresh = Some(tokio::task::spawn_blocking(|| {
            std::thread::sleep(Duration::from_secs(2));
            Vec::new()
        }));
        let started = Instant::now();
        let during = collector
            .collect(&ctx)
            .await
            .expect("collect during a stuck refresh");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(during.iter().any(|s| s.name == "system_processes"));
        assert!(collector.refresh.is_some(), "not started twice");
        collector.refresh = None;
        // Refreshed when due.
        for _ in 0..100 {
            collector.collect(&ctx).await.expect("collect");
            if collector.slow.as_ref().map(|(at, _)| *at) > read_at {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            collector.slow.as_ref().map(|(at, _)| *at) > read_at,
            "refreshed when due"
        );

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
