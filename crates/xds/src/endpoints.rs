//! EDS: one ClusterLoadAssignment per outbound EDS cluster (its name is the cluster's name).

use crate::registry::{Endpoint, Locality, TlsMode};
use crate::util::{metadata, socket_address, u32_value};
use std::collections::BTreeMap;
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    HealthStatus, Locality as EnvoyLocality,
};
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};

/// Metadata key Envoy's transport socket matching reads.
pub(crate) const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// Endpoints grouped by locality (ordered), weights from the WorkloadEntries, mTLS-capable ones
/// marked `tlsMode: istio` for the cluster's `transport_socket_matches`.
pub(crate) fn load_assignment(cluster: &str, endpoints: &[Endpoint]) -> ClusterLoadAssignment {
    let mut by_locality: BTreeMap<&Locality, Vec<&Endpoint>> = BTreeMap::new();
    for ep in endpoints {
        by_locality.entry(&ep.locality).or_default().push(ep);
    }
    let endpoints = by_locality
        .into_iter()
        .map(|(loc, eps)| LocalityLbEndpoints {
            locality: (*loc != Locality::default()).then(|| EnvoyLocality {
                region: loc.region.clone(),
                zone: loc.zone.clone(),
                sub_zone: loc.sub_zone.clone(),
            }),
            load_balancing_weight: u32_value(
                eps.iter()
                    .fold(0u32, |sum, ep| sum.saturating_add(ep.weight)),
            ),
            lb_endpoints: eps.into_iter().map(lb_endpoint).collect(),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints,
        ..Default::default()
    }
}

fn lb_endpoint(ep: &Endpoint) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
            address: socket_address(&ep.address, ep.port),
            ..Default::default()
        })),
        health_status: HealthStatus::Healthy as i32,
        load_balancing_weight: u32_value(ep.weight),
        metadata: (ep.tls_mode == TlsMode::Istio)
            .then(|| metadata(TRANSPORT_SOCKET_MATCH, "tlsMode", "istio"))
            .flatten(),
    }
}
