//! RDS for sidecars: one route configuration per outbound HTTP port (named `"<port>"`) with a
//! virtual host per host served on that port, then the catch-all (`allow_any` / `block_all`);
//! and one per sniffed service port on a VIP (`"<host>:<port>"`) with that service's virtual
//! host only, for any domain. Which VirtualService serves which host is decided in
//! [`binding`]; the routes themselves come from [`http_route`]. Services no VirtualService
//! claims get Istio's default route (everything to `outbound|<port>||<host>`, default retries,
//! no timeout).

use crate::http_route::{PortLookup, RouteOptions, retry};
use crate::listeners::outbound_plan::{self, sniffed_route_name};
use crate::mesh::MeshConfig;
use crate::names::{PASSTHROUGH_CLUSTER, outbound_cluster};
use crate::registry::{Registry, Service};
use crate::util::{bool_value, secs, u32_value};
use crate::virtual_service::resolve::MESH_GATEWAY;
use crate::virtual_service::{BoundVirtualService, VirtualServices, binding};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    Decorator, DirectResponseAction, RetryPolicy, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost, route, route_action, route_match,
};

/// Istio's `DefaultMaxDirectResponseBodySizeBytes`.
const MAX_DIRECT_RESPONSE_BODY: u32 = 1024 * 1024;

/// The proxy a set of route configurations is for: what its routes depend on.
pub(crate) struct RouteScope<'a> {
    /// Decides which VirtualServices it sees and its source-namespace matches.
    pub namespace: &'a str,
    /// `<ns>.svc.cluster.local`: decides which short host names its domains accept.
    pub dns_domain: &'a str,
    /// For `sourceLabels` matches.
    pub labels: &'a BTreeMap<String, String>,
}

/// Route configurations for a sidecar: one for each name an outbound listener's HTTP chain uses:
/// `"<port>"`, ordered by port, then `"<host>:<port>"` (a sniffed service bound to its VIP), by
/// name.
pub(crate) fn route_configs(
    registry: &Registry,
    virtual_services: &VirtualServices,
    mesh: &MeshConfig,
    scope: &RouteScope<'_>,
) -> Vec<RouteConfiguration> {
    let plan = outbound_plan::plan(registry, None);
    let mut ports: BTreeSet<u32> = BTreeSet::new();
    let mut sniffed: BTreeSet<(String, u32)> = BTreeSet::new();
    for name in plan.values().flat_map(|e| e.route_names()) {
        match name.parse::<u32>() {
            Ok(port) => {
                ports.insert(port);
            }
            Err(_) => {
                if let Some((host, port)) = name.rsplit_once(':')
                    && let Ok(port) = port.parse()
                {
                    sniffed.insert((host.to_string(), port));
                }
            }
        }
    }
    let vss = virtual_services.for_mesh(scope.namespace);
    let mut by_port: BTreeMap<u32, Vec<VirtualHost>> = BTreeMap::new();
    let mut port_vhosts = |port: u32| -> Vec<VirtualHost> {
        by_port
            .entry(port)
            .or_insert_with(|| port_virtual_hosts(registry, &vss, scope, port))
            .clone()
    };
    let mut out = Vec::new();
    for port in ports {
        let mut vhosts = port_virtual_hosts_sorted(port_vhosts(port));
        vhosts.push(catch_all(mesh));
        out.push(route_configuration(port.to_string(), vhosts));
    }
    for (host, port) in sniffed {
        let vhosts = sniffed_virtual_hosts(port_vhosts(port), &host, port);
        out.push(route_configuration(sniffed_route_name(&host, port), vhosts));
    }
    out
}

fn port_virtual_hosts_sorted(mut vhosts: Vec<VirtualHost>) -> Vec<VirtualHost> {
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    vhosts
}

/// Istio's `getVirtualHostsForSniffedServicePort`: the virtual hosts of the port serving `host`;
/// a single one answers for any domain.
fn sniffed_virtual_hosts(vhosts: Vec<VirtualHost>, host: &str, port: u32) -> Vec<VirtualHost> {
    let with_port = sniffed_route_name(host, port);
    let mut out: Vec<VirtualHost> = vhosts
        .into_iter()
        .filter(|vh| vh.domains.iter().any(|d| *d == with_port || d == host))
        .collect();
    if let [only] = out.as_mut_slice() {
        only.domains = vec!["*".into()];
    }
    out
}

