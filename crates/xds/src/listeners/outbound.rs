//! Outbound listeners, identical for every sidecar: `virtualOutbound` on 15001 hands each
//! captured connection (`use_original_dst`) to the listener of its original destination:
//! `0.0.0.0_<port>` (HTTP, routes by Host via RDS `"<port>"`), `<vip>_<port>` (TCP to one
//! service, or sniffed: HTTP to RDS `"<host>:<port>"`, anything else to the service), or
//! `0.0.0.0_<port>` for address-less ServiceEntries (TLS by SNI). Which listener carries which
//! chains is decided in [`outbound_plan`]. What no listener or chain claims goes to
//! PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).

use super::outbound_plan::{self, Action, Chain, Entry, TcpTarget};
use super::tcp_routes::{L4Scope, cidr_range};
use super::{
    PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, Routes, hcm_filter, http_connection_manager,
    http_inspector_filter, tcp_proxy_filter, tls_inspector_filter, weighted_tcp_proxy_filter,
};
use crate::mesh::MeshConfig;
use crate::names::{
    BLACKHOLE_CLUSTER, INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT, PASSTHROUGH_CLUSTER,
    PASSTHROUGH_FILTER_CHAIN, VIRTUAL_OUTBOUND,
};
use crate::registry::Registry;
use crate::util::{bool_value, metadata, socket_address, u32_value};
use weft_proto::envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener,
};

/// Ports never given an outbound listener (Envoy's own capture ports).
pub(crate) fn reserved_port(port: u32) -> bool {
    port == OUTBOUND_CAPTURE_PORT || port == INBOUND_CAPTURE_PORT
}

fn unmatched_cluster(mesh: &MeshConfig) -> &'static str {
    if mesh.allow_any() {
        PASSTHROUGH_CLUSTER
    } else {
        BLACKHOLE_CLUSTER
    }
}

fn outbound_listener(name: String, ip: &str, port: u32, chains: Vec<FilterChain>) -> Listener {
    Listener {
        name,
        address: socket_address(ip, port),
        // Reached only through virtualOutbound's hand-off.
        bind_to_port: bool_value(false),
        traffic_direction: TrafficDirection::Outbound as i32,
        filter_chains: chains,
        ..Default::default()
    }
}

pub(crate) fn virtual_outbound(mesh: &MeshConfig) -> Listener {
    let unmatched = unmatched_cluster(mesh);
    Listener {
        name: VIRTUAL_OUTBOUND.into(),
        address: socket_address("0.0.0.0", OUTBOUND_CAPTURE_PORT),
        use_original_dst: bool_value(true),
        traffic_direction: TrafficDirection::Outbound as i32,
        filter_chains: vec![
            // A connection to 15001 itself would loop.
            FilterChain {
                name: "virtualOutbound-blackhole".into(),
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: u32_value(OUTBOUND_CAPTURE_PORT),
                    ..Default::default()
                }),
                filters: vec![tcp_proxy_filter(BLACKHOLE_CLUSTER)],
                ..Default::default()
            },
            FilterChain {
                name: "virtualOutbound-catchall-tcp".into(),
                filters: vec![tcp_proxy_filter(unmatched)],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// Every outbound listener, ordered: `virtualOutbound` first, then by name. `l4`: the
/// VirtualServices TCP and TLS routes come from (`None`: no such routes).
pub(crate) fn listeners(
    registry: &Registry,
    mesh: &MeshConfig,
    l4: Option<&L4Scope<'_>>,
) -> Vec<Listener> {
    let mut all = vec![virtual_outbound(mesh)];
    all.extend(
        outbound_plan::plan(registry, l4)
            .values()
            .map(|e| entry_listener(e, mesh)),
    );
    all
}

fn chain(entry: &Entry, c: &Chain) -> FilterChain {
    let filters = match &c.action {
        Action::Tcp(TcpTarget::Cluster(cluster)) => vec![tcp_proxy_filter(cluster)],
        Action::Tcp(TcpTarget::Weighted {
            stat_prefix,
            clusters,
        }) => vec![weighted_tcp_proxy_filter(stat_prefix, clusters)],
        Action::Http(rds) => vec![hcm_filter(http_connection_manager(
            format!("outbound_{}", entry.name()),
            Routes::Rds(rds.clone()),
        ))],
    };
    let filter_chain_match = (!c.is_match_all()).then(|| FilterChainMatch {
        server_names: c.server_names(),
        prefix_ranges: {
            let mut cidrs = c.destination_cidrs.clone();
            cidrs.sort();
            cidrs.iter().filter_map(|d| cidr_range(d)).collect()
        },
        transport_protocol: if c.sniffed_http { RAW_BUFFER } else { "" }.into(),
        application_protocols: if c.sniffed_http {
            PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    });
    FilterChain {
        filter_chain_match,
        filters,
        metadata: c
            .config
            .as_deref()
            .and_then(|path| metadata("istio", "config", path)),
        ..Default::default()
    }
}

/// Istio's `buildListenerFromEntry`: inspectors as the chains need them; the match-all chain (if
/// any) is the default chain, else `PassthroughFilterChain` takes what no chain matches.
fn entry_listener(entry: &Entry, mesh: &MeshConfig) -> Listener {
    let mut l = outbound_listener(entry.name(), &entry.bind, entry.port, Vec::new());
    l.continue_on_listener_filters_timeout = true;
    if entry.chains.iter().any(|c| !c.server_names().is_empty()) {
        l.listener_filters.push(tls_inspector_filter());
    }
    if entry.chains.iter().any(|c| c.sniffed_http) {
        l.listener_filters.push(http_inspector_filter());
    }
    let mut default = None;
    for c in &entry.chains {
        if c.is_match_all() {
            default = Some(chain(entry, c));
        } else {
            l.filter_chains.push(chain(entry, c));
        }
    }
    match default {
        Some(d) if l.filter_chains.is_empty() => l.filter_chains.push(d),
        Some(d) => l.default_filter_chain = Some(d),
        None => {
            l.default_filter_chain = Some(FilterChain {
                name: PASSTHROUGH_FILTER_CHAIN.into(),
                filter_chain_match: Some(FilterChainMatch::default()),
                filters: vec![tcp_proxy_filter(unmatched_cluster(mesh))],
                ..Default::default()
            })
        }
    }
    l
}
