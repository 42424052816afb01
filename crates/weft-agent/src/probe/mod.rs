//! The application readiness prober (Istio's `pkg/istio-agent/health`): runs the mesh config's
//! `defaultConfig.readinessProbe` against the workload and reports health transitions, which the
//! agent forwards to weftd on the xDS stream as `istio.v1.HealthInformation` requests.
//!
//! - [`start`] runs the configured probe (if any) with Envoy's readiness ANDed in front, as
//!   Istio does; `proxy.rs` hands its channel to the xDS proxy (reports to weftd) and the status
//!   server (15020 readiness).
//! - [`probe_from_proxy_config`] reads the probe; [`default_host`] is where it points by default.
//! - [`runner::Prober`] holds one resolved probe and its schedule; [`runner::Prober::spawn`] runs
//!   it and publishes transitions on a `watch` channel (`None` until the first verdict).
//! - [`health_request`] / [`delta_health_request`] turn a state into the xDS request to send.

mod exec;
mod grpc;
mod http;
pub mod runner;
mod tcp;

use crate::config::AgentConfig;
use runner::{Precheck, Prober};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::watch;
use weft_model::networking::{ReadinessProbe, validate_readiness_probe};
use weft_model::validate::Report;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest,
};
use weft_proto::envoy_types::pb::google::rpc::Status as RpcStatus;
use weft_proto::type_url;

/// The `User-Agent` Istio's probes send.
pub const PROBE_USER_AGENT: &str = "istio-probe/1.0";
/// When true, probes without a host go to `localhost` instead of the instance IP.
pub const LEGACY_LOCALHOST_ENV: &str = "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION";
/// `google.rpc.Code.INTERNAL`: the code of an unhealthy report.
pub const UNHEALTHY_CODE: i32 = 13;

/// A verdict the prober published. Unhealthy states always carry the failing check's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    pub healthy: bool,
    pub message: Option<String>,
}

impl ProbeState {
    pub fn healthy() -> Self {
        ProbeState {
            healthy: true,
            message: None,
        }
    }

    pub fn unhealthy(message: impl Into<String>) -> Self {
        ProbeState {
            healthy: false,
            message: Some(message.into()),
        }
    }
}

/// Where the prober publishes: `None` ("unknown") until the first verdict, then only transitions.
pub type ProbeReports = watch::Sender<Option<ProbeState>>;

/// A fresh report channel, starting unknown.
pub fn channel() -> (ProbeReports, watch::Receiver<Option<ProbeState>>) {
    watch::channel(None)
}

/// Starts the mesh config's readiness probe, if it has one, against [`default_host`], with
/// `precheck` (Envoy's readiness) ANDed in front. Returns the channel its verdicts go to, or
/// `None` when there is no probe; an invalid probe is an error.
pub fn start(
    cfg: &AgentConfig,
    precheck: Option<Precheck>,
) -> Result<Option<watch::Receiver<Option<ProbeState>>>, String> {
    let Some(probe) = probe_from_proxy_config(&cfg.proxy_config)? else {
        return Ok(None);
    };
    let mut prober = Prober::new(&probe, &default_host(cfg))?;
    if let Some(check) = precheck {
        prober = prober.with_precheck(check);
    }
    let (reports, verdicts) = channel();
    prober.spawn(reports);
    Ok(Some(verdicts))
}

/// The mesh config's `defaultConfig.readinessProbe`, checked the way weftd checks a
/// WorkloadGroup's probe. `Ok(None)` when there is none (absent or `null`).
pub fn probe_from_proxy_config(
    proxy_config: &Map<String, Value>,
) -> Result<Option<ReadinessProbe>, String> {
    let value = match proxy_config.get("readinessProbe") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v.clone(),
    };
    let probe: ReadinessProbe =
        serde_json::from_value(value).map_err(|e| format!("readinessProbe: {e}"))?;
    let mut report = Report::default();
    validate_readiness_probe(&probe, "readinessProbe", &mut report);
    if !report.is_ok() {
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        return Err(errors.join("; "));
    }
    Ok(Some(probe))
}

