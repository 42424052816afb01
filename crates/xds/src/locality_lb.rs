//! Locality load balancing relative to the calling proxy (Istio's `ApplyLocalityLoadBalancer`):
//! `distribute` rewrites locality weights; failover (only with outlier detection, or Envoy
//! would never leave priority 0) sets priorities by how much of the proxy's
//! region/zone/subzone an endpoint locality shares, by `failover` region pairs, and by
//! `failoverPriority` labels. Istio's default mesh config enables it, so a DestinationRule with
//! outlier detection alone already orders endpoints by locality.

use crate::registry::{Endpoint, Locality, NETWORK_LABEL};
use std::collections::{BTreeMap, BTreeSet};
use weft_model::networking::{
    LoadBalancerSettings, LocalityDistribute, LocalityFailover, LocalityLoadBalancerSetting,
};
use weft_proto::envoy_types::pb::envoy::config::core::v3::Locality as EnvoyLocality;
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LocalityLbEndpoints,
};
use weft_proto::envoy_types::pb::google::protobuf::UInt32Value;

/// Istio's default `MeshConfig.localityLbSetting`: enabled, nothing else.
static MESH_DEFAULT: LocalityLoadBalancerSetting = LocalityLoadBalancerSetting {
    distribute: Vec::new(),
    failover: Vec::new(),
    failover_priority: Vec::new(),
    enabled: Some(true),
};

/// The locality setting in force (Istio's `GetEffectiveLbSetting`, locality part): the rule's
/// unless it disables locality load balancing, else the mesh default.
pub(crate) fn effective(lb: Option<&LoadBalancerSettings>) -> Option<&LocalityLoadBalancerSetting> {
    match lb.and_then(|lb| lb.locality_lb_setting.as_ref()) {
        Some(s) if s.enabled == Some(false) => None,
        Some(s) => Some(s),
        None => Some(&MESH_DEFAULT),
    }
}

/// What of the proxy asking the result depends on (ordered: more is more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dependence {
    Nothing,
    /// Its locality (`distribute`'s `from`, failover by locality).
    Locality,
    /// Its locality and its labels (`failoverPriority`).
    LocalityAndLabels,
}

impl Dependence {
    /// Whether a proxy at `locality` with `labels` may get another result than one with
    /// neither (which the shared lists are built for).
    pub(crate) fn affects(self, locality: &Locality, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Dependence::Nothing => false,
            Dependence::Locality => *locality != Locality::default(),
            Dependence::LocalityAndLabels => *locality != Locality::default() || !labels.is_empty(),
        }
    }
}

/// What [`apply`] with `setting` reads of the proxy.
pub(crate) fn dependence(setting: &LocalityLoadBalancerSetting, failover: bool) -> Dependence {
    if !setting.distribute.is_empty() {
        Dependence::Locality
    } else if failover && !setting.failover_priority.is_empty() {
        Dependence::LocalityAndLabels
    } else if failover {
        Dependence::Locality
    } else {
        Dependence::Nothing
    }
}

/// Whether the cluster needs `common_lb_config.locality_weighted_lb_config`.
pub(crate) fn locality_weighted(setting: &LocalityLoadBalancerSetting, failover: bool) -> bool {
    (failover && (!setting.failover.is_empty() || !setting.failover_priority.is_empty()))
        || !setting.distribute.is_empty()
}

fn region_zone_subzone(l: Option<&EnvoyLocality>) -> (&str, &str, &str) {
    l.map(|l| (l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()))
        .unwrap_or_default()
}

/// Istio's `LocalityMatch`: `region[/zone[/subzone]]`, `*` matching anything, omitted parts too.
fn locality_match(l: (&str, &str, &str), rule: &str) -> bool {
    let mut parts = rule.splitn(3, '/');
    let (r, z, s) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    (r == "*" || l.0 == r)
        && (z == "*" || z.is_empty() || l.1 == z)
        && (s == "*" || s.is_empty() || l.2 == s)
}

/// Istio's `LbPriority`: 0 same subzone, 1 same zone, 2 same region, 3 otherwise.
fn lb_priority(proxy: (&str, &str, &str), ep: (&str, &str, &str)) -> u32 {
    if proxy.0 != ep.0 {
        3
    } else if proxy.1 != ep.1 {
        2
    } else if proxy.2 != ep.2 {
        1
    } else {
        0
    }
}

