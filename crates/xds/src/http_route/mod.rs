//! A VirtualService's HTTP routes as Envoy routes (Istio's `BuildHTTPRoutesForVirtualService` and
//! `TranslateRoute`), for sidecars (`mesh`) and gateways alike. Pure: everything comes in
//! through [`RouteOptions`].
//!
//! Each `http` entry gives one Envoy route per match (or one for no match) that applies to this
//! proxy (listener port, gateways, source labels and namespace), in order; generation stops after
//! the first route matching every request, since Envoy would never look further. A request no
//! route matches gets Envoy's 404: no default route to the service is appended (as Istio).

mod destination;
mod filters;
mod headers;
pub(crate) mod matching;
mod redirect;
pub(crate) mod retry;

pub(crate) use destination::destination_cluster;
pub(crate) use filters::{CORS_FILTER, FAULT_FILTER};

use crate::names::parse_outbound_cluster;
use crate::registry::Registry;
use crate::util::metadata;
use crate::virtual_service::BoundVirtualService;
use std::collections::{BTreeMap, BTreeSet};
use weft_model::networking::{HttpMatchRequest, HttpRoute};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    Decorator, Route, route, route_action,
};
use weft_proto::envoy_types::util::pack_any;

/// How a destination without a port picks one (Istio's `LookupService` + `GetDestinationCluster`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortLookup {
    /// Sidecars: a service is known only through the port being routed, so the listener's port.
    ListenerPort,
    /// Gateways: a service with exactly one port implies it; anything else, the listener's.
    SinglePort,
}

/// What route generation needs to know about the proxy and the listener.
pub(crate) struct RouteOptions<'a> {
    pub registry: &'a Registry,
    /// The port the routes are served on (the service port for sidecars, the server port for
    /// gateways).
    pub listen_port: u32,
    /// The gateways this proxy is: `{"mesh"}` for sidecars, resolved `ns/name`s for gateways.
    pub gateways: &'a BTreeSet<String>,
    pub proxy_labels: &'a BTreeMap<String, String>,
    pub proxy_namespace: &'a str,
    /// The listener terminates TLS (redirects default to `https`).
    pub tls: bool,
    pub port_lookup: PortLookup,
}

/// The HTTP routes of `vs` for one listener port of one proxy, in order (Istio's
/// `BuildHTTPRoutesForVirtualService`). Empty when no route applies to the proxy.
///
/// This is what gateways call too: pass the gateway names the proxy serves in
/// [`RouteOptions::gateways`], `PortLookup::SinglePort`, and whether the server terminates TLS.
pub(crate) fn http_routes(vs: &BoundVirtualService, opts: &RouteOptions<'_>) -> Vec<Route> {
    let mut out = Vec::new();
    for http in &vs.spec.http {
        if http.match_.is_empty() {
            out.extend(translate(vs, http, None, opts));
            break;
        }
        let mut catch_all = false;
        for m in &http.match_ {
            if let Some(r) = translate(vs, http, Some(m), opts) {
                catch_all = matching::is_catch_all(&r);
                out.push(r);
                if catch_all {
                    break;
                }
            }
        }
        if catch_all {
            break;
        }
    }
    out
}

/// Istio's `TranslateRoute`; `None` when the match does not apply to this proxy.
fn translate(
    vs: &BoundVirtualService,
    http: &HttpRoute,
    m: Option<&HttpMatchRequest>,
    opts: &RouteOptions<'_>,
) -> Option<Route> {
    if !matching::applies(m, opts) {
        return None;
    }
    let mut name = http.name.clone();
    if let Some(m) = m.filter(|m| !m.name.is_empty()) {
        name = format!("{name}.{}", m.name);
    }
    let mut out = Route {
        name,
        r#match: Some(matching::route_match(m)),
        metadata: metadata("istio", "config", &vs.config_path()),
        stat_prefix: m.map(|m| m.stat_prefix.clone()).unwrap_or_default(),
        ..Default::default()
    };
    let mut authority = String::new();
    if let Some(h) = &http.headers {
        let ops = headers::operations(h);
        out.request_headers_to_add = ops.request_add;
        out.response_headers_to_add = ops.response_add;
        out.request_headers_to_remove = ops.request_remove;
        out.response_headers_to_remove = ops.response_remove;
        authority = ops.authority;
    }
    if let Some(r) = &http.redirect {
        redirect::apply_redirect(&mut out, r, opts.listen_port, opts.tls);
    } else if let Some(d) = &http.direct_response {
        redirect::apply_direct_response(&mut out, d);
    } else {
        destination::apply(&mut out, http, authority, opts);
    }
    out.decorator = Some(Decorator {
        operation: operation(&out, &vs.name, opts.listen_port),
        ..Default::default()
    });
    if let Some(f) = &http.fault {
        let fault = filters::fault(f).unwrap_or_default();
        out.typed_per_filter_config
            .insert(FAULT_FILTER.into(), pack_any(fault));
    }
    if let Some(c) = &http.cors_policy {
        out.typed_per_filter_config
            .insert(CORS_FILTER.into(), pack_any(filters::cors(c)));
    }
    Some(out)
}

/// Istio's `GetRouteOperation`: `<host>:<port><path>` for a single destination cluster, else
/// `<virtual service>:<listener port><path>`.
fn operation(r: &Route, vs_name: &str, port: u32) -> String {
    use weft_proto::envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
    let path = match r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
        Some(PathSpecifier::Prefix(p)) => format!("{p}*"),
        Some(PathSpecifier::Path(p)) => p.clone(),
        Some(PathSpecifier::SafeRegex(re)) => re.regex.clone(),
        _ => "/*".into(),
    };
    if let Some(route::Action::Route(a)) = &r.action
        && let Some(route_action::ClusterSpecifier::Cluster(c)) = &a.cluster_specifier
        && let Some((p, _, host)) = parse_outbound_cluster(c)
    {
        return format!("{host}:{p}{path}");
    }
    format!("{vs_name}:{port}{path}")
}

#[cfg(test)]
mod tests;
