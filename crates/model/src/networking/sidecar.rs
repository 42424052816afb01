//! networking.istio.io Sidecar: what a workload's proxy listens on and which services it can reach.

use super::common::{
    self, Destination, Protocol, UNIX_ADDRESS_PREFIX, WorkloadSelector, at, idx, is_zero_u32,
};
use super::gateway::ServerTlsSettings;
use super::traffic_policy::ConnectionPoolSettings;
use crate::validate::{self, Context, Report, Validate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sidecar {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IstioIngressListener>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<IstioEgressListener>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_connection_pool: Option<Box<ConnectionPoolSettings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// `IstioIngressListener`: a port inbound traffic is accepted on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioIngressListener {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// `DEFAULT`, `IPTABLES` or `NONE`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub capture_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// `IstioEgressListener`: outbound traffic and the services it may reach (`ns/host`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioEgressListener {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub capture_mode: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// `OutboundTrafficPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    /// `REGISTRY_ONLY` (default) or `ALLOW_ANY`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<Destination>,
}

/// `SidecarPort`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarPort {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub number: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Deprecated; has no effect on sidecars.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub target_port: u32,
}

const CAPTURE_MODES: &[&str] = &["DEFAULT", "IPTABLES", "NONE"];
const OUTBOUND_MODES: &[&str] = &["REGISTRY_ONLY", "ALLOW_ANY"];

/// Go's `net.SplitHostPort`, with its error wording.
fn split_host_port(addr: &str) -> Result<(&str, &str), String> {
    let err = |why: &str| format!("address {addr}: {why}");
    if let Some(rest) = addr.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(err("missing ']' in address"));
        };
        let host = &rest[..end];
        return match rest[end + 1..].strip_prefix(':') {
            Some(port) if !port.contains(':') => Ok((host, port)),
            Some(_) => Err(err("too many colons in address")),
            None if rest.len() == end + 1 => Err(err("missing port in address")),
            None => Err(err("unexpected ']' in address")),
        };
    }
    let Some(i) = addr.rfind(':') else {
        return Err(err("missing port in address"));
    };
    let (host, port) = (&addr[..i], &addr[i + 1..]);
    if host.contains(':') {
        return Err(err("too many colons in address"));
    }
    if host.contains(['[', ']']) {
        return Err(err("unexpected '[' in address"));
    }
    Ok((host, port))
}

fn default_endpoint(ep: &str, path: &str, report: &mut Report) {
    if let Some(socket) = ep.strip_prefix(UNIX_ADDRESS_PREFIX) {
        report.check(path, common::unix_address(socket));
        return;
    }
    let (host, port) = match split_host_port(ep) {
        Ok(hp) => hp,
        Err(e) => {
            report.error(path, e);
            ("", "")
        }
    };
    if !host.is_empty() && !matches!(host, "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
        report.error(
            path,
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
        );
    }
    let digits = port.strip_prefix(['+', '-']).unwrap_or(port);
    match port.parse::<i64>() {
        Ok(n) if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) => {
            report.check(path, validate::common::port(n));
        }
        _ => report.error(
            path,
            format!(
                "sidecar: defaultEndpoint port ({port}) is not a number: strconv.Atoi: parsing {port:?}: invalid syntax"
            ),
        ),
    }
}

fn port_checks(port: &SidecarPort, path: &str, report: &mut Report) {
    if !port.name.is_empty() {
        report.check(at(path, "name"), common::port_name(&port.name));
    }
    report.check(at(path, "protocol"), common::protocol(&port.protocol));
}

