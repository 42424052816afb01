//! Consistent hashing lives on routes: a DestinationRule's `consistentHash` becomes the
//! `hash_policy` of every route action that sends to its clusters (Istio's
//! `HashForHTTPDestination` and `ConsistentHashToHashPolicy`). The clusters themselves get
//! RING_HASH or MAGLEV (see `cluster_policy`).

use super::DestinationRules;
use super::index::Rule;
use crate::names::parse_outbound_cluster;
use crate::registry::Registry;
use crate::util::duration;
use std::collections::BTreeMap;
use weft_model::networking::{ConsistentHashLb, PortTrafficPolicy, TrafficPolicy};
use weft_proto::envoy_types::pb::envoy::config::route::v3::route_action::{
    HashPolicy, hash_policy,
};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route, route_action,
};

/// The consistent hash of the first `portLevelSettings` entry for `port` (which may have none).
fn port_level(tp: Option<&TrafficPolicy>, port: u32) -> Option<&ConsistentHashLb> {
    tp?.port_level_settings
        .iter()
        .find(|p: &&PortTrafficPolicy| p.port.as_ref().is_some_and(|s| s.number == port))?
        .load_balancer
        .as_ref()?
        .consistent_hash
        .as_ref()
}

fn top_level(tp: Option<&TrafficPolicy>) -> Option<&ConsistentHashLb> {
    tp?.load_balancer.as_ref()?.consistent_hash.as_ref()
}

/// The consistent hash for traffic to `port` of the rule's host, `subset` (maybe empty): the
/// subset's port-level one, else the subset's, else the rule's port-level one, else the rule's.
pub(crate) fn consistent_hash<'a>(
    rule: &'a Rule,
    port: u32,
    subset: &str,
) -> Option<&'a ConsistentHashLb> {
    let tp = rule.spec.traffic_policy.as_deref();
    let subset_tp = rule
        .spec
        .subsets
        .iter()
        .find(|s| s.name == subset)
        .and_then(|s| s.traffic_policy.as_deref());
    port_level(subset_tp, port)
        .or(top_level(subset_tp))
        .or(port_level(tp, port))
        .or(top_level(tp))
}

/// Envoy's route hash policy for a consistent hash: by header, by cookie (Envoy generates the
/// cookie when it is absent and a `ttl` is set), by source IP, or by query parameter.
pub(crate) fn hash_policy(ch: &ConsistentHashLb) -> Option<HashPolicy> {
    let spec = if let Some(header) = &ch.http_header_name {
        hash_policy::PolicySpecifier::Header(hash_policy::Header {
            header_name: header.clone(),
            ..Default::default()
        })
    } else if let Some(cookie) = &ch.http_cookie {
        hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
            name: cookie.name.clone(),
            ttl: cookie.ttl.as_ref().map(duration),
            path: cookie.path.clone(),
            attributes: cookie
                .attributes
                .iter()
                .map(|a| hash_policy::CookieAttribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                })
                .collect(),
        })
    } else if let Some(source_ip) = ch.use_source_ip {
        hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
            source_ip,
        })
    } else if let Some(name) = &ch.http_query_parameter_name {
        hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
            name: name.clone(),
        })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(spec),
        ..Default::default()
    })
}

