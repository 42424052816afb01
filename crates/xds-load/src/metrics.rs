//! Process measurements from `/proc` (RSS, peak RSS, CPU seconds) and latency percentiles.

use std::process::Command;
use std::time::Duration;

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Resident set size in KiB.
pub fn rss_kib(pid: &str) -> u64 {
    status_kib(pid, "VmRSS").unwrap_or(0)
}

/// Peak resident set size in KiB.
pub fn hwm_kib(pid: &str) -> u64 {
    status_kib(pid, "VmHWM").unwrap_or(0)
}

/// CPU time (utime + stime) of `/proc/<pid>` (`pid` may be `self`).
pub fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks_per_second())
}

/// `sysconf(_SC_CLK_TCK)` via `getconf` (100 on every Linux this runs on; asked once anyway).
pub fn clock_ticks_per_second() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|v: &f64| *v > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds used by a process between two points.
pub struct CpuMeter {
    pid: String,
    start: Duration,
    wall: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pid: &str) -> Self {
        CpuMeter {
            pid: pid.to_string(),
            start: cpu_time(pid),
            wall: std::time::Instant::now(),
        }
    }

    /// (CPU seconds, wall seconds) since the start.
    pub fn read(&self) -> (f64, f64) {
        (
            cpu_time(&self.pid).saturating_sub(self.start).as_secs_f64(),
            self.wall.elapsed().as_secs_f64(),
        )
    }
}

/// Busy CPU time of the whole machine (all of `/proc/stat`'s first line except idle and iowait).
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|rest| {
            rest.split_whitespace()
                .enumerate()
                // user nice system idle iowait irq softirq steal (guest time is inside user)
                .filter(|(i, _)| *i < 8 && *i != 3 && *i != 4)
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

/// Machine-wide TCP counters that explain connection storms on loopback: accept-queue overflows
/// (`ListenOverflows`, the SYN is dropped and retried 1 s later) and segments dropped because a
/// receiver's queue was full (`TCPRcvQDrop`, retransmitted later).
#[derive(Clone, Copy, Default)]
pub struct TcpDrops {
    pub listen_overflows: u64,
    pub rcvq_drops: u64,
}

impl TcpDrops {
    pub fn read() -> Self {
        let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = TcpDrops::default();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            if !names.starts_with("TcpExt:") {
                continue;
            }
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                let v = v.parse().unwrap_or(0);
                match n {
                    "ListenOverflows" => out.listen_overflows = v,
                    "TCPRcvQDrop" => out.rcvq_drops = v,
                    _ => {}
                }
            }
        }
        out
    }

    /// What happened since `self`, as text.
    pub fn since(&self) -> String {
        let now = TcpDrops::read();
        format!(
            "TCP: {} accept-queue overflows, {} receive-queue drops",
            now.listen_overflows.saturating_sub(self.listen_overflows),
            now.rcvq_drops.saturating_sub(self.rcvq_drops)
        )
    }
}

/// CPU used by weftd, by this tool and by everything else on the machine between two points.
pub struct Phase {
    weftd: CpuMeter,
    own: CpuMeter,
    busy: Duration,
}

/// What a [`Phase`] measured, in CPU seconds (and wall seconds).
pub struct PhaseCpu {
    pub weftd: f64,
    pub own: f64,
    pub others: f64,
    pub wall: f64,
}

impl Phase {
    pub fn start(weftd_pid: &str) -> Self {
        Phase {
            weftd: CpuMeter::start(weftd_pid),
            own: CpuMeter::start("self"),
            busy: machine_busy(),
        }
    }

    pub fn read(&self) -> PhaseCpu {
        let (weftd, wall) = self.weftd.read();
        let (own, _) = self.own.read();
        let busy = machine_busy().saturating_sub(self.busy).as_secs_f64();
        PhaseCpu {
            weftd,
            own,
            others: (busy - weftd - own).max(0.0),
            wall,
        }
    }
}

impl PhaseCpu {
    /// `weftd CPU 1.23 s, load tool 2.34 s, other processes 0.12 cores`.
    pub fn describe(&self) -> String {
        format!(
            "weftd CPU {:.2} s, load tool CPU {:.2} s, other processes {:.2} cores",
            self.weftd,
            self.own,
            self.others / self.wall.max(1e-3)
        )
    }
}

/// Percentiles of a sample (nearest rank).
pub struct Percentiles {
    sorted: Vec<f64>,
}

impl Percentiles {
    pub fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Percentiles { sorted: values }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The `p`th percentile (0..=100); NaN for an empty sample.
    pub fn p(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(f64::NAN)
    }
}

/// Seconds as milliseconds with no decimals, or `-`.
pub fn ms(seconds: f64) -> String {
    if seconds.is_finite() {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        "-".into()
    }
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One line describing the machine: CPU model and count, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = status_like("/proc/meminfo", "MemTotal").unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} × {model}, {:.1} GiB RAM, Linux {}",
        mem as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn status_like(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::new((1..=100).rev().map(f64::from).collect());
        assert_eq!(p.p(50.0), 50.0);
        assert_eq!(p.p(99.0), 99.0);
        assert_eq!(p.p(100.0), 100.0);
        assert_eq!(p.max(), 100.0);
        assert!(Percentiles::new(vec![]).p(50.0).is_nan());
    }

    #[test]
    fn own_process_is_measurable() {
        assert!(rss_kib("self") > 0);
        assert!(hwm_kib("self") >= rss_kib("self"));
        assert!(cpu_time("self") < Duration::from_secs(3600));
        assert!(machine_busy() > Duration::ZERO);
        let p = Phase::start("self").read();
        assert!(p.weftd >= 0.0 && p.others >= 0.0);
        assert!(TcpDrops::read().since().starts_with("TCP: "));
    }
}
