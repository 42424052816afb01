//! Which DestinationRule a proxy uses for a host: Istio's `PushContext.destinationRule` (the
//! proxy's namespace, then the service's, then the root namespace; most specific host first)
//! and `SidecarScope.DestinationRule` (a workload-selecting rule of the proxy's namespace
//! before the catch-all).

use super::index::{HostRules, Indexes, Rule};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Istio's `host.MoreSpecific`: exact hosts before wildcards, then longer, then alphabetical.
fn more_specific(a: &str, b: &str) -> bool {
    match (a.starts_with('*'), b.starts_with('*')) {
        (true, false) => false,
        (false, true) => true,
        _ if a.len() == b.len() => a < b,
        _ => a.len() > b.len(),
    }
}

/// Istio's `MostSpecificHostMatch`: the exact host, else the most specific wildcard host that
/// covers `needle` (a wildcard needle `*.a.com` is covered by `*.a.com` and `*.com`, `*`).
pub(crate) fn most_specific<'a>(needle: &str, rules: &'a HostRules) -> Option<&'a [Arc<Rule>]> {
    let exact = if needle.starts_with('*') {
        rules.wildcard.get(needle)
    } else {
        rules.specific.get(needle)
    };
    if let Some(v) = exact {
        return Some(v);
    }
    let tail = needle.strip_prefix('*').unwrap_or(needle);
    let mut best: Option<(&str, &'a Vec<Arc<Rule>>)> = None;
    for (host, v) in &rules.wildcard {
        if !tail.ends_with(&host[1..]) {
            continue;
        }
        if best.is_none_or(|(b, _)| more_specific(host, b)) {
            best = Some((host, v));
        }
    }
    best.map(|(_, v)| v.as_slice())
}

impl Indexes {
    /// The merged rules for `host` (a service of namespace `service_ns`) as a proxy in
    /// `proxy_ns` sees them, before workload selection.
    pub(crate) fn candidates(
        &self,
        proxy_ns: &str,
        root_ns: &str,
        service_ns: &str,
        host: &str,
    ) -> Vec<&Arc<Rule>> {
        // 1. The proxy's namespace (for a proxy in the root namespace: its private rules).
        let local = if proxy_ns != root_ns {
            self.namespace_local.get(proxy_ns)
        } else {
            Some(&self.root_local)
        };
        if let Some(found) = local.and_then(|rules| most_specific(host, rules)) {
            return found.iter().collect();
        }
        // 2. Rules the service's namespace exports, 3. then those the root namespace exports.
        for owner in [service_ns, root_ns] {
            if owner.is_empty() {
                continue;
            }
            let exported: Vec<&Arc<Rule>> = self
                .exported
                .get(owner)
                .and_then(|rules| most_specific(host, rules))
                .into_iter()
                .flatten()
                .filter(|r| r.exported_to(proxy_ns))
                .collect();
            if !exported.is_empty() {
                return exported;
            }
        }
        Vec::new()
    }
}

/// Istio's `SidecarScope.DestinationRule`: for outbound traffic the first rule of the proxy's
/// namespace whose workload selector matches the proxy's labels, else the last rule without a
/// selector; inbound ignores selecting rules.
pub(crate) fn select<'a>(
    candidates: &[&'a Arc<Rule>],
    proxy_ns: &str,
    labels: &BTreeMap<String, String>,
    outbound: bool,
) -> Option<&'a Arc<Rule>> {
    let mut catch_all = None;
    for rule in candidates {
        match rule.selector() {
            None => catch_all = Some(*rule),
            Some(sel) => {
                if outbound
                    && rule.namespace == proxy_ns
                    && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                {
                    return Some(rule);
                }
            }
        }
    }
    catch_all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specificity_orders_exact_then_longer_then_alphabetical() {
        assert!(more_specific("a.com", "*.a.com"));
        assert!(!more_specific("*.a.com", "a.com"));
        assert!(more_specific("*.b.a.com", "*.a.com"));
        assert!(more_specific("*.a.com", "*.b.com"));
        assert!(!more_specific("*.b.com", "*.a.com"));
    }
}