/// Gives every route action without a hash policy the hash policies of the DestinationRules
/// of the clusters it sends to (one per destination, in order), as a proxy in `namespace`
/// sees the rules. Actions that already carry hash policies are left alone.
pub(crate) fn add_hash_policies(
    route_configs: &mut [RouteConfiguration],
    rules: &DestinationRules,
    registry: &Registry,
    namespace: &str,
) {
    let no_labels = BTreeMap::new();
    for rc in route_configs {
        for vh in &mut rc.virtual_hosts {
            for r in &mut vh.routes {
                let Some(route::Action::Route(action)) = &mut r.action else {
                    continue;
                };
                if !action.hash_policy.is_empty() {
                    continue;
                }
                let clusters: Vec<&str> = match &action.cluster_specifier {
                    Some(route_action::ClusterSpecifier::Cluster(name)) => vec![name.as_str()],
                    Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                        w.clusters.iter().map(|c| c.name.as_str()).collect()
                    }
                    _ => continue,
                };
                let mut policies = Vec::new();
                for name in clusters {
                    let Some((port, subset, host)) = parse_outbound_cluster(name) else {
                        continue;
                    };
                    let Some(svc) = registry.service(host) else {
                        continue;
                    };
                    if let Some(hp) = rules
                        .outbound(namespace, &no_labels, svc)
                        .and_then(|rule| consistent_hash(rule, port, subset))
                        .and_then(hash_policy)
                    {
                        policies.push(hp);
                    }
                }
                action.hash_policy = policies;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn rule(yaml: &str) -> Rule {
        Rule {
            spec: serde_saphyr::from_str(yaml).unwrap(),
            namespace: "ns".into(),
            from: vec![],
            export_to: BTreeSet::new(),
        }
    }

    fn header(ch: Option<&ConsistentHashLb>) -> Option<&str> {
        ch.and_then(|c| c.http_header_name.as_deref())
    }

    #[test]
    fn subset_port_level_then_subset_then_port_level_then_rule() {
        let r = rule(
            "host: a
trafficPolicy:
  loadBalancer: {consistentHash: {httpHeaderName: top}}
  portLevelSettings:
  - port: {number: 80}
    loadBalancer: {consistentHash: {httpHeaderName: port}}
  - port: {number: 81}
    loadBalancer: {simple: RANDOM}
subsets:
- name: s
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: subset}}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {consistentHash: {httpHeaderName: subset-port}}
- name: plain
",
        );
        assert_eq!(header(consistent_hash(&r, 80, "s")), Some("subset-port"));
        assert_eq!(header(consistent_hash(&r, 90, "s")), Some("subset"));
        assert_eq!(header(consistent_hash(&r, 80, "plain")), Some("port"));
        assert_eq!(header(consistent_hash(&r, 80, "")), Some("port"));
        assert_eq!(
            header(consistent_hash(&r, 81, "")),
            Some("top"),
            "a port entry without a hash falls back to the rule's"
        );
        assert_eq!(header(consistent_hash(&r, 90, "")), Some("top"));
    }

    #[test]
    fn every_hash_key_maps_to_envoy() {
        let policy = |yaml: &str| {
            let ch: ConsistentHashLb = serde_saphyr::from_str(yaml).unwrap();
            hash_policy(&ch).and_then(|h| h.policy_specifier)
        };
        assert_eq!(
            policy(
                "httpCookie: {name: s, path: /x, ttl: 10s, attributes: [{name: SameSite, value: Strict}]}"
            ),
            Some(hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                name: "s".into(),
                ttl: Some(weft_proto::envoy_types::pb::google::protobuf::Duration {
                    seconds: 10,
                    nanos: 0
                }),
                path: "/x".into(),
                attributes: vec![hash_policy::CookieAttribute {
                    name: "SameSite".into(),
                    value: "Strict".into()
                }],
            }))
        );
        assert_eq!(
            policy("useSourceIp: true"),
            Some(hash_policy::PolicySpecifier::ConnectionProperties(
                hash_policy::ConnectionProperties { source_ip: true }
            ))
        );
        assert_eq!(
            policy("httpQueryParameterName: user"),
            Some(hash_policy::PolicySpecifier::QueryParameter(
                hash_policy::QueryParameter {
                    name: "user".into()
                }
            ))
        );
        assert!(matches!(
            policy("httpHeaderName: x-user"),
            Some(hash_policy::PolicySpecifier::Header(h)) if h.header_name == "x-user"
        ));
        assert_eq!(
            policy("maglev: {tableSize: 7}"),
            None,
            "no hash key: no policy"
        );
    }
}
