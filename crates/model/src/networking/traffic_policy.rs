//! DestinationRule traffic policies (`TrafficPolicy` and everything under it), shared with
//! Sidecar's connection-pool settings, and Istio's checks for them.

use super::common::{
    PortSelector, at, idx, is_false, is_zero_i32, is_zero_u32, is_zero_u64, key, oneof,
};
use crate::Duration;
use crate::validate::{Report, common};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// `TrafficPolicy.PortTrafficPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// `TrafficPolicy.TunnelSettings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSettings {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default)]
    pub target_host: String,
    #[serde(default)]
    pub target_port: u32,
}

/// `TrafficPolicy.ProxyProtocol`; `version` is `V1` or `V2`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyProtocol {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// `TrafficPolicy.RetryBudget`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub min_retry_concurrency: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<Duration>,
}

/// `LoadBalancerSettings`. `simple`, `consistentHash` and `backendUtilization` form a oneof.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// `UNSPECIFIED`, `LEAST_CONN` (deprecated), `RANDOM`, `PASSTHROUGH`, `ROUND_ROBIN`, `LEAST_REQUEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_utilization: Option<BackendUtilizationLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

/// `LoadBalancerSettings.ConsistentHashLB`. Hash key oneof: `httpHeaderName`, `httpCookie`,
/// `useSourceIp`, `httpQueryParameterName`; algorithm oneof: `ringHash`, `maglev`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated: use `ringHash.minimumRingSize`.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub minimum_ring_size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub minimum_ring_size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MagLev {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub table_size: u64,
}

/// `ConsistentHashLB.HTTPCookie`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCookie {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<CookieAttribute>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CookieAttribute {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Utilization-based load balancing from backend-reported ORCA metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendUtilizationLb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_utilization_penalty_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_names_for_computing_utilization: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_expiration_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_stabilization_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_update_period: Option<Duration>,
}

/// `WarmupConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarmupConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

/// `LocalityLoadBalancerSetting`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalityLoadBalancerSetting {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<LocalityDistribute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalityDistribute {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u32>,
}

/// `Failover` (locality and zone-aware settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalityFailover {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
}

/// `ZoneAwareLoadBalancerSetting`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneAwareLoadBalancerSetting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cluster_size: Option<u64>,
}

/// `ConnectionPoolSettings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPoolSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub max_connections: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// `TCPSettings.TcpKeepalive`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepalive {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub probes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub http1_max_pending_requests: i32,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub http2_max_requests: i32,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub max_requests_per_connection: i32,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub max_retries: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// `DEFAULT`, `DO_NOT_UPGRADE`, `UPGRADE`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub h2_upgrade_policy: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_client_protocol: bool,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub max_concurrent_streams: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

/// `HTTPSettings.ConnectionKeepalive` (HTTP/2 PING).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionKeepalive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `OutlierDetection`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Deprecated in Istio (still accepted, with a warning).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub consecutive_errors: i32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub split_external_local_origin_errors: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub max_ejection_percent: i32,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub min_health_percent: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

/// `ClientTLSSettings`: TLS towards the upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// `DISABLE` (default), `SIMPLE`, `MUTUAL`, `ISTIO_MUTUAL`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_certificate: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
}

const SIMPLE_LB: &[&str] = &[
    "UNSPECIFIED",
    "LEAST_CONN",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
];
const H2_UPGRADE_POLICIES: &[&str] = &["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"];
const CLIENT_TLS_MODES: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];
const PROXY_PROTOCOL_VERSIONS: &[&str] = &["V1", "V2"];
const TOPOLOGY_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

fn duration_at(d: Option<&Duration>, path: String, report: &mut Report) {
    if let Some(d) = d {
        report.check(path, common::duration(d));
    }
}

/// `ValidatePercent`.
fn percent(val: i32) -> Result<(), String> {
    if (0..=100).contains(&val) {
        Ok(())
    } else {
        Err(format!("percentage {val} is not in range 0..100"))
    }
}

