//! Istio's `ResolveVirtualServiceShortnames`: short host names become FQDNs in the
//! VirtualService's namespace, gateway names become `namespace/name`.

use crate::DOMAIN_SUFFIX;
use std::net::IpAddr;
use weft_model::networking::{Destination, VirtualService};

/// The name of the mesh's implicit gateway (every sidecar).
pub(crate) const MESH_GATEWAY: &str = "mesh";

/// `ResolveShortnameToFQDN`: a name without a dot is a Kubernetes service of `namespace`.
/// `*`, IPs and dotted names are kept.
pub(crate) fn fqdn(host: &str, namespace: &str) -> String {
    if host.is_empty() || host == "*" || host.parse::<IpAddr>().is_ok() || host.contains('.') {
        return host.to_string();
    }
    if namespace.is_empty() {
        return format!("{host}.svc.{DOMAIN_SUFFIX}");
    }
    format!("{host}.{namespace}.svc.{DOMAIN_SUFFIX}")
}

/// `resolveGatewayName`: `name` → `ns/name`, `./name` → `ns/name`, legacy
/// `name.ns.svc.cluster.local` → `ns/name`; `mesh` is kept.
pub(crate) fn gateway_name(gw: &str, namespace: &str) -> String {
    if gw == MESH_GATEWAY {
        return gw.to_string();
    }
    match gw.split_once('/') {
        Some((".", name)) => format!("{namespace}/{name}"),
        Some(_) => gw.to_string(),
        None => match gw.split_once('.') {
            None => format!("{namespace}/{gw}"),
            Some((name, rest)) => {
                let ns = rest.split('.').next().unwrap_or(rest);
                format!("{ns}/{name}")
            }
        },
    }
}

fn destination(d: &mut Destination, namespace: &str) {
    d.host = fqdn(&d.host, namespace);
}

fn gateways(list: &mut [String], namespace: &str) {
    for g in list {
        *g = gateway_name(g, namespace);
    }
}

/// Resolves every host and gateway reference of `vs` (a resource of `namespace`).
pub(crate) fn resolve(vs: &mut VirtualService, namespace: &str) {
    for h in &mut vs.hosts {
        *h = fqdn(h, namespace);
    }
    gateways(&mut vs.gateways, namespace);
    for http in &mut vs.http {
        for m in &mut http.match_ {
            gateways(&mut m.gateways, namespace);
        }
        for d in http.route.iter_mut().filter_map(|r| r.destination.as_mut()) {
            destination(d, namespace);
        }
        if let Some(m) = &mut http.mirror {
            destination(m, namespace);
        }
        for d in http
            .mirrors
            .iter_mut()
            .filter_map(|m| m.destination.as_mut())
        {
            destination(d, namespace);
        }
    }
    for tcp in &mut vs.tcp {
        for m in &mut tcp.match_ {
            gateways(&mut m.gateways, namespace);
        }
        for d in tcp.route.iter_mut().filter_map(|r| r.destination.as_mut()) {
            destination(d, namespace);
        }
    }
    for tls in &mut vs.tls {
        for m in &mut tls.match_ {
            gateways(&mut m.gateways, namespace);
        }
        for d in tls.route.iter_mut().filter_map(|r| r.destination.as_mut()) {
            destination(d, namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_gateways() {
        assert_eq!(
            fqdn("reviews", "bookinfo"),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(fqdn("reviews.other", "bookinfo"), "reviews.other");
        assert_eq!(fqdn("*", "bookinfo"), "*");
        assert_eq!(fqdn("10.0.0.1", "bookinfo"), "10.0.0.1");
        assert_eq!(fqdn("*.example.com", "bookinfo"), "*.example.com");
        assert_eq!(gateway_name("mesh", "ns"), "mesh");
        assert_eq!(gateway_name("gw", "ns"), "ns/gw");
        assert_eq!(gateway_name("./gw", "ns"), "ns/gw");
        assert_eq!(gateway_name("other/gw", "ns"), "other/gw");
        assert_eq!(gateway_name("gw.other.svc.cluster.local", "ns"), "other/gw");
        assert_eq!(gateway_name("gw.other", "ns"), "other/gw");
    }
}
