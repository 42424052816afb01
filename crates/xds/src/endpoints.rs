//! EDS: one ClusterLoadAssignment per outbound EDS cluster (its name is the cluster's name): a
//! service port's default cluster and one per DestinationRule subset, holding the endpoints
//! whose labels include the subset's, with locality load balancing applied for the proxy.

use crate::destination_rule::{Client, ProxySpecific, Rule, cluster_policy, tls_mode};
use crate::locality_lb;
use crate::names::outbound_subset_cluster;
use crate::network::{NetworkView, Networks};
use crate::registry::{Endpoint, Locality, Resolution, Service, TlsMode};
use crate::resource::NamedResource;
use crate::util::{metadata, socket_address, u32_value};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    HealthStatus, Locality as EnvoyLocality,
};
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use weft_proto::envoy_types::util::pack_any;

/// Metadata key Envoy's transport socket matching reads.
pub(crate) const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// Endpoints grouped by locality, localities in order.
pub(crate) fn by_locality<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
) -> Vec<Vec<&'a Endpoint>> {
    let mut groups: BTreeMap<&Locality, Vec<&Endpoint>> = BTreeMap::new();
    for ep in endpoints {
        groups.entry(&ep.locality).or_default().push(ep);
    }
    groups.into_values().collect()
}

/// The endpoints of `subset` of `rule` (empty: all): those whose labels include its labels.
pub(crate) fn subset_endpoints<'a>(
    endpoints: &'a [Endpoint],
    rule: Option<&Rule>,
    subset: &str,
) -> Vec<&'a Endpoint> {
    let labels = rule
        .and_then(|r| r.spec.subsets.iter().find(|s| s.name == subset))
        .map(|s| &s.labels);
    endpoints
        .iter()
        .filter(|ep| labels.is_none_or(|l| l.iter().all(|(k, v)| ep.labels.get(k) == Some(v))))
        .collect()
}

/// A load assignment of endpoint `groups` (one locality each), weights from the workloads.
/// Endpoints are marked `tlsMode: istio` for the cluster's `transport_socket_matches` when they
/// speak Istio mTLS, or, when the DestinationRule sets a TLS mode, when it is ISTIO_MUTUAL
/// (`mtls`).
pub(crate) fn assignment(
    cluster: &str,
    groups: &[Vec<&Endpoint>],
    mtls: Option<bool>,
) -> ClusterLoadAssignment {
    let endpoints = groups
        .iter()
        .filter(|eps| !eps.is_empty())
        .map(|eps| {
            let loc = &eps[0].locality;
            LocalityLbEndpoints {
                locality: (*loc != Locality::default()).then(|| EnvoyLocality {
                    region: loc.region.clone(),
                    zone: loc.zone.clone(),
                    sub_zone: loc.sub_zone.clone(),
                }),
                load_balancing_weight: u32_value(
                    eps.iter()
                        .fold(0u32, |sum, ep| sum.saturating_add(ep.weight)),
                ),
                lb_endpoints: eps.iter().map(|ep| lb_endpoint(ep, mtls)).collect(),
                ..Default::default()
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints,
        ..Default::default()
    }
}

fn lb_endpoint(ep: &Endpoint, mtls: Option<bool>) -> LbEndpoint {
    let istio = mtls.unwrap_or(ep.tls_mode == TlsMode::Istio);
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
            address: socket_address(&ep.address, ep.port),
            ..Default::default()
        })),
        health_status: HealthStatus::Healthy as i32,
        load_balancing_weight: u32_value(ep.weight),
        metadata: istio
            .then(|| metadata(TRANSPORT_SOCKET_MATCH, "tlsMode", "istio"))
            .flatten(),
    }
}

/// The load assignment of one cluster (`subset` empty: the default one) of `svc`'s `port` under
/// `rule`, relative to `client` (locality load balancing).
pub(crate) fn cluster_assignment(
    name: &str,
    groups: &[Vec<&Endpoint>],
    rule: Option<&Rule>,
    port: u32,
    subset: &str,
    client: &Client,
) -> ClusterLoadAssignment {
    let mtls = rule
        .and_then(|r| tls_mode(r, port, subset))
        .map(|m| m == "ISTIO_MUTUAL");
    let mut cla = assignment(name, groups, mtls);
    let policy = rule
        .map(|r| cluster_policy(r, port, subset))
        .unwrap_or_default();
    if let Some(setting) = locality_lb::effective(policy.load_balancer) {
        let groups: Vec<Vec<&Endpoint>> =
            groups.iter().filter(|g| !g.is_empty()).cloned().collect();
        locality_lb::apply(
            &mut cla,
            &groups,
            &client.locality,
            &client.labels,
            setting,
            policy.outlier_detection.is_some(),
        );
    }
    cla
}

/// EDS of an EDS service's `port`: the default cluster's, then each subset's.
pub(crate) fn outbound(
    svc: &Service,
    port: u32,
    rule: Option<&Rule>,
    client: &Client,
    (networks, view): (&Networks, &NetworkView),
) -> Vec<(String, ClusterLoadAssignment)> {
    let subsets = std::iter::once("").chain(
        rule.into_iter()
            .flat_map(|r| r.spec.subsets.iter().map(|s| s.name.as_str())),
    );
    subsets
        .map(|subset| {
            let name = outbound_subset_cluster(port, subset, &svc.hostname);
            // Subsets select by the workloads' labels first; then the proxy's network view
            // replaces remote endpoints by their networks' gateways (split horizon).
            let selected: Vec<Endpoint> = subset_endpoints(svc.endpoints(port), rule, subset)
                .into_iter()
                .cloned()
                .collect();
            let visible = networks.split_horizon(view, &selected);
            let groups = by_locality(visible.iter());
            let cla = cluster_assignment(&name, &groups, rule, port, subset, client);
            (name, cla)
        })
        .collect()
}

/// The proxy's endpoints: the shared ones, with those of services built for it replaced.
pub(crate) fn for_proxy(
    shared: &[Arc<NamedResource>],
    specific: &ProxySpecific<'_>,
    net: (&Networks, &NetworkView),
) -> Vec<Arc<NamedResource>> {
    let mut own = Vec::new();
    for (svc, rule) in &specific.services {
        if svc.resolution != Resolution::ClientSideLb {
            continue;
        }
        for p in &svc.ports {
            for (name, cla) in outbound(svc, p.port, *rule, &specific.client, net) {
                own.push(Arc::new(NamedResource::new(name, pack_any(cla))));
            }
        }
    }
    specific.overlay(shared, own)
}
