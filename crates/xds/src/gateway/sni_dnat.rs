//! SNI-DNAT clusters (Istio's `buildOutboundSniDnatClusters`), built for a router with an
//! `AUTO_PASSTHROUGH` server: for every port of every in-mesh service, `outbound_.<port>_._.<host>`
//! and `outbound_.<port>_.<subset>_.<host>` per DestinationRule subset. Each is the service's
//! outbound cluster without any TLS (the client's mTLS passes through to the endpoint) and
//! without HTTP options (the gateway proxies bytes); EDS resources carry the same names.
//!
//! Their endpoints are the service's (a subset's: those whose workload labels match), as the
//! router sees them (split horizon), and only mTLS-capable ones: the gateway cannot tell whether
//! a passed-through connection is mTLS, so plaintext endpoints must never be reachable this way.

use super::chains::sni_dnat_name;
use super::subsets::Subsets;
use crate::clusters;
use crate::destination_rule::Client;
use crate::endpoints::{assignment, by_locality};
use crate::network::{NetworkView, Networks};
use crate::registry::{Endpoint, Port, Protocol, Registry, Resolution, Service, TlsMode};
use crate::util::ads_config_source;
use std::collections::BTreeMap;
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

/// One SNI-DNAT cluster to build: service, port, subset name and labels (empty: all).
struct Target<'a> {
    svc: &'a Service,
    port: &'a Port,
    subset: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl Target<'_> {
    fn name(&self) -> String {
        sni_dnat_name(self.port.port, self.subset, &self.svc.hostname)
    }
}

fn targets<'a>(registry: &'a Registry, subsets: &'a Subsets<'a>) -> Vec<Target<'a>> {
    let mut out = Vec::new();
    for svc in registry.services().iter().filter(|s| !s.mesh_external) {
        let svc_subsets = subsets.of(&svc.hostname, &svc.namespace);
        for port in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            out.push(Target {
                svc,
                port,
                subset: "",
                labels: None,
            });
            for s in &svc_subsets {
                out.push(Target {
                    svc,
                    port,
                    subset: &s.name,
                    labels: Some(&s.labels),
                });
            }
        }
    }
    out
}

/// The endpoints one SNI-DNAT cluster gets.
fn endpoints(
    registry: &Registry,
    networks: &Networks,
    view: &NetworkView,
    t: &Target<'_>,
) -> Vec<Endpoint> {
    let selected: Vec<Endpoint> = t
        .svc
        .endpoints(t.port.port)
        .iter()
        .filter(|ep| t.labels.is_none_or(|want| labels_match(registry, ep, want)))
        .cloned()
        .collect();
    networks
        .split_horizon(view, &selected)
        .iter()
        .filter(|ep| ep.tls_mode == TlsMode::Istio)
        .cloned()
        .collect()
}

/// Whether the endpoint's workload carries every label of `want`.
fn labels_match(registry: &Registry, ep: &Endpoint, want: &BTreeMap<String, String>) -> bool {
    let Some((ns, name)) = ep.workload.split_once('/') else {
        return want.is_empty();
    };
    let workloads = registry.workloads();
    let found = workloads
        .binary_search_by(|w| (w.namespace.as_str(), w.name.as_str()).cmp(&(ns, name)))
        .ok()
        .map(|i| &workloads[i].labels);
    match found {
        Some(labels) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        None => want.is_empty(),
    }
}

/// The SNI-DNAT clusters, by name.
pub(crate) fn clusters(
    registry: &Registry,
    networks: &Networks,
    view: &NetworkView,
    subsets: &Subsets<'_>,
) -> Vec<Cluster> {
    let mut out: Vec<Cluster> = targets(registry, subsets)
        .iter()
        .filter_map(|t| {
            let name = t.name();
            // The service's default cluster, without the DestinationRule's client settings.
            let mut c = clusters::outbound(t.svc, t.port, None, &Client::default())
                .into_iter()
                .next()?;
            c.name = name.clone();
            c.transport_socket_matches.clear();
            c.transport_socket = None;
            c.typed_extension_protocol_options.clear();
            match t.svc.resolution {
                Resolution::Dns | Resolution::DnsRoundRobin => {
                    let eps = endpoints(registry, networks, view, t);
                    c.load_assignment = Some(load_assignment(&name, &eps));
                }
                // Routers cannot use the original destination: passthrough services are EDS.
                Resolution::ClientSideLb | Resolution::Passthrough => {
                    c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                        cluster::DiscoveryType::Eds as i32,
                    ));
                    c.lb_policy = cluster::LbPolicy::LeastRequest as i32;
                    c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                        eds_config: ads_config_source(),
                        service_name: name,
                    });
                }
            }
            Some(c)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `endpoints` as one assignment, grouped by locality; transport is left to the client (the
/// gateway passes mTLS through).
fn load_assignment(name: &str, endpoints: &[Endpoint]) -> ClusterLoadAssignment {
    assignment(name, &by_locality(endpoints), None)
}

/// One ClusterLoadAssignment per EDS SNI-DNAT cluster, by name.
pub(crate) fn load_assignments(
    registry: &Registry,
    networks: &Networks,
    view: &NetworkView,
    subsets: &Subsets<'_>,
) -> Vec<ClusterLoadAssignment> {
    let mut out: Vec<ClusterLoadAssignment> = targets(registry, subsets)
        .iter()
        .filter(|t| {
            matches!(
                t.svc.resolution,
                Resolution::ClientSideLb | Resolution::Passthrough
            )
        })
        .map(|t| load_assignment(&t.name(), &endpoints(registry, networks, view, t)))
        .collect();
    out.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out
}
