//! Reading dnsperf's report (pure): its statistics block, and with `-v` one line per answer
//! (`> NOERROR name A 0.000123`, latency in seconds), from which the percentiles come.

use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub qps: f64,
    pub avg: Duration,
    pub stddev: Duration,
    /// Per-answer latencies (`-v` only).
    pub latencies: Vec<Duration>,
    /// Answers with another code than NOERROR (`-v` only).
    pub not_noerror: u64,
}

fn first_number(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

pub fn parse(out: &str) -> Result<Report, String> {
    let mut r = Report::default();
    let mut saw_qps = false;
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("> ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() >= 4 {
                if f[0] != "NOERROR" {
                    r.not_noerror += 1;
                }
                if let Ok(v) = f[f.len() - 1].parse::<f64>() {
                    r.latencies.push(secs(v));
                }
            }
        } else if let Some(v) = line.strip_prefix("Queries sent:") {
            r.sent = first_number(v).unwrap_or_default() as u64;
        } else if let Some(v) = line.strip_prefix("Queries completed:") {
            r.completed = first_number(v).unwrap_or_default() as u64;
        } else if let Some(v) = line.strip_prefix("Queries lost:") {
            r.lost = first_number(v).unwrap_or_default() as u64;
        } else if let Some(v) = line.strip_prefix("Queries per second:") {
            r.qps = first_number(v).ok_or("unreadable queries per second")?;
            saw_qps = true;
        } else if let Some(v) = line.strip_prefix("Average Latency (s):") {
            r.avg = secs(first_number(v).unwrap_or_default());
        } else if let Some(v) = line.strip_prefix("Latency StdDev (s):") {
            r.stddev = secs(first_number(v).unwrap_or_default());
        }
    }
    if !saw_qps {
        return Err(format!("no statistics in dnsperf's output:\n{out}"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "DNS Performance Testing Tool\n\
[Status] Sending queries (to 127.0.0.1:5399)\n\
> NOERROR a.example A 0.000254\n\
> SERVFAIL b.example A 0.000150\n\
\n\
Statistics:\n\
\n\
  Queries sent:         4\n\
  Queries completed:    3 (75.00%)\n\
  Queries lost:         1 (25.00%)\n\
\n\
  Response codes:       NOERROR 4 (100.00%)\n\
  Run time (s):         0.001554\n\
  Queries per second:   2574.002574\n\
\n\
  Average Latency (s):  0.000162 (min 0.000121, max 0.000254)\n\
  Latency StdDev (s):   0.000063\n";

    #[test]
    fn reads_the_statistics_and_each_answer() {
        let r = parse(OUT).unwrap();
        assert_eq!((r.sent, r.completed, r.lost), (4, 3, 1));
        assert!((r.qps - 2574.002574).abs() < 1e-6);
        assert_eq!(r.avg, Duration::from_micros(162));
        assert_eq!(r.stddev, Duration::from_micros(63));
        assert_eq!(
            r.latencies,
            [Duration::from_micros(254), Duration::from_micros(150)]
        );
        assert_eq!(r.not_noerror, 1);
        assert!(parse("dnsperf: connection refused").is_err());
    }
}
