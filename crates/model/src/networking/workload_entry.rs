//! networking.istio.io WorkloadEntry: a non-Kubernetes workload (VM, bare metal) in the mesh.
//! Also the shape of ServiceEntry `endpoints`.

use crate::meta::StringMap;
use crate::validate::{Context, Report, Validate, common};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Prefix marking a Unix domain socket address.
const UNIX_ADDRESS_PREFIX: &str = "unix://";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: StringMap,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
}

impl Validate for WorkloadEntry {
    fn validate(&self, _ctx: &Context<'_>, report: &mut Report) {
        // As Istio: ports are not checked against a service, FQDN addresses are allowed.
        validate_workload_entry(self, "spec", None, true, report);
    }
}

/// Go's `netip.ParseAddr`: an IPv4 or IPv6 address, IPv6 optionally with a `%zone`.
fn is_ip_address(addr: &str) -> bool {
    if addr.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    match addr.split_once('%') {
        Some((ip, zone)) => !zone.is_empty() && ip.parse::<std::net::Ipv6Addr>().is_ok(),
        None => false,
    }
}

/// Istio's `ValidateUnixAddress` (the part after `unix://`).
fn validate_unix_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("unix address must not be empty".into());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

/// Istio's `ValidatePortName`.
fn validate_port_name(name: &str) -> Result<(), String> {
    if common::is_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!("invalid port name: {name}"))
    }
}

