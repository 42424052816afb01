//! One real Envoy bootstrapped straight to weftd's plaintext ADS (delta), for the "zero NACKs
//! with 1,000 services" check. The bootstrap is minimal: the node (id and Istio metadata), the
//! admin interface on a free loopback port, `ads_config` `DELTA_GRPC` to a static `xds-grpc`
//! cluster (HTTP/2) and CDS/LDS over ADS, plus the `sds-grpc` cluster that weftd's TLS contexts
//! name. `sds-grpc` points at a Unix socket: weftd's SDS configs wait for their secrets
//! (`initial_fetch_timeout: 0`), so an unserved socket keeps every mTLS cluster warming and Envoy
//! never asks for listeners; the benchmark serves static secrets there ([`crate::sds`]).

use crate::config_gen::Workload;
use crate::metrics::{self, mib, ms};
use crate::report::Report;
use crate::weftd::{self, http_get};
use crate::{Args, Event, sds, setup};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The bootstrap for `workload`, with ADS at `xds` and the admin interface at `admin`.
pub fn bootstrap(workload: &Workload, xds: SocketAddr, admin: SocketAddr, sds: &Path) -> Value {
    let ads = json!({"ads": {}, "resource_api_version": "V3"});
    let h2 = json!({
        HTTP_PROTOCOL_OPTIONS: {
            "@type": format!("type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"),
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    });
    let endpoint = |address: Value| json!({"endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}]});
    let mut xds_lb = endpoint(json!({"socket_address": {
        "address": xds.ip().to_string(), "port_value": xds.port()}}));
    xds_lb["cluster_name"] = json!("xds-grpc");
    let mut sds_lb = endpoint(json!({"pipe": {"path": sds.display().to_string()}}));
    sds_lb["cluster_name"] = json!("sds-grpc");
    json!({
        "node": {
            "id": workload.node_id(),
            "cluster": format!("svc.{}", workload.namespace),
            "metadata": {
                "NAMESPACE": workload.namespace,
                "SERVICE_ACCOUNT": workload.service_account,
                "NAME": workload.name,
                "CLUSTER_ID": "Kubernetes",
            },
        },
        "admin": {"address": {"socket_address": {
            "address": admin.ip().to_string(), "port_value": admin.port()}}},
        "dynamic_resources": {
            "lds_config": ads.clone(),
            "cds_config": ads,
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "set_node_on_first_message_only": true,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": xds_lb,
                    "typed_extension_protocol_options": h2.clone(),
                },
                {
                    "name": "sds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": sds_lb,
                    "typed_extension_protocol_options": h2,
                },
            ],
        },
    })
}

pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    log: PathBuf,
}

