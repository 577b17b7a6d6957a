//! Linux kernel counters that sysinfo does not expose, read straight from
//! /proc (node_exporter's stat, vmstat, filefd, netdev drops, netstat/sockstat,
//! diskstats and pressure collectors, trimmed to what operators act on).
//!
//! Each file is parsed by a pure function tested against a captured sample;
//! a missing or unreadable file (another OS, an old kernel without PSI, a
//! locked-down container) just leaves its families out: the rest still goes
//! out. Counters are summed over CPUs (`system_cpu_seconds_total{mode}`):
//! per-core usage is already in `system_cpu_core_usage_ratio`, and per-core x
//! mode would be hundreds of series on big hosts.

use std::path::Path;

use vigil_common::MetricKind::{self, Counter, Gauge};

pub use super::files::ProcFiles;

/// USER_HZ: the unit of /proc/stat CPU times on every Linux architecture.
const USER_HZ: f64 = 100.0;
/// /proc/diskstats counts 512-byte sectors whatever the device's block size.
const SECTOR_BYTES: f64 = 512.0;

#[rustfmt::skip]
pub const FAMILIES: &[(&str, MetricKind, &str, &str)] = &[
    ("system_cpu_seconds_total", Counter, "CPU time spent in each mode, summed over CPUs", "seconds"),
    ("system_context_switches_total", Counter, "Context switches", ""),
    ("system_interrupts_total", Counter, "Interrupts serviced", ""),
    ("system_forks_total", Counter, "Processes and threads created", ""),
    ("system_procs_running", Gauge, "Runnable threads", ""),
    ("system_procs_blocked", Gauge, "Threads blocked on I/O", ""),
    ("system_memory_cached_bytes", Gauge, "Page cache", "bytes"),
    ("system_memory_buffers_bytes", Gauge, "Block device buffers", "bytes"),
    ("system_memory_dirty_bytes", Gauge, "Memory waiting to be written back to disk", "bytes"),
    ("system_vmstat_major_faults_total", Counter, "Page faults that needed disk I/O", ""),
    ("system_vmstat_swapped_in_pages_total", Counter, "Pages swapped in", ""),
    ("system_vmstat_swapped_out_pages_total", Counter, "Pages swapped out", ""),
    ("system_oom_kills_total", Counter, "Processes killed by the out-of-memory killer", ""),
    ("system_filefd_allocated", Gauge, "Allocated file descriptors", ""),
    ("system_filefd_maximum", Gauge, "Maximum file descriptors", ""),
    ("system_tcp_established", Gauge, "TCP connections in ESTABLISHED or CLOSE-WAIT", ""),
    ("system_tcp_time_wait", Gauge, "TCP sockets in TIME-WAIT", ""),
    ("system_tcp_active_opens_total", Counter, "Outgoing TCP connections opened", ""),
    ("system_tcp_passive_opens_total", Counter, "Incoming TCP connections accepted", ""),
    ("system_tcp_retransmitted_segments_total", Counter, "TCP segments retransmitted", ""),
    ("system_tcp_resets_sent_total", Counter, "TCP resets sent", ""),
    ("system_tcp_listen_overflows_total", Counter, "Connections dropped because a listen queue was full", ""),
    ("system_disk_read_bytes_total", Counter, "Bytes read from the disk", "bytes"),
    ("system_disk_written_bytes_total", Counter, "Bytes written to the disk", "bytes"),
    ("system_disk_reads_completed_total", Counter, "Reads completed by the disk", ""),
    ("system_disk_writes_completed_total", Counter, "Writes completed by the disk", ""),
    ("system_disk_io_time_seconds_total", Counter, "Time the disk spent doing I/O (busy time)", "seconds"),
    ("system_disk_io_now", Gauge, "I/Os in progress on the disk", ""),
    ("system_pressure_cpu_waiting_seconds_total", Counter, "Time some task waited for CPU (PSI)", "seconds"),
    ("system_pressure_memory_waiting_seconds_total", Counter, "Time some task waited for memory (PSI)", "seconds"),
    ("system_pressure_memory_stalled_seconds_total", Counter, "Time all non-idle tasks stalled on memory (PSI)", "seconds"),
    ("system_pressure_io_waiting_seconds_total", Counter, "Time some task waited for I/O (PSI)", "seconds"),
    ("system_pressure_io_stalled_seconds_total", Counter, "Time all non-idle tasks stalled on I/O (PSI)", "seconds"),
];