impl IstioIngressListener {
    fn check(&self, path: &str, ports: &mut BTreeSet<u32>, report: &mut Report) {
        let pp = at(path, "port");
        let Some(port) = &self.port else {
            report.error(pp, "sidecar: port is required for ingress listeners");
            return;
        };
        if port.target_port > 0 {
            report.error(
                at(&pp, "targetPort"),
                "targetPort has no impact on Sidecars",
            );
        }
        port_checks(port, &pp, report);
        report.check(
            at(&pp, "number"),
            validate::common::port(port.number.into()),
        );
        if !self.bind.is_empty() {
            report.check(at(path, "bind"), common::ip_address(&self.bind));
        }
        if !self.capture_mode.is_empty() {
            report.check(
                at(path, "captureMode"),
                validate::common::one_of(&self.capture_mode, CAPTURE_MODES),
            );
        }
        if !ports.insert(port.number) {
            report.error(
                at(&pp, "number"),
                "sidecar: ports on IP bound listeners must be unique",
            );
        }
        if !self.default_endpoint.is_empty() {
            default_endpoint(&self.default_endpoint, &at(path, "defaultEndpoint"), report);
        }
        if let Some(tls) = &self.tls {
            let tp = at(path, "tls");
            let unsupported = [
                (
                    !tls.subject_alt_names.is_empty(),
                    "subjectAltNames",
                    "sidecar: subjectAltNames is not supported in ingress tls",
                ),
                (
                    tls.https_redirect,
                    "httpsRedirect",
                    "sidecar: httpsRedirect is not supported",
                ),
                (
                    !tls.credential_name.is_empty(),
                    "credentialName",
                    "sidecar: credentialName is not currently supported",
                ),
                (
                    !tls.credential_names.is_empty(),
                    "credentialNames",
                    "sidecar: credentialNames is not currently supported",
                ),
                (
                    !tls.tls_certificates.is_empty(),
                    "tlsCertificates",
                    "sidecar: tls_certificates is not currently supported",
                ),
            ];
            for (bad, field, msg) in unsupported {
                if bad {
                    report.error(at(&tp, field), msg);
                }
            }
            let mode = tls.effective_mode();
            if mode == "ISTIO_MUTUAL" || mode == "AUTO_PASSTHROUGH" {
                report.error(
                    at(&tp, "mode"),
                    format!(
                        "configuration is invalid: cannot set mode to {mode} in sidecar ingress tls"
                    ),
                );
            }
            if !Protocol::parse(&port.protocol).is_tls() {
                report.error(
                    tp.clone(),
                    "server cannot have TLS settings for non HTTPS/TLS ports",
                );
            }
            tls.check(&tp, report);
        }
        if let Some(cp) = &self.connection_pool {
            cp.check(&at(path, "connectionPool"), report);
            if cp.http.is_some() && !Protocol::parse(&port.protocol).is_http() {
                report.warning(
                    at(&at(path, "connectionPool"), "http"),
                    format!(
                        "sidecar: HTTP connection pool settings are configured for port {} ({:?}) but its protocol is not HTTP ({}); only TCP settings will apply",
                        port.number, port.name, port.protocol
                    ),
                );
            }
        }
    }
}

/// Per-egress-listener bookkeeping across the listeners of one Sidecar.
#[derive(Default)]
struct EgressState {
    ports: BTreeSet<u32>,
    sockets: BTreeSet<String>,
    catch_all_found: bool,
}

impl IstioEgressListener {
    fn check(
        &self,
        namespace: &str,
        path: &str,
        last: bool,
        state: &mut EgressState,
        report: &mut Report,
    ) {
        let pp = at(path, "port");
        if !self.capture_mode.is_empty() {
            report.check(
                at(path, "captureMode"),
                validate::common::one_of(&self.capture_mode, CAPTURE_MODES),
            );
        }
        match &self.port {
            None => {
                if state.catch_all_found {
                    report.error(
                        path,
                        "sidecar: egress can have only one listener with empty port",
                    );
                    return;
                }
                if last {
                    state.catch_all_found = true;
                } else {
                    report.error(
                        path,
                        "sidecar: the egress listener with empty port should be the last listener in the list",
                    );
                }
            }
            Some(port) => {
                if port.target_port > 0 {
                    report.error(
                        at(&pp, "targetPort"),
                        "targetPort has no impact on Sidecars",
                    );
                }
                port_checks(port, &pp, report);
                let bp = at(path, "bind");
                if port.number == 0 {
                    match self.bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
                        None => report.error(
                            bp,
                            "sidecar: ports with 0 value must have a unix domain socket bind address",
                        ),
                        Some(socket) => report.check(bp, common::unix_address(socket)),
                    }
                    if !matches!(self.capture_mode.as_str(), "" | "DEFAULT" | "NONE") {
                        report.error(
                            at(path, "captureMode"),
                            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
                        );
                    }
                    if !state.sockets.insert(self.bind.clone()) {
                        report.error(
                            at(path, "bind"),
                            "sidecar: unix domain socket values for listeners must be unique",
                        );
                    }
                } else {
                    report.check(
                        at(&pp, "number"),
                        validate::common::port(port.number.into()),
                    );
                    if !self.bind.is_empty() {
                        report.check(bp, common::ip_address(&self.bind));
                    }
                    if !state.ports.insert(port.number) {
                        report.error(
                            at(&pp, "number"),
                            "sidecar: ports on IP bound listeners must be unique",
                        );
                    }
                }
            }
        }
        let hp = at(path, "hosts");
        if self.hosts.is_empty() {
            report.error(
                hp,
                "sidecar: egress listener must contain at least one host",
            );
            return;
        }
        let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let p = idx(&hp, i);
            if let Some((ns, svc)) = h.split_once('/')
                && !ns.starts_with('~')
            {
                let ns = if ns == "." { namespace } else { ns };
                let svcs = seen.entry(ns).or_default();
                let duplicate = if svc != "*" {
                    svcs.contains(svc) || svcs.contains("*")
                } else {
                    !svcs.is_empty()
                };
                if duplicate {
                    report.warning(p.clone(), format!("duplicated egress host: {h}"));
                }
                svcs.insert(svc);
            }
            for e in common::namespace_slash_wildcard_hostname(h, false) {
                report.error(p.clone(), e);
            }
        }
        if seen.get("*").is_some_and(|s| s.contains("*")) && seen.len() != 1 {
            report.warning(
                hp,
                "`*/*` host select all resources, no other hosts can be added",
            );
        }
    }
}