/// The host probes use when theirs is empty: the instance IP, or `localhost` when
/// `REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION` is true (Istio's `resolveDefaultHost`).
pub fn default_host(cfg: &AgentConfig) -> String {
    default_host_from(&cfg.instance_ip, &cfg.env)
}

/// [`default_host`] from its inputs.
pub fn default_host_from(instance_ip: &str, env: &BTreeMap<String, String>) -> String {
    let legacy = env.get(LEGACY_LOCALHOST_ENV).is_some_and(|v| go_bool(v));
    if legacy || instance_ip.is_empty() {
        "localhost".into()
    } else {
        instance_ip.into()
    }
}

/// Go's `strconv.ParseBool` truth values (Istio's boolean environment variables).
fn go_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn status_for(state: &ProbeState) -> Option<RpcStatus> {
    (!state.healthy).then(|| RpcStatus {
        code: UNHEALTHY_CODE,
        message: state.message.clone().unwrap_or_default(),
        details: Vec::new(),
    })
}

/// Istio's HealthInformation request for the state-of-the-world stream: no `error_detail` when
/// healthy; `error_detail {code: 13, message}` when not.
pub fn health_request(state: &ProbeState) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url::HEALTH_INFO.to_string(),
        error_detail: status_for(state),
        ..Default::default()
    }
}

/// The same for the delta stream (what Envoy uses).
pub fn delta_health_request(state: &ProbeState) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url::HEALTH_INFO.to_string(),
        error_detail: status_for(state),
        ..Default::default()
    }
}

/// One resolved check method, defaults applied.
#[derive(Clone, Debug)]
pub enum Check {
    Http(http::HttpCheck),
    Tcp(tcp::TcpCheck),
    Exec(exec::ExecCheck),
    Grpc(grpc::GrpcCheck),
}

impl Check {
    /// The probe's method; `default_host` fills an empty host.
    pub fn new(probe: &ReadinessProbe, default_host: &str) -> Result<Self, String> {
        let methods = [
            probe.http_get.is_some(),
            probe.tcp_socket.is_some(),
            probe.exec.is_some(),
            probe.grpc.is_some(),
        ];
        match methods.iter().filter(|m| **m).count() {
            0 => return Err("readinessProbe: unknown health check method <nil>".into()),
            1 => {}
            _ => {
                return Err(
                    "readinessProbe: only one of httpGet, tcpSocket, exec or grpc can be set"
                        .into(),
                );
            }
        }
        if let Some(h) = &probe.http_get {
            return http::HttpCheck::new(h, default_host).map(Check::Http);
        }
        if let Some(t) = &probe.tcp_socket {
            return tcp::TcpCheck::new(t, default_host).map(Check::Tcp);
        }
        if let Some(e) = &probe.exec {
            return exec::ExecCheck::new(e).map(Check::Exec);
        }
        match &probe.grpc {
            Some(g) => grpc::GrpcCheck::new(g, default_host).map(Check::Grpc),
            None => unreachable!("one method is set"),
        }
    }

    /// What is probed, for the log: the URL or address, or the command's program (never header
    /// values or arguments, which may hold credentials).
    pub fn describe(&self) -> String {
        match self {
            Check::Http(c) => format!("httpGet {}", c.url),
            Check::Tcp(c) => format!("tcpSocket {}", join_host_port(&c.host, c.port)),
            Check::Exec(c) => format!(
                "exec {}",
                c.command.first().map(String::as_str).unwrap_or_default()
            ),
            Check::Grpc(c) => format!(
                "grpc {} service {:?}",
                join_host_port(&c.host, c.port),
                c.service
            ),
        }
    }

    /// Runs the check once; `Err` carries the failure message. Never takes much longer than
    /// `timeout`.
    pub async fn run(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Check::Http(c) => c.probe(timeout).await,
            Check::Tcp(c) => c.probe(timeout).await,
            Check::Exec(c) => c.probe(timeout).await,
            Check::Grpc(c) => c.probe(timeout).await,
        }
    }
}

