//! VM join time: from starting a forum VM's agent to webapp's first successful request to it, and
//! its parts (certificate issued, WorkloadEntry registered, first healthy report, endpoint healthy
//! in webapp's Envoy), in a lab of network namespaces with the release binaries. The same run
//! measures the group's probe at `--period` seconds and at Istio's default (10 s) as the baseline.

use crate::stats::{Percentiles, ms};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_testkit::mesh::{CAPTURE_ENV, ControlPlane, MeshWorkload, VmRoot};
use weft_testkit::vm_bundle::{configure, install};
use weft_testkit::{Host, Lab};

pub struct Config {
    pub runs: usize,
    /// The probe's `periodSeconds` under test.
    pub period: u32,
    /// The baseline's `periodSeconds` (Istio's default is 10).
    pub baseline_period: u32,
}

const NS: &str = "forum-services";
const MILESTONES: [&str; 5] = [
    "certificate issued",
    "WorkloadEntry registered",
    "Healthy=True",
    "endpoint healthy in webapp's Envoy",
    "first 200 from webapp",
];

fn group(period: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: forum
  namespace: forum-services
spec:
  metadata:
    labels:
      app: forum
  template:
    serviceAccount: forum-sa
    network: vm-network
  probe:
    periodSeconds: {period}
    httpGet:
      port: 8080
      path: /api/healthz
"
    )
}

fn mesh(webapp: &Host) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: forum, namespace: forum-services}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
  selector: {{app: forum}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: webapp, namespace: istioinaction}}
spec:
  address: {}
  labels: {{app: webapp}}
  serviceAccount: webapp
",
        webapp.ip()
    )
}

type Probe = Box<dyn Fn() -> bool + Send>;