fn route_configuration(name: String, virtual_hosts: Vec<VirtualHost>) -> RouteConfiguration {
    RouteConfiguration {
        name,
        virtual_hosts,
        validate_clusters: bool_value(false),
        max_direct_response_body_size_bytes: u32_value(MAX_DIRECT_RESPONSE_BODY),
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

/// Virtual hosts of one outbound port, before sorting (Istio's `BuildSidecarOutboundVirtualHosts`):
/// VirtualService claims first, then services' defaults. A virtual host name (`<host>:<port>`) or
/// domain already taken is not given again.
fn port_virtual_hosts(
    registry: &Registry,
    vss: &[&Arc<BoundVirtualService>],
    scope: &RouteScope<'_>,
    port: u32,
) -> Vec<VirtualHost> {
    let gateways: BTreeSet<String> = [MESH_GATEWAY.to_string()].into();
    let opts = RouteOptions {
        registry,
        listen_port: port,
        gateways: &gateways,
        proxy_labels: scope.labels,
        proxy_namespace: scope.namespace,
        tls: false,
        port_lookup: PortLookup::ListenerPort,
    };
    let bound = binding::bind_port(registry, vss, &opts);
    let defaults: Vec<(&Arc<Service>, Vec<Route>)> = bound
        .unclaimed
        .iter()
        .map(|svc| (*svc, vec![default_route(svc, port)]))
        .collect();
    let mut known_fqdn: BTreeSet<String> = BTreeSet::new();
    for svc in bound
        .claims
        .iter()
        .flat_map(|c| c.services.iter().copied())
        .chain(defaults.iter().map(|(s, _)| *s))
    {
        known_fqdn.insert(format!("{}:{port}", svc.hostname));
        known_fqdn.insert(svc.hostname.clone());
    }
    let mut builder = VhostBuilder {
        names: BTreeSet::new(),
        domains: BTreeSet::new(),
        known_fqdn,
        port,
        dns_domain: scope.dns_domain,
    };
    let mut out = Vec::new();
    for claim in &bound.claims {
        for h in &claim.other_hosts {
            out.extend(builder.build(&h.to_ascii_lowercase(), None, &claim.routes));
        }
        for svc in &claim.services {
            out.extend(builder.build(&svc.hostname, Some(svc), &claim.routes));
        }
    }
    for (svc, routes) in &defaults {
        out.extend(builder.build(&svc.hostname, Some(svc), routes));
    }
    out
}

/// Builds virtual hosts, never giving a name or a domain twice.
struct VhostBuilder<'a> {
    names: BTreeSet<String>,
    domains: BTreeSet<String>,
    known_fqdn: BTreeSet<String>,
    port: u32,
    dns_domain: &'a str,
}

impl VhostBuilder<'_> {
    fn build(
        &mut self,
        host: &str,
        svc: Option<&Service>,
        routes: &[Route],
    ) -> Option<VirtualHost> {
        let name = format!("{host}:{}", self.port);
        if !self.names.insert(name.clone()) {
            return None;
        }
        let (domains, alt) = match svc {
            Some(svc) => virtual_host_domains(svc, self.dns_domain),
            None => (vec![ipv6_compliant(host)], Vec::new()),
        };
        // `dedupeDomains`: also drop an expanded name that is another service's real host.
        let domains: Vec<String> = domains
            .into_iter()
            .filter(|d| !(alt.contains(d) && self.known_fqdn.contains(d)))
            .filter(|d| self.domains.insert(d.to_ascii_lowercase()))
            .collect();
        if domains.is_empty() {
            return None;
        }
        Some(VirtualHost {
            name,
            domains,
            routes: routes.to_vec(),
            include_request_attempt_count: true,
            ..Default::default()
        })
    }
}