/// A sample before labels from the context are added: name, labels, value.
pub type Sample = (&'static str, Vec<(&'static str, String)>, f64);

/// Reads every source of `files` (normally under `/proc`) except `stat`,
/// which the caller reads once for both [`stat`] and CPU usage; missing files
/// are skipped.
pub fn read_all(files: &mut ProcFiles) -> Vec<Sample> {
    let mut out = Vec::new();
    if let Some(text) = files.read("meminfo") {
        out.extend(meminfo(text));
    }
    if let Some(text) = files.read("vmstat") {
        out.extend(vmstat(text));
    }
    if let Some(text) = files.read("sys/fs/file-nr") {
        out.extend(file_nr(text));
    }
    if let Some(text) = files.read("net/dev") {
        out.extend(net_dev(text));
    }
    if let Some(text) = files.read("loadavg") {
        out.extend(loadavg(text));
    }
    if let Some(text) = files.read("uptime") {
        out.extend(uptime(text));
    }
    if let Some(text) = files.read("net/snmp") {
        out.extend(snmp_tcp(text));
    }
    if let Some(text) = files.read("net/netstat") {
        out.extend(netstat_listen(text));
    }
    if let Some(text) = files.read("net/sockstat") {
        out.extend(sockstat(text));
    }
    if let Some(text) = files.read("diskstats") {
        out.extend(diskstats(text));
    }
    for (resource, file) in [
        ("cpu", "pressure/cpu"),
        ("memory", "pressure/memory"),
        ("io", "pressure/io"),
    ] {
        if let Some(text) = files.read(file) {
            out.extend(pressure(resource, text));
        }
    }
    out
}

/// Processes (thread-group leaders) now: the numeric entries of `/proc`,
/// which lists processes but not their other threads.
pub fn count_processes(root: &Path) -> Option<usize> {
    let entries = std::fs::read_dir(root).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count(),
    )
}

fn num(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// `/proc/stat`: the `cpu` line (summed over CPUs), ctxt, intr, processes, procs_*.
pub fn stat(text: &str) -> Vec<Sample> {
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let key = fields.next().unwrap_or("");
        let first = fields.clone().next().and_then(num);
        match key {
            "cpu" => {
                for (mode, value) in MODES.iter().zip(fields.filter_map(num)) {
                    out.push((
                        "system_cpu_seconds_total",
                        vec![("mode", mode.to_string())],
                        value / USER_HZ,
                    ));
                }
            }
            "ctxt" => out.extend(first.map(|v| ("system_context_switches_total", vec![], v))),
            "intr" => out.extend(first.map(|v| ("system_interrupts_total", vec![], v))),
            "processes" => out.extend(first.map(|v| ("system_forks_total", vec![], v))),
            "procs_running" => out.extend(first.map(|v| ("system_procs_running", vec![], v))),
            "procs_blocked" => out.extend(first.map(|v| ("system_procs_blocked", vec![], v))),
            "btime" => out.extend(first.map(|v| ("system_boot_time_seconds", vec![], v))),
            _ => {}
        }
    }
    out
}

/// `/proc/meminfo` (kB -> bytes): total, available and used memory (used =
/// total - available, as `free` and sysinfo count it), swap, page cache,
/// buffers and dirty memory.
pub fn meminfo(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let (mut total, mut available, mut swap_total, mut swap_free) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(bytes) = rest
            .split_whitespace()
            .next()
            .and_then(num)
            .map(|kb| kb * 1024.0)
        else {
            continue;
        };
        let name = match key {
            "MemTotal" => {
                total = Some(bytes);
                "system_memory_total_bytes"
            }
            "MemAvailable" => {
                available = Some(bytes);
                "system_memory_available_bytes"
            }
            "SwapTotal" => {
                swap_total = Some(bytes);
                "system_swap_total_bytes"
            }
            "SwapFree" => {
                swap_free = Some(bytes);
                continue;
            }
            "Cached" => "system_memory_cached_bytes",
            "Buffers" => "system_memory_buffers_bytes",
            "Dirty" => "system_memory_dirty_bytes",
            _ => continue,
        };
        out.push((name, vec![], bytes));
    }
    if let (Some(t), Some(a)) = (total, available) {
        out.push(("system_memory_used_bytes", vec![], (t - a).max(0.0)));
    }
    if let (Some(t), Some(f)) = (swap_total, swap_free) {
        out.push(("system_swap_used_bytes", vec![], (t - f).max(0.0)));
    }
    out
}