/// A port from the API's `u32` (validation keeps it in 1..=65535).
fn port(p: u32) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("readinessProbe: port {p} is not in 1-65535"))
}

/// Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The addresses of `host` (an IP literal or a name), in resolver order.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("dial tcp: lookup {bare}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("dial tcp: lookup {bare}: no such host"));
    }
    Ok(addrs)
}

/// A duration the way Go prints one (`1s`, `500ms`, `1.5s`), for Istio's messages.
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn pc(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_the_probe_from_default_config() {
        assert_eq!(probe_from_proxy_config(&Map::new()), Ok(None));
        assert_eq!(
            probe_from_proxy_config(&pc(json!({"readinessProbe": null}))),
            Ok(None)
        );
        let p = probe_from_proxy_config(&pc(json!({
            "discoveryAddress": "weftd:15012",
            "readinessProbe": {
                "periodSeconds": 5,
                "failureThreshold": 3,
                "httpGet": {"port": 8080, "path": "/ready", "httpHeaders": [{"name": "X-A", "value": "b"}]}
            }
        })))
        .unwrap()
        .unwrap();
        assert_eq!(p.period_seconds, 5);
        assert_eq!(p.failure_threshold, 3);
        let h = p.http_get.unwrap();
        assert_eq!((h.port, h.path.as_str()), (8080, "/ready"));
        assert_eq!(h.http_headers[0].name, "X-A");
    }

    #[test]
    fn rejects_bad_probes() {
        let err = probe_from_proxy_config(&pc(json!({"readinessProbe": {"periodSeconds": "x"}})))
            .unwrap_err();
        assert!(err.starts_with("readinessProbe: invalid type"), "{err}");
        assert_eq!(
            probe_from_proxy_config(&pc(json!({"readinessProbe": {"periodSeconds": 5}}))),
            Err("readinessProbe: unknown health check method <nil>".into())
        );
        let err = probe_from_proxy_config(&pc(json!({"readinessProbe": {
            "tcpSocket": {"port": 1}, "exec": {"command": ["true"]}, "timeoutSeconds": -1
        }})))
        .unwrap_err();
        assert_eq!(
            err,
            "readinessProbe.timeoutSeconds: timeoutSeconds must be non-negative; readinessProbe: only one of httpGet, tcpSocket, exec or grpc can be set"
        );
    }

    #[test]
    fn default_host_is_the_instance_ip_unless_legacy() {
        let mut env = BTreeMap::new();
        assert_eq!(default_host_from("10.0.0.5", &env), "10.0.0.5");
        assert_eq!(default_host_from("", &env), "localhost");
        env.insert(LEGACY_LOCALHOST_ENV.to_string(), "true".to_string());
        assert_eq!(default_host_from("10.0.0.5", &env), "localhost");
        env.insert(LEGACY_LOCALHOST_ENV.to_string(), "false".to_string());
        assert_eq!(default_host_from("10.0.0.5", &env), "10.0.0.5");
    }

    #[test]
    fn health_request_shapes() {
        let ok = health_request(&ProbeState::healthy());
        assert_eq!(
            ok.type_url,
            "type.googleapis.com/istio.v1.HealthInformation"
        );
        assert_eq!(ok.error_detail, None);
        assert!(ok.node.is_none() && ok.resource_names.is_empty());

        let bad = ProbeState::unhealthy("status code was not from [200,400), bad code 503");
        let req = health_request(&bad);
        assert_eq!(req.type_url, type_url::HEALTH_INFO);
        let detail = req.error_detail.unwrap();
        assert_eq!(detail.code, 13);
        assert_eq!(
            detail.message,
            "status code was not from [200,400), bad code 503"
        );

        let d = delta_health_request(&ProbeState::healthy());
        assert_eq!(d.type_url, type_url::HEALTH_INFO);
        assert_eq!(d.error_detail, None);
        let d = delta_health_request(&bad);
        assert_eq!(
            d.error_detail.map(|s| (s.code, s.message)),
            Some((
                13,
                "status code was not from [200,400), bad code 503".to_string()
            ))
        );
    }

    /// An agent configuration whose mesh config has `probe_yaml` (indented under
    /// `readinessProbe:`, or no probe when empty) and instance address `ip`.
    fn config_with(name: &str, probe_yaml: &str, ip: &str) -> AgentConfig {
        let root =
            std::env::temp_dir().join(format!("weft-agent-probe-{name}-{}", std::process::id()));
        let paths = crate::config::Paths::new(&root);
        std::fs::create_dir_all(paths.mesh_config().parent().unwrap()).unwrap();
        let mut mesh = "defaultConfig:\n  discoveryAddress: weftd:15012\n".to_string();
        if !probe_yaml.is_empty() {
            mesh.push_str("  readinessProbe:\n");
            mesh.push_str(probe_yaml);
        }
        std::fs::write(paths.mesh_config(), mesh).unwrap();
        let env = [("ISTIO_SVC_IP".to_string(), ip.to_string())].into();
        let cfg = AgentConfig::load(&root, crate::config::ProxyType::Sidecar, &env).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        cfg
    }

    async fn first_verdict(rx: &mut watch::Receiver<Option<ProbeState>>) -> ProbeState {
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
            .await
            .expect("a verdict in time")
            .unwrap()
            .clone()
            .unwrap()
    }

    #[tokio::test]
    async fn start_runs_the_mesh_config_probe_against_the_instance_ip() {
        assert!(
            start(&config_with("none", "", "127.0.0.1"), None)
                .unwrap()
                .is_none()
        );
        let err = start(
            &config_with("bad", "    periodSeconds: 5\n", "127.0.0.1"),
            None,
        )
        .unwrap_err();
        assert_eq!(err, "readinessProbe: unknown health check method <nil>");

        let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = app.local_addr().unwrap().port();
        let probe = format!("    tcpSocket:\n      port: {port}\n");
        let mut rx = start(&config_with("ok", &probe, "127.0.0.1"), None)
            .unwrap()
            .unwrap();
        assert_eq!(first_verdict(&mut rx).await, ProbeState::healthy());

        // The app listens on 127.0.0.1 only: an instance address of 127.0.0.2 is refused.
        let mut rx = start(&config_with("other", &probe, "127.0.0.2"), None)
            .unwrap()
            .unwrap();
        let verdict = first_verdict(&mut rx).await;
        assert!(!verdict.healthy, "{verdict:?}");
        assert!(
            verdict.message.as_deref().unwrap().contains("127.0.0.2"),
            "{verdict:?}"
        );

        // Envoy's readiness comes first.
        let envoy_down: Precheck =
            Arc::new(|| Box::pin(async { Err("Envoy is not ready: PRE_INITIALIZING".into()) }));
        let mut rx = start(&config_with("pre", &probe, "127.0.0.1"), Some(envoy_down))
            .unwrap()
            .unwrap();
        assert_eq!(
            first_verdict(&mut rx).await,
            ProbeState::unhealthy("Envoy is not ready: PRE_INITIALIZING")
        );
        drop(app);
    }

    #[test]
    fn descriptions_leave_out_header_values_and_arguments() {
        let probe: ReadinessProbe = serde_json::from_value(json!({
            "httpGet": {"port": 8080, "path": "/ready", "httpHeaders": [{"name": "Authorization", "value": "Bearer s3cret"}]}
        }))
        .unwrap();
        let d = Check::new(&probe, "10.0.0.5").unwrap().describe();
        assert_eq!(d, "httpGet http://10.0.0.5:8080/ready");
        let probe: ReadinessProbe =
            serde_json::from_value(json!({"exec": {"command": ["check", "--password=s3cret"]}}))
                .unwrap();
        assert_eq!(Check::new(&probe, "h").unwrap().describe(), "exec check");
        let probe: ReadinessProbe =
            serde_json::from_value(json!({"tcpSocket": {"port": 9000}})).unwrap();
        assert_eq!(
            Check::new(&probe, "fd00::5").unwrap().describe(),
            "tcpSocket [fd00::5]:9000"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert!(port(0).is_err() && port(70000).is_err());
        assert_eq!(port(8080), Ok(8080));
    }
}
