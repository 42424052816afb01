//! Which VirtualService serves which host on a sidecar's outbound HTTP port (Istio's
//! `BuildSidecarVirtualHostWrapper`, `selectVirtualServices`, `separateVSHostsAndServices` and the
//! most-specific-wildcard index).
//!
//! On port P: the registry services with a port P are candidates. A VirtualService claims the
//! services its hosts name exactly, and, through a wildcard host, those for which it holds the
//! most specific matching host of all VirtualServices the proxy sees (an exact host beats any
//! wildcard; equal hosts go to the earlier VirtualService). Hosts that are no registry service get
//! a virtual host of their own, but only on port 80 or when the VirtualService also claims a
//! service on P (istiod's rule). A VirtualService none of whose routes applies to the proxy
//! claims nothing, and so do ports that are not HTTP or sniffed. Unclaimed HTTP services keep
//! their default route.

use super::BoundVirtualService;
use super::hosts::{self, is_wildcard};
use crate::http_route::{RouteOptions, http_routes};
use crate::registry::{Registry, Service};
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::route::v3::Route;

/// The port Istio keeps virtual hosts of non-registry VirtualService hosts on.
const NON_REGISTRY_PORT: u32 = 80;

/// One VirtualService's share of a port.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    /// Registry services it routes (their port is HTTP or sniffed), in host order.
    pub services: Vec<&'a Arc<Service>>,
    /// Its other hosts (wildcards matching no service, names outside the registry).
    pub other_hosts: Vec<String>,
    pub routes: Vec<Route>,
}

/// A port's virtual host sources: VirtualService claims in the proxy's order, then the HTTP or
/// sniffed services no VirtualService claimed (in host order).
#[derive(Debug)]
pub(crate) struct PortBinding<'a> {
    pub claims: Vec<Claim<'a>>,
    pub unclaimed: Vec<&'a Arc<Service>>,
}

/// `(VirtualService, host)` pairs in the proxy's order: the first VirtualService naming a host
/// keeps it (`computeWildcardHostVirtualServiceIndex`).
struct HostIndex<'a> {
    exact: Vec<(String, usize)>,
    wildcards: Vec<(String, usize)>,
    vss: &'a [&'a Arc<BoundVirtualService>],
}

impl<'a> HostIndex<'a> {
    fn new(vss: &'a [&'a Arc<BoundVirtualService>]) -> Self {
        let mut exact: Vec<(String, usize)> = Vec::new();
        let mut wildcards: Vec<(String, usize)> = Vec::new();
        for (i, vs) in vss.iter().enumerate() {
            for h in &vs.spec.hosts {
                let list = if is_wildcard(h) {
                    &mut wildcards
                } else {
                    &mut exact
                };
                if !list.iter().any(|(k, _)| k == h) {
                    list.push((h.clone(), i));
                }
            }
        }
        HostIndex {
            exact,
            wildcards,
            vss,
        }
    }

    /// The VirtualService holding the most specific host for service host `svc`.
    fn owner(&self, svc: &str) -> Option<&'a Arc<BoundVirtualService>> {
        hosts::most_specific_match(svc, &self.exact, &self.wildcards).map(|i| self.vss[*i])
    }
}

/// Istio's `selectVirtualServices`: some host names (or, wildcarded, overlaps) a service.
fn selects(vs: &BoundVirtualService, services: &[&Arc<Service>]) -> bool {
    vs.spec.hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        services.iter().any(|s| {
            if is_wildcard(&h) {
                hosts::matches(&h, &s.hostname)
            } else {
                s.hostname == h || (is_wildcard(&s.hostname) && hosts::matches(&s.hostname, &h))
            }
        })
    })
}

/// `separateVSHostsAndServices`: (hosts outside the registry, services claimed).
fn separate<'a>(
    vs: &Arc<BoundVirtualService>,
    services: &[&'a Arc<Service>],
    index: &HostIndex<'_>,
) -> (Vec<String>, Vec<&'a Arc<Service>>) {
    let mut other = Vec::new();
    let mut claimed: Vec<&'a Arc<Service>> = Vec::new();
    let mut wildcard_hosts = Vec::new();
    for h in &vs.spec.hosts {
        let lower = h.to_ascii_lowercase();
        if is_wildcard(&lower) {
            wildcard_hosts.push(lower);
        } else if let Some(s) = services.iter().find(|s| s.hostname == lower) {
            claimed.push(s);
        } else {
            other.push(h.clone());
        }
    }
    for h in wildcard_hosts {
        let mut any = false;
        for s in services.iter().filter(|s| hosts::matches(&s.hostname, &h)) {
            any = true;
            if index.owner(&s.hostname).is_some_and(|o| Arc::ptr_eq(o, vs)) {
                claimed.push(s);
            }
        }
        if !any {
            other.push(h);
        }
    }
    claimed.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    claimed.dedup_by(|a, b| a.hostname == b.hostname);
    (other, claimed)
}

/// The virtual host sources of outbound port `opts.listen_port` for a sidecar seeing `vss` (its
/// mesh VirtualServices, in order).
pub(crate) fn bind_port<'a>(
    registry: &'a Registry,
    vss: &'a [&'a Arc<BoundVirtualService>],
    opts: &RouteOptions<'_>,
) -> PortBinding<'a> {
    let port = opts.listen_port;
    let on_port: Vec<&'a Arc<Service>> = registry
        .services()
        .iter()
        .filter(|s| s.port(port).is_some())
        .collect();
    let http = |s: &Arc<Service>| {
        s.port(port)
            .is_some_and(|p| p.protocol.is_http_or_sniffed())
    };
    let index = HostIndex::new(vss);
    let mut claims = Vec::new();
    for vs in vss {
        if port != NON_REGISTRY_PORT && !selects(vs, &on_port) {
            continue;
        }
        let routes = http_routes(vs, opts);
        if routes.is_empty() {
            continue;
        }
        let (other_hosts, claimed) = separate(vs, &on_port, &index);
        let services: Vec<&'a Arc<Service>> = claimed.into_iter().filter(|s| http(s)).collect();
        if services.is_empty() && port != NON_REGISTRY_PORT {
            continue;
        }
        claims.push(Claim {
            services,
            other_hosts,
            routes,
        });
    }
    let unclaimed = on_port
        .into_iter()
        .filter(|s| http(s))
        .filter(|s| {
            !claims
                .iter()
                .any(|c| c.services.iter().any(|cs| cs.hostname == s.hostname))
        })
        .collect();
    PortBinding { claims, unclaimed }
}
