//! Each parser against text captured from a real kernel, plus damaged input.

use super::*;

fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| {
            *n == name
                && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| *lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

const STAT: &str = "cpu  4705 356 584 3699176 23 0 87 11 0 0
cpu0 1393 280 283 1821870 17 0 40 5 0 0
cpu1 3312 76 301 1877306 6 0 47 6 0 0
intr 1462898 53 0 0 0
ctxt 4318523
btime 1700000000
processes 26442
procs_running 3
procs_blocked 1
softirq 1210577 0 238735 2 76386 40 0 50 396028 0 499376
";

#[test]
fn stat_sums_cpu_modes_in_seconds() {
    let s = stat(STAT);
    assert_eq!(
        value(&s, "system_cpu_seconds_total", Some(("mode", "user"))),
        Some(47.05)
    );
    assert_eq!(
        value(&s, "system_cpu_seconds_total", Some(("mode", "idle"))),
        Some(36991.76)
    );
    assert_eq!(
        value(&s, "system_cpu_seconds_total", Some(("mode", "steal"))),
        Some(0.11)
    );
    assert_eq!(
        s.iter()
            .filter(|x| x.0 == "system_cpu_seconds_total")
            .count(),
        8,
        "cpu0/cpu1 lines are not added again"
    );
    assert_eq!(
        value(&s, "system_context_switches_total", None),
        Some(4_318_523.0)
    );
    assert_eq!(
        value(&s, "system_interrupts_total", None),
        Some(1_462_898.0)
    );
    assert_eq!(value(&s, "system_forks_total", None), Some(26_442.0));
    assert_eq!(value(&s, "system_procs_running", None), Some(3.0));
    assert_eq!(value(&s, "system_procs_blocked", None), Some(1.0));
}

#[test]
fn meminfo_vmstat_and_file_nr() {
    let m = meminfo(
        "MemTotal:       24000000 kB\nMemFree: 1000 kB\nMemAvailable:   20000000 kB\nBuffers:          1024 kB\nCached:         2048 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\nDirty:              4 kB\nGarbage line\n",
    );
    let kib = |n: f64| Some(n * 1024.0);
    assert_eq!(
        value(&m, "system_memory_total_bytes", None),
        kib(24_000_000.0)
    );
    assert_eq!(
        value(&m, "system_memory_available_bytes", None),
        kib(20_000_000.0)
    );
    assert_eq!(
        value(&m, "system_memory_used_bytes", None),
        kib(4_000_000.0)
    );
    assert_eq!(value(&m, "system_swap_total_bytes", None), kib(100.0));
    assert_eq!(value(&m, "system_swap_used_bytes", None), kib(60.0));
    assert!(value(&m, "system_memory_free_bytes", None).is_none());
    assert_eq!(
        value(&m, "system_memory_buffers_bytes", None),
        Some(1024.0 * 1024.0)
    );
    assert_eq!(
        value(&m, "system_memory_cached_bytes", None),
        Some(2048.0 * 1024.0)
    );
    assert_eq!(value(&m, "system_memory_dirty_bytes", None), Some(4096.0));

    let v = vmstat("nr_free_pages 12\npgmajfault 77\npswpin 1\npswpout 2\noom_kill 3\nbroken\n");
    assert_eq!(
        value(&v, "system_vmstat_major_faults_total", None),
        Some(77.0)
    );
    assert_eq!(value(&v, "system_oom_kills_total", None), Some(3.0));
    assert_eq!(v.len(), 4);

    let f = file_nr("2336\t0\t9223372036854775807\n");
    assert_eq!(value(&f, "system_filefd_allocated", None), Some(2336.0));
    assert_eq!(
        value(&f, "system_filefd_maximum", None),
        Some(9.223372036854776e18)
    );
    assert!(file_nr("nonsense").is_empty());
}

const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000     10    0    0    0     0          0         0     1000     10    0    0    0     0       0          0
  eth0: 99999    500   1    7    0     0          0         0     88888    400   2    9    0     0       0          0
";

#[test]
fn net_dev_per_interface() {
    let s = net_dev(NET_DEV);
    assert_eq!(
        value(
            &s,
            "system_network_receive_bytes_total",
            Some(("device", "eth0"))
        ),
        Some(99999.0)
    );
    assert_eq!(
        value(
            &s,
            "system_network_transmit_packets_total",
            Some(("device", "eth0"))
        ),
        Some(400.0)
    );
    assert_eq!(
        value(
            &s,
            "system_network_receive_errors_total",
            Some(("device", "eth0"))
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "system_network_transmit_errors_total",
            Some(("device", "eth0"))
        ),
        Some(2.0)
    );
    assert_eq!(s.len(), 16);
    assert_eq!(
        value(
            &s,
            "system_network_receive_drop_total",
            Some(("device", "eth0"))
        ),
        Some(7.0)
    );
    assert_eq!(
        value(
            &s,
            "system_network_transmit_drop_total",
            Some(("device", "eth0"))
        ),
        Some(9.0)
    );
    assert_eq!(
        value(
            &s,
            "system_network_receive_drop_total",
            Some(("device", "lo"))
        ),
        Some(0.0)
    );
    assert!(
        net_dev("h1\nh2\n  eth0: 1 2 3\n").is_empty(),
        "short lines skipped"
    );
}

#[test]
fn tcp_counters() {
    let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\nTcp: 1 200 120000 -1 939 668 217 443 2 40101 38117 4 0 661 0\n";
    let s = snmp_tcp(snmp);
    assert_eq!(value(&s, "system_tcp_established", None), Some(2.0));
    assert_eq!(
        value(&s, "system_tcp_active_opens_total", None),
        Some(939.0)
    );
    assert_eq!(
        value(&s, "system_tcp_passive_opens_total", None),
        Some(668.0)
    );
    assert_eq!(
        value(&s, "system_tcp_retransmitted_segments_total", None),
        Some(4.0)
    );
    assert_eq!(value(&s, "system_tcp_resets_sent_total", None), Some(661.0));
    assert!(snmp_tcp("Tcp: only a header\n").is_empty());

    let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 12 12\n";
    assert_eq!(
        value(
            &netstat_listen(netstat),
            "system_tcp_listen_overflows_total",
            None
        ),
        Some(12.0)
    );
    let sock = "sockets: used 33\nTCP: inuse 11 orphan 0 tw 24 alloc 14 mem 13\n";
    assert_eq!(
        value(&sockstat(sock), "system_tcp_time_wait", None),
        Some(24.0)
    );
}

#[test]
fn whole_disks_only() {
    for whole in [
        "sda", "vda", "xvdb", "nvme0n1", "mmcblk0", "dm-0", "md0", "sdaa",
    ] {
        assert!(is_whole_disk(whole), "{whole}");
    }
    for part in [
        "sda1",
        "vda2",
        "nvme0n1p1",
        "mmcblk0p2",
        "loop0",
        "ram1",
        "zram0",
    ] {
        assert!(!is_whole_disk(part), "{part}");
    }
    let text = "   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 253       0 vda 8000 10 400000 5000 2000 300 16000 900 2 7000 6000 0 0 0 0
 253       1 vda1 7900 10 399000 4900 1990 300 15900 890 0 6900 5900 0 0 0 0
";
    let s = diskstats(text);
    assert_eq!(
        value(
            &s,
            "system_disk_reads_completed_total",
            Some(("device", "vda"))
        ),
        Some(8000.0)
    );
    assert_eq!(
        value(&s, "system_disk_read_bytes_total", Some(("device", "vda"))),
        Some(400_000.0 * 512.0)
    );
    assert_eq!(
        value(
            &s,
            "system_disk_written_bytes_total",
            Some(("device", "vda"))
        ),
        Some(16_000.0 * 512.0)
    );
    assert_eq!(
        value(&s, "system_disk_io_now", Some(("device", "vda"))),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "system_disk_io_time_seconds_total",
            Some(("device", "vda"))
        ),
        Some(7.0)
    );
    assert!(
        value(
            &s,
            "system_disk_reads_completed_total",
            Some(("device", "vda1"))
        )
        .is_none()
    );
    assert!(
        value(
            &s,
            "system_disk_reads_completed_total",
            Some(("device", "loop0"))
        )
        .is_none()
    );
}