/// Renumbers priorities to 0..N without gaps, keeping their order.
fn compact(endpoints: &mut [LocalityLbEndpoints]) {
    let used: BTreeSet<u32> = endpoints.iter().map(|e| e.priority).collect();
    let rank: BTreeMap<u32, u32> = used.into_iter().zip(0..).collect();
    for e in endpoints {
        e.priority = rank[&e.priority];
    }
}

/// `distribute`: the first entry whose `from` matches the proxy sets each matching locality's
/// weight (its share of `to`'s weight, split by original weights); unmatched localities get
/// no endpoints.
fn apply_weights(
    cla: &mut ClusterLoadAssignment,
    proxy: &Locality,
    distribute: &[LocalityDistribute],
) {
    let me = (
        proxy.region.as_str(),
        proxy.zone.as_str(),
        proxy.sub_zone.as_str(),
    );
    let Some(rule) = distribute.iter().find(|d| locality_match(me, &d.from)) else {
        return;
    };
    let mut unmatched: BTreeSet<usize> = (0..cla.endpoints.len()).collect();
    for (to, weight) in &rule.to {
        let mut originals: Vec<(usize, u32)> = Vec::new();
        for (i, e) in cla.endpoints.iter().enumerate() {
            if unmatched.contains(&i)
                && locality_match(region_zone_subzone(e.locality.as_ref()), to)
            {
                unmatched.remove(&i);
                originals.push((i, e.load_balancing_weight.map(|w| w.value).unwrap_or(1)));
            }
        }
        let total: u32 = originals.iter().fold(0, |t, (_, w)| t.wrapping_add(*w));
        for (i, original) in originals {
            let share = f64::from(original.wrapping_mul(*weight)) / f64::from(total);
            if share > 0.0 {
                cla.endpoints[i].load_balancing_weight = Some(UInt32Value {
                    value: share.ceil() as u32,
                });
            }
        }
    }
    for i in unmatched {
        cla.endpoints[i].lb_endpoints.clear();
    }
}

/// Failover by locality: priority from how much of the proxy's locality an endpoint locality
/// shares; a `failover` entry from the proxy's region sends regions other than its `to` one
/// further down. Composes with priorities already set (×5).
fn apply_failover(
    cla: &mut ClusterLoadAssignment,
    proxy: &Locality,
    failover: &[LocalityFailover],
) {
    let me = (
        proxy.region.as_str(),
        proxy.zone.as_str(),
        proxy.sub_zone.as_str(),
    );
    for e in &mut cla.endpoints {
        let loc = region_zone_subzone(e.locality.as_ref());
        let mut priority = lb_priority(me, loc);
        if priority == 3
            && let Some(f) = failover.iter().find(|f| f.from == proxy.region)
            && (e.locality.is_none() || loc.0 != f.to)
        {
            priority = 4;
        }
        e.priority = e.priority * 5 + priority;
    }
    compact(&mut cla.endpoints);
}

/// `failoverPriority`: splits each locality's endpoints by how many of the listed labels (in
/// order, `label=value` overriding the proxy's value) they share with the proxy; a leading
/// network label that differs only demotes below every other level.
fn apply_failover_priority(
    cla: &mut ClusterLoadAssignment,
    groups: &[Vec<&Endpoint>],
    labels: &BTreeMap<String, String>,
    priorities: &[String],
) {
    if labels.is_empty() || groups.is_empty() {
        return;
    }
    let lowest = priorities.len() as u32;
    let includes_network = priorities.first().is_some_and(|p| p == NETWORK_LABEL);
    let keys: Vec<(&str, Option<&str>)> = priorities
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p.as_str(), None),
        })
        .collect();
    let mut out: Vec<LocalityLbEndpoints> = Vec::new();
    for (locality, eps) in cla.endpoints.iter().zip(groups) {
        let mut by_priority: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, ep) in eps.iter().enumerate() {
            let (mut priority, mut adjust) = (0, 0);
            for (j, (key, value)) in keys.iter().enumerate() {
                let wanted = value.or_else(|| labels.get(*key).map(String::as_str));
                let have = ep.labels.get(*key).map(String::as_str);
                if wanted.unwrap_or_default() != have.unwrap_or_default() {
                    if j == 0 && includes_network {
                        adjust = lowest;
                        continue;
                    }
                    priority = lowest - j as u32;
                    break;
                }
            }
            by_priority.entry(priority + adjust).or_default().push(i);
        }
        for (priority, indexes) in by_priority {
            let lb_endpoints: Vec<_> = indexes
                .iter()
                .filter_map(|i| locality.lb_endpoints.get(*i).cloned())
                .collect();
            let weight = lb_endpoints.iter().fold(0u32, |w, e| {
                w.wrapping_add(e.load_balancing_weight.map(|v| v.value).unwrap_or(0))
            });
            out.push(LocalityLbEndpoints {
                lb_endpoints,
                priority,
                load_balancing_weight: Some(UInt32Value { value: weight }),
                ..locality.clone()
            });
        }
    }
    compact(&mut out);
    cla.endpoints = out;
}

