//! networking.istio.io ServiceEntry: adds services (usually external) to the mesh's registry.

use super::common::{self, Protocol, WorkloadSelector, at, idx, is_zero_u32};
use super::workload_entry::{WorkloadEntry, validate_workload_entry};
use crate::validate::{self, Context, Report, Validate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServiceEntryPort>,
    /// `MESH_EXTERNAL` (default) or `MESH_INTERNAL`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// `NONE` (default), `STATIC`, `DNS`, `DNS_ROUND_ROBIN`, `DYNAMIC_DNS`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resolution: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// A ServiceEntry port (Istio's `ServicePort`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    #[serde(default)]
    pub number: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub target_port: u32,
}

const LOCATIONS: &[&str] = &["MESH_EXTERNAL", "MESH_INTERNAL"];
const RESOLUTIONS: &[&str] = &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"];
const AUTOALLOCATE_LABEL: &str = "networking.istio.io/enable-autoallocate-ip";
const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";

impl ServiceEntry {
    /// The resolution, with protobuf's default.
    pub fn effective_resolution(&self) -> &str {
        if self.resolution.is_empty() {
            "NONE"
        } else {
            &self.resolution
        }
    }

    /// The location, with protobuf's default.
    pub fn effective_location(&self) -> &str {
        if self.location.is_empty() {
            "MESH_EXTERNAL"
        } else {
            &self.location
        }
    }
}

impl Validate for ServiceEntry {
    /// Istio's `ValidateServiceEntry`.
    fn validate(&self, ctx: &Context<'_>, report: &mut Report) {
        let before = report.errors.len();
        let empty_selector = common::alpha_workload_selector(
            self.workload_selector.as_ref(),
            "spec.workloadSelector",
            report,
        );
        if report.errors.len() > before {
            // Istio stops at selector errors.
            return;
        }
        if empty_selector {
            report.warning(
                "spec.workloadSelector",
                "service entry: workload selector specified without labels, will be applied to all services in namespace",
            );
        }
        if !self.location.is_empty() {
            report.check(
                "spec.location",
                validate::common::one_of(&self.location, LOCATIONS),
            );
        }
        if !self.resolution.is_empty() {
            report.check(
                "spec.resolution",
                validate::common::one_of(&self.resolution, RESOLUTIONS),
            );
        }
        let resolution = self.effective_resolution();
        if self.workload_selector.is_some() && !self.endpoints.is_empty() {
            report.error(
                "spec",
                "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
            );
        }
        if self.hosts.is_empty() {
            report.error("spec.hosts", "service entry must have at least one host");
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let p = idx("spec.hosts", i);
            if h == "*" {
                report.error(p, format!("invalid host {h}"));
            } else {
                report.check(p.clone(), validate::common::wildcard_domain(h));
                if resolution != "DYNAMIC_DNS"
                    && let Err(w) = common::partial_wildcard(h)
                {
                    report.warning(p, w);
                }
            }
        }
        let mut cidr = false;
        for (i, a) in self.addresses.iter().enumerate() {
            cidr |= a.contains('/');
            report.check(idx("spec.addresses", i), common::ip_subnet(a));
        }
        if cidr && resolution != "NONE" && resolution != "STATIC" {
            report.error(
                "spec.addresses",
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }
        let opted_out = ctx
            .meta
            .labels
            .get(AUTOALLOCATE_LABEL)
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
        let auto_allocation = resolution != "NONE" && !opted_out && self.addresses.is_empty();
        let mut names = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            let p = idx("spec.ports", i);
            if !names.insert(port.name.clone()) {
                report.error(
                    at(&p, "name"),
                    format!("service entry port name {:?} already defined", port.name),
                );
            }
            if !numbers.insert(port.number) {
                report.error(
                    at(&p, "number"),
                    format!("service entry port {} already defined", port.number),
                );
            }
            if port.target_port != 0 {
                report.check(
                    at(&p, "targetPort"),
                    validate::common::port(port.target_port.into()),
                );
            }
            if self.addresses.is_empty()
                && !auto_allocation
                && (port.protocol.is_empty() || port.protocol == "TCP")
            {
                report.warning(
                    p.clone(),
                    "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
                );
            }
            report.check(at(&p, "name"), common::port_name(&port.name));
            report.check(at(&p, "protocol"), common::protocol(&port.protocol));
            report.check(at(&p, "number"), validate::common::port(port.number.into()));
        }
        match resolution {
            "NONE" => {
                if !self.endpoints.is_empty() {
                    report.error(
                        "spec.endpoints",
                        "no endpoints should be provided for resolution type none",
                    );
                }
                if self.workload_selector.is_some() {
                    report.warning(
                        "spec.workloadSelector",
                        "workloadSelector should not be set when resolution mode is NONE",
                    );
                }
            }
            "STATIC" => {
                for (i, ep) in self.endpoints.iter().enumerate() {
                    validate_workload_entry(
                        ep,
                        &idx("spec.endpoints", i),
                        Some(&names),
                        false,
                        report,
                    );
                }
            }
            "DNS" | "DNS_ROUND_ROBIN" => self.check_dns(resolution, &names, report),
            "DYNAMIC_DNS" => self.check_dynamic_dns(resolution, ctx, report),
            _ => {}
        }
        if resolution != "NONE" && self.hosts.len() > 1 {
            for (i, port) in self.ports.iter().enumerate() {
                let p = Protocol::parse(&port.protocol);
                if !p.is_http() && !p.is_tls() {
                    report.error(
                        at(&idx("spec.ports", i), "protocol"),
                        "multiple hosts provided with non-HTTP, non-TLS ports",
                    );
                    break;
                }
            }
        }
        common::export_to(
            ctx.namespace,
            &self.export_to,
            true,
            false,
            "spec.exportTo",
            report,
        );
    }
}