impl OutboundTrafficPolicy {
    /// `validateSidecarOutboundTrafficPolicy`.
    fn check(&self, path: &str, report: &mut Report) {
        let mp = at(path, "mode");
        if self.mode == "ALLOW_ANY_DYNAMIC_DNS" {
            report.error(
                mp,
                "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource",
            );
            return;
        }
        if !self.mode.is_empty() {
            report.check(mp, validate::common::one_of(&self.mode, OUTBOUND_MODES));
        }
        let Some(proxy) = &self.egress_proxy else {
            return;
        };
        let ep = at(path, "egressProxy");
        if self.mode != "ALLOW_ANY" {
            report.error(
                ep,
                "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
            );
            return;
        }
        report.check(at(&ep, "host"), validate::common::fqdn(&proxy.host));
        if proxy.port.is_none() {
            report.error(
                at(&ep, "port"),
                "sidecar: egress_proxy port must be non-nil",
            );
            return;
        }
        common::destination(Some(proxy), &ep, report);
    }
}

impl Validate for Sidecar {
    /// Istio's `ValidateSidecar`.
    fn validate(&self, ctx: &Context<'_>, report: &mut Report) {
        let before = report.errors.len();
        let empty_selector = common::alpha_workload_selector(
            self.workload_selector.as_ref(),
            "spec.workloadSelector",
            report,
        );
        if report.errors.len() > before {
            return;
        }
        if empty_selector {
            report.warning(
                "spec.workloadSelector",
                "sidecar: workload selector specified without labels, will be applied to all services in namespace",
            );
        }
        if self.egress.is_empty()
            && self.ingress.is_empty()
            && self.outbound_traffic_policy.is_none()
            && self.inbound_connection_pool.is_none()
        {
            report.error("spec", "sidecar: empty configuration provided");
            return;
        }
        let mut ports = BTreeSet::new();
        for (i, l) in self.ingress.iter().enumerate() {
            l.check(&idx("spec.ingress", i), &mut ports, report);
        }
        if let Some(cp) = &self.inbound_connection_pool {
            cp.check("spec.inboundConnectionPool", report);
        }
        let mut state = EgressState::default();
        let n = self.egress.len();
        for (i, l) in self.egress.iter().enumerate() {
            l.check(
                ctx.namespace,
                &idx("spec.egress", i),
                i + 1 == n,
                &mut state,
                report,
            );
        }
        if let Some(tp) = &self.outbound_traffic_policy {
            tp.check("spec.outboundTrafficPolicy", report);
        }
    }
}

#[cfg(test)]
mod tests {

    use crate::test_support::{errors, warnings};

    fn sidecar(spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\n  namespace: prod-us1\nspec:\n{spec}"
        )
    }

    const FULL: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: ratings
  namespace: prod-us1
