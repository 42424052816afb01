//! Filter chains of a router's TCP and TLS listeners (Istio's `createGatewayTCPFilterChainOpts`):
//!
//! - `AUTO_PASSTHROUGH`: one chain per port of every in-mesh service the server's hosts cover,
//!   matching SNI `outbound_.<port>_._.<host>` (and `outbound_.<port>_.<subset>_.<host>` per
//!   DestinationRule subset) and Istio's mTLS ALPNs, proxying to the SNI-DNAT cluster of the
//!   same name: the client's mTLS goes through untouched to the endpoint.
//! - `PASSTHROUGH`: one chain per `tls` route match of the VirtualServices bound to the Gateway
//!   (port and gateway conditions hold, hosts overlap the server's), matching its `sniHosts`
//!   (`*`: any), proxying to the route's destinations; an SNI host already taken on the port
//!   skips the match.
//! - a plaintext TCP server: the first `tcp` route that matches, one chain without a match.
//!
//! `SIMPLE`/`MUTUAL` TLS servers put the TCP server's chain behind TLS termination
//! (`super::http::terminated`); `ISTIO_MUTUAL` and `OPTIONAL_MUTUAL` get no chains yet.

use super::hosts::{matches, resolve_gateway, resolve_short, subset_of};
use super::merge::BoundServer;
use super::subsets::Subsets;
use crate::listeners::{TCP_PROXY, tcp_proxy_filter};
use crate::names::outbound_cluster;
use crate::registry::{Protocol, Registry};
use crate::tls::ISTIO_MTLS_ALPNS;
use crate::util::{network_filter, secs};
use std::collections::BTreeMap;
use weft_model::Spec;
use weft_model::kind::Kind;
use weft_model::networking::{RouteDestination, VirtualService};
use weft_model::resource::Resource;
use weft_model::snapshot::Snapshot;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy,
};
use weft_proto::envoy_types::util::pack_any;

/// Istio's gateway `transport_socket_connect_timeout` (defence against slow handshakes).
const CONNECT_TIMEOUT_SECS: i64 = 15;

/// `outbound_.<port>_.<subset>_.<host>`: the SNI of Istio mTLS and the SNI-DNAT cluster name.
pub(crate) fn sni_dnat_name(port: u32, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}

fn chain(server_names: Vec<String>, alpns: &[&str], filters: Vec<Filter>) -> FilterChain {
    let matched = !server_names.is_empty() || !alpns.is_empty();
    FilterChain {
        filter_chain_match: matched.then(|| FilterChainMatch {
            server_names,
            application_protocols: alpns.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }),
        filters,
        transport_socket_connect_timeout: secs(CONNECT_TIMEOUT_SECS),
        ..Default::default()
    }
}

/// AUTO_PASSTHROUGH: a chain per service port (and subset) the server's hosts cover.
pub(crate) fn auto_passthrough(
    registry: &Registry,
    subsets: &Subsets<'_>,
    server: &BoundServer<'_>,
) -> Vec<FilterChain> {
    let hosts = server.sni_hosts();
    let mut out = Vec::new();
    for svc in registry.services() {
        if svc.mesh_external || !hosts.iter().any(|h| subset_of(&svc.hostname, h)) {
            continue;
        }
        let subset_names: Vec<&str> = subsets
            .of(&svc.hostname, &svc.namespace)
            .into_iter()
            .map(|s| s.name.as_str())
            .collect();
        for p in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            for subset in std::iter::once("").chain(subset_names.iter().copied()) {
                let name = sni_dnat_name(p.port, subset, &svc.hostname);
                out.push(chain(
                    vec![name.clone()],
                    ISTIO_MTLS_ALPNS,
                    vec![tcp_proxy_filter(&name)],
                ));
            }
        }
    }
    out
}

/// The VirtualServices bound to `gateway` (`namespace/name`), oldest first.
fn bound_virtual_services<'a>(
    snapshot: &'a Snapshot,
    gateway: &str,
) -> Vec<(&'a Resource, &'a VirtualService)> {
    let mut out: Vec<(&Resource, &VirtualService)> = snapshot
        .of_kind(Kind::VirtualService)
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(vs) => Some((&**r, vs)),
            _ => None,
        })
        .filter(|(r, vs)| {
            vs.gateways
                .iter()
                .any(|g| resolve_gateway(g, r.namespace()) == gateway)
        })
        .collect();
    out.sort_by(|(a, _), (b, _)| {
        (&a.metadata.creation_timestamp, a.namespace(), a.name()).cmp(&(
            &b.metadata.creation_timestamp,
            b.namespace(),
            b.name(),
        ))
    });
    out
}

/// Istio's `pickMatchingGatewayHosts` is non-empty: some VirtualService host is one of the
/// server's (a `namespace/host` server host only for VirtualServices in that namespace).
fn hosts_overlap(server: &BoundServer<'_>, r: &Resource, vs: &VirtualService) -> bool {
    vs.hosts.iter().any(|vh| {
        let vh = resolve_short(vh, r.namespace());
        server.hosts.iter().any(|sh| match sh.split_once('/') {
            Some((ns, h)) => ns == r.namespace() && matches(h, &vh),
            None => matches(sh, &vh),
        })
    })
}