impl ServiceEntry {
    fn check_dns(&self, resolution: &str, ports: &BTreeSet<String>, report: &mut Report) {
        if self.endpoints.is_empty() {
            for (i, h) in self.hosts.iter().enumerate() {
                if let Err(e) = validate::common::fqdn(h) {
                    report.error(
                        idx("spec.hosts", i),
                        format!(
                            "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode {resolution}, {e}"
                        ),
                    );
                    break;
                }
            }
        }
        if resolution == "DNS_ROUND_ROBIN" && self.endpoints.len() > 1 {
            report.error(
                "spec.endpoints",
                format!("there must only be 0 or 1 endpoint for resolution mode {resolution}"),
            );
        }
        for (i, ep) in self.endpoints.iter().enumerate() {
            let p = idx("spec.endpoints", i);
            if !common::is_ip(&ep.address) && validate::common::fqdn(&ep.address).is_err() {
                report.error(
                    at(&p, "address"),
                    format!(
                        "endpoint address {:?} is not a valid FQDN or an IP address",
                        ep.address
                    ),
                );
            }
            validate::common::labels(&ep.labels, &at(&p, "labels"), report);
            for (name, port) in &ep.ports {
                let pp = common::key(&at(&p, "ports"), name);
                if !ports.contains(name) {
                    report.error(
                        pp.clone(),
                        format!("endpoint port {port} is not defined by the service entry"),
                    );
                }
                report.check(pp.clone(), common::port_name(name));
                report.check(pp, validate::common::port((*port).into()));
            }
        }
        if !self.addresses.is_empty() && self.hosts.len() > 1 {
            let tcp = self
                .ports
                .iter()
                .any(|p| Protocol::parse(&p.protocol).is_tcp());
            if tcp {
                report.warning(
                    "spec.hosts",
                    "service entry can not have more than one host specified simultaneously with address and tcp port",
                );
            }
        }
    }