fn ipv6_compliant(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Istio's `generateVirtualHostDomains` for a sidecar (ports ignored in host matching, so no
/// `:port` variants): the host, its absolute form `host.`, the Kubernetes short forms the
/// proxy's namespace may use (`name`, `name.ns.svc`, `name.ns` in the same namespace; `name.ns`,
/// `name.ns.svc` from others; never `name.ns.svc.cluster`), and the VIPs. Second: the expanded
/// forms (everything but the host and the VIPs).
pub(crate) fn virtual_host_domains(svc: &Service, dns_domain: &str) -> (Vec<String>, Vec<String>) {
    let host = svc.hostname.as_str();
    let mut alt = Vec::new();
    if host.parse::<IpAddr>().is_err() {
        alt.push(format!("{host}."));
    }
    if let Some((proxy_ns, _)) = dns_domain.split_once(".svc.")
        && let Some((_, suffix)) = dns_domain.split_once(".svc")
        && host.ends_with(&format!(".svc{suffix}"))
        && let Some(ih) = host.find(".svc.")
        && let Some(dot) = host.find('.')
        && dot < ih
    {
        let short = &host[..dot];
        let with_ns = &host[..ih];
        let ns = &host[dot + 1..ih];
        if ns == proxy_ns {
            alt.extend([
                short.to_string(),
                format!("{with_ns}.svc"),
                with_ns.to_string(),
            ]);
        } else {
            alt.extend([with_ns.to_string(), format!("{with_ns}.svc")]);
        }
    }
    let mut out = vec![host.to_string()];
    out.extend(alt.iter().cloned());
    for ip in &svc.addresses {
        out.push(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    let mut seen = BTreeSet::new();
    out.retain(|d| seen.insert(d.clone()));
    (out, alt)
}

fn prefix_slash() -> Option<RouteMatch> {
    Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    })
}

/// No timeout (Istio's default), gRPC's `grpc-timeout` header honoured without a cap.
fn no_timeouts(action: &mut RouteAction) {
    retry::set_timeout(action, None);
}

/// Istio's `BuildDefaultHTTPOutboundRoute` for a service port without a VirtualService.
fn default_route(svc: &Service, port: u32) -> Route {
    let cluster = outbound_cluster(port, &svc.hostname);
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        retry_policy: Some(retry::default_policy(false)),
        ..Default::default()
    };
    no_timeouts(&mut action);
    Route {
        name: "default".into(),
        r#match: prefix_slash(),
        decorator: Some(Decorator {
            operation: format!("{}:{port}/*", svc.hostname),
            ..Default::default()
        }),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

/// `allow_any` → PassthroughCluster (ALLOW_ANY), else `block_all` → 502.
fn catch_all(mesh: &MeshConfig) -> VirtualHost {
    let (name, action) = if mesh.allow_any() {
        let mut action = RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                PASSTHROUGH_CLUSTER.into(),
            )),
            ..Default::default()
        };
        no_timeouts(&mut action);
        ("allow_any", route::Action::Route(action))
    } else {
        (
            "block_all",
            route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        )
    };
    VirtualHost {
        name: name.into(),
        domains: vec!["*".into()],
        routes: vec![Route {
            name: name.into(),
            r#match: prefix_slash(),
            action: Some(action),
            ..Default::default()
        }],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// The inbound route of one HTTP port: everything to `cluster` (no timeout).
pub(crate) fn inbound_route_config(
    cluster: &str,
    port: u32,
    operation: String,
    grpc: bool,
) -> RouteConfiguration {
    // Istio's `BuildDefaultHTTPInboundRoute`: no timeout, and no stream duration limit.
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
        timeout: secs(0),
        ..Default::default()
    };
    action.max_stream_duration = Some(route_action::MaxStreamDuration {
        max_stream_duration: secs(0),
        grpc_timeout_header_max: secs(0),
        ..Default::default()
    });
    if !grpc {
        // Istio's default inbound retry: only requests the application never saw.
        action.retry_policy = Some(RetryPolicy {
            retry_on: "reset-before-request".into(),
            num_retries: u32_value(2),
            ..Default::default()
        });
    }
    RouteConfiguration {
        name: cluster.into(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".into()],
            routes: vec![Route {
                name: "default".into(),
                r#match: prefix_slash(),
                decorator: Some(Decorator {
                    operation,
                    ..Default::default()
                }),
                action: Some(route::Action::Route(action)),
                ..Default::default()
            }],
            ..Default::default()
        }],
        validate_clusters: bool_value(false),
        ..Default::default()
    }
}
