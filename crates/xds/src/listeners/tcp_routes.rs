//! VirtualService `tcp` and `tls` routes on a sidecar's outbound listeners (Istio's
//! `buildSidecarOutboundTCPFilterChainOpts` and `buildSidecarOutboundTLSFilterChainOpts`).
//!
//! The VirtualServices considered for a service are those the proxy sees whose hosts overlap the
//! service's host, in the proxy's order. A match applies when its gateways (if any) include
//! `mesh`, its source labels and namespace fit the proxy and its port (if any) is the service
//! port.
//! - TLS and HTTPS ports: one chain per applicable `tls` match, by SNI (and destination subnets);
//!   a later match with the same SNI and subnets is unreachable and dropped.
//! - Other ports: the first applicable `tcp` route without subnets (or without matches) takes
//!   everything; routes matching only by destination subnets get a chain for those subnets.
//!
//! Unless a TLS match or a catch-all TCP route applied, the caller adds its own chain to the
//! service after these. One destination: to its cluster; several: weighted clusters (zero weights
//! left out).

use super::outbound_plan::{Action, Chain, TcpTarget};
use crate::http_route::{PortLookup, destination_cluster};
use crate::registry::{Registry, Service};
use crate::util::u32_value;
use crate::virtual_service::BoundVirtualService;
use crate::virtual_service::hosts;
use crate::virtual_service::resolve::MESH_GATEWAY;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use weft_model::meta::StringMap;
use weft_model::networking::RouteDestination;
use weft_proto::envoy_types::pb::envoy::config::core::v3::CidrRange;

/// What TCP and TLS routes depend on: the proxy's VirtualServices and who it is.
pub(crate) struct L4Scope<'a> {
    pub registry: &'a Registry,
    /// The mesh VirtualServices the proxy sees, in order.
    pub vss: Vec<&'a Arc<BoundVirtualService>>,
    pub labels: &'a BTreeMap<String, String>,
    pub namespace: &'a str,
}

impl L4Scope<'_> {
    /// `matchTCP` / `matchTLS`: the match's static conditions hold for this proxy and port.
    fn applies(
        &self,
        gateways: &[String],
        source_labels: &StringMap,
        source_namespace: &str,
        match_port: u32,
        port: u32,
    ) -> bool {
        (gateways.is_empty() || gateways.iter().any(|g| g == MESH_GATEWAY))
            && source_labels
                .iter()
                .all(|(k, v)| self.labels.get(k) == Some(v))
            && (match_port == 0 || match_port == port)
            && (source_namespace.is_empty() || source_namespace == self.namespace)
    }
}

/// A CIDR (or address) masked to its prefix, as chain matches compare them; `None` for
/// unparsable ones and the unspecified address.
pub(crate) fn masked_cidr(s: &str) -> Option<String> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u32>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    if ip.is_unspecified() {
        return None;
    }
    Some(match ip {
        IpAddr::V4(v4) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            format!("{}/{bits}", std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            format!("{}/{bits}", std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    })
}

/// Istio's `ConvertAddressToCidr`: an address (a /32 or /128) or CIDR as a chain match range;
/// `None` for unparsable ones and the unspecified address.
pub(crate) fn cidr_range(s: &str) -> Option<CidrRange> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u32>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    (!ip.is_unspecified()).then(|| CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: u32_value(bits),
    })
}

/// `buildOutboundNetworkFilters`: where the routes send connections.
fn target(
    vs: &BoundVirtualService,
    routes: &[RouteDestination],
    registry: &Registry,
    port: u32,
) -> TcpTarget {
    let cluster = |r: &RouteDestination| {
        r.destination
            .as_ref()
            .map(|d| destination_cluster(d, registry, port, PortLookup::SinglePort))
            .unwrap_or_else(|| "UnknownService".into())
    };
    if let [only] = routes {
        return TcpTarget::Cluster(cluster(only));
    }
    TcpTarget::Weighted {
        stat_prefix: format!("{}.{}", vs.name, vs.namespace),
        clusters: routes
            .iter()
            .filter(|r| r.weight > 0)
            .map(|r| (cluster(r), r.weight as u32))
            .collect(),
    }
}