#[test]
fn pressure_totals_in_seconds() {
    let io = "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n";
    let s = pressure("io", io);
    assert_eq!(
        value(&s, "system_pressure_io_waiting_seconds_total", None),
        Some(2.5)
    );
    assert_eq!(
        value(&s, "system_pressure_io_stalled_seconds_total", None),
        Some(1.0)
    );
    // The cpu file's "full" line is not a meaningful figure at host level.
    assert_eq!(pressure("cpu", io).len(), 1);
    assert!(pressure("io", "garbage").is_empty());
}

#[test]
fn read_all_skips_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("stat"), STAT).expect("write");
    std::fs::write(dir.path().join("loadavg"), "0.5 0.25 0.1 1/100 42\n").expect("write");
    let s = read_all(&mut ProcFiles::new(dir.path()));
    assert_eq!(value(&s, "system_load1", None), Some(0.5));
    assert!(value(&s, "system_tcp_established", None).is_none());
    assert!(
        value(&s, "system_context_switches_total", None).is_none(),
        "stat is the caller's"
    );
    // Everything emitted is a documented family.
    let stat_text = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let mut live = stat(&stat_text);
    live.extend(read_all(&mut ProcFiles::new(Path::new("/proc"))));
    for (name, _, v) in &live {
        assert!(
            FAMILIES
                .iter()
                .chain(super::super::FAMILIES)
                .any(|f| f.0 == *name),
            "undocumented {name}"
        );
        assert!(v.is_finite(), "{name}");
    }
    assert!(
        value(&live, "system_cpu_seconds_total", Some(("mode", "idle"))).is_some_and(|v| v > 0.0)
    );
}

#[test]
fn processes_are_the_numeric_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["1", "42", "self", "net", "4x"] {
        std::fs::create_dir(dir.path().join(name)).expect("mkdir");
    }
    assert_eq!(count_processes(dir.path()), Some(2));
    assert_eq!(count_processes(&dir.path().join("missing")), None);
    assert!(count_processes(Path::new("/proc")).is_some_and(|n| n >= 1));
}

#[test]
fn loadavg_uptime_and_boot_time() {
    let l = loadavg("0.50 0.40 0.30 1/123 4567\n");
    assert_eq!(value(&l, "system_load1", None), Some(0.5));
    assert_eq!(value(&l, "system_load15", None), Some(0.3));
    assert!(loadavg("0.5").is_empty());
    assert_eq!(
        value(&uptime("12345.67 2345.6\n"), "system_uptime_seconds", None),
        Some(12345.67)
    );
    assert!(uptime("").is_empty());
    assert_eq!(
        value(&stat(STAT), "system_boot_time_seconds", None),
        Some(1_700_000_000.0)
    );
}
