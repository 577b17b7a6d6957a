//! CPU busy ratios from two reads of /proc/stat: total and per core.
//!
//! A ratio is the share of non-idle jiffies between the previous read and
//! this one (idle and iowait count as idle, as `top` does). The first ten
//! fields of a `cpu` line are user, nice, system, idle, iowait, irq, softirq,
//! steal, guest, guest_nice; guest time is already inside user and nice, so
//! only the first eight are summed.

use std::time::{Duration, Instant};

/// Shortest gap between two reads for a meaningful ratio (jiffies are 10 ms).
pub const MIN_GAP: Duration = Duration::from_millis(200);

/// Jiffies per mode of the aggregate line and of each core, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTimes {
    pub total: [f64; 8],
    pub cores: Vec<[f64; 8]>,
}

fn modes(fields: std::str::SplitWhitespace<'_>) -> [f64; 8] {
    let mut out = [0.0; 8];
    for (slot, v) in out.iter_mut().zip(fields) {
        *slot = v.parse().unwrap_or(0.0);
    }
    out
}

/// Parses the `cpu` and `cpuN` lines of /proc/stat.
pub fn parse(stat: &str) -> CpuTimes {
    let mut times = CpuTimes::default();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => times.total = modes(fields),
            Some(key) if key.starts_with("cpu") => times.cores.push(modes(fields)),
            _ => {}
        }
    }
    times
}

/// Busy share between two reads, `None` when no time passed.
pub fn busy_ratio(before: &[f64; 8], after: &[f64; 8]) -> Option<f64> {
    let total: f64 = after.iter().sum::<f64>() - before.iter().sum::<f64>();
    let idle = (after[3] + after[4]) - (before[3] + before[4]);
    (total > 0.0).then(|| ((total - idle) / total).clamp(0.0, 1.0))
}

/// Keeps the previous read between collections.
pub struct CpuUsage {
    previous: CpuTimes,
    at: Instant,
}

impl CpuUsage {
    pub fn new(first: CpuTimes) -> Self {
        CpuUsage {
            previous: first,
            at: Instant::now(),
        }
    }

    /// How long to wait before the next read gives a meaningful ratio.
    pub fn wait_needed(&self) -> Duration {
        MIN_GAP.saturating_sub(self.at.elapsed())
    }

    /// Total and per-core ratios since the previous read; stores `now`.
    /// A core that appeared or vanished (hotplug) gets no ratio this time.
    pub fn update(&mut self, now: CpuTimes) -> (Option<f64>, Vec<Option<f64>>) {
        let total = busy_ratio(&self.previous.total, &now.total);
        let cores = now
            .cores
            .iter()
            .enumerate()
            .map(|(i, after)| {
                self.previous
                    .cores
                    .get(i)
                    .and_then(|before| busy_ratio(before, after))
            })
            .collect();
        self.previous = now;
        self.at = Instant::now();
        (total, cores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_from_two_reads() {
        let a = parse(
            "cpu  100 0 100 700 100 0 0 0 5 0\ncpu0 50 0 50 350 50 0 0 0 0 0\ncpu1 50 0 50 350 50 0 0 0 0 0\nintr 1\n",
        );
        let b = parse(
            "cpu  150 0 150 800 100 0 0 0 9 0\ncpu0 100 0 100 350 50 0 0 0 0 0\ncpu1 50 0 50 450 50 0 0 0 0 0\n",
        );
        assert_eq!(a.cores.len(), 2);
        let mut usage = CpuUsage::new(a);
        let (total, cores) = usage.update(b.clone());
        assert_eq!(
            total,
            Some(0.5),
            "100 busy of 200 jiffies; guest not double counted"
        );
        assert_eq!(cores, vec![Some(1.0), Some(0.0)]);
        // No time passed: no ratio rather than NaN.
        let (total, cores) = usage.update(b);
        assert_eq!(total, None);
        assert_eq!(cores, vec![None, None]);
    }

    #[test]
    fn hotplugged_cores_and_garbage() {
        let mut usage = CpuUsage::new(parse("cpu 1 1 1 1 1 1 1 1\ncpu0 1 1 1 1 1 1 1 1\n"));
        let (_, cores) = usage.update(parse(
            "cpu 2 2 2 2 2 2 2 2\ncpu0 2 2 2 2 2 2 2 2\ncpu1 1 1 1 1 1 1 1 1\n",
        ));
        assert_eq!(cores.len(), 2);
        assert!(cores[1].is_none());
        assert_eq!(parse("cpu x y\n").total, [0.0; 8]);
        assert!(parse("").cores.is_empty());
    }
}
