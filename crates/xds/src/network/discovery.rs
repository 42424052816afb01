//! Where network gateways come from, as istiod finds them (`pilot/pkg/model/network.go` and the
//! Kubernetes registry's `network.go`):
//!
//! - a Service labelled `topology.istio.io/network=<net>` that has the port named by its label
//!   `networking.istio.io/gatewayPort` (default 15443): one gateway per external address —
//!   `status.loadBalancer.ingress[].ip` of a `LoadBalancer` Service, then `spec.externalIPs`.
//!   A Service without external addresses (a plain ClusterIP one, whatever workloads it selects)
//!   is no gateway, as in Istio; host names (`ingress[].hostname`) are skipped, as istiod does
//!   without `RESOLVE_HOSTNAME_GATEWAYS` (translation does no DNS);
//! - mesh networks gateways with an `address`;
//! - mesh networks gateways with a `registryServiceName`, for networks that list a
//!   `fromRegistry` endpoint source: the named Service's external addresses, with the gateway's
//!   port, unless that Service carries the network label itself (then the label wins).

use super::config::MeshNetworks;
use super::{DEFAULT_GATEWAY_PORT, GATEWAY_PORT_LABEL, NETWORK_LABEL, NetworkGateway};
use crate::DOMAIN_SUFFIX;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::IpAddr;
use weft_model::Spec;
use weft_model::core::ServiceSpec;
use weft_model::kind::Kind;
use weft_model::resource::Resource;
use weft_model::snapshot::Snapshot;

/// Every gateway the snapshot and the mesh networks declare, deduplicated.
pub(super) fn gateways(snapshot: &Snapshot, networks: &MeshNetworks) -> BTreeSet<NetworkGateway> {
    let mut out = BTreeSet::new();
    for (net, conf) in &networks.networks {
        for gw in conf.gateways.iter().filter(|g| !g.address.is_empty()) {
            if gw.address.parse::<IpAddr>().is_ok() {
                out.insert(NetworkGateway::new(net, &gw.address, gw.port));
            }
        }
    }
    for r in snapshot.of_kind(Kind::Service) {
        let Spec::Service(spec) = &r.spec else {
            continue;
        };
        let hostname = format!("{}.{}.svc.{DOMAIN_SUFFIX}", r.name(), r.namespace());
        for (net, port) in service_gateways(r, spec, &hostname, networks) {
            for addr in external_addresses(r, spec) {
                out.insert(NetworkGateway::new(&net, &addr, port));
            }
        }
    }
    out
}

/// `(network, port)` of the gateways a Service stands for (Istio's `getGatewayDetails`).
fn service_gateways(
    r: &Resource,
    spec: &ServiceSpec,
    hostname: &str,
    networks: &MeshNetworks,
) -> Vec<(String, u32)> {
    if let Some(net) = r
        .metadata
        .labels
        .get(NETWORK_LABEL)
        .filter(|n| !n.is_empty())
    {
        // An unparsable port label falls back to the default, as istiod does (with a warning).
        let port = r
            .metadata
            .labels
            .get(GATEWAY_PORT_LABEL)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(DEFAULT_GATEWAY_PORT);
        let listens = spec.ports.iter().any(|p| p.port as i64 == i64::from(port));
        return if listens {
            vec![(net.clone(), port)]
        } else {
            Vec::new()
        };
    }
    networks
        .networks
        .iter()
        .filter(|(_, n)| n.endpoints.iter().any(|e| !e.from_registry.is_empty()))
        .flat_map(|(name, n)| {
            n.gateways
                .iter()
                .filter(|g| g.registry_service_name == hostname)
                .map(move |g| (name.clone(), g.port))
        })
        .collect()
}

