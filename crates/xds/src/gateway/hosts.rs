//! Host names as Istio compares them (`pkg/config/host`), and the short names configuration may
//! use (`ResolveShortnameToFQDN`, `resolveGatewayName`).

use crate::DOMAIN_SUFFIX;
use std::net::IpAddr;

fn wildcard(h: &str) -> bool {
    h.starts_with('*')
}

/// Istio's `Name.Matches`: the two names have a host in common.
pub(crate) fn matches(a: &str, b: &str) -> bool {
    match (wildcard(a), wildcard(b)) {
        (true, true) => {
            let (a, b) = (&a[1..], &b[1..]);
            if a.len() < b.len() {
                b.ends_with(a)
            } else {
                a.ends_with(b)
            }
        }
        (true, false) => b.ends_with(&a[1..]),
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// Istio's `Name.SubsetOf`: every host `n` names is one `o` names.
pub(crate) fn subset_of(n: &str, o: &str) -> bool {
    match (wildcard(n), wildcard(o)) {
        (true, true) => o.len() <= n.len() && n[1..].ends_with(&o[1..]),
        (false, true) => n.ends_with(&o[1..]),
        (true, false) => false,
        (false, false) => n == o,
    }
}

/// A host as configuration in `namespace` means it: names without a dot are short names of
/// services in that namespace (`forum` → `forum.<ns>.svc.cluster.local`); `*`, IPs and dotted
/// names are taken as written.
pub(crate) fn resolve_short(host: &str, namespace: &str) -> String {
    if host.is_empty() || host == "*" || host.contains('.') || host.parse::<IpAddr>().is_ok() {
        return host.to_string();
    }
    format!("{host}.{namespace}.svc.{DOMAIN_SUFFIX}")
}

/// A gateway reference (VirtualService `gateways`, match `gateways`) made `namespace/name`:
/// `name` and `./name` are in `namespace`, `ns/name` is as written, and the legacy
/// `name.ns.svc.cluster.local` form names `ns/name`.
pub(crate) fn resolve_gateway(reference: &str, namespace: &str) -> String {
    if let Some((ns, name)) = reference.split_once('/') {
        let ns = if ns == "." { namespace } else { ns };
        return format!("{ns}/{name}");
    }
    if let Some((name, rest)) = reference.split_once('.') {
        let ns = rest.split('.').next().unwrap_or_default();
        return format!("{ns}/{name}");
    }
    format!("{namespace}/{reference}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_subsets_follow_istio() {
        assert!(matches("*", "forum.forum-services.svc.cluster.local"));
        assert!(matches("*.local", "forum.forum-services.svc.cluster.local"));
        assert!(matches("forum.local", "*.local"));
        assert!(matches("*.svc.cluster.local", "*.local"));
        assert!(!matches("*.com", "forum.local"));
        assert!(!matches("a.local", "b.local"));
        assert!(subset_of(
            "forum.forum-services.svc.cluster.local",
            "*.local"
        ));
        assert!(subset_of("x.local", "*"));
        assert!(subset_of("*.svc.cluster.local", "*.local"));
        assert!(!subset_of("*.local", "*.svc.cluster.local"));
        assert!(!subset_of("*.local", "x.local"));
        assert!(!subset_of("forum.example.com", "*.local"));
        assert!(subset_of("a.local", "a.local"));
    }

    #[test]
    fn short_names_and_gateway_references() {
        assert_eq!(
            resolve_short("istiod", "istio-system"),
            "istiod.istio-system.svc.cluster.local"
        );
        for as_is in [
            "istiod.istio-system.svc.cluster.local",
            "a.b",
            "*",
            "10.0.0.1",
            "::1",
        ] {
            assert_eq!(resolve_short(as_is, "ns"), as_is);
        }
        assert_eq!(
            resolve_gateway("istiod-gateway", "istio-system"),
            "istio-system/istiod-gateway"
        );
        assert_eq!(resolve_gateway("./gw", "a"), "a/gw");
        assert_eq!(resolve_gateway("b/gw", "a"), "b/gw");
        assert_eq!(resolve_gateway("gw.b.svc.cluster.local", "a"), "b/gw");
    }
}
