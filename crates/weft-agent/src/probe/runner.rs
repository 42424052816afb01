//! Runs a probe on Istio's schedule (`PerformApplicationHealthCheck`): wait the initial delay,
//! probe at once and then every period, each attempt bounded by the timeout; a state is reported
//! only when the success / failure threshold of consecutive results is reached *and* it differs
//! from the last reported one. The first verdict is always reported.

use super::{Check, ProbeReports, ProbeState, go_duration};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use weft_model::networking::ReadinessProbe;

/// An extra check ANDed in front of the probe, as Istio puts Envoy's readiness in front of the
/// application's (`AggregateProber`): while it fails, the probe counts as failing with its message.
pub type Precheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How long past the timeout an attempt may run before the runner gives up on it (the checks
/// enforce the timeout themselves; this only guards against one that does not).
const TIMEOUT_SLACK: Duration = Duration::from_millis(500);

/// When and how often to probe, Istio's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub initial_delay: Duration,
    /// Time between attempts. Tests may set less than the API's one-second granularity.
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Schedule {
    /// Istio's `fillInDefaults`: failureThreshold 1, successThreshold 1, timeout 1 s, period
    /// 10 s, initial delay 0 (zero or negative means the default).
    pub fn from_probe(p: &ReadinessProbe) -> Self {
        let secs = |v: i32, default: u64| {
            Duration::from_secs(u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(default))
        };
        let count = |v: i32| u32::try_from(v).ok().filter(|v| *v > 0).unwrap_or(1);
        Schedule {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            success_threshold: count(p.success_threshold),
            failure_threshold: count(p.failure_threshold),
        }
    }
}

/// The threshold bookkeeping, apart from any timing: feed it results, it says when to report.
#[derive(Clone, Debug)]
pub struct Thresholds {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// The last reported health; `None` before the first report.
    last: Option<bool>,
}

impl Thresholds {
    pub fn new(success_threshold: u32, failure_threshold: u32) -> Self {
        Thresholds {
            success_threshold: success_threshold.max(1),
            failure_threshold: failure_threshold.max(1),
            successes: 0,
            failures: 0,
            last: None,
        }
    }

    /// Records one attempt; returns the state to report when this attempt makes a transition.
    pub fn observe(&mut self, result: Result<(), String>) -> Option<ProbeState> {
        match result {
            Ok(()) => {
                self.successes += 1;
                self.failures = 0;
                if self.successes >= self.success_threshold && self.last != Some(true) {
                    self.successes = 0;
                    self.last = Some(true);
                    return Some(ProbeState::healthy());
                }
            }
            Err(message) => {
                self.failures += 1;
                self.successes = 0;
                if self.failures >= self.failure_threshold && self.last != Some(false) {
                    self.failures = 0;
                    self.last = Some(false);
                    return Some(ProbeState::unhealthy(message));
                }
            }
        }
        None
    }
}

/// One application probe, ready to run.
#[derive(Clone)]
pub struct Prober {
    pub check: Check,
    pub schedule: Schedule,
    precheck: Option<Precheck>,
}

impl fmt::Debug for Prober {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prober")
            .field("check", &self.check)
            .field("schedule", &self.schedule)
            .field("precheck", &self.precheck.is_some())
            .finish()
    }
}

/// How soon an attempt is repeated when the precheck (Envoy's readiness) failed.
const PRECHECK_RETRY: Duration = Duration::from_millis(100);

impl Prober {
    /// The probe with Istio's defaults; an empty host means `default_host` (see
    /// [`super::default_host`]).
    pub fn new(probe: &ReadinessProbe, default_host: &str) -> Result<Self, String> {
        Ok(Prober {
            check: Check::new(probe, default_host)?,
            schedule: Schedule::from_probe(probe),
            precheck: None,
        })
    }

    /// AND `check` in front of the probe (Istio: Envoy's readiness).
    pub fn with_precheck(mut self, check: Precheck) -> Self {
        self.precheck = Some(check);
        self
    }

    /// One attempt: the precheck (if any), then the probe; `Err` is the failure message.
    #[cfg(test)]
    pub async fn probe_once(&self) -> Result<(), String> {
        self.attempt().await.0
    }

    /// One attempt, and whether it was the precheck that failed.
    async fn attempt(&self) -> (Result<(), String>, bool) {
        let timeout = self.schedule.timeout;
        let bounded = |fut| async move {
            match tokio::time::timeout(timeout + TIMEOUT_SLACK, fut).await {
                Ok(r) => r,
                Err(_) => Err(format!("probe timed out after {}", go_duration(timeout))),
            }
        };
        if let Some(pre) = &self.precheck
            && let Err(e) = bounded(pre()).await
        {
            return (Err(e), true);
        }
        (bounded(Box::pin(self.check.run(timeout))).await, false)
    }