impl TrafficPolicy {
    /// `validateTrafficPolicy`; `path` is where the policy sits.
    pub(crate) fn check(&self, namespace: &str, path: &str, report: &mut Report) {
        if self.outlier_detection.is_none()
            && self.connection_pool.is_none()
            && self.load_balancer.is_none()
            && self.tls.is_none()
            && self.port_level_settings.is_empty()
            && self.tunnel.is_none()
            && self.proxy_protocol.is_none()
            && self.retry_budget.is_none()
        {
            report.error(path, "traffic policy must have at least one field");
            return;
        }
        if self.tunnel.is_some() && self.proxy_protocol.is_some() {
            report.error(path, "tunnel and proxyProtocol must not be set together");
            return;
        }
        if let Some(od) = &self.outlier_detection {
            od.check(&at(path, "outlierDetection"), report);
        }
        if let Some(cp) = &self.connection_pool {
            cp.check(&at(path, "connectionPool"), report);
        }
        if let Some(lb) = &self.load_balancer {
            lb.check(
                self.outlier_detection.is_some(),
                &at(path, "loadBalancer"),
                report,
            );
        }
        if let Some(tls) = &self.tls {
            tls.check(namespace, &at(path, "tls"), report);
        }
        let pls = at(path, "portLevelSettings");
        for (i, p) in self.port_level_settings.iter().enumerate() {
            p.check(namespace, &idx(&pls, i), report);
        }
        if let Some(t) = &self.tunnel {
            t.check(&at(path, "tunnel"), report);
        }
        if let Some(pp) = &self.proxy_protocol
            && !pp.version.is_empty()
        {
            report.check(
                at(&at(path, "proxyProtocol"), "version"),
                common::one_of(&pp.version, PROXY_PROTOCOL_VERSIONS),
            );
        }
        if let Some(rb) = &self.retry_budget {
            rb.check(&at(path, "retryBudget"), report);
        }
    }
}

impl PortTrafficPolicy {
    fn check(&self, namespace: &str, path: &str, report: &mut Report) {
        if self.port.is_none() {
            report.error(at(path, "port"), "portTrafficPolicy must have valid port");
        }
        if self.outlier_detection.is_none()
            && self.connection_pool.is_none()
            && self.load_balancer.is_none()
            && self.tls.is_none()
        {
            report.error(path, "port traffic policy must have at least one field");
            return;
        }
        if let Some(od) = &self.outlier_detection {
            od.check(&at(path, "outlierDetection"), report);
        }
        if let Some(cp) = &self.connection_pool {
            cp.check(&at(path, "connectionPool"), report);
        }
        if let Some(lb) = &self.load_balancer {
            lb.check(
                self.outlier_detection.is_some(),
                &at(path, "loadBalancer"),
                report,
            );
        }
        if let Some(tls) = &self.tls {
            tls.check(namespace, &at(path, "tls"), report);
        }
    }
}

impl TunnelSettings {
    fn check(&self, path: &str, report: &mut Report) {
        if !self.protocol.is_empty() && self.protocol != "CONNECT" && self.protocol != "POST" {
            report.error(
                at(path, "protocol"),
                "tunnel protocol must be \"CONNECT\" or \"POST\"",
            );
        }
        if let (Err(fqdn), Err(ip)) = (
            common::fqdn(&self.target_host),
            super::common::ip_address(&self.target_host),
        ) {
            report.error(
                at(path, "targetHost"),
                format!("tunnel target host must be valid FQDN or IP address: {fqdn}; {ip}"),
            );
        }
        if let Err(e) = common::port(self.target_port.into()) {
            report.error(
                at(path, "targetPort"),
                format!("tunnel target port is invalid: {e}"),
            );
        }
    }
}

impl RetryBudget {
    fn check(&self, path: &str, report: &mut Report) {
        // CRD schema bounds (Istio's webhook has no checks for the retry budget).
        if let Some(p) = self.percent
            && !(0.0..=100.0).contains(&p)
        {
            report.error(
                at(path, "percent"),
                format!("Invalid value: {p}: must be between 0 and 100, inclusive"),
            );
        }
    }
}

impl OutlierDetection {
    /// `validateOutlierDetection`.
    fn check(&self, path: &str, report: &mut Report) {
        duration_at(
            self.base_ejection_time.as_ref(),
            at(path, "baseEjectionTime"),
            report,
        );
        if self.consecutive_errors != 0 {
            report.warning(
                at(path, "consecutiveErrors"),
                "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
            );
        }
        if !self.split_external_local_origin_errors
            && self.consecutive_local_origin_failures.unwrap_or(0) > 0
        {
            report.error(
                at(path, "consecutiveLocalOriginFailures"),
                "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
            );
        }
        duration_at(self.interval.as_ref(), at(path, "interval"), report);
        report.check(
            at(path, "maxEjectionPercent"),
            percent(self.max_ejection_percent),
        );
        report.check(
            at(path, "minHealthPercent"),
            percent(self.min_health_percent),
        );
        // CRD schema bounds.
        let codes = at(path, "outlierDetectionHttpErrorCodes");
        for (i, c) in self.outlier_detection_http_error_codes.iter().enumerate() {
            if !(100..=599).contains(c) {
                report.error(
                    idx(&codes, i),
                    format!("Invalid value: {c}: must be between 100 and 599, inclusive"),
                );
            }
        }
    }
}