/// Polls every probe on its own thread until it first succeeds; returns the times since `t0`.
fn watch(t0: Instant, probes: Vec<Probe>, timeout: Duration) -> Vec<Option<Duration>> {
    let results = Arc::new(Mutex::new(vec![None; probes.len()]));
    std::thread::scope(|s| {
        for (i, probe) in probes.into_iter().enumerate() {
            let results = results.clone();
            s.spawn(move || {
                while t0.elapsed() < timeout {
                    if probe() {
                        results.lock().unwrap()[i] = Some(t0.elapsed());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
    });
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One join with the probe at `period` seconds.
fn join_once(period: u32) -> Result<Vec<Option<Duration>>, String> {
    let lab = Lab::new("join").map_err(err)?;
    let net = lab.network("mesh").map_err(err)?;
    let cp_host = lab.host("cp", &[&net]).map_err(err)?;
    let webapp = lab.host("webapp", &[&net]).map_err(err)?;
    let forum = lab.host("forum", &[&net]).map_err(err)?;
    for h in [&webapp, &forum] {
        h.set_default_route(cp_host.ip()).map_err(err)?;
    }
    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).map_err(err)?;
    std::fs::write(config.join("mesh.yaml"), mesh(&webapp)).map_err(err)?;
    std::fs::write(config.join("group.yaml"), group(period)).map_err(err)?;
    let group_file = lab.dir().join("group.yaml");
    std::fs::write(&group_file, group(period)).map_err(err)?;
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &["--config-dir", &config.to_string_lossy()],
    )
    .map_err(err)?;
    let vip = cp.service_vip(NS, "forum").map_err(err)?;

    let _webapp = MeshWorkload::start(lab.dir(), &cp, &webapp, "istioinaction", "webapp", "webapp")
        .map_err(err)?;
    let admin = SocketAddr::from(([127, 0, 0, 1], 15000));
    let cluster = "outbound|80||forum.forum-services.svc.cluster.local";
    weft_testkit::poll_until(
        "webapp's Envoy has forum's cluster",
        Duration::from_secs(30),
        || {
            let body = webapp
                .http_get(admin, "/clusters", Duration::from_secs(1))
                .map(|r| r.body)
                .unwrap_or_default();
            if body.contains(cluster) {
                Ok(weft_testkit::Attempt::Ready(()))
            } else {
                Ok(weft_testkit::Attempt::NotYet(format!(
                    "{} lines of /clusters",
                    body.lines().count()
                )))
            }
        },
    )
    .map_err(err)?;

    let out = lab.dir().join("forum-bundle");
    configure(
        &cp,
        &group_file,
        &out,
        &["--autoregister", "--ingressIP", &cp.ip().to_string()],
    )
    .map_err(err)?;
    let root = VmRoot::new(&lab.dir().join("forum-root")).map_err(err)?;
    install(&out, &root).map_err(err)?;
    let env_path = root.path("var/lib/istio/envoy/cluster.env");
    let mut env = std::fs::read_to_string(&env_path).map_err(err)?;
    for (k, v) in CAPTURE_ENV {
        if !env.contains(&format!("{k}=")) {
            env.push_str(&format!("{k}='{v}'\n"));
        }
    }
    std::fs::write(&env_path, env).map_err(err)?;
    let _app = forum
        .start_http_server("forum", SocketAddr::from(([0, 0, 0, 0], 8080)), &[])
        .map_err(err)?;
    root.install_capture(&forum).map_err(err)?;

    let entry = format!("forum-{}-vm-network", forum.ip());
    let t0 = Instant::now();
    let agent = Arc::new(
        root.start_agent_as_proxy_user(&forum, "forum-agent", &[])
            .map_err(err)?,
    );
    let forum_ip = forum.ip().to_string();
    let get_entry = {
        let cp_host = cp_host.clone();
        let token = cp.admin_token().map_err(err)?;
        move || {
            let url = format!(
                "http://127.0.0.1:8080/api/v1/resources/workloadentries?namespace={NS}&name={entry}"
            );
            let auth = format!("Authorization: Bearer {token}");
            cp_host
                .curl(&["-s", "-f", "-H", &auth, &url], Duration::from_secs(1))
                .map(|o| o.stdout)
                .unwrap_or_default()
        }
    };
    let get_entry2 = get_entry.clone();
    let agent2 = agent.clone();
    let webapp2 = webapp.clone();
    let probes: Vec<Probe> = vec![
        Box::new(move || agent2.log().contains("workload certificate issued")),
        Box::new(move || get_entry().contains("\"address\"")),
        Box::new(move || {
            let e: serde_json::Value = serde_json::from_str(&get_entry2()).unwrap_or_default();
            e["items"][0]["object"]["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Healthy" && c["status"] == "True")
                })
        }),
        Box::new(move || {
            let body = webapp2
                .http_get(admin, "/clusters", Duration::from_secs(1))
                .map(|r| r.body)
                .unwrap_or_default();
            body.lines().any(|l| {
                l.starts_with(cluster)
                    && l.contains(&format!("::{forum_ip}:8080::health_flags::healthy"))
            })
        }),
        Box::new(move || {
            let url = format!("http://{vip}/api/threads");
            webapp
                .curl(
                    &["-s", "-f", "-o", "/dev/null", &url],
                    Duration::from_secs(1),
                )
                .is_ok_and(|o| o.success())
        }),
    ];
    let times = watch(t0, probes, Duration::from_secs(u64::from(period) * 3 + 30));
    if times[4].is_none() {
        return Err(format!(
            "the VM never answered webapp; agent log:\n{}",
            agent.log_tail(30)
        ));
    }
    Ok(times)
}

fn row(label: &str, samples: Vec<Duration>) -> String {
    match Percentiles::of(samples) {
        Some(p) => format!("{} / {} ms", ms(p.p50), ms(p.max)),
        None => format!("{label}: never"),
    }
}

pub fn run(cfg: &Config) -> Result<(), String> {
    let mut table: Vec<(u32, Vec<Vec<Duration>>)> = Vec::new();
    for period in [cfg.period, cfg.baseline_period] {
        let mut per_milestone = vec![Vec::new(); MILESTONES.len()];
        for i in 0..cfg.runs {
            let times = join_once(period)?;
            eprintln!(
                "periodSeconds {period}, run {}: {}",
                i + 1,
                times
                    .iter()
                    .map(|t| t.map(ms).unwrap_or_else(|| "-".into()))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
            for (m, t) in times.into_iter().enumerate() {
                if let Some(t) = t {
                    per_milestone[m].push(t);
                }
            }
        }
        table.push((period, per_milestone));
    }
    println!(
        "\n| since agent start (p50 / max of {} runs) | periodSeconds {} | periodSeconds {} (Istio's default) | ratio (p50) |",
        cfg.runs, cfg.period, cfg.baseline_period
    );
    println!("|---|---|---|---|");
    for (m, name) in MILESTONES.iter().enumerate() {
        let ours = table[0].1[m].clone();
        let base = table[1].1[m].clone();
        let ratio = match (Percentiles::of(ours.clone()), Percentiles::of(base.clone())) {
            (Some(a), Some(b)) if a.p50 > Duration::ZERO => {
                format!("{:.1}×", b.p50.as_secs_f64() / a.p50.as_secs_f64())
            }
            _ => "-".into(),
        };
        println!(
            "| {name} | {} | {} | {ratio} |",
            row(name, ours),
            row(name, base)
        );
    }
    Ok(())
}
