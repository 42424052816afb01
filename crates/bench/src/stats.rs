//! Latency percentiles (nearest-rank, over every sample: no histogram bucketing).

use std::time::Duration;

/// A latency distribution's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Summarizes `samples`; `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Percentiles {
            count: samples.len(),
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// The nearest-rank percentile `p` (0 < p <= 100) of an ascending, non-empty slice: the smallest
/// sample such that at least p% of the samples are at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with a precision that suits the magnitude (for tables).
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(us).collect();
        let p = Percentiles::of(samples).unwrap();
        assert_eq!(p.count, 100);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max),
            (us(50), us(90), us(99), us(100))
        );
    }

    #[test]
    fn small_and_empty() {
        assert_eq!(Percentiles::of(vec![]), None);
        let p = Percentiles::of(vec![us(7)]).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (us(7), us(7), us(7)));
        let p = Percentiles::of(vec![us(1), us(2), us(3)]).unwrap();
        assert_eq!((p.p50, p.p90), (us(2), us(3)));
    }

    #[test]
    fn formatting() {
        assert_eq!(ms(us(1234)), "1.23");
        assert_eq!(ms(us(12_345)), "12.3");
        assert_eq!(ms(us(123_456)), "123");
    }
}