/// The addresses a Service is reached at from outside its network: load balancer ingress IPs
/// (type `LoadBalancer`), then `externalIPs`. Only IPs.
fn external_addresses(r: &Resource, spec: &ServiceSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if spec.type_ == "LoadBalancer"
        && let Some(ingress) = r
            .status
            .as_ref()
            .and_then(|s| s.pointer("/loadBalancer/ingress"))
            .and_then(Value::as_array)
    {
        out.extend(
            ingress
                .iter()
                .filter_map(|i| i.get("ip").and_then(Value::as_str))
                .map(str::to_string),
        );
    }
    out.extend(spec.external_ips.iter().cloned());
    out.retain(|a| a.parse::<IpAddr>().is_ok());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::config::{IstioNetworkGateway, MeshNetwork, NetworkEndpoints};
    use std::sync::Arc;
    use weft_model::load::{Outcome, load_str};

    fn snapshot(yaml: &str) -> Snapshot {
        let resources = load_str("t.yaml", yaml)
            .into_iter()
            .map(|e| match e.outcome {
                Outcome::Valid { resource, .. } => Arc::new(*resource),
                other => panic!("{other:?}"),
            });
        Snapshot::new(1, resources)
    }

    fn service(name: &str, labels: &str, spec: &str, status: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: istio-system\n  labels:\n{labels}spec:\n{spec}{status}---\n"
        )
    }

    #[test]
    fn labelled_services_with_external_addresses_are_gateways() {
        let yaml = [
            // LoadBalancer: ingress IPs (host names skipped), then externalIPs.
            service(
                "eastwest",
                "    topology.istio.io/network: cluster\n",
                "  type: LoadBalancer\n  externalIPs: [198.18.9.9]\n  ports:\n  - {name: tls, port: 15443}\n",
                "status:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.7\n    - hostname: lb.example.com\n",
            ),
            // The port label moves the gateway port; the Service must listen on it.
            service(
                "moved",
                "    topology.istio.io/network: net2\n    networking.istio.io/gatewayPort: \"16443\"\n",
                "  externalIPs: [198.18.2.1]\n  ports:\n  - {name: tls, port: 16443}\n",
                "",
            ),
            service(
                "wrong-port",
                "    topology.istio.io/network: net3\n",
                "  externalIPs: [198.18.3.1]\n  ports:\n  - {name: tls, port: 443}\n",
                "",
            ),
            // No external address: not a gateway (ClusterIP only).
            service(
                "internal",
                "    topology.istio.io/network: net4\n",
                "  clusterIP: 10.96.0.9\n  ports:\n  - {name: tls, port: 15443}\n",
                "",
            ),
            // Status of a non-LoadBalancer Service is not an address.
            service(
                "nodeport",
                "    topology.istio.io/network: net5\n",
                "  type: NodePort\n  ports:\n  - {name: tls, port: 15443}\n",
                "status:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.8\n",
            ),
        ]
        .concat();
        let got: Vec<NetworkGateway> = gateways(&snapshot(&yaml), &MeshNetworks::default())
            .into_iter()
            .collect();
        assert_eq!(
            got,
            vec![
                NetworkGateway::new("net2", "198.18.2.1", 16443),
                NetworkGateway::new("cluster", "198.18.9.9", 15443),
                NetworkGateway::new("cluster", "203.0.113.7", 15443),
            ]
        );
    }

    #[test]
    fn mesh_networks_gateways_by_address_and_by_registry_service() {
        let yaml = [
            service(
                "eastwest",
                "    app: eastwest\n",
                "  externalIPs: [198.18.9.9]\n  ports:\n  - {name: tls, port: 15443}\n",
                "",
            ),
            service(
                "labelled",
                "    topology.istio.io/network: own\n",
                "  externalIPs: [198.18.8.8]\n  ports:\n  - {name: tls, port: 15443}\n",
                "",
            ),
        ]
        .concat();
        let gw = |registry_service_name: &str, address: &str| IstioNetworkGateway {
            registry_service_name: registry_service_name.into(),
            address: address.into(),
            port: 15443,
            locality: String::new(),
        };
        let mut networks = MeshNetworks::default();
        networks.networks.insert(
            "vm-network".into(),
            MeshNetwork {
                endpoints: vec![],
                gateways: vec![gw("", "198.18.0.11"), gw("", "gw.example.com")],
            },
        );
        networks.networks.insert(
            "cluster".into(),
            MeshNetwork {
                endpoints: vec![NetworkEndpoints {
                    from_registry: "Kubernetes".into(),
                    ..Default::default()
                }],
                gateways: vec![
                    gw("eastwest.istio-system.svc.cluster.local", ""),
                    // A Service with its own network label keeps it.
                    gw("labelled.istio-system.svc.cluster.local", ""),
                ],
            },
        );
        // Without a fromRegistry source the registry name is not looked up.
        networks.networks.insert(
            "other".into(),
            MeshNetwork {
                endpoints: vec![],
                gateways: vec![gw("eastwest.istio-system.svc.cluster.local", "")],
            },
        );
        let got: Vec<NetworkGateway> = gateways(&snapshot(&yaml), &networks).into_iter().collect();
        assert_eq!(
            got,
            vec![
                NetworkGateway::new("vm-network", "198.18.0.11", 15443),
                NetworkGateway::new("own", "198.18.8.8", 15443),
                NetworkGateway::new("cluster", "198.18.9.9", 15443),
            ]
        );
    }
}