    fn check_dynamic_dns(&self, resolution: &str, ctx: &Context<'_>, report: &mut Report) {
        if self.hosts.is_empty() {
            report.error(
                "spec.hosts",
                format!(
                    "at least one wildcard host must be provided for resolution type {resolution}"
                ),
            );
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if !h.starts_with('*') {
                report.error(
                    idx("spec.hosts", i),
                    format!("host must be wildcarded for resolution mode {resolution}"),
                );
            }
        }
        if !self.addresses.is_empty() {
            // Istio's message lacks the space between "generated" and "from".
            report.error(
                "spec.addresses",
                format!(
                    "addresses cannot be set for resolution type {resolution}. HTTP route domains will only be generatedfrom the hosts field values"
                ),
            );
        }
        if !self.endpoints.is_empty() {
            report.error(
                "spec.endpoints",
                format!(
                    "endpoints cannot be set for resolution type {resolution}. Destination IP address determined from hostsfield values"
                ),
            );
        }
        for (i, port) in self.ports.iter().enumerate() {
            let p = Protocol::parse(&port.protocol);
            if !matches!(
                p,
                Protocol::Http | Protocol::Tls | Protocol::Grpc | Protocol::Http2
            ) {
                report.error(
                    at(&idx("spec.ports", i), "protocol"),
                    format!(
                        "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type {resolution}"
                    ),
                );
            }
        }
        let location = self.effective_location();
        if location != "MESH_EXTERNAL" && location != "MESH_INTERNAL" {
            report.error(
                "spec.location",
                format!("location must be MESH_EXTERNAL or MESH_INTERNAL for resolution type {resolution}"),
            );
        }
        let uses_waypoint = ctx
            .meta
            .labels
            .get(USE_WAYPOINT_LABEL)
            .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("none"));
        if location == "MESH_INTERNAL" && uses_waypoint {
            report.error(
                "spec.location",
                format!(
                    "location MESH_INTERNAL with resolution type {resolution} is not supported when using waypoints"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {

    use crate::test_support::{errors, warnings};

    fn se(spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n  namespace: shop\nspec:\n{spec}"
        )
    }

    const FULL: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external-svc-mongocluster
  namespace: shop
spec:
  hosts:
  - mymongodb.somedomain
  addresses:
  - 192.192.192.192/24
  ports:
  - number: 27018
    name: mongodb
    protocol: MONGO
    targetPort: 27017
  location: MESH_INTERNAL
  resolution: STATIC
  exportTo: [".", "istio-system"]
  subjectAltNames: [spiffe://cluster.local/ns/shop/sa/mongo]
  endpoints:
  - address: 2.2.2.2
    ports:
      mongodb: 7777
    labels:
      app: mongo
    network: net-1
    locality: us-east/zone1
    weight: 10
    serviceAccount: mongo
  - address: 3.3.3.3
    ports:
      mongodb: 7777
"#;

    #[test]
    fn full_example_is_valid() {
        assert!(warnings(FULL).is_empty(), "{:?}", warnings(FULL));
    }

    #[test]
    fn other_valid_shapes() {
        let dns = se(
            "  hosts: [api.example.com, api2.example.com]\n  ports:\n  - {number: 443, name: https, protocol: TLS}\n  - {number: 80, name: http, protocol: HTTP}\n  resolution: DNS\n  endpoints:\n  - address: lb.example.com\n    ports: {https: 8443}\n",
        );
        assert!(warnings(&dns).is_empty());
        let selector = se(
            "  hosts: [vm.shop.svc]\n  location: MESH_INTERNAL\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  resolution: STATIC\n  workloadSelector:\n    labels:\n      app: vm\n",
        );
        assert!(warnings(&selector).is_empty());
        let dynamic = se(
            "  hosts: [\"*.example.com\"]\n  ports:\n  - {number: 443, name: tls, protocol: TLS}\n  resolution: DYNAMIC_DNS\n",
        );
        assert!(warnings(&dynamic).is_empty());
    }

    #[test]
    fn hosts_required() {
        let y = se("  ports:\n  - {number: 80, name: http, protocol: HTTP}\n");
        assert_eq!(
            errors(&y),
            vec!["spec.hosts: service entry must have at least one host"]
        );
        let y = se("  hosts: [\"*\", \"bad host\"]\n  resolution: DNS\n");
        assert_eq!(
            errors(&y),
            vec![
                "spec.hosts[0]: invalid host *",
                "spec.hosts[1]: domain name \"bad host\" invalid (label \"bad host\" invalid)",
                "spec.hosts[0]: hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS, domain name \"*\" invalid (label \"*\" invalid)",
            ]
        );
    }

    #[test]
    fn port_rules() {
        let y = se(
            "  hosts: [a.example.com]\n  addresses: [10.0.0.1]\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  - {number: 80, name: http, protocol: FOO}\n  - {number: 0, name: Bad_Name, targetPort: 70000}\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.ports[1].name: service entry port name \"http\" already defined",
                "spec.ports[1].number: service entry port 80 already defined",
                "spec.ports[1].protocol: unsupported protocol: FOO",
                "spec.ports[2].targetPort: port number 70000 must be in the range 1..65535",
                "spec.ports[2].name: invalid port name: Bad_Name",
                "spec.ports[2].number: port number 0 must be in the range 1..65535",
            ]
        );
    }

    #[test]
    fn enums_and_addresses() {
        let y = se(
            "  hosts: [a.example.com]\n  addresses: [10.0.0.0/8, 300.1.1.1]\n  location: OUTSIDE\n  resolution: DNS\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.location: Unsupported value: \"OUTSIDE\": supported values: \"MESH_EXTERNAL\", \"MESH_INTERNAL\"",
                "spec.addresses[1]: 300.1.1.1 is not a valid IP",
                "spec.addresses: CIDR addresses are allowed only for NONE/STATIC resolution types",
            ]
        );
    }

    #[test]
    fn endpoints_vs_resolution() {
        let y = se("  hosts: [a.example.com]\n  endpoints:\n  - address: 1.1.1.1\n");
        assert_eq!(
            errors(&y),
            vec!["spec.endpoints: no endpoints should be provided for resolution type none"]
        );
        let y = se(
            "  hosts: [a.example.com]\n  resolution: DNS_ROUND_ROBIN\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  endpoints:\n  - address: a.example.com\n  - address: \"bad address\"\n    ports: {grpc: 81}\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
                "spec.endpoints[1].address: endpoint address \"bad address\" is not a valid FQDN or an IP address",
                "spec.endpoints[1].ports[grpc]: endpoint port 81 is not defined by the service entry",
            ]
        );
        let y = se(
            "  hosts: [a.example.com]\n  resolution: STATIC\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  endpoints:\n  - address: a.example.com\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.endpoints[0].address: endpoint address \"a.example.com\" is not a valid IP address"
            ]
        );
        let y = se(
            "  hosts: [a.example.com]\n  resolution: STATIC\n  workloadSelector:\n    labels: {app: a}\n  endpoints:\n  - address: 1.1.1.1\n",
        );
        assert_eq!(
            errors(&y),
            vec!["spec: only one of WorkloadSelector or Endpoints is allowed in Service Entry"]
        );
    }

