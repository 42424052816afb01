//! The traffic policy of one cluster: the rule's top-level policy or its port-level settings
//! for the port, with a subset's own policy merged over it (Istio's `GetPortLevelTrafficPolicy`,
//! `MergeSubsetTrafficPolicy` and `MergeTrafficPolicy`).

use super::index::Rule;
use weft_model::networking::{
    ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection,
    PortTrafficPolicy, RetryBudget, TrafficPolicy,
};

/// The parts of a `TrafficPolicy` a cluster uses, each possibly unset.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Policy<'a> {
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    pub outlier_detection: Option<&'a OutlierDetection>,
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    pub tls: Option<&'a ClientTlsSettings>,
    pub retry_budget: Option<&'a RetryBudget>,
}

impl<'a> Policy<'a> {
    fn whole(tp: &'a TrafficPolicy) -> Policy<'a> {
        Policy {
            connection_pool: tp.connection_pool.as_ref(),
            outlier_detection: tp.outlier_detection.as_ref(),
            load_balancer: tp.load_balancer.as_ref(),
            tls: tp.tls.as_ref(),
            retry_budget: tp.retry_budget.as_ref(),
        }
    }

    /// Port-level settings replace the whole policy: what they omit is the default, not
    /// inherited (and they carry no retry budget).
    fn port_level(p: &'a PortTrafficPolicy) -> Policy<'a> {
        Policy {
            connection_pool: p.connection_pool.as_ref(),
            outlier_detection: p.outlier_detection.as_ref(),
            load_balancer: p.load_balancer.as_ref(),
            tls: p.tls.as_ref(),
            retry_budget: None,
        }
    }
}

/// `GetPortLevelTrafficPolicy`: the first `portLevelSettings` entry for `port` if any (and
/// `true`), else the whole policy.
fn for_port(tp: Option<&TrafficPolicy>, port: u32) -> (Option<Policy<'_>>, bool) {
    let Some(tp) = tp else {
        return (None, false);
    };
    match tp
        .port_level_settings
        .iter()
        .find(|p| p.port.as_ref().is_some_and(|s| s.number == port))
    {
        Some(p) => (Some(Policy::port_level(p)), true),
        None => (Some(Policy::whole(tp)), false),
    }
}

/// The policy of the cluster for `port` and `subset` (empty: the default cluster) under
/// `rule`: the subset's policy for the port overrides, part by part, the rule's; when the
/// subset has port-level settings for the port they override every part.
pub(crate) fn cluster_policy<'a>(rule: &'a Rule, port: u32, subset: &str) -> Policy<'a> {
    let (original, _) = for_port(rule.spec.traffic_policy.as_deref(), port);
    let subset_tp = rule
        .spec
        .subsets
        .iter()
        .find(|s| !subset.is_empty() && s.name == subset)
        .and_then(|s| s.traffic_policy.as_deref());
    if subset_tp.is_none() {
        return original.unwrap_or_default();
    }
    let (sub, has_port_level) = for_port(subset_tp, port);
    let sub = sub.unwrap_or_default();
    let Some(mut merged) = original else {
        return sub;
    };
    if sub.connection_pool.is_some() || has_port_level {
        merged.connection_pool = sub.connection_pool;
    }
    if sub.outlier_detection.is_some() || has_port_level {
        merged.outlier_detection = sub.outlier_detection;
    }
    if sub.load_balancer.is_some() || has_port_level {
        merged.load_balancer = sub.load_balancer;
    }
    if sub.tls.is_some() || has_port_level {
        merged.tls = sub.tls;
    }
    if sub.retry_budget.is_some() {
        merged.retry_budget = sub.retry_budget;
    }
    merged
}

/// The `tls.mode` the rule sets for the cluster (Istio's `tlsModeForDestinationRule`): the
/// subset's (port-level first), else the rule's (port-level first). Decides which endpoints EDS
/// marks `tlsMode: istio`.
pub(crate) fn tls_mode<'a>(rule: &'a Rule, port: u32, subset: &str) -> Option<&'a str> {
    fn mode_for_port(tp: Option<&TrafficPolicy>, port: u32) -> Option<&str> {
        let tp = tp?;
        tp.port_level_settings
            .iter()
            .find(|p| p.port.as_ref().is_some_and(|s| s.number == port) && p.tls.is_some())
            .and_then(|p| p.tls.as_ref())
            .or(tp.tls.as_ref())
            .map(|t| t.mode.as_str())
    }
    let top = rule.spec.traffic_policy.as_deref();
    if subset.is_empty() {
        return mode_for_port(top, port);
    }
    let s = rule.spec.subsets.iter().find(|s| s.name == subset)?;
    mode_for_port(s.traffic_policy.as_deref(), port).or_else(|| mode_for_port(top, port))
}