impl Envoy {
    /// Writes the bootstrap into `dir` and starts `binary` on it.
    pub fn start(binary: &Path, dir: &Path, bootstrap: &Value) -> Result<Self, String> {
        let admin: SocketAddr = serde_json::from_value::<String>(
            bootstrap["admin"]["address"]["socket_address"]["address"].clone(),
        )
        .ok()
        .zip(bootstrap["admin"]["address"]["socket_address"]["port_value"].as_u64())
        .and_then(|(ip, port)| format!("{ip}:{port}").parse().ok())
        .ok_or("the bootstrap has no admin address")?;
        let config = dir.join("envoy-bootstrap.json");
        let log = dir.join("envoy.log");
        std::fs::write(&config, bootstrap.to_string())
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--log-level", "warn"])
            .args(["--concurrency", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Envoy { child, admin, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<String> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| format!("envoy exited ({s}); log:\n{}", self.log_tail()))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Admin `GET path` → body.
    pub async fn admin_get(&self, path: &str) -> Result<String, String> {
        match http_get(self.admin, path).await? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("envoy {path}: HTTP {status}: {body}")),
        }
    }

    /// Distinct cluster names in `/clusters`, and how many are `outbound|…`.
    pub async fn clusters(&self) -> Result<(usize, usize), String> {
        let body = self.admin_get("/clusters").await?;
        let names: BTreeSet<&str> = body
            .lines()
            .filter_map(|l| l.split_once("::").map(|(n, _)| n))
            .collect();
        let outbound = names.iter().filter(|n| n.starts_with("outbound|")).count();
        Ok((names.len(), outbound))
    }

    /// Sum of the Envoy counters whose names contain `filter` (a regex on `/stats`).
    pub async fn counter_sum(&self, filter: &str) -> Result<u64, String> {
        let body = self.admin_get(&format!("/stats?filter={filter}")).await?;
        Ok(body
            .lines()
            .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
            .sum())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/debug/syncz` says the proxy is SYNCED for all four types and NACKs none.
fn proxy_synced(syncz: &serde_json::Value) -> (bool, Vec<String>) {
    let mut nacks = Vec::new();
    let Some(c) = syncz.as_array().and_then(|a| a.first()) else {
        return (false, nacks);
    };
    let types = &c["types"];
    let mut all = true;
    for t in [
        "Cluster",
        "ClusterLoadAssignment",
        "Listener",
        "RouteConfiguration",
    ] {
        let state = types[t]["state"].as_str().unwrap_or("NOT SENT");
        if state == "NACK" {
            nacks.push(format!("{t}: {}", types[t]["nack"]));
        }
        all &= state == "SYNCED";
    }
    (all && nacks.is_empty(), nacks)
}

/// One real Envoy against M services. Ok(true) when it syncs every type with no NACK and has the
/// outbound clusters.
pub async fn check(args: &Args, work: &Path) -> Result<bool, String> {
    let (binary, mut cfg) = setup(args, work)?;
    let spec = cfg.spec();
    let weftd = weftd::Weftd::start(
        &binary,
        cfg.path(),
        &work.join("state"),
        &work.join("weftd.log"),
    )
    .await?;
    let mut report = Report::new(args, spec);
    let version = std::process::Command::new(&args.envoy)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    report.row("envoy", version);
    let admin = weftd::free_ports(1)?[0];
    let workload = spec.workload(0);
    let sds_socket = work.join("sds.sock");
    let (cert, key) = sds::self_signed(
        work,
        &format!(
            "spiffe://cluster.local/ns/{}/sa/{}",
            workload.namespace, workload.service_account
        ),
    )?;
    sds::serve(&sds_socket, sds::secrets(&cert, &key))?;
    let bootstrap = bootstrap(&workload, weftd.plaintext_addr, admin, &sds_socket);
    let proxy_id = format!("{}.{}", workload.name, workload.namespace);
    let t = Instant::now();
    let mut envoy = Envoy::start(&args.envoy, work, &bootstrap)?;
    let timeout = Duration::from_secs(args.timeout.min(120));
    let synced = wait_synced(&weftd, &mut envoy, &proxy_id, timeout).await?;
    let sync_time = t.elapsed().as_secs_f64();
    let (clusters, outbound) = envoy.clusters().await?;
    let rejected = envoy.counter_sum("update_rejected").await?;
    report.row(
        "initial sync (Envoy start → weftd syncz SYNCED ×4)",
        format!(
            "{} in {:.2} s; NACKs: {}; Envoy /clusters: {clusters} clusters, {outbound} outbound; Envoy update_rejected counters: {rejected}; Envoy RSS {}",
            if synced.0 { "SYNCED" } else { "NOT synced" },
            sync_time,
            if synced.1.is_empty() {
                "none".to_string()
            } else {
                synced.1.join("; ")
            },
            mib(metrics::rss_kib(&envoy.pid().to_string())),
        ),
    );
    report.target(
        "real Envoy, all types SYNCED, zero NACKs",
        synced.0 && rejected == 0,
    );
    report.target(
        &format!("Envoy holds ≥ {} outbound clusters", spec.services),
        outbound >= spec.services,
    );

    // A change while connected: a new endpoint and a new service.
    for (k, event) in [Event::Endpoint, Event::Service].into_iter().enumerate() {
        let before = sent_version(&weftd.syncz(Some(&proxy_id)).await?);
        let t = Instant::now();
        let what = match event {
            Event::Endpoint => cfg.add_endpoint(k)?,
            _ => cfg.add_service()?,
        };
        let mut ok = false;
        while t.elapsed() < Duration::from_secs(30) {
            let s = weftd.syncz(Some(&proxy_id)).await?;
            let (all, nacks) = proxy_synced(&s);
            if !nacks.is_empty() {
                report.fail(format!("{what}: NACK {}", nacks.join("; ")));
                break;
            }
            if all && sent_version(&s) != before {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, outbound) = envoy.clusters().await?;
        let rejected = envoy.counter_sum("update_rejected").await?;
        report.row(
            &format!("change: {what}"),
            format!(
                "{} in {} (file write → syncz SYNCED at the new version); {outbound} outbound clusters; update_rejected {rejected}",
                if ok { "ACKed" } else { "NOT acked" },
                ms(t.elapsed().as_secs_f64())
            ),
        );
        report.target(
            &format!("change ACKed, no NACK ({event:?})"),
            ok && rejected == 0,
        );
    }
    if let Some(e) = envoy.exited() {
        report.fail(e);
    }
    Ok(report.print())
}

/// The highest version weftd sent the proxy, over all types.
fn sent_version(syncz: &serde_json::Value) -> u64 {
    syncz
        .as_array()
        .and_then(|a| a.first())
        .and_then(|c| c["types"].as_object())
        .into_iter()
        .flatten()
        .filter_map(|(_, s)| s["version"].as_str()?.parse().ok())
        .max()
        .unwrap_or(0)
}

async fn wait_synced(
    weftd: &weftd::Weftd,
    envoy: &mut Envoy,
    proxy: &str,
    timeout: Duration,
) -> Result<(bool, Vec<String>), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = envoy.exited() {
            return Err(e);
        }
        let s = weftd.syncz(Some(proxy)).await?;
        let (all, nacks) = proxy_synced(&s);
        if all || !nacks.is_empty() || Instant::now() > deadline {
            return Ok((all, nacks));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_gen::MeshSpec;

    #[test]
    fn bootstrap_points_ads_at_weftd() {
        let spec = MeshSpec {
            services: 10,
            namespaces: 2,
            endpoints: 10,
        };
        let b = bootstrap(
            &spec.workload(3),
            "127.0.0.1:15010".parse().unwrap(),
            "127.0.0.1:15000".parse().unwrap(),
            Path::new("/nonexistent/sds"),
        );
        assert_eq!(
            b["node"]["id"],
            "sidecar~10.0.0.4~load-3.ns-1~ns-1.svc.cluster.local"
        );
        assert_eq!(b["node"]["metadata"]["NAMESPACE"], "ns-1");
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        assert_eq!(
            clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            15010
        );
        assert_eq!(clusters[1]["name"], "sds-grpc");
    }
}