spec:
  workloadSelector:
    labels:
      app: ratings
  ingress:
  - port:
      number: 9080
      protocol: HTTP
      name: somename
    defaultEndpoint: unix:///var/run/someuds.sock
    connectionPool:
      http:
        http1MaxPendingRequests: 100
  - port:
      number: 9443
      protocol: HTTPS
      name: https
    defaultEndpoint: 127.0.0.1:8443
    captureMode: IPTABLES
    tls:
      mode: SIMPLE
      privateKey: /etc/istio/key.pem
      serverCertificate: /etc/istio/cert.pem
  - port:
      number: 9090
      protocol: TCP
      name: tcp
    bind: 0.0.0.0
    defaultEndpoint: "[::1]:9091"
  inboundConnectionPool:
    tcp:
      maxConnections: 100
  egress:
  - port:
      number: 9080
      protocol: HTTP
      name: egresshttp
    hosts:
    - prod-us1/*
  - port:
      number: 0
      protocol: HTTP
      name: uds
    bind: unix:///var/run/egress.sock
    captureMode: NONE
    hosts:
    - "./*.example.com"
  - hosts:
    - istio-system/*
    - "./ratings.prod-us1.svc.cluster.local"
    - "~other/*"
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: egress.example.com
      subset: v1
      port:
        number: 3128
"#;

    #[test]
    fn full_example_is_valid() {
        assert!(warnings(FULL).is_empty(), "{:?}", warnings(FULL));
    }

    #[test]
    fn empty_sidecar() {
        assert_eq!(
            errors(&sidecar("  workloadSelector:\n    labels:\n      app: a\n")),
            vec!["spec: sidecar: empty configuration provided"]
        );
    }

    #[test]
    fn egress_hosts() {
        let y = sidecar(
            "  egress:\n  - hosts:\n    - foo.example.com\n    - \"bad ns/*.example.com\"\n    - \"ns/foo\"\n  - port:\n      number: 80\n    hosts: []\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list",
                "spec.egress[0].hosts[0]: host must be of form namespace/dnsName",
                "spec.egress[0].hosts[1]: invalid namespace value \"bad ns\" in sidecar",
                "spec.egress[0].hosts[2]: short names (non FQDN) are not allowed",
                "spec.egress[1].hosts: sidecar: egress listener must contain at least one host",
            ]
        );
    }

    #[test]
    fn egress_host_warnings() {
        let y = sidecar(
            "  egress:\n  - hosts:\n    - \"*/*\"\n    - ns/a.example.com\n    - ns/a.example.com\n",
        );
        assert_eq!(
            warnings(&y),
            vec![
                "spec.egress[0].hosts[2]: duplicated egress host: ns/a.example.com",
                "spec.egress[0].hosts: `*/*` host select all resources, no other hosts can be added",
            ]
        );
    }

    #[test]
    fn ingress_rules() {
        let y = sidecar(
            "  ingress:\n  - defaultEndpoint: 127.0.0.1:80\n  - port: {number: 80, protocol: HTTP, name: http}\n    defaultEndpoint: 10.0.0.1:abc\n    tls:\n      mode: ISTIO_MUTUAL\n  - port: {number: 80, protocol: FOO, name: Bad_Name}\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.ingress[0].port: sidecar: port is required for ingress listeners",
                "spec.ingress[1].defaultEndpoint: sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
                "spec.ingress[1].defaultEndpoint: sidecar: defaultEndpoint port (abc) is not a number: strconv.Atoi: parsing \"abc\": invalid syntax",
                "spec.ingress[1].tls.mode: configuration is invalid: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls",
                "spec.ingress[1].tls: server cannot have TLS settings for non HTTPS/TLS ports",
                "spec.ingress[2].port.name: invalid port name: Bad_Name",
                "spec.ingress[2].port.protocol: unsupported protocol: FOO",
                "spec.ingress[2].port.number: sidecar: ports on IP bound listeners must be unique",
            ]
        );
    }

    #[test]
    fn outbound_traffic_policy() {
        let y =
            sidecar("  outboundTrafficPolicy:\n    egressProxy:\n      host: egress.example.com\n");
        assert_eq!(
            errors(&y),
            vec![
                "spec.outboundTrafficPolicy.egressProxy: sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode"
            ]
        );
        let y = sidecar(
            "  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy:\n      host: egress.example.com\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.outboundTrafficPolicy.egressProxy.port: sidecar: egress_proxy port must be non-nil"
            ]
        );
        let y = sidecar("  outboundTrafficPolicy:\n    mode: ALLOW_ANY_DYNAMIC_DNS\n");
        assert_eq!(
            errors(&y),
            vec![
                "spec.outboundTrafficPolicy.mode: sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource"
            ]
        );
        let y = sidecar("  outboundTrafficPolicy:\n    mode: DENY\n");
        assert_eq!(
            errors(&y),
            vec![
                "spec.outboundTrafficPolicy.mode: Unsupported value: \"DENY\": supported values: \"REGISTRY_ONLY\", \"ALLOW_ANY\""
            ]
        );
    }

    #[test]
    fn uds_egress_rules() {
        let y = sidecar(
            "  egress:\n  - port: {number: 0, protocol: HTTP}\n    captureMode: IPTABLES\n    hosts: [\"*/*\"]\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.egress[0].bind: sidecar: ports with 0 value must have a unix domain socket bind address",
                "spec.egress[0].captureMode: sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
            ]
        );
    }
}