/// Istio's `validateWorkloadEntry`. `path` is where the entry sits (`spec`, `spec.endpoints[0]`).
/// `service_ports`, when given, are the port names of the owning ServiceEntry; `allow_fqdn`
/// permits DNS names as addresses (otherwise only IPs and `unix://` sockets).
pub fn validate_workload_entry(
    we: &WorkloadEntry,
    path: &str,
    service_ports: Option<&BTreeSet<String>>,
    allow_fqdn: bool,
    report: &mut Report,
) {
    let at = |field: &str| format!("{path}.{field}");
    let addr = we.address.as_str();
    if addr.is_empty() {
        if we.network.is_empty() {
            report.error(at("address"), "address is required");
            return;
        }
        report.warning(
            at("address"),
            format!("address is unset with network {:?}", we.network),
        );
    }
    let mut unix_endpoint = false;
    if let Some(socket) = addr.strip_prefix(UNIX_ADDRESS_PREFIX) {
        unix_endpoint = true;
        report.check(at("address"), validate_unix_address(socket));
        if !we.ports.is_empty() {
            report.error(
                at("ports"),
                format!("unix endpoint {addr} must not include ports"),
            );
        }
    } else if !addr.is_empty() && !is_ip_address(addr) {
        if !allow_fqdn {
            report.error(
                at("address"),
                format!("endpoint address {addr:?} is not a valid IP address"),
            );
        } else if common::fqdn(addr).is_err() {
            report.error(
                at("address"),
                format!("endpoint address {addr:?} is not a valid FQDN or an IP address"),
            );
        }
    }
    for (name, port) in &we.ports {
        let port_path = format!("{path}.ports[{name}]");
        if let Some(known) = service_ports
            && !known.contains(name)
        {
            report.error(
                port_path.clone(),
                format!("endpoint port {port} is not defined by the service entry"),
            );
        }
        report.check(port_path.clone(), validate_port_name(name));
        report.check(port_path, common::port(i64::from(*port)));
    }
    common::labels(&we.labels, &at("labels"), report);
    if unix_endpoint && service_ports.is_some_and(|p| p.len() != 1) {
        report.error(
            at("address"),
            "exactly 1 service port required for unix endpoints",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Outcome, load_str};
    use crate::resource::Spec;

    const HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: vm\n  namespace: shop\nspec:\n";

    fn errors(spec: &str) -> Vec<String> {
        let out = load_str("we.yaml", &format!("{HEAD}{spec}"));
        assert_eq!(out.len(), 1);
        match &out[0].outcome {
            Outcome::Invalid { errors, .. } => errors.iter().map(|e| e.to_string()).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn valid(spec: &str) -> (WorkloadEntry, Vec<String>) {
        let out = load_str("we.yaml", &format!("{HEAD}{spec}"));
        match &out[0].outcome {
            Outcome::Valid { resource, warnings } => match &resource.spec {
                Spec::WorkloadEntry(we) => {
                    (we.clone(), warnings.iter().map(|w| w.to_string()).collect())
                }
                other => panic!("unexpected spec {other:?}"),
            },
            other => panic!("expected valid, got {other:?}"),
        }
    }

    #[test]
    fn full_example_is_valid() {
        let (we, warnings) = valid(
            "  address: 10.10.0.25\n  labels:\n    app: legacy-billing\n    version: v1\n  serviceAccount: billing\n  network: vm-network\n  locality: us-west-2/us-west-2a\n  weight: 100\n  ports:\n    http: 8080\n    metrics: 9090\n    health: 8081\n",
        );
        assert!(warnings.is_empty());
        assert_eq!(we.address, "10.10.0.25");
        assert_eq!(we.ports["metrics"], 9090);
        assert_eq!(we.weight, Some(100));
        assert_eq!(we.service_account, "billing");
        assert_eq!(we.locality, "us-west-2/us-west-2a");
        let json = serde_json::to_value(&we).unwrap();
        assert_eq!(json["serviceAccount"], "billing");
        assert_eq!(json["ports"]["http"], 8080);
    }

    #[test]
    fn other_valid_addresses() {
        valid("  address: vm1.example.com\n");
        valid("  address: \"2001:db8::1\"\n");
        valid("  address: unix:///var/run/app.sock\n");
        valid("  address: unix://@abstract\n");
        let (_, warnings) = valid("  network: remote\n");
        assert_eq!(
            warnings,
            vec!["spec.address: address is unset with network \"remote\""]
        );
    }

    #[test]
    fn address_rules() {
        assert_eq!(
            errors("  ports:\n    http: 80\n"),
            vec!["spec.address: address is required"]
        );
        assert_eq!(
            errors("  address: bad_host!\n"),
            vec![
                "spec.address: endpoint address \"bad_host!\" is not a valid FQDN or an IP address"
            ]
        );
        assert_eq!(
            errors("  address: unix://relative.sock\n  ports:\n    http: 80\n"),
            vec![
                "spec.address: relative.sock is not an absolute path to a file",
                "spec.ports: unix endpoint unix://relative.sock must not include ports"
            ]
        );
        assert_eq!(
            errors("  address: \"unix://\"\n"),
            vec!["spec.address: unix address must not be empty"]
        );
    }

    #[test]
    fn port_and_label_rules() {
        assert_eq!(
            errors(
                "  address: 1.2.3.4\n  ports:\n    http_x: 80\n    tcp: 0\n    big: 70000\n  labels:\n    \"-bad\": ok\n"
            ),
            vec![
                "spec.ports[big]: port number 70000 must be in the range 1..65535",
                "spec.ports[http_x]: invalid port name: http_x",
                "spec.ports[tcp]: port number 0 must be in the range 1..65535",
                "spec.labels[-bad]: invalid tag key: \"-bad\""
            ]
        );
        assert_eq!(
            errors("  address: 1.2.3.4\n  weight: -1\n"),
            vec!["spec.weight: invalid value: integer `-1`, expected u32"]
        );
    }

    #[test]
    fn service_entry_endpoint_rules() {
        let ports: BTreeSet<String> = ["http".to_string()].into();
        let we = WorkloadEntry {
            address: "vm.example.com".into(),
            ports: [("http".to_string(), 80), ("grpc".to_string(), 90)].into(),
            ..Default::default()
        };
        let mut r = Report::default();
        validate_workload_entry(&we, "spec.endpoints[0]", Some(&ports), false, &mut r);
        let msgs: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "spec.endpoints[0].address: endpoint address \"vm.example.com\" is not a valid IP address",
                "spec.endpoints[0].ports[grpc]: endpoint port 90 is not defined by the service entry"
            ]
        );

        let unix = WorkloadEntry {
            address: "unix:///sock".into(),
            ..Default::default()
        };
        let two: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let mut r = Report::default();
        validate_workload_entry(&unix, "spec.endpoints[1]", Some(&two), false, &mut r);
        assert_eq!(
            r.errors[0].to_string(),
            "spec.endpoints[1].address: exactly 1 service port required for unix endpoints"
        );
    }

    #[test]
    fn unknown_fields_are_reported() {
        assert_eq!(
            errors("  address: 1.2.3.4\n  serviceAcount: x\n"),
            vec!["spec: unknown field \"serviceAcount\""]
        );
    }
}
