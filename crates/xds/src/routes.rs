//! RDS: one route configuration per outbound HTTP port (named `"<port>"`), one virtual host per
//! service host on that port, plus the catch-all (`allow_any` / `block_all`); and one per sniffed
//! service port on a VIP (`"<host>:<port>"`), with that service's virtual host only.

use crate::listeners::outbound_plan::{self, sniffed_route_name};
use crate::mesh::MeshConfig;
use crate::names::{PASSTHROUGH_CLUSTER, outbound_cluster};
use crate::registry::{Registry, Service};
use crate::util::{bool_value, secs, u32_value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    Decorator, DirectResponseAction, RetryPolicy, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost, retry_policy, route, route_action, route_match,
};
use weft_proto::envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use weft_proto::envoy_types::util::pack_any;

/// Istio's `DefaultMaxDirectResponseBodySizeBytes`.
const MAX_DIRECT_RESPONSE_BODY: u32 = 1024 * 1024;

/// Services with an HTTP or sniffed port, by port then host.
fn http_or_sniffed_ports(registry: &Registry) -> BTreeMap<u32, Vec<&Arc<Service>>> {
    let mut out: BTreeMap<u32, Vec<&Arc<Service>>> = BTreeMap::new();
    for svc in registry.services() {
        for p in svc.ports.iter().filter(|p| p.protocol.is_http_or_sniffed()) {
            out.entry(p.port).or_default().push(svc);
        }
    }
    out
}

/// Route configurations for a proxy whose DNS domain is `dns_domain` (`<ns>.svc.cluster.local`):
/// the domains depend on it (short names only within the namespace), nothing else does. One
/// for each name an outbound listener's HTTP chain uses: `"<port>"` (every HTTP or sniffed service
/// on the port, then the catch-all), ordered by port, then `"<host>:<port>"` (a sniffed service
/// bound to its VIP: its own virtual host for any domain, no catch-all), by name.
pub(crate) fn route_configs(
    registry: &Registry,
    mesh: &MeshConfig,
    dns_domain: &str,
) -> Vec<RouteConfiguration> {
    let plan = outbound_plan::plan(registry);
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
    let by_port = http_or_sniffed_ports(registry);
    let mut out: Vec<RouteConfiguration> = ports
        .into_iter()
        .map(|port| {
            let mut used: BTreeSet<String> = BTreeSet::new();
            let mut vhosts: Vec<VirtualHost> = by_port
                .get(&port)
                .into_iter()
                .flatten()
                .filter_map(|svc| {
                    let domains: Vec<String> = virtual_host_domains(svc, dns_domain)
                        .into_iter()
                        .filter(|d| used.insert(d.clone()))
                        .collect();
                    (!domains.is_empty()).then(|| service_virtual_host(svc, port, domains))
                })
                .collect();
            vhosts.sort_by(|a, b| a.name.cmp(&b.name));
            vhosts.push(catch_all(mesh));
            route_configuration(port.to_string(), vhosts)
        })
        .collect();
    for (host, port) in sniffed {
        let Some(svc) = registry.service(&host) else {
            continue;
        };
        let vhost = service_virtual_host(svc, port, vec!["*".into()]);
        out.push(route_configuration(
            sniffed_route_name(&host, port),
            vec![vhost],
        ));
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

/// Istio's `generateVirtualHostDomains` for a sidecar (ports ignored in host matching, so no
/// `:port` variants): the host, its absolute form `host.`, the Kubernetes short forms the
/// proxy's namespace may use (`name`, `name.ns.svc`, `name.ns` in the same namespace; `name.ns`,
/// `name.ns.svc` from others; never `name.ns.svc.cluster`), and the VIPs.
pub(crate) fn virtual_host_domains(svc: &Service, dns_domain: &str) -> Vec<String> {
    let host = svc.hostname.as_str();
    let mut out = vec![host.to_string()];
    if host.parse::<IpAddr>().is_err() {
        out.push(format!("{host}."));
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
            out.extend([
                short.to_string(),
                format!("{with_ns}.svc"),
                with_ns.to_string(),
            ]);
        } else {
            out.extend([with_ns.to_string(), format!("{with_ns}.svc")]);
        }
    }
    for ip in &svc.addresses {
        out.push(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    let mut seen = BTreeSet::new();
    out.retain(|d| seen.insert(d.clone()));
    out
}

/// Istio's default outbound retry policy.
fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
            .into(),
        num_retries: u32_value(2),
        host_selection_retry_max_attempts: 5,
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                pack_any(PreviousHostsPredicate::default()),
            )),
        }],
        ..Default::default()
    }
}

fn prefix_slash() -> Option<RouteMatch> {
    Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    })
}

/// No timeout (Istio's default), gRPC's `grpc-timeout` header honoured without a cap.
fn no_timeouts(action: &mut RouteAction) {
    action.timeout = secs(0);
    action.max_stream_duration = Some(route_action::MaxStreamDuration {
        grpc_timeout_header_max: secs(0),
        ..Default::default()
    });
}

fn service_virtual_host(svc: &Service, port: u32, domains: Vec<String>) -> VirtualHost {
    let cluster = outbound_cluster(port, &svc.hostname);
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        retry_policy: Some(default_retry_policy()),
        ..Default::default()
    };
    no_timeouts(&mut action);
    VirtualHost {
        name: format!("{}:{port}", svc.hostname),
        domains,
        routes: vec![Route {
            name: "default".into(),
            r#match: prefix_slash(),
            decorator: Some(Decorator {
                operation: format!("{}:{port}/*", svc.hostname),
                ..Default::default()
            }),
            action: Some(route::Action::Route(action)),
            ..Default::default()
        }],
        include_request_attempt_count: true,
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
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
        ..Default::default()
    };
    no_timeouts(&mut action);
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
