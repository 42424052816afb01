//! The simulated-clients benchmark: weftd on the generated mesh, N delta ADS clients, then the
//! measurements (initial sync, memory, idle CPU, convergence of config edits, restart storm).

use crate::client::{self, Backoff, CDS, ClientStats, EDS, RDS, Shared, TYPE_NAMES};
use crate::config_gen::MeshSpec;
use crate::metrics::{self, CpuMeter, Percentiles, Phase, mib, ms};
use crate::report::{Report, progress};
use crate::{Args, Event, setup, weftd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};

impl Event {
    /// The types every client must have ACKed an update of.
    fn expected(self) -> &'static [usize] {
        match self {
            Event::Endpoint | Event::Weight => &[EDS],
            Event::Service => &[CDS, EDS, RDS],
        }
    }
}

/// The node a simulated client (or the Envoy) presents.
pub fn node(spec: &MeshSpec, index: usize) -> Node {
    let w = spec.workload(index);
    let s = |v: &str| PbValue {
        kind: Some(Kind::StringValue(v.to_string())),
    };
    let fields = [
        ("NAMESPACE", s(&w.namespace)),
        ("SERVICE_ACCOUNT", s(&w.service_account)),
        ("NAME", s(&w.name)),
        ("CLUSTER_ID", s("Kubernetes")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Node {
        id: w.node_id(),
        cluster: format!("svc.{}", w.namespace),
        metadata: Some(Struct { fields }),
        ..Default::default()
    }
}

fn channel(addr: std::net::SocketAddr) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        // Envoy's defaults are 256 MiB windows; large windows keep flow control out of the way.
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(64 << 20))
        .connect_timeout(Duration::from_secs(5))
        // As Istio's bootstrap configures Envoy's xds-grpc cluster: an HTTP/2 PING every 30 s,
        // 10 s to answer, so a stream whose server went silent is abandoned and reconnected.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Waits until `count()` reaches `n` or the timeout (false), saying how far it got every 10 s.
async fn wait_all(
    what: &str,
    timeout: Duration,
    n: usize,
    mut count: impl FnMut() -> usize,
) -> bool {
    let start = Instant::now();
    let mut next_report = start + Duration::from_secs(10);
    loop {
        let done = count();
        if done >= n {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        if Instant::now() > next_report {
            progress(format!(
                "{what}: {done}/{n} after {:.0} s",
                start.elapsed().as_secs_f64()
            ));
            next_report += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The simulated-clients benchmark. Ok(true) when every target is met.
pub async fn run(args: &Args, work: &Path) -> Result<bool, String> {
    let (binary, mut cfg) = setup(args, work)?;
    let spec = cfg.spec();
    let n = args.clients.max(1);
    let mut weftd = weftd::Weftd::start(
        &binary,
        cfg.path(),
        &work.join("state"),
        &work.join("weftd.log"),
    )
    .await?;
    let mut pid = weftd.pid().unwrap_or(0).to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = metrics::rss_kib(&pid);
    let shared = Arc::new(Shared::new(Backoff {
        base: Duration::from_millis(args.backoff_base_ms.max(1)),
        max: Duration::from_millis(args.backoff_max_ms.max(1)),
    }));
    let per = args.clients_per_conn.max(1);
    let channels = (0..n.div_ceil(per))
        .map(|_| channel(weftd.plaintext_addr))
        .collect::<Result<Vec<_>, _>>()?;
    let stats: Vec<Arc<ClientStats>> = (0..n).map(|_| Arc::default()).collect();
    let spawn = |i: usize| {
        tokio::spawn(client::run(
            i,
            node(&spec, i),
            channels[i / per].clone(),
            stats[i].clone(),
            shared.clone(),
        ));
    };
    let timeout = Duration::from_secs(args.timeout);
    let mut report = Report::new(args, spec);

    // Warm-up: one client, so that the shared resources are built (O(services), not per client).
    let t = Instant::now();
    spawn(0);
    if !wait_all("first client", timeout, 1, || {
        usize::from(stats[0].synced_at.load(Relaxed) != 0)
    })
    .await
    {
        return Err(format!(
            "the first client did not sync: {}; weftd log:\n{}",
            stats[0]
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
            weftd.log_tail()
        ));
    }
    let first_sync = t.elapsed();
    let bytes: Vec<u64> = stats[0].bytes.iter().map(|b| b.load(Relaxed)).collect();
    let resources: Vec<u64> = stats[0].resources.iter().map(|b| b.load(Relaxed)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_one = metrics::rss_kib(&pid);
    report.line(format!(
        "first client synced in {} ({} per client: {})",
        ms(first_sync.as_secs_f64()),
        mib(bytes.iter().sum::<u64>() / 1024),
        (0..4)
            .map(|t| format!(
                "{} {} resources {:.0} KiB",
                TYPE_NAMES[t],
                resources[t],
                bytes[t] as f64 / 1024.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // Initial sync of all the others at once.
    progress(format!("connecting {} more clients", n - 1));
    let phase = Phase::start(&pid);
    let drops = metrics::TcpDrops::read();
    let start_ns = shared.now();
    let t = Instant::now();
    let synced_count = || {
        stats
            .iter()
            .filter(|s| s.synced_at.load(Relaxed) != 0)
            .count()
    };
    if args.connect_rate > 0.0 {
        // Paced: client i starts at i / rate seconds.
        for i in 1..n {
            let due = t + Duration::from_secs_f64((i - 1) as f64 / args.connect_rate);
            tokio::time::sleep_until(due.into()).await;
            spawn(i);
        }
    } else {
        (1..n).for_each(spawn);
    }
    let all = wait_all("initial sync", timeout, n, synced_count).await;
    let initial = t.elapsed().as_secs_f64();
    let cpu = phase.read();
    // Per client: from its start to fully synced.
    let synced: Vec<f64> = stats[1..]
        .iter()
        .map(|s| (s.started_at.load(Relaxed), s.synced_at.load(Relaxed)))
        .filter(|(_, v)| *v != 0)
        .map(|(a, v)| (v.saturating_sub(a.max(start_ns))) as f64 / 1e9)
        .collect();
    let p = Percentiles::new(synced);
    report.row(
        "initial sync",
        format!(
            "{}/{} synced; all in {:.2} s (per client start→synced p50 {}, p99 {}); {:.0} clients/s; {} ({:.1} ms weftd CPU per client); {}",
            p.len() + 1,
            n,
            initial,
            ms(p.p(50.0)),
            ms(p.p(99.0)),
            (n - 1) as f64 / cpu.wall,
            cpu.describe(),
            1000.0 * cpu.weftd / (n.max(2) - 1) as f64,
            drops.since()
        ),
    );
    if !all {
        report.fail(format!(
            "initial sync: not every client synced within {timeout:?}; last error: {}",
            first_error(&stats)
        ));
    }

    // Memory once everything settled, and idle CPU with every stream open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_all = metrics::rss_kib(&pid);
    let hwm = metrics::hwm_kib(&pid);
    let per_client = rss_all.saturating_sub(rss_one) as f64 / (n.max(2) - 1) as f64;
    report.row(
        "weftd RSS",
        format!(
            "idle {} → 1 client {} → {n} clients {} (peak {}); {:.0} KiB per client (load tool's own RSS {})",
            mib(rss_idle),
            mib(rss_one),
            mib(rss_all),
            mib(hwm),
            per_client,
            mib(metrics::rss_kib("self"))
        ),
    );
    report.target(
        "≤ 150 KB RSS per connected client",
        per_client * 1024.0 <= 150_000.0,
    );
    let idle = CpuMeter::start(&pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu_i, wall_i) = idle.read();
    report.row(
        "weftd idle CPU",
        format!(
            "{:.1}% of a core with {n} streams open",
            100.0 * cpu_i / wall_i
        ),
    );
    report.target(
        "idle CPU < 2% of a core at all streams",
        cpu_i / wall_i < 0.02,
    );
    let syncz = weftd.syncz(None).await?;
    report.row("weftd /debug/syncz", syncz_summary(&syncz));

    // Convergence of config changes.
    for (k, event) in args.events.iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for s in &stats {
            s.clear_marks();
        }
        let phase = Phase::start(&pid);
        let mark = shared.set_mark();
        let what = match event {
            Event::Endpoint => cfg.add_endpoint(k % spec.services)?,
            Event::Weight => cfg.set_weight(0, 5 + k as u32)?,
            Event::Service => cfg.add_service()?,
        };
        progress(format!("event: {what}"));
        let expected = event.expected();
        let done = wait_all("convergence", Duration::from_secs(120), n, || {
            stats
                .iter()
                .filter(|s| {
                    expected
                        .iter()
                        .all(|t| s.acked_after_mark[*t].load(Relaxed) != 0)
                })
                .count()
        })
        .await;
        // Late pushes (a second debounce round) would show up here.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu = phase.read();
        shared.clear_mark();
        let latencies: Vec<f64> = stats
            .iter()
            .filter_map(|s| {
                s.acked_after_mark
                    .iter()
                    .map(|a| a.load(Relaxed))
                    .filter(|v| *v != 0)
                    .max()
            })
            .map(|v| (v - mark) as f64 / 1e9)
            .collect();
        // Per type: how many clients ACKed an update, and the median change→ACK.
        let types: Vec<String> = (0..4)
            .filter_map(|t| {
                let acks: Vec<f64> = stats
                    .iter()
                    .map(|s| s.acked_after_mark[t].load(Relaxed))
                    .filter(|v| *v != 0)
                    .map(|v| (v - mark) as f64 / 1e9)
                    .collect();
                let got = acks.len();
                (got > 0).then(|| {
                    format!(
                        "{} {got} p50 {}",
                        TYPE_NAMES[t],
                        ms(Percentiles::new(acks).p(50.0))
                    )
                })
            })
            .collect();
        let p = Percentiles::new(latencies);
        report.row(
            &format!("convergence: {what}"),
            format!(
                "{}/{n} clients updated ({}); change→ACK p50 {}, p99 {}, max {}; {:.0} proxy-updates/s; {} ({:.0} µs weftd CPU per updated client)",
                p.len(),
                types.join(", "),
                ms(p.p(50.0)),
                ms(p.p(99.0)),
                ms(p.max()),
                p.len() as f64 / p.max(),
                cpu.describe(),
                1e6 * cpu.weftd / p.len().max(1) as f64
            ),
        );
        report.target(
            &format!("convergence p99 ≤ 1 s ({event:?})"),
            done && p.len() == n && p.p(99.0) <= 1.0,
        );
    }

    // Restart storm: SIGTERM weftd, start it again on the same state and ports.
    if !args.no_reconnect {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before: Vec<u64> = stats.iter().map(|s| s.resources_total()).collect();
        let streams_before: Vec<u64> = stats.iter().map(|s| s.streams.load(Relaxed)).collect();
        progress("restarting weftd");
        let t = Instant::now();
        let mark = shared.now();
        weftd.terminate(Duration::from_secs(30)).await?;
        let down = t.elapsed().as_secs_f64();
        weftd.spawn_and_wait().await?;
        let ready = t.elapsed().as_secs_f64();
        let ready_ns = shared.now();
        pid = weftd.pid().unwrap_or(0).to_string();
        let phase = Phase::start(&pid);
        let drops = metrics::TcpDrops::read();
        let all = wait_all("reconnect", timeout, n, || {
            stats
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    s.streams.load(Relaxed) > streams_before[*i] && s.synced_at.load(Relaxed) > mark
                })
                .count()
        })
        .await;
        let total = t.elapsed().as_secs_f64();
        let cpu = phase.read();
        let resent: u64 = stats
            .iter()
            .zip(&before)
            .map(|(s, b)| s.resources_total() - b)
            .sum();
        let p = Percentiles::new(
            stats
                .iter()
                .map(|s| s.synced_at.load(Relaxed))
                .filter(|v| *v > mark)
                .map(|v| v.saturating_sub(ready_ns) as f64 / 1e9)
                .collect(),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        report.row(
            "reconnect storm",
            format!(
                "SIGTERM→exit {:.2} s, →ready {:.2} s; {}/{n} resynced, all {:.2} s after SIGTERM ({:.2} s after ready; per client p50 {}, p99 {} after ready, paced by the clients' backoff); {resent} resources re-sent; {} ({:.2} ms weftd CPU per resync); {}; weftd RSS after {}",
                down,
                ready,
                p.len(),
                total,
                total - ready,
                ms(p.p(50.0)),
                ms(p.p(99.0)),
                cpu.describe(),
                1000.0 * cpu.weftd / n as f64,
                drops.since(),
                mib(metrics::rss_kib(&pid))
            ),
        );
        report.target(
            "full reconnect ≤ 30 s",
            all && p.len() == n && total <= 30.0,
        );
    }

    let nacks: u64 = stats.iter().map(|s| s.nacks.load(Relaxed)).sum();
    report.row("client NACKs", nacks.to_string());
    report.row(
        "weftd log",
        format!("{} warning/error lines", weftd.log_lines()),
    );
    if nacks > 0 {
        report.fail(format!("{nacks} NACKs"));
    }
    Ok(report.print())
}

fn first_error(stats: &[Arc<ClientStats>]) -> String {
    stats
        .iter()
        .filter(|s| s.synced_at.load(Relaxed) == 0)
        .map(|s| s.last_error.lock().map(|e| e.clone()).unwrap_or_default())
        .find(|e| !e.is_empty())
        .unwrap_or_else(|| "none".into())
}

/// Connections and their per-type states in `/debug/syncz`.
fn syncz_summary(syncz: &serde_json::Value) -> String {
    let conns = syncz.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    for c in conns {
        for (t, s) in c["types"].as_object().into_iter().flatten() {
            let state = s["state"].as_str().unwrap_or("?");
            *states.entry(format!("{t} {state}")).or_default() += 1;
        }
    }
    format!(
        "{} connections; {}",
        conns.len(),
        states
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