/// Istio's `l4SingleMatch`: the match's port (if any) is the server's, its gateways (if any)
/// include this one.
fn l4_match(port: u32, gateways: &[String], server: &BoundServer<'_>, namespace: &str) -> bool {
    (port == 0 || port == server.number())
        && (gateways.is_empty()
            || gateways
                .iter()
                .any(|g| resolve_gateway(g, namespace) == server.gateway))
}

/// PASSTHROUGH: a chain per matching `tls` route match. `taken`: SNI hosts already used on
/// the listener port (host → bind).
pub(crate) fn tls_passthrough(
    snapshot: &Snapshot,
    registry: &Registry,
    server: &BoundServer<'_>,
    taken: &mut BTreeMap<String, String>,
) -> Vec<FilterChain> {
    let mut out = Vec::new();
    for (r, vs) in bound_virtual_services(snapshot, &server.gateway) {
        if !hosts_overlap(server, r, vs) {
            continue;
        }
        for route in vs.tls.iter().filter(|t| !t.route.is_empty()) {
            for m in &route.match_ {
                if !l4_match(m.port, &m.gateways, server, r.namespace()) {
                    continue;
                }
                if m.sni_hosts
                    .iter()
                    .any(|h| taken.get(h) == Some(&server.server.bind))
                {
                    continue;
                }
                for h in &m.sni_hosts {
                    taken.insert(h.clone(), server.server.bind.clone());
                }
                let names = if m.sni_hosts.iter().any(|h| h == "*") {
                    Vec::new()
                } else {
                    let mut n = m.sni_hosts.clone();
                    n.sort();
                    n
                };
                if let Some(f) = route_filter(registry, &route.route, server.number(), r) {
                    out.push(chain(names, &[], vec![f]));
                }
            }
        }
    }
    out
}

/// A plaintext TCP server: the first `tcp` route (of the bound VirtualServices) that matches.
pub(crate) fn tcp(
    snapshot: &Snapshot,
    registry: &Registry,
    server: &BoundServer<'_>,
) -> Option<FilterChain> {
    for (r, vs) in bound_virtual_services(snapshot, &server.gateway) {
        if !hosts_overlap(server, r, vs) {
            continue;
        }
        for route in &vs.tcp {
            let matched = route.match_.is_empty()
                || route
                    .match_
                    .iter()
                    .any(|m| l4_match(m.port, &m.gateways, server, r.namespace()));
            if matched && let Some(f) = route_filter(registry, &route.route, server.number(), r) {
                return Some(chain(Vec::new(), &[], vec![f]));
            }
        }
    }
    None
}

/// Istio's `GetDestinationCluster`: the destination's port, else the service's only port, else
/// the server's; `outbound|<port>|<subset>|<host>`.
fn destination_cluster(
    registry: &Registry,
    d: &RouteDestination,
    server_port: u32,
    namespace: &str,
) -> Option<String> {
    let dest = d.destination.as_ref()?;
    let host = resolve_short(&dest.host, namespace);
    let port = match dest.port.as_ref().map(|p| p.number).filter(|n| *n > 0) {
        Some(n) => n,
        None => match registry.service(&host).map(|s| s.ports.as_slice()) {
            Some([only]) => only.port,
            _ => server_port,
        },
    };
    Some(if dest.subset.is_empty() {
        outbound_cluster(port, &host)
    } else {
        format!("outbound|{port}|{}|{host}", dest.subset)
    })
}

/// `tcp_proxy` to one destination (stat prefix: the cluster), or to weighted ones (stat prefix
/// `<vs>.<namespace>`; routes without weight are left out, as Istio does). `None` when no
/// destination is left.
fn route_filter(
    registry: &Registry,
    routes: &[RouteDestination],
    server_port: u32,
    vs: &Resource,
) -> Option<Filter> {
    let ns = vs.namespace();
    if let [single] = routes {
        return destination_cluster(registry, single, server_port, ns)
            .map(|c| tcp_proxy_filter(&c));
    }
    let clusters: Vec<_> = routes
        .iter()
        .filter(|d| d.weight > 0)
        .filter_map(|d| {
            let name = destination_cluster(registry, d, server_port, ns)?;
            Some(tcp_proxy::weighted_cluster::ClusterWeight {
                name,
                weight: d.weight as u32,
                ..Default::default()
            })
        })
        .collect();
    if clusters.is_empty() {
        return None;
    }
    Some(network_filter(
        TCP_PROXY,
        pack_any(TcpProxy {
            stat_prefix: format!("{}.{ns}", vs.name()),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::WeightedClusters(
                tcp_proxy::WeightedCluster { clusters },
            )),
            ..Default::default()
        }),
    ))
}