fn chain(
    sni: Vec<String>,
    destination_cidrs: Vec<String>,
    action: TcpTarget,
    config: Option<String>,
) -> Chain {
    Chain {
        sni,
        destination_cidrs,
        sniffed_http: false,
        action: Action::Tcp(action),
        config,
    }
}

/// The chains VirtualServices give `svc`'s `port` (`tls`: a TLS or HTTPS port), and whether the
/// service's own chain is still needed after them.
pub(crate) fn chains(
    svc: &Service,
    port: u32,
    tls: bool,
    scope: &L4Scope<'_>,
) -> (Vec<Chain>, bool) {
    let configs: Vec<&Arc<BoundVirtualService>> = scope
        .vss
        .iter()
        .copied()
        .filter(|vs| {
            vs.spec
                .hosts
                .iter()
                .any(|h| hosts::matches(h, &svc.hostname))
        })
        .collect();
    if tls {
        let out = tls_chains(&configs, port, scope);
        let needs_default = out.is_empty();
        (out, needs_default)
    } else {
        tcp_chains(&configs, port, scope)
    }
}

fn tls_chains(configs: &[&Arc<BoundVirtualService>], port: u32, scope: &L4Scope<'_>) -> Vec<Chain> {
    let mut out = Vec::new();
    let mut handled: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for vs in configs {
        for t in vs.spec.tls.iter().filter(|t| !t.route.is_empty()) {
            for m in &t.match_ {
                if !scope.applies(
                    &m.gateways,
                    &m.source_labels,
                    &m.source_namespace,
                    m.port,
                    port,
                ) {
                    continue;
                }
                if handled.insert((m.sni_hosts.clone(), m.destination_subnets.clone())) {
                    out.push(chain(
                        m.sni_hosts.clone(),
                        m.destination_subnets.clone(),
                        target(vs, &t.route, scope.registry, port),
                        Some(vs.config_path()),
                    ));
                }
            }
        }
    }
    out
}

/// The chains and whether the service's own chain is still needed (no catch-all route).
fn tcp_chains(
    configs: &[&Arc<BoundVirtualService>],
    port: u32,
    scope: &L4Scope<'_>,
) -> (Vec<Chain>, bool) {
    let mut out = Vec::new();
    for vs in configs {
        for t in vs.spec.tcp.iter().filter(|t| !t.route.is_empty()) {
            let to = || target(vs, &t.route, scope.registry, port);
            if t.match_.is_empty() {
                out.push(chain(Vec::new(), Vec::new(), to(), Some(vs.config_path())));
                return (out, false);
            }
            let mut subnets: Vec<String> = Vec::new();
            for m in &t.match_ {
                if !scope.applies(
                    &m.gateways,
                    &m.source_labels,
                    &m.source_namespace,
                    m.port,
                    port,
                ) {
                    continue;
                }
                if m.destination_subnets.is_empty() {
                    out.push(chain(Vec::new(), Vec::new(), to(), Some(vs.config_path())));
                    return (out, false);
                }
                subnets.extend(m.destination_subnets.iter().cloned());
            }
            if !subnets.is_empty() {
                out.push(chain(Vec::new(), subnets, to(), None));
            }
        }
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_masked() {
        assert_eq!(masked_cidr("10.1.2.3/8"), Some("10.0.0.0/8".into()));
        assert_eq!(masked_cidr("10.1.2.3"), Some("10.1.2.3/32".into()));
        assert_eq!(masked_cidr("0.0.0.0/0"), None);
        assert_eq!(masked_cidr("bogus"), None);
        assert_eq!(masked_cidr("2001:db8::1/32"), Some("2001:db8::/32".into()));
    }
}