/// `/proc/loadavg`: "0.50 0.40 0.30 1/123 4567".
pub fn loadavg(text: &str) -> Vec<Sample> {
    let f: Vec<f64> = text.split_whitespace().take(3).filter_map(num).collect();
    match f.as_slice() {
        [one, five, fifteen] => vec![
            ("system_load1", vec![], *one),
            ("system_load5", vec![], *five),
            ("system_load15", vec![], *fifteen),
        ],
        _ => Vec::new(),
    }
}

/// `/proc/uptime`: seconds since boot (the first field).
pub fn uptime(text: &str) -> Vec<Sample> {
    text.split_whitespace()
        .next()
        .and_then(num)
        .map(|up| vec![("system_uptime_seconds", vec![], up)])
        .unwrap_or_default()
}

/// `/proc/vmstat`: major faults, swap-ins/outs, OOM kills.
pub fn vmstat(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let name = match key {
            "pgmajfault" => "system_vmstat_major_faults_total",
            "pswpin" => "system_vmstat_swapped_in_pages_total",
            "pswpout" => "system_vmstat_swapped_out_pages_total",
            "oom_kill" => "system_oom_kills_total",
            _ => continue,
        };
        if let Some(v) = num(value.trim()) {
            out.push((name, vec![], v));
        }
    }
    out
}

/// `/proc/sys/fs/file-nr`: "allocated  unused  maximum".
pub fn file_nr(text: &str) -> Vec<Sample> {
    let f: Vec<f64> = text.split_whitespace().filter_map(num).collect();
    match f.as_slice() {
        [allocated, _, maximum] => vec![
            ("system_filefd_allocated", vec![], *allocated),
            ("system_filefd_maximum", vec![], *maximum),
        ],
        _ => Vec::new(),
    }
}

/// `/proc/net/dev`: bytes, packets, errors and drops per interface and direction.
pub fn net_dev(text: &str) -> Vec<Sample> {
    const COLUMNS: [(usize, &str); 8] = [
        (0, "system_network_receive_bytes_total"),
        (1, "system_network_receive_packets_total"),
        (2, "system_network_receive_errors_total"),
        (3, "system_network_receive_drop_total"),
        (8, "system_network_transmit_bytes_total"),
        (9, "system_network_transmit_packets_total"),
        (10, "system_network_transmit_errors_total"),
        (11, "system_network_transmit_drop_total"),
    ];
    let mut out = Vec::new();
    // Two header lines, then "iface: rx(bytes packets errs drop fifo frame
    // compressed multicast) tx(bytes packets errs drop fifo colls carrier compressed)".
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<f64> = rest.split_whitespace().filter_map(num).collect();
        if f.len() < 16 {
            continue;
        }
        let device = iface.trim();
        for (column, name) in COLUMNS {
            out.push((name, vec![("device", device.to_string())], f[column]));
        }
    }
    out
}

