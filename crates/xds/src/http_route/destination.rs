//! Where a route sends requests (Istio's `applyHTTPRouteDestination`): one cluster or weighted
//! clusters named `outbound|<port>|<subset>|<host>`, header operations, rewrites, mirrors,
//! timeout and retries.

use super::filters::{integer_percent, percent, runtime_percent};
use super::headers::{self, HeaderOps};
use super::{PortLookup, RouteOptions, matching, retry};
use crate::names::outbound_subset_cluster;
use crate::registry::Registry;
use crate::util::bool_value;
use weft_model::networking::{Destination, HttpRoute, HttpRouteDestination};
use weft_proto::envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, WeightedCluster, route, route_action, weighted_cluster,
};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use weft_proto::envoy_types::pb::google::protobuf::UInt32Value;

/// Istio's `GetDestinationCluster`: the destination's port, else the one its service implies
/// (see [`PortLookup`]), else the listener's.
pub(crate) fn destination_cluster(
    d: &Destination,
    registry: &Registry,
    listen_port: u32,
    lookup: PortLookup,
) -> String {
    if d.host.is_empty() {
        return "UnknownService".into();
    }
    let implied = || {
        let svc = registry.service(&d.host)?;
        match lookup {
            PortLookup::ListenerPort => svc.port(listen_port).map(|p| p.port),
            PortLookup::SinglePort => match svc.ports.as_slice() {
                [only] => Some(only.port),
                _ => None,
            },
        }
    };
    let port = match &d.port {
        Some(p) if p.number != 0 => p.number,
        _ => implied().unwrap_or(listen_port),
    };
    outbound_subset_cluster(port, &d.subset, &d.host)
}

pub(crate) fn cluster_name(d: &Destination, opts: &RouteOptions<'_>) -> String {
    destination_cluster(d, opts.registry, opts.listen_port, opts.port_lookup)
}

/// Istio's `MirrorPercent`: `mirrorPercentage`, else the deprecated `mirrorPercent`, else all;
/// an explicit zero mirrors nothing.
fn mirror_percent(http: &HttpRoute) -> Option<RuntimeFractionalPercent> {
    if let Some(p) = &http.mirror_percentage {
        return (p.value > 0.0).then(|| runtime_percent(percent(p)));
    }
    if let Some(p) = http.mirror_percent {
        return (p > 0).then(|| runtime_percent(integer_percent(i64::from(p))));
    }
    Some(runtime_percent(integer_percent(100)))
}

fn mirror_policy(
    cluster: String,
    fraction: RuntimeFractionalPercent,
) -> route_action::RequestMirrorPolicy {
    route_action::RequestMirrorPolicy {
        cluster,
        runtime_fraction: Some(fraction),
        trace_sampled: bool_value(false),
        ..Default::default()
    }
}

/// Fills `out`'s action: timeout, rewrite (`authority` is the `:authority` a header operation
/// set), mirrors, the destination(s), retries.
pub(super) fn apply(
    out: &mut Route,
    http: &HttpRoute,
    mut authority: String,
    opts: &RouteOptions<'_>,
) {
    let mut action = RouteAction::default();
    retry::set_timeout(&mut action, http.timeout.as_ref());
    if let Some(rw) = &http.rewrite {
        if let Some(re) = &rw.uri_regex_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(matching::regex(&re.match_)),
                substitution: re.rewrite.clone(),
            });
        } else if !rw.uri.is_empty() {
            action.prefix_rewrite = rw.uri.clone();
        }
        if !rw.authority.is_empty() {
            authority = rw.authority.clone();
        }
    }
    if !authority.is_empty() {
        action.host_rewrite_specifier = Some(
            route_action::HostRewriteSpecifier::HostRewriteLiteral(authority),
        );
    }
    if let Some(m) = &http.mirror
        && let Some(fraction) = mirror_percent(http)
    {
        action
            .request_mirror_policies
            .push(mirror_policy(cluster_name(m, opts), fraction));
    }
    for m in &http.mirrors {
        let Some(d) = &m.destination else {
            continue;
        };
        let fraction = match &m.percentage {
            Some(p) if p.value > 0.0 => runtime_percent(percent(p)),
            Some(_) => continue,
            None => runtime_percent(integer_percent(100)),
        };
        action
            .request_mirror_policies
            .push(mirror_policy(cluster_name(d, opts), fraction));
    }
    if let [only] = http.route.as_slice() {
        single(out, &mut action, only, opts);
    } else {
        let clusters = http
            .route
            .iter()
            .filter(|d| d.weight != 0)
            .map(|d| weighted(d, opts))
            .collect();
        action.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters,
                ..Default::default()
            },
        ));
    }
    // No route hashes requests yet (DestinationRule consistentHash is not applied to routes),
    // so retries always avoid the hosts already tried.
    action.retry_policy = retry::policy(http.retries.as_ref(), false);
    out.action = Some(route::Action::Route(action));
}

/// `processDestination`: its header operations join the route's; its authority applies unless
/// the route already rewrites it.
fn single(
    out: &mut Route,
    action: &mut RouteAction,
    d: &HttpRouteDestination,
    opts: &RouteOptions<'_>,
) {
    let cluster = d
        .destination
        .as_ref()
        .map(|dst| cluster_name(dst, opts))
        .unwrap_or_else(|| "UnknownService".into());
    action.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster(cluster));
    if let Some(h) = &d.headers {
        let ops = headers::operations(h);
        out.request_headers_to_add.extend(ops.request_add);
        out.request_headers_to_remove.extend(ops.request_remove);
        out.response_headers_to_add.extend(ops.response_add);
        out.response_headers_to_remove.extend(ops.response_remove);
        if !ops.authority.is_empty() && action.host_rewrite_specifier.is_none() {
            action.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(ops.authority),
            );
        }
    }
}

/// `processWeightedDestination`: header operations and authority on the cluster weight.
fn weighted(d: &HttpRouteDestination, opts: &RouteOptions<'_>) -> weighted_cluster::ClusterWeight {
    let name = d
        .destination
        .as_ref()
        .map(|dst| cluster_name(dst, opts))
        .unwrap_or_else(|| "UnknownService".into());
    let mut cw = weighted_cluster::ClusterWeight {
        name,
        weight: Some(UInt32Value {
            value: d.weight.max(0) as u32,
        }),
        ..Default::default()
    };
    if let Some(h) = &d.headers {
        let HeaderOps {
            request_add,
            response_add,
            request_remove,
            response_remove,
            authority,
        } = headers::operations(h);
        cw.request_headers_to_add = request_add;
        cw.request_headers_to_remove = request_remove;
        cw.response_headers_to_add = response_add;
        cw.response_headers_to_remove = response_remove;
        if !authority.is_empty() {
            cw.host_rewrite_specifier = Some(
                weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                    authority,
                ),
            );
        }
    }
    cw
}
