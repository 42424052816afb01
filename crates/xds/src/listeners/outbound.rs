//! Outbound listeners, identical for every sidecar: `virtualOutbound` on 15001 hands each
//! captured connection (`use_original_dst`) to the listener of its original destination:
//! `0.0.0.0_<port>` (HTTP, routes by Host via RDS `"<port>"`), `<vip>_<port>` (TCP to one
//! service), or `0.0.0.0_<port>` for address-less TCP/TLS ServiceEntries (TLS by SNI); what no
//! listener claims goes to PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).

use super::{Routes, hcm_filter, http_connection_manager, tcp_proxy_filter, tls_inspector_filter};
use crate::mesh::MeshConfig;
use crate::names::{
    BLACKHOLE_CLUSTER, INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT, PASSTHROUGH_CLUSTER,
    VIRTUAL_OUTBOUND, outbound_cluster,
};
use crate::registry::{Protocol, Registry, ServiceSource};
use crate::routes::http_ports;
use crate::util::{bool_value, socket_address, u32_value};
use std::collections::BTreeMap;
use std::net::IpAddr;
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

fn listener_name(ip: &str, port: u32) -> String {
    format!("{ip}_{port}")
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

/// Every outbound listener, ordered: `virtualOutbound` first, then by name.
pub(crate) fn listeners(registry: &Registry, mesh: &MeshConfig) -> Vec<Listener> {
    let mut out: BTreeMap<String, Listener> = BTreeMap::new();
    let http = http_ports(registry);
    for &port in http.keys() {
        let name = listener_name("0.0.0.0", port);
        let hcm =
            http_connection_manager(format!("outbound_{name}"), Routes::Rds(port.to_string()));
        let chain = FilterChain {
            filters: vec![hcm_filter(hcm)],
            ..Default::default()
        };
        out.insert(
            name.clone(),
            outbound_listener(name, "0.0.0.0", port, vec![chain]),
        );
    }
    // Address-less TCP ServiceEntry ports: (port) -> [(host, cluster, tls)].
    let mut wildcard: BTreeMap<u32, Vec<(String, String, bool)>> = BTreeMap::new();
    for svc in registry.services() {
        for p in &svc.ports {
            if p.protocol.is_http() || p.protocol == Protocol::Udp || reserved_port(p.port) {
                continue;
            }
            let cluster = outbound_cluster(p.port, &svc.hostname);
            if svc.addresses.is_empty() {
                // Kubernetes services without a VIP (headless) get no TCP listener: their
                // traffic is passthrough (per-endpoint listeners are not modelled yet).
                if matches!(svc.source, ServiceSource::ServiceEntry(_))
                    && !http.contains_key(&p.port)
                {
                    let tls = matches!(p.protocol, Protocol::Tls | Protocol::Https);
                    wildcard
                        .entry(p.port)
                        .or_default()
                        .push((svc.hostname.clone(), cluster, tls));
                }
                continue;
            }
            for ip in &svc.addresses {
                let bind = match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => v6.to_string(),
                };
                let name = listener_name(&bind, p.port);
                // The first service (by host) owns a VIP:port.
                out.entry(name.clone()).or_insert_with(|| {
                    let chain = FilterChain {
                        filters: vec![tcp_proxy_filter(&cluster)],
                        ..Default::default()
                    };
                    outbound_listener(name, &bind, p.port, vec![chain])
                });
            }
        }
    }
    for (port, services) in wildcard {
        let name = listener_name("0.0.0.0", port);
        let mut chains: Vec<FilterChain> = services
            .iter()
            .filter(|(_, _, tls)| *tls)
            .map(|(host, cluster, _)| FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    server_names: vec![host.clone()],
                    ..Default::default()
                }),
                filters: vec![tcp_proxy_filter(cluster)],
                ..Default::default()
            })
            .collect();
        let any_tls = !chains.is_empty();
        // Plain TCP: the first such service takes the port; else what no SNI matched is
        // unmatched traffic.
        let fallback = services
            .iter()
            .find(|(_, _, tls)| !tls)
            .map(|(_, cluster, _)| cluster.as_str())
            .unwrap_or(unmatched_cluster(mesh));
        chains.push(FilterChain {
            filters: vec![tcp_proxy_filter(fallback)],
            ..Default::default()
        });
        let mut l = outbound_listener(name.clone(), "0.0.0.0", port, chains);
        if any_tls {
            l.listener_filters = vec![tls_inspector_filter()];
        }
        out.insert(name, l);
    }
    let mut all = vec![virtual_outbound(mesh)];
    all.extend(out.into_values());
    all
}
