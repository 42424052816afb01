//! The listener filters `virtualInbound` needs, derived from its filter chains as Istio's
//! `populateListenerFilters` does: `tls_inspector` where a chain matches `transport_protocol:
//! tls`, then `http_inspector` where a chain matches `http/1.1` or `h2c`; each switched off
//! (`filter_disabled`) on the destination ports that need no inspection.

use super::{TLS, http_inspector_filter, tls_inspector_filter};
use std::collections::BTreeMap;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, ListenerFilter, ListenerFilterChainMatchPredicate,
    listener_filter_chain_match_predicate as predicate,
};
use weft_proto::envoy_types::pb::envoy::r#type::v3::Int32Range;

#[derive(Clone, Copy, Debug, Default)]
struct Needs {
    tls: bool,
    http: bool,
}

/// Per destination port (0: chains without one), which inspectors its chains need.
fn needs(chains: &[FilterChain]) -> BTreeMap<u32, Needs> {
    let mut out: BTreeMap<u32, Needs> = BTreeMap::new();
    for fc in chains {
        let m = fc.filter_chain_match.clone().unwrap_or_default();
        let port = m.destination_port.map(|p| p.value).unwrap_or(0);
        let n = out.entry(port).or_default();
        n.tls |= m.transport_protocol == TLS;
        n.http |= m
            .application_protocols
            .iter()
            .any(|a| a == "http/1.1" || a == "h2c");
    }
    out
}

/// Matches connections to any of `ports`.
fn any_port(ports: &[u32]) -> ListenerFilterChainMatchPredicate {
    let mut rules: Vec<ListenerFilterChainMatchPredicate> = ports
        .iter()
        .map(|&p| ListenerFilterChainMatchPredicate {
            rule: Some(predicate::Rule::DestinationPortRange(Int32Range {
                start: p as i32,
                end: p as i32 + 1,
            })),
        })
        .collect();
    if rules.len() == 1 {
        return rules.remove(0);
    }
    ListenerFilterChainMatchPredicate {
        rule: Some(predicate::Rule::OrMatch(predicate::MatchSet { rules })),
    }
}

fn none_of(ports: &[u32]) -> ListenerFilterChainMatchPredicate {
    ListenerFilterChainMatchPredicate {
        rule: Some(predicate::Rule::NotMatch(Box::new(any_port(ports)))),
    }
}

/// `tls_inspector`: when the catch-all needs it, off on the ports that do not; else on only
/// where needed.
fn tls(needs: &BTreeMap<u32, Needs>) -> ListenerFilter {
    let default_on = needs.get(&0).is_some_and(|n| n.tls);
    let ports: Vec<u32> = needs
        .iter()
        .filter(|(p, n)| **p != 0 && n.tls != default_on)
        .map(|(p, _)| *p)
        .collect();
    let mut f = tls_inspector_filter();
    if !ports.is_empty() {
        f.filter_disabled = Some(if default_on {
            any_port(&ports)
        } else {
            none_of(&ports)
        });
    }
    f
}

/// `http_inspector`: off on every port (0 included) whose chains need no sniffing.
fn http(needs: &BTreeMap<u32, Needs>) -> ListenerFilter {
    let ports: Vec<u32> = needs
        .iter()
        .filter(|(_, n)| !n.http)
        .map(|(p, _)| *p)
        .collect();
    let mut f = http_inspector_filter();
    if !ports.is_empty() {
        f.filter_disabled = Some(any_port(&ports));
    }
    f
}

/// The inspectors `chains` need, TLS first (the HTTP inspector skips what it found TLS in).
pub(crate) fn inspectors(chains: &[FilterChain]) -> Vec<ListenerFilter> {
    let needs = needs(chains);
    let mut out = Vec::new();
    if needs.values().any(|n| n.tls) {
        out.push(tls(&needs));
    }
    if needs.values().any(|n| n.http) {
        out.push(http(&needs));
    }
    out
}