/// Pairs a header line and a value line of the `Proto: names` / `Proto: values`
/// layout of /proc/net/snmp and /proc/net/netstat.
fn keyed<'a>(text: &'a str, proto: &str) -> Vec<(&'a str, f64)> {
    let mut lines = text.lines().filter(|l| l.starts_with(proto));
    match (lines.next(), lines.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .skip(1)
            .zip(values.split_whitespace().skip(1))
            .filter_map(|(n, v)| num(v).map(|v| (n, v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// `/proc/net/snmp`: TCP opens, established connections, retransmits, resets.
pub fn snmp_tcp(text: &str) -> Vec<Sample> {
    keyed(text, "Tcp:")
        .into_iter()
        .filter_map(|(key, v)| {
            let name = match key {
                "CurrEstab" => "system_tcp_established",
                "ActiveOpens" => "system_tcp_active_opens_total",
                "PassiveOpens" => "system_tcp_passive_opens_total",
                "RetransSegs" => "system_tcp_retransmitted_segments_total",
                "OutRsts" => "system_tcp_resets_sent_total",
                _ => return None,
            };
            Some((name, vec![], v))
        })
        .collect()
}

/// `/proc/net/netstat`: listen queue overflows.
pub fn netstat_listen(text: &str) -> Vec<Sample> {
    keyed(text, "TcpExt:")
        .into_iter()
        .filter(|(key, _)| *key == "ListenOverflows")
        .map(|(_, v)| ("system_tcp_listen_overflows_total", vec![], v))
        .collect()
}

/// `/proc/net/sockstat`: sockets in TIME-WAIT.
pub fn sockstat(text: &str) -> Vec<Sample> {
    let Some(tcp) = text.lines().find(|l| l.starts_with("TCP:")) else {
        return Vec::new();
    };
    let f: Vec<&str> = tcp.split_whitespace().collect();
    f.windows(2)
        .filter(|w| w[0] == "tw")
        .filter_map(|w| num(w[1]))
        .map(|v| ("system_tcp_time_wait", vec![], v))
        .collect()
}

/// Whole disks only: partitions, loop and ram devices are left out (their I/O
/// is counted on the disk itself), as node_exporter's default filter does.
pub fn is_whole_disk(name: &str) -> bool {
    if name.starts_with("loop")
        || name.starts_with("ram")
        || name.starts_with("fd")
        || name.starts_with("zram")
    {
        return false;
    }
    let trailing_digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let is_partition = if name.starts_with("nvme") || name.starts_with("mmcblk") {
        // nvme0n1p2, mmcblk0p1
        name.rfind('p').is_some_and(|i| {
            i > 0
                && name[i + 1..].chars().all(|c| c.is_ascii_digit())
                && name[..i].ends_with(|c: char| c.is_ascii_digit())
        })
    } else {
        // sda1, vda2, xvda1 (but dm-0, md0 are whole devices)
        trailing_digits > 0 && !name.starts_with("dm-") && !name.starts_with("md")
    };
    !is_partition
}

/// `/proc/diskstats`: bytes and completed reads/writes, busy time, I/Os in progress.
pub fn diskstats(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 || !is_whole_disk(f[2]) {
            continue;
        }
        let v = |i: usize| num(f[i]).unwrap_or(0.0);
        let device = || vec![("device", f[2].to_string())];
        out.push(("system_disk_reads_completed_total", device(), v(3)));
        out.push((
            "system_disk_read_bytes_total",
            device(),
            v(5) * SECTOR_BYTES,
        ));
        out.push(("system_disk_writes_completed_total", device(), v(7)));
        out.push((
            "system_disk_written_bytes_total",
            device(),
            v(9) * SECTOR_BYTES,
        ));
        out.push(("system_disk_io_now", device(), v(11)));
        out.push((
            "system_disk_io_time_seconds_total",
            device(),
            v(12) / 1000.0,
        ));
    }
    out
}

/// `/proc/pressure/<resource>`: the `total=` microseconds of `some` and `full`.
pub fn pressure(resource: &str, text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let kind = line.split_whitespace().next().unwrap_or("");
        let Some(total) = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))
            .and_then(num)
        else {
            continue;
        };
        let name = match (resource, kind) {
            ("cpu", "some") => "system_pressure_cpu_waiting_seconds_total",
            ("memory", "some") => "system_pressure_memory_waiting_seconds_total",
            ("memory", "full") => "system_pressure_memory_stalled_seconds_total",
            ("io", "some") => "system_pressure_io_waiting_seconds_total",
            ("io", "full") => "system_pressure_io_stalled_seconds_total",
            _ => continue,
        };
        out.push((name, vec![], total / 1e6));
    }
    out
}

#[cfg(test)]
mod tests;