impl ConnectionPoolSettings {
    /// `validateConnectionPool`.
    pub(crate) fn check(&self, path: &str, report: &mut Report) {
        if self.http.is_none() && self.tcp.is_none() {
            report.error(path, "connection pool must have at least one field");
            return;
        }
        if let Some(h) = &self.http {
            let hp = at(path, "http");
            let non_negative = [
                (
                    h.http1_max_pending_requests,
                    "http1MaxPendingRequests",
                    "http1 max pending requests must be non-negative",
                ),
                (
                    h.http2_max_requests,
                    "http2MaxRequests",
                    "http2 max requests must be non-negative",
                ),
                (
                    h.max_requests_per_connection,
                    "maxRequestsPerConnection",
                    "max requests per connection must be non-negative",
                ),
                (
                    h.max_retries,
                    "maxRetries",
                    "max retries must be non-negative",
                ),
            ];
            for (v, field, msg) in non_negative {
                if v < 0 {
                    report.error(at(&hp, field), msg);
                }
            }
            duration_at(h.idle_timeout.as_ref(), at(&hp, "idleTimeout"), report);
            if !h.h2_upgrade_policy.is_empty() {
                report.check(
                    at(&hp, "h2UpgradePolicy"),
                    common::one_of(&h.h2_upgrade_policy, H2_UPGRADE_POLICIES),
                );
            }
            if h.h2_upgrade_policy == "UPGRADE" && h.use_client_protocol {
                report.error(
                    at(&hp, "useClientProtocol"),
                    "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
                );
            }
            if h.max_concurrent_streams < 0 {
                report.error(
                    at(&hp, "maxConcurrentStreams"),
                    "max concurrent streams must be non-negative",
                );
            }
            if let Some(ka) = &h.http2_keep_alive {
                let kp = at(&hp, "http2KeepAlive");
                match &ka.interval {
                    None => {
                        report.error(at(&kp, "interval"), "http2 keepalive interval is required")
                    }
                    Some(d) => report.check(at(&kp, "interval"), common::duration(d)),
                }
                match &ka.timeout {
                    None => report.error(at(&kp, "timeout"), "http2 keepalive timeout is required"),
                    Some(d) => report.check(at(&kp, "timeout"), common::duration(d)),
                }
            }
        }
        if let Some(t) = &self.tcp {
            let tp = at(path, "tcp");
            if t.max_connections < 0 {
                report.error(
                    at(&tp, "maxConnections"),
                    "max connections must be non-negative",
                );
            }
            duration_at(
                t.connect_timeout.as_ref(),
                at(&tp, "connectTimeout"),
                report,
            );
            duration_at(
                t.max_connection_duration.as_ref(),
                at(&tp, "maxConnectionDuration"),
                report,
            );
            // 0s disables the idle timeout entirely.
            if let Some(d) = &t.idle_timeout
                && d.as_std().as_millis() != 0
            {
                report.check(at(&tp, "idleTimeout"), common::duration(d));
            }
            if let Some(ka) = &t.tcp_keepalive {
                let kp = at(&tp, "tcpKeepalive");
                duration_at(ka.time.as_ref(), at(&kp, "time"), report);
                duration_at(ka.interval.as_ref(), at(&kp, "interval"), report);
            }
        }
    }
}