    #[test]
    fn multiple_hosts_with_tcp() {
        let y = se(
            "  hosts: [a.example.com, b.example.com]\n  resolution: DNS\n  ports:\n  - {number: 3306, name: mysql, protocol: MYSQL}\n",
        );
        assert_eq!(
            errors(&y),
            vec!["spec.ports[0].protocol: multiple hosts provided with non-HTTP, non-TLS ports"]
        );
    }

    #[test]
    fn dynamic_dns_rules() {
        let y = se(
            "  hosts: [a.example.com]\n  addresses: [1.1.1.1]\n  resolution: DYNAMIC_DNS\n  ports:\n  - {number: 3306, name: mysql, protocol: MYSQL}\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.hosts[0]: host must be wildcarded for resolution mode DYNAMIC_DNS",
                "spec.addresses: addresses cannot be set for resolution type DYNAMIC_DNS. HTTP route domains will only be generatedfrom the hosts field values",
                "spec.ports[0].protocol: only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
            ]
        );
    }

    #[test]
    fn warnings_for_tcp_without_addresses_and_selector() {
        let y = se(
            "  hosts: [\"*.example.com\", \"*a.example.com\"]\n  ports:\n  - {number: 9000, name: tcp}\n  workloadSelector: {}\n  exportTo: [\"~\"]\n",
        );
        assert_eq!(
            warnings(&y),
            vec![
                "spec.workloadSelector: service entry: workload selector specified without labels, will be applied to all services in namespace",
                "spec.hosts[1]: partial wildcard \"*a.example.com\" not allowed",
                "spec.ports[0]: addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
                "spec.workloadSelector: workloadSelector should not be set when resolution mode is NONE",
            ]
        );
        let y = se(
            "  hosts: [a.example.com]\n  workloadSelector:\n    labels: {app: \"*\"}\n  ports:\n  - {number: 0, name: x}\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.workloadSelector.labels[app]: wildcard is not supported in selector: \"app=*\""
            ]
        );
    }
}