    /// Runs the schedule on a new task until the handle is aborted.
    pub fn spawn(self, reports: ProbeReports) -> JoinHandle<()> {
        tokio::spawn(self.run(reports))
    }

    /// Runs the schedule forever, publishing transitions on `reports`.
    pub async fn run(self, reports: ProbeReports) {
        tracing::info!(check = %self.check.describe(), schedule = ?self.schedule, "starting application readiness probe");
        tokio::time::sleep(self.schedule.initial_delay).await;
        let mut thresholds = Thresholds::new(
            self.schedule.success_threshold,
            self.schedule.failure_threshold,
        );
        let mut ticker = tokio::time::interval(self.schedule.period.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            // The first tick is immediate: probe at once after the initial delay.
            ticker.tick().await;
            let (result, precheck_failed) = self.attempt().await;
            if precheck_failed {
                // Envoy is not ready yet: look again soon instead of a whole period later, so a
                // joining VM is routed to as soon as it can be (Istio waits for the next period).
                ticker.reset_after(PRECHECK_RETRY.min(self.schedule.period));
            }
            if let Err(e) = &result {
                tracing::debug!("application probe failed: {e}");
            }
            if let Some(state) = thresholds.observe(result) {
                match &state.message {
                    None => tracing::info!("application probe: healthy"),
                    Some(m) => tracing::warn!("application probe: unhealthy: {m}"),
                }
                reports.send_replace(Some(state));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::channel;
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use weft_model::networking::{ExecHealthCheckConfig, HttpHealthCheckConfig};

    const BAD: &str = "status code was not from [200,400), bad code 503";

    fn ok() -> Result<(), String> {
        Ok(())
    }
    fn bad() -> Result<(), String> {
        Err(BAD.into())
    }

    #[test]
    fn schedule_defaults() {
        let s = Schedule::from_probe(&ReadinessProbe::default());
        assert_eq!(
            s,
            Schedule {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 1,
            }
        );
        let s = Schedule::from_probe(&ReadinessProbe {
            initial_delay_seconds: 2,
            period_seconds: 5,
            timeout_seconds: 3,
            success_threshold: 2,
            failure_threshold: -1,
            ..Default::default()
        });
        assert_eq!(
            (s.initial_delay, s.period, s.timeout),
            (
                Duration::from_secs(2),
                Duration::from_secs(5),
                Duration::from_secs(3)
            )
        );
        assert_eq!((s.success_threshold, s.failure_threshold), (2, 1));
    }

    #[test]
    fn first_verdict_is_reported_then_only_transitions() {
        let mut t = Thresholds::new(1, 1);
        assert_eq!(t.observe(ok()), Some(ProbeState::healthy()));
        assert_eq!(t.observe(ok()), None);
        assert_eq!(t.observe(bad()), Some(ProbeState::unhealthy(BAD)));
        assert_eq!(t.observe(Err("other".into())), None);
        assert_eq!(t.observe(ok()), Some(ProbeState::healthy()));

        let mut t = Thresholds::new(1, 1);
        assert_eq!(t.observe(bad()), Some(ProbeState::unhealthy(BAD)));
    }

    #[test]
    fn failure_threshold_needs_consecutive_failures() {
        let mut t = Thresholds::new(1, 3);
        assert_eq!(t.observe(ok()), Some(ProbeState::healthy()));
        assert_eq!(t.observe(bad()), None);
        assert_eq!(t.observe(bad()), None);
        assert_eq!(t.observe(ok()), None); // resets the failure count
        assert_eq!(t.observe(bad()), None);
        assert_eq!(t.observe(bad()), None);
        assert_eq!(t.observe(bad()), Some(ProbeState::unhealthy(BAD)));
        assert_eq!(t.observe(bad()), None);
        assert_eq!(t.observe(ok()), Some(ProbeState::healthy()));
    }

    #[test]
    fn success_threshold_needs_consecutive_successes() {
        let mut t = Thresholds::new(2, 1);
        assert_eq!(t.observe(ok()), None);
        assert_eq!(t.observe(bad()), Some(ProbeState::unhealthy(BAD)));
        assert_eq!(t.observe(ok()), None);
        assert_eq!(t.observe(bad()), None);
        assert_eq!(t.observe(ok()), None);
        assert_eq!(t.observe(ok()), Some(ProbeState::healthy()));
        assert_eq!(t.observe(ok()), None);
        assert_eq!(t.observe(ok()), None);
    }

    /// An HTTP server answering its n-th request with `codes[n]` (the last one after that);
    /// records when each request arrived.
    async fn scripted_server(codes: Vec<u16>) -> (u16, Arc<Mutex<Vec<Instant>>>) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let times2 = times.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let n = {
                    let mut t = times2.lock().unwrap();
                    t.push(Instant::now());
                    t.len() - 1
                };
                let code = codes.get(n).or(codes.last()).copied().unwrap_or(200);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        (port, times)
    }

    fn http_probe(port: u16) -> ReadinessProbe {
        ReadinessProbe {
            period_seconds: 1,
            success_threshold: 2,
            failure_threshold: 3,
            http_get: Some(HttpHealthCheckConfig {
                port: port.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn runs_the_schedule_and_publishes_only_transitions() {
        const PERIOD: Duration = Duration::from_millis(40);
        let codes = vec![
            200, 503, 200, 200, 503, 503, 200, 503, 503, 503, 503, 200, 200,
        ];
        let (port, times) = scripted_server(codes).await;
        let mut prober = Prober::new(&http_probe(port), "127.0.0.1").unwrap();
        assert_eq!(prober.schedule.period, Duration::from_secs(1));
        prober.schedule.period = PERIOD;
        prober.schedule.initial_delay = Duration::from_millis(100);

        let (tx, mut rx) = channel();
        let started = Instant::now();
        let task = prober.spawn(tx);
        let mut published = Vec::new();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .expect("a transition")
                .unwrap();
            let state = rx.borrow_and_update().clone().unwrap();
            published.push(state);
        }
        assert_eq!(
            published,
            [
                ProbeState::healthy(),
                ProbeState::unhealthy(BAD),
                ProbeState::healthy()
            ]
        );
        // Steady state: more probes, nothing published.
        let before = times.lock().unwrap().len();
        tokio::time::sleep(PERIOD * 6).await;
        assert!(times.lock().unwrap().len() >= before + 2);
        assert!(!rx.has_changed().unwrap());
        task.abort();

        let times = times.lock().unwrap();
        assert!(
            times[0] - started >= Duration::from_millis(100),
            "initial delay"
        );
        // Attempts are spaced by the period (allowing for scheduling jitter).
        assert!(times[5] - times[0] >= PERIOD * 3);
    }

    #[tokio::test]
    async fn nothing_is_published_before_the_first_verdict() {
        let probe = ReadinessProbe {
            initial_delay_seconds: 30,
            exec: Some(ExecHealthCheckConfig {
                command: vec!["true".into()],
            }),
            ..Default::default()
        };
        let (tx, rx) = channel();
        let task = Prober::new(&probe, "127.0.0.1").unwrap().spawn(tx);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*rx.borrow(), None);
        task.abort();
        assert!(Prober::new(&ReadinessProbe::default(), "h").is_err());
    }

    #[tokio::test]
    async fn precheck_failure_counts_as_probe_failure() {
        let probe = ReadinessProbe {
            exec: Some(ExecHealthCheckConfig {
                command: vec!["true".into()],
            }),
            ..Default::default()
        };
        let envoy_ready = Arc::new(AtomicBool::new(false));
        let ready = envoy_ready.clone();
        let mut prober = Prober::new(&probe, "127.0.0.1")
            .unwrap()
            .with_precheck(Arc::new(move || {
                let ready = ready.load(Ordering::SeqCst);
                Box::pin(async move {
                    if ready {
                        Ok(())
                    } else {
                        Err("Envoy is not ready".to_string())
                    }
                })
            }));
        assert_eq!(
            prober.probe_once().await,
            Err("Envoy is not ready".to_string())
        );
        prober.schedule.period = Duration::from_millis(30);
        let (tx, mut rx) = channel();
        let task = prober.spawn(tx);
        rx.changed().await.unwrap();
        assert_eq!(
            rx.borrow_and_update().clone(),
            Some(ProbeState::unhealthy("Envoy is not ready"))
        );
        envoy_ready.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*rx.borrow(), Some(ProbeState::healthy()));
        task.abort();
    }

    #[tokio::test]
    async fn envoy_becoming_ready_is_noticed_before_the_next_period() {
        let probe = ReadinessProbe {
            exec: Some(ExecHealthCheckConfig {
                command: vec!["true".into()],
            }),
            period_seconds: 10,
            ..Default::default()
        };
        let envoy_ready = Arc::new(AtomicBool::new(false));
        let ready = envoy_ready.clone();
        let prober = Prober::new(&probe, "127.0.0.1")
            .unwrap()
            .with_precheck(Arc::new(move || {
                let ready = ready.load(Ordering::SeqCst);
                Box::pin(async move {
                    if ready {
                        Ok(())
                    } else {
                        Err("Envoy is not ready".to_string())
                    }
                })
            }));
        let (tx, mut rx) = channel();
        let task = prober.spawn(tx);
        rx.changed().await.unwrap();
        assert_eq!(
            rx.borrow_and_update().clone(),
            Some(ProbeState::unhealthy("Envoy is not ready"))
        );
        let since = Instant::now();
        envoy_ready.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(2), rx.changed())
            .await
            .expect("healthy well before the 10 s period")
            .unwrap();
        assert_eq!(*rx.borrow(), Some(ProbeState::healthy()));
        assert!(
            since.elapsed() < Duration::from_millis(500),
            "{:?}",
            since.elapsed()
        );
        task.abort();
    }
}