/// Applies `setting` to `cla` for a proxy at `locality` with `labels`. `groups` are the
/// registry endpoints of `cla.endpoints`, locality by locality; `failover` is whether outlier
/// detection is on.
pub(crate) fn apply(
    cla: &mut ClusterLoadAssignment,
    groups: &[Vec<&Endpoint>],
    locality: &Locality,
    labels: &BTreeMap<String, String>,
    setting: &LocalityLoadBalancerSetting,
    failover: bool,
) {
    if !setting.distribute.is_empty() {
        apply_weights(cla, locality, &setting.distribute);
    } else if failover {
        if !setting.failover_priority.is_empty() {
            apply_failover_priority(cla, groups, labels, &setting.failover_priority);
            if !setting.failover.is_empty() {
                apply_failover(cla, locality, &setting.failover);
            }
        } else {
            apply_failover(cla, locality, &setting.failover);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::{assignment, by_locality};
    use crate::registry::TlsMode;
    use std::sync::Arc;

    fn ep(addr: &str, locality: &str, weight: u32, labels: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            address: addr.into(),
            port: 80,
            weight,
            locality: Locality::parse(locality),
            network: String::new(),
            service_account: String::new(),
            tls_mode: TlsMode::Disabled,
            workload: addr.into(),
            labels: Arc::new(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    /// (locality, priority, weight, addresses), in order.
    fn summary(cla: &ClusterLoadAssignment) -> Vec<(String, u32, u32, Vec<String>)> {
        cla.endpoints
            .iter()
            .map(|l| {
                let loc = l
                    .locality
                    .as_ref()
                    .map(|l| format!("{}/{}", l.region, l.zone))
                    .unwrap_or_default();
                let addrs = l
                    .lb_endpoints
                    .iter()
                    .map(|e| match &e.host_identifier {
                        Some(weft_proto::envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(e)) => {
                            match e.address.as_ref().and_then(|a| a.address.as_ref()) {
                                Some(weft_proto::envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s)) => s.address.clone(),
                                _ => String::new(),
                            }
                        }
                        _ => String::new(),
                    })
                    .collect();
                (
                    loc,
                    l.priority,
                    l.load_balancing_weight.map(|w| w.value).unwrap_or(0),
                    addrs,
                )
            })
            .collect()
    }

    fn setting(yaml: &str) -> LocalityLoadBalancerSetting {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn run(
        eps: &[Endpoint],
        proxy: &str,
        labels: &[(&str, &str)],
        s: &str,
        failover: bool,
    ) -> Vec<(String, u32, u32, Vec<String>)> {
        let groups = by_locality(eps);
        let mut cla = assignment("c", &groups, None);
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        apply(
            &mut cla,
            &groups,
            &Locality::parse(proxy),
            &labels,
            &setting(s),
            failover,
        );
        summary(&cla)
    }

    fn row(
        loc: &str,
        priority: u32,
        weight: u32,
        addrs: &[&str],
    ) -> (String, u32, u32, Vec<String>) {
        (
            loc.into(),
            priority,
            weight,
            addrs.iter().map(|a| a.to_string()).collect(),
        )
    }

    #[test]
    fn failover_orders_by_shared_locality_and_failover_region() {
        let eps = [
            ep("10.0.0.1", "us-east/z1", 1, &[]),
            ep("10.0.0.2", "us-east/z2", 1, &[]),
            ep("10.0.0.3", "us-west/z1", 1, &[]),
            ep("10.0.0.4", "eu/z1", 1, &[]),
        ];
        let s = "enabled: true\nfailover: [{from: us-east, to: us-west}]\n";
        assert_eq!(
            run(&eps, "us-east/z1", &[], s, true),
            [
                row("eu/z1", 3, 1, &["10.0.0.4"]),
                row("us-east/z1", 0, 1, &["10.0.0.1"]),
                row("us-east/z2", 1, 1, &["10.0.0.2"]),
                row("us-west/z1", 2, 1, &["10.0.0.3"]),
            ]
        );
        // Without outlier detection there is no failover at all.
        assert!(
            run(&eps, "us-east/z1", &[], s, false)
                .iter()
                .all(|r| r.1 == 0)
        );
        // Without a failover entry every other region shares the last priority.
        assert_eq!(
            run(&eps, "us-east/z1", &[], "{}", true)
                .iter()
                .map(|r| r.1)
                .collect::<Vec<_>>(),
            [2, 0, 1, 2]
        );
    }

    #[test]
    fn distribute_splits_weights_and_drops_unlisted_localities() {
        let eps = [
            ep("10.0.0.1", "us-east/z1", 1, &[]),
            ep("10.0.0.2", "us-east/z2", 3, &[]),
            ep("10.0.0.3", "us-west/z1", 1, &[]),
            ep("10.0.0.4", "eu/z1", 1, &[]),
        ];
        let s = "distribute:\n- from: us-east/*\n  to: {\"us-east/*\": 60, \"us-west/z1\": 40}\n";
        assert_eq!(
            run(&eps, "us-east/z1", &[], s, false),
            [
                row("eu/z1", 0, 1, &[]),
                row("us-east/z1", 0, 15, &["10.0.0.1"]),
                row("us-east/z2", 0, 45, &["10.0.0.2"]),
                row("us-west/z1", 0, 40, &["10.0.0.3"]),
            ]
        );
        // A proxy no `from` matches: unchanged.
        assert_eq!(run(&eps, "eu/z1", &[], s, false)[1].2, 1);
    }

    #[test]
    fn failover_priority_splits_localities_by_labels() {
        let net = NETWORK_LABEL;
        let eps = [
            ep("10.0.0.1", "r/z", 1, &[(net, "n1"), ("version", "v1")]),
            ep("10.0.0.2", "r/z", 1, &[(net, "n1"), ("version", "v2")]),
            ep("10.0.0.3", "r/z", 1, &[(net, "n2"), ("version", "v1")]),
            ep("10.0.0.4", "r/z", 1, &[(net, "n2"), ("version", "v2")]),
        ];
        let s = format!("failoverPriority: [\"{net}\", version]\n");
        assert_eq!(
            run(&eps, "r/z", &[(net, "n1"), ("version", "v1")], &s, true),
            [
                row("r/z", 0, 1, &["10.0.0.1"]),
                row("r/z", 1, 1, &["10.0.0.2"]),
                row("r/z", 2, 1, &["10.0.0.3"]),
                row("r/z", 3, 1, &["10.0.0.4"]),
            ]
        );
        // `label=value` overrides the proxy's own value.
        let s = "failoverPriority: [version=v2]\n";
        assert_eq!(
            run(&eps, "r/z", &[("version", "v1")], s, true)
                .iter()
                .map(|r| r.3.clone())
                .collect::<Vec<_>>(),
            [
                vec!["10.0.0.2".to_string(), "10.0.0.4".into()],
                vec!["10.0.0.1".into(), "10.0.0.3".into()]
            ]
        );
    }

    #[test]
    fn disabled_setting_falls_back_to_nothing() {
        let lb: LoadBalancerSettings =
            serde_saphyr::from_str("localityLbSetting: {enabled: false}").unwrap();
        assert!(effective(Some(&lb)).is_none());
        assert_eq!(effective(None), Some(&MESH_DEFAULT));
    }
}