/// Envoy's primality test, as Istio copies it.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x.is_multiple_of(2) {
        return false;
    }
    let limit = (x as f64).sqrt() as u64;
    let mut f = 3;
    while f <= limit {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

impl LoadBalancerSettings {
    /// `validateLoadBalancer`; `has_outlier` says whether the policy has outlier detection.
    fn check(&self, has_outlier: bool, path: &str, report: &mut Report) {
        oneof(
            path,
            &[
                ("simple", self.simple.is_some()),
                ("consistentHash", self.consistent_hash.is_some()),
                ("backendUtilization", self.backend_utilization.is_some()),
            ],
            report,
        );
        if let Some(s) = &self.simple {
            report.check(at(path, "simple"), common::one_of(s, SIMPLE_LB));
        }
        if let Some(ch) = &self.consistent_hash {
            ch.check(&at(path, "consistentHash"), report);
        }
        if let Some(bu) = &self.backend_utilization {
            let bp = at(path, "backendUtilization");
            for (field, d) in [
                ("weightExpirationPeriod", &bu.weight_expiration_period),
                ("weightStabilizationPeriod", &bu.weight_stabilization_period),
                ("weightUpdatePeriod", &bu.weight_update_period),
            ] {
                duration_at(d.as_ref(), at(&bp, field), report);
            }
        }
        if self.locality_lb_setting.is_some() && self.zone_aware_lb_setting.is_some() {
            report.error(
                path,
                "only one of localityLbSetting and zoneAwareLbSetting can be set",
            );
        }
        if let Some(l) = &self.locality_lb_setting {
            l.check(has_outlier, &at(path, "localityLbSetting"), report);
        }
        if let Some(z) = &self.zone_aware_lb_setting {
            z.check(has_outlier, &at(path, "zoneAwareLbSetting"), report);
        }
        // CRD rule (CEL): the webhook leaves this field unchecked.
        if let Some(d) = &self.warmup_duration_secs
            && d.as_std() < std::time::Duration::from_millis(1)
        {
            report.error(
                at(path, "warmupDurationSecs"),
                "must be a valid duration greater than 1ms",
            );
        }
        if let Some(w) = &self.warmup {
            let wp = at(path, "warmup");
            match &w.duration {
                None => report.error(at(&wp, "duration"), "duration is required"),
                Some(d) => report.check(at(&wp, "duration"), common::duration(d)),
            }
            if w.minimum_percent.unwrap_or(0.0) > 100.0 {
                report.error(
                    at(&wp, "minimumPercent"),
                    "minimumPercent value should be less than or equal to 100",
                );
            }
            if let Some(a) = w.aggression
                && a <= 0.0
            {
                report.error(at(&wp, "aggression"), "aggression should be greater than 0");
            }
        }
    }
}

impl ConsistentHashLb {
    fn check(&self, path: &str, report: &mut Report) {
        oneof(
            path,
            &[
                ("httpHeaderName", self.http_header_name.is_some()),
                ("httpCookie", self.http_cookie.is_some()),
                ("useSourceIp", self.use_source_ip.is_some()),
                (
                    "httpQueryParameterName",
                    self.http_query_parameter_name.is_some(),
                ),
            ],
            report,
        );
        oneof(
            path,
            &[
                ("ringHash", self.ring_hash.is_some()),
                ("maglev", self.maglev.is_some()),
            ],
            report,
        );
        if let Some(c) = &self.http_cookie {
            let cp = at(path, "httpCookie");
            if c.name.is_empty() {
                report.error(at(&cp, "name"), "name required for HttpCookie");
            }
            let mut names = BTreeSet::new();
            let ap = at(&cp, "attributes");
            for (i, a) in c.attributes.iter().enumerate() {
                if a.name.is_empty() {
                    report.error(
                        at(&idx(&ap, i), "name"),
                        "cookie attribute name cannot be empty",
                    );
                } else if !names.insert(a.name.as_str()) {
                    report.error(
                        at(&idx(&ap, i), "name"),
                        format!("duplicate cookie attribute name: {}", a.name),
                    );
                }
            }
        }
        if self.minimum_ring_size != 0 {
            report.warning(
                at(path, "minimumRingSize"),
                "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
            );
            if self.ring_hash.is_some() || self.maglev.is_some() {
                report.error(
                    at(path, "minimumRingSize"),
                    "only one of MinimumRingSize or Maglev/Ringhash can be specified",
                );
            }
        }
        if let Some(m) = &self.maglev {
            let tp = at(&at(path, "maglev"), "tableSize");
            if m.table_size == 0 {
                report.error(tp.clone(), "tableSize must be set for maglev");
            }
            if m.table_size >= 5_000_011 {
                report.error(tp.clone(), "tableSize must be less than 5000011 for maglev");
            }
            if !is_prime(m.table_size) {
                report.error(tp, "tableSize must be a prime number for maglev");
            }
        }
    }
}

/// `validateLocalities`: the first overlap or malformed locality.
fn localities(list: &[&str]) -> Result<(), String> {
    // region -> zone -> subzones; "*" marks "everything below".
    let mut map: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for &loc in list {
        let overlap = || format!("locality {loc} overlap with previous specified ones");
        let stars = loc.matches('*').count();
        if stars > 0 && (stars > 1 || !loc.ends_with('*')) {
            return Err(format!(
                "locality {loc} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        if map.contains_key("*") {
            return Err(overlap());
        }
        let items: Vec<&str> = loc.splitn(3, '/').collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(format!(
                "locality {loc} must not contain empty region/zone/subzone info"
            ));
        }
        let region = items[0];
        match items.len() {
            1 => {
                if map.contains_key(region) {
                    return Err(overlap());
                }
                map.insert(region, BTreeMap::from([("*", BTreeSet::from(["*"]))]));
            }
            2 => {
                let zone = items[1];
                match map.get_mut(region) {
                    Some(zones) => {
                        if zones.contains_key("*") || zones.contains_key(zone) {
                            return Err(overlap());
                        }
                        zones.insert(zone, BTreeSet::from(["*"]));
                    }
                    None => {
                        map.insert(region, BTreeMap::from([(zone, BTreeSet::from(["*"]))]));
                    }
                }
            }
            _ => {
                let (zone, sub) = (items[1], items[2]);
                match map.get_mut(region) {
                    Some(zones) => {
                        if zones.contains_key("*") {
                            return Err(overlap());
                        }
                        match zones.get_mut(zone) {
                            Some(subs) => {
                                if subs.contains("*") || subs.contains(sub) {
                                    return Err(overlap());
                                }
                                subs.insert(sub);
                            }
                            None => {
                                zones.insert(zone, BTreeSet::from([sub]));
                            }
                        }
                    }
                    None => {
                        map.insert(region, BTreeMap::from([(zone, BTreeSet::from([sub]))]));
                    }
                }
            }
        }
    }
    Ok(())
}

impl LocalityLoadBalancerSetting {
    /// `ValidateLocalityLbSetting`.
    fn check(&self, has_outlier: bool, path: &str, report: &mut Report) {
        if !self.distribute.is_empty() && !self.failover.is_empty() {
            report.error(
                path,
                "can not simultaneously specify 'distribute' and 'failover'",
            );
            return;
        }
        if !self.failover.is_empty() {
            for (i, l) in self.failover_priority.iter().enumerate() {
                if TOPOLOGY_LABELS.contains(&l.as_str()) {
                    report.error(
                        idx(&at(path, "failoverPriority"), i),
                        format!(
                            "can not simultaneously set 'failover' and topology label '{l}' in 'failover_priority'"
                        ),
                    );
                    return;
                }
            }
        }
        let dp = at(path, "distribute");
        let mut sources = Vec::new();
        for (i, d) in self.distribute.iter().enumerate() {
            sources.push(d.from.as_str());
            let to = at(&idx(&dp, i), "to");
            let mut total: u64 = 0;
            for (loc, w) in &d.to {
                if *w == 0 || *w > 100 {
                    report.error(key(&to, loc), "locality weight must be in range [1, 100]");
                    return;
                }
                total += u64::from(*w);
            }
            if total != 100 {
                report.error(to, format!("total locality weight {total} != 100"));
                return;
            }
            let dests: Vec<&str> = d.to.keys().map(String::as_str).collect();
            report.check(at(&idx(&dp, i), "to"), localities(&dests));
        }
        report.check(dp, localities(&sources));
        if (!self.failover.is_empty() || !self.failover_priority.is_empty()) && !has_outlier {
            report.warning(
                path,
                "outlier detection policy must be provided for failover",
            );
        }
        let fp = at(path, "failover");
        for (i, f) in self.failover.iter().enumerate() {
            let p = idx(&fp, i);
            if f.from == f.to {
                report.error(
                    p.clone(),
                    "locality lb failover settings must specify different regions",
                );
            }
            if f.from.contains('/') || f.to.contains('/') {
                report.error(p.clone(), "locality lb failover only specify region");
            }
            if f.from.contains('*') || f.to.contains('*') {
                report.error(
                    p,
                    "locality lb failover region should not contain '*' wildcard",
                );
            }
        }
    }
}

impl ZoneAwareLoadBalancerSetting {
    /// `ValidateZoneAwareLbSetting`.
    fn check(&self, has_outlier: bool, path: &str, report: &mut Report) {
        for (i, l) in self.failover_priority.iter().enumerate() {
            if TOPOLOGY_LABELS.contains(&l.as_str()) {
                report.error(
                    idx(&at(path, "failoverPriority"), i),
                    format!(
                        "'failover_priority' for zone aware lb must not use topology label '{l}'; region- and zone-level routing are handled automatically"
                    ),
                );
            }
        }
        if (!self.failover.is_empty() || !self.failover_priority.is_empty()) && !has_outlier {
            report.warning(
                path,
                "outlier detection policy must be provided for failover",
            );
        }
        let fp = at(path, "failover");
        for (i, f) in self.failover.iter().enumerate() {
            let p = idx(&fp, i);
            if f.from == f.to {
                report.error(
                    p.clone(),
                    "zone aware lb failover settings must specify different regions",
                );
            }
            if f.from.contains('/') || f.to.contains('/') {
                report.error(
                    p.clone(),
                    "zone aware lb failover only specifies region; zone and subzone failover are handled automatically",
                );
            }
            if f.from.contains('*') || f.to.contains('*') {
                report.error(
                    p,
                    "zone aware lb failover region should not contain '*' wildcard",
                );
            }
        }
        // CRD schema bound.
        if self.min_cluster_size == Some(0) {
            report.error(
                at(path, "minClusterSize"),
                "Invalid value: 0: should be greater than or equal to 1",
            );
        }
    }
}

impl ClientTlsSettings {
    /// `ValidateTLS` (agent): client TLS settings of a traffic policy.
    pub(crate) fn check(&self, namespace: &str, path: &str, report: &mut Report) {
        if !self.mode.is_empty() {
            report.check(
                at(path, "mode"),
                common::one_of(&self.mode, CLIENT_TLS_MODES),
            );
        }
        if let Some(rest) = self.credential_name.strip_prefix("configmap://") {
            let cp = at(path, "credentialName");
            match rest.split_once('/') {
                None => report.error(
                    cp,
                    format!(
                        "invalid configmap:// credentialName: invalid resource name {:?}. Expected namespace and name",
                        self.credential_name
                    ),
                ),
                Some(("", _)) => report.error(
                    cp,
                    format!(
                        "invalid configmap:// credentialName: invalid resource name {:?}. Expected namespace",
                        self.credential_name
                    ),
                ),
                Some((_, n)) if n.split('/').next().unwrap_or_default().is_empty() => report.error(
                    cp,
                    format!(
                        "invalid configmap:// credentialName: invalid resource name {:?}. Expected name",
                        self.credential_name
                    ),
                ),
                Some((ns, _)) if ns != namespace || namespace.is_empty() => report.error(
                    cp,
                    format!(
                        "invalid configmap:// credentialName: namespace must match the configuration namespace {namespace:?}"
                    ),
                ),
                Some(_) => {}
            }
        }
        if self.insecure_skip_verify == Some(true) {
            if self.mode == "SIMPLE"
                && (!self.ca_certificates.is_empty()
                    || !self.credential_name.is_empty()
                    || !self.subject_alt_names.is_empty())
            {
                report.error(
                    path,
                    "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
                );
            }
            if self.mode == "MUTUAL"
                && (!self.ca_certificates.is_empty() || !self.subject_alt_names.is_empty())
            {
                report.error(
                    path,
                    "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
                );
            }
        }
        if (self.mode == "SIMPLE" || self.mode == "MUTUAL") && !self.credential_name.is_empty() {
            if !self.client_certificate.is_empty()
                || !self.ca_certificates.is_empty()
                || !self.private_key.is_empty()
                || !self.ca_crl.is_empty()
            {
                report.error(
                    path,
                    "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
                );
            }
            return;
        }
        if self.mode == "MUTUAL" {
            if self.client_certificate.is_empty() {
                report.error(
                    at(path, "clientCertificate"),
                    "client certificate required for mutual tls",
                );
            }
            if self.private_key.is_empty() {
                report.error(
                    at(path, "privateKey"),
                    "private key required for mutual tls",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(2));
        assert!(!is_prime(65536));
        assert!(!is_prime(9));
    }

    #[test]
    fn locality_overlaps() {
        assert!(localities(&["us-east", "us-west/zone1"]).is_ok());
        assert_eq!(
            localities(&["us-east", "us-east/zone1"]).unwrap_err(),
            "locality us-east/zone1 overlap with previous specified ones"
        );
        assert_eq!(
            localities(&["us-*/a"]).unwrap_err(),
            "locality us-*/a wildcard '*' number can not exceed 1 and must be in the end"
        );
        assert_eq!(
            localities(&["us//a"]).unwrap_err(),
            "locality us//a must not contain empty region/zone/subzone info"
        );
    }
}
