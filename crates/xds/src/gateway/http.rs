//! HTTP on routers (Istio's `createGatewayHTTPFilterChainOpts`, `buildGatewayHTTPRouteConfig`):
//!
//! - a plaintext HTTP listener has one filter chain: an HTTP connection manager on RDS
//!   `http.<port>[.<bind>]`, shared by every HTTP server merged into the port;
//! - an HTTPS server with `SIMPLE` or `MUTUAL` TLS has its own chain, matching the server's hosts
//!   by SNI, terminating TLS with the certificate and key files the server names (`MUTUAL`: client
//!   certificates checked against `caCertificates`), and using RDS
//!   `https.<port>.<portName>.<gateway>.<namespace>[.<bind>]`.
//!
//! A route configuration has one virtual host per host a server and a bound VirtualService with
//! HTTP routes for it have in common (Istio's `Names.Intersection`: the narrower of two names when one contains the
//! other, so `*.example.com` admits `dev.example.com` but not `example.com`; a `ns/host` server
//! host only for VirtualServices in `ns`). Several VirtualServices giving one host are merged:
//! their routes are appended in the order the router sees the VirtualServices, then the catch-all
//! routes are moved last. Hosts whose route lists are the same are collapsed into one virtual
//! host (Istio's route collapse). `httpsRedirect` makes a server's virtual hosts require TLS
//! (Envoy redirects with 301), with a virtual host for each of its hosts even without a
//! VirtualService. Without any virtual host the configuration has `blackhole:<port>`, matching
//! any domain with no routes: every request gets 404.
//!
//! A TLS (not HTTPS) server with `SIMPLE` or `MUTUAL` terminates TLS the same way in front of the
//! `tcp` routes' chain (see [`terminated`]).
//!
//! Certificates come from files only (Envoy reads them; Istio hands file paths to the agent's
//! SDS instead): `credentialName` (a Kubernetes secret) has no source without Kubernetes, so a
//! server with only a `credentialName` gets no chain. `OPTIONAL_MUTUAL` servers and
//! `ISTIO_MUTUAL` TLS (non-HTTPS) servers get no chain yet. `ISTIO_MUTUAL` HTTPS servers use the router's mesh certificate
//! over SDS (`default`, `ROOTCA`), as Istio's gateways do.

use super::merge::BoundServer;
use crate::http_route::matching::is_catch_all;
use crate::http_route::{PortLookup, RouteOptions, http_routes};
use crate::listeners::{Routes, hcm_filter, http_connection_manager};
use crate::registry::{Protocol, Registry};
use crate::tls::TLS_SOCKET;
use crate::util::{bool_value, secs, transport_socket, u32_value};
use crate::virtual_service::{BoundVirtualService, VirtualServices};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    Route, RouteConfiguration, VirtualHost, virtual_host,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    ForwardClientCertDetails, SetCurrentClientCertDetails,
};
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    TlsCertificate, TlsParameters, common_tls_context, subject_alt_name_matcher, tls_parameters,
};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use weft_proto::envoy_types::util::pack_any;

/// Istio's gateway `transport_socket_connect_timeout`.
const CONNECT_TIMEOUT_SECS: i64 = 15;
/// Istio's `DefaultMaxDirectResponseBodySizeBytes`.
const MAX_DIRECT_RESPONSE_BODY: u32 = 1024 * 1024;
/// ALPN of a terminated HTTPS server (Istio's `ALPNHttp`).
const ALPN_HTTP: &[&str] = &["h2", "http/1.1"];

fn bind_suffix(server: &BoundServer<'_>) -> String {
    if server.server.bind.is_empty() {
        String::new()
    } else {
        format!(".{}", server.server.bind)
    }
}

/// Istio's `gatewayRDSRouteName`: `http.<port>` (the listener's port) for plaintext HTTP,
/// `https.<server port>.<port name>.<gateway>.<namespace>` for terminated HTTPS, with
/// `.<bind>` when the server binds an address; `None` for other servers.
pub(crate) fn route_name(server: &BoundServer<'_>, listener_port: u32) -> Option<String> {
    let protocol = server.protocol();
    if protocol.is_http() {
        return Some(format!("http.{listener_port}{}", bind_suffix(server)));
    }
    if protocol == Protocol::Https && terminates(server) {
        let port = server.server.port.as_ref()?;
        let (ns, name) = server.gateway.split_once('/')?;
        return Some(format!(
            "https.{}.{}.{name}.{ns}{}",
            port.number,
            port.name,
            bind_suffix(server)
        ));
    }
    None
}

/// `SIMPLE` or `MUTUAL` (certificates from files) or `ISTIO_MUTUAL` (the mesh certificate): the
/// router terminates TLS.
fn terminates(server: &BoundServer<'_>) -> bool {
    matches!(
        server.tls_mode(),
        Some("SIMPLE" | "MUTUAL" | "ISTIO_MUTUAL")
    )
}

/// Istio's gateway HTTP connection manager: remote address used, client certificate details
/// sanitized and set.
fn gateway_hcm(
    stat_prefix: String,
    rds: String,
) -> weft_proto::envoy_types::pb::envoy::config::listener::v3::Filter {
    let mut hcm = http_connection_manager(stat_prefix, Routes::Rds(rds));
    hcm.use_remote_address = bool_value(true);
    hcm.forward_client_cert_details = ForwardClientCertDetails::SanitizeSet as i32;
    hcm.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
        subject: bool_value(true),
        cert: true,
        dns: true,
        uri: true,
        ..Default::default()
    });
    hcm_filter(hcm)
}

/// The one chain of a plaintext HTTP listener `listener_name` on `port`.
pub(crate) fn plaintext_chain(
    server: &BoundServer<'_>,
    listener_name: &str,
    port: u32,
) -> Option<FilterChain> {
    let rds = route_name(server, port)?;
    Some(FilterChain {
        filters: vec![gateway_hcm(format!("outbound_{listener_name}"), rds)],
        transport_socket_connect_timeout: secs(CONNECT_TIMEOUT_SECS),
        ..Default::default()
    })
}

/// The chain of a terminated HTTPS server: SNI from its hosts (none for `*`), its TLS context.
/// `None` when the server has no certificate files.
pub(crate) fn https_chain(
    server: &BoundServer<'_>,
    listener_name: &str,
    port: u32,
) -> Option<FilterChain> {
    let rds = route_name(server, port)?;
    let stat_prefix = if server.server.name.is_empty() {
        format!("outbound_{listener_name}")
    } else {
        server.server.name.clone()
    };
    terminated(
        server,
        FilterChain {
            filters: vec![gateway_hcm(stat_prefix, rds)],
            ..Default::default()
        },
    )
}

/// `chain` behind TLS termination with the server's certificate files, matching its hosts by
/// SNI (none for `*`). `None` when the server has no certificate files. Used for HTTPS servers
/// and, with the `tcp` routes' chain, for TLS servers (Istio's TCP server with terminating TLS).
pub(crate) fn terminated(server: &BoundServer<'_>, chain: FilterChain) -> Option<FilterChain> {
    let tls = server.server.tls.as_ref()?;
    let context = if tls.effective_mode() == "ISTIO_MUTUAL" {
        crate::tls::istio_mutual_gateway(&tls.subject_alt_names)
    } else if tls.server_certificate.is_empty() || tls.private_key.is_empty() {
        return None;
    } else {
        downstream_tls(tls)
    };
    let names = server.sni_hosts();
    let server_names = if names.iter().any(|h| h == "*") {
        Vec::new()
    } else {
        names
    };
    Some(FilterChain {
        filter_chain_match: (!server_names.is_empty()).then(|| FilterChainMatch {
            server_names,
            ..Default::default()
        }),
        transport_socket: Some(transport_socket(TLS_SOCKET, pack_any(context))),
        transport_socket_connect_timeout: secs(CONNECT_TIMEOUT_SECS),
        ..chain
    })
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::Filename(path.into())),
        ..Default::default()
    })
}

fn protocol_version(v: &str) -> Option<i32> {
    use tls_parameters::TlsProtocol;
    let p = match v {
        "TLSV1_0" => TlsProtocol::TlSv10,
        "TLSV1_1" => TlsProtocol::TlSv11,
        "TLSV1_2" => TlsProtocol::TlSv12,
        "TLSV1_3" => TlsProtocol::TlSv13,
        _ => return None,
    };
    Some(p as i32)
}

/// Istio's `BuildListenerTLSContext` for file credentials: ALPN h2 and http/1.1, the server's
/// certificate and key; for `MUTUAL`, a client certificate required and checked against
/// `caCertificates` (and `subjectAltNames`); protocol versions, ciphers and curves as set.
fn downstream_tls(tls: &weft_model::networking::ServerTlsSettings) -> DownstreamTlsContext {
    let mutual = tls.effective_mode() == "MUTUAL";
    let mut common = CommonTlsContext {
        alpn_protocols: ALPN_HTTP.iter().map(|a| a.to_string()).collect(),
        tls_certificates: vec![TlsCertificate {
            certificate_chain: file(&tls.server_certificate),
            private_key: file(&tls.private_key),
            ..Default::default()
        }],
        ..Default::default()
    };
    if mutual && !tls.ca_certificates.is_empty() {
        let sans = tls
            .subject_alt_names
            .iter()
            .map(|san| SubjectAltNameMatcher {
                san_type: subject_alt_name_matcher::SanType::Uri as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(san.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        common.validation_context_type = Some(
            common_tls_context::ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: file(&tls.ca_certificates),
                    match_typed_subject_alt_names: sans,
                    crl: (!tls.ca_crl.is_empty())
                        .then(|| file(&tls.ca_crl))
                        .flatten(),
                    ..Default::default()
                },
            ),
        );
    }
    let min = protocol_version(&tls.min_protocol_version);
    let max = protocol_version(&tls.max_protocol_version);
    if min.is_some()
        || max.is_some()
        || !tls.cipher_suites.is_empty()
        || !tls.ecdh_curves.is_empty()
    {
        common.tls_params = Some(TlsParameters {
            tls_minimum_protocol_version: min.unwrap_or_default(),
            tls_maximum_protocol_version: max.unwrap_or_default(),
            cipher_suites: tls.cipher_suites.clone(),
            ecdh_curves: tls.ecdh_curves.clone(),
            ..Default::default()
        });
    }
    DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: bool_value(mutual),
        ..Default::default()
    }
}

/// Istio's `NamesForNamespace`: the server's hosts a VirtualService in `namespace` may use,
/// namespaces stripped.
fn hosts_for_namespace<'h>(hosts: &'h [String], namespace: &str) -> Vec<&'h str> {
    hosts
        .iter()
        .filter_map(|h| match h.split_once('/') {
            Some((ns, host)) => (ns == namespace || ns == "*").then_some(host),
            None => Some(h.as_str()),
        })
        .collect()
}

/// Istio's `Names.Intersection`: for each pair where one contains the other, the narrower name.
pub(crate) fn intersect(server_hosts: &[&str], vs_hosts: &[String]) -> Vec<String> {
    use super::hosts::subset_of;
    let mut out: Vec<String> = Vec::new();
    for s in server_hosts {
        for v in vs_hosts {
            let pick = if subset_of(s, v) {
                *s
            } else if subset_of(v, s) {
                v.as_str()
            } else {
                continue;
            };
            if !out.iter().any(|o| o == pick) {
                out.push(pick.to_string());
            }
        }
    }
    out
}

/// Where a virtual host's routes come from: (VirtualService routes id, index) per route.
type Origin = Vec<(usize, usize)>;

/// A virtual host being built; `origin` identifies its routes (VirtualService, index) so that
/// hosts with the same routes can be collapsed, as Istio compares route pointers.
struct Vhost {
    host: String,
    port: u32,
    routes: Vec<Route>,
    origin: Origin,
    require_tls: bool,
}

/// What a router's route configuration needs.
pub(crate) struct RouteInputs<'a> {
    pub registry: &'a Registry,
    pub virtual_services: &'a VirtualServices,
    pub proxy_namespace: &'a str,
    pub proxy_labels: &'a BTreeMap<String, String>,
}

/// The route configuration `name` for `servers` (those using that name, in merge order).
pub(crate) fn route_config(
    inputs: &RouteInputs<'_>,
    name: &str,
    servers: &[&BoundServer<'_>],
) -> RouteConfiguration {
    // Routes per (gateway, VirtualService), built once as Istio caches them.
    let mut cache: BTreeMap<(String, String), (usize, Vec<Route>)> = BTreeMap::new();
    let mut vhosts: BTreeMap<String, Vhost> = BTreeMap::new();
    for server in servers {
        let port = server.number();
        let redirect = server.server.tls.as_ref().is_some_and(|t| t.https_redirect);
        let gateways: BTreeSet<String> = [server.gateway.clone()].into();
        let vss: Vec<&Arc<BoundVirtualService>> = inputs
            .virtual_services
            .for_gateway(inputs.proxy_namespace, &server.gateway);
        for vs in vss {
            let server_hosts = hosts_for_namespace(&server.hosts, &vs.namespace);
            let common = intersect(&server_hosts, &vs.spec.hosts);
            if common.is_empty() {
                continue;
            }
            let next_id = cache.len();
            let key = (
                server.gateway.clone(),
                format!("{}/{}", vs.name, vs.namespace),
            );
            let (id, routes) = cache
                .entry(key)
                .or_insert_with(|| {
                    let opts = RouteOptions {
                        registry: inputs.registry,
                        listen_port: port,
                        gateways: &gateways,
                        proxy_labels: inputs.proxy_labels,
                        proxy_namespace: inputs.proxy_namespace,
                        tls: server.server.tls.is_some(),
                        port_lookup: PortLookup::SinglePort,
                    };
                    (next_id, http_routes(vs, &opts))
                })
                .clone();
            // Istio's "no routes matched": the VirtualService gives this server nothing.
            if routes.is_empty() {
                continue;
            }
            for h in common {
                let h = h.to_ascii_lowercase();
                let v = vhosts.entry(h.clone()).or_insert_with(|| Vhost {
                    host: h.clone(),
                    port,
                    routes: Vec::new(),
                    origin: Vec::new(),
                    require_tls: false,
                });
                for (i, r) in routes.iter().enumerate() {
                    v.routes.push(r.clone());
                    v.origin.push((id, i));
                }
                v.require_tls |= redirect;
            }
        }
        if redirect {
            // Istio keys these by the server host as written after merging (`ns/host` kept,
            // which Envoy would refuse as a domain); Weft strips the namespace.
            for h in &server.hosts {
                let h = h
                    .split_once('/')
                    .map_or(h.as_str(), |(_, h)| h)
                    .to_ascii_lowercase();
                let v = vhosts.entry(h.clone()).or_insert_with(|| Vhost {
                    host: h,
                    port,
                    routes: Vec::new(),
                    origin: Vec::new(),
                    require_tls: false,
                });
                v.require_tls = true;
            }
        }
    }
    let mut virtual_hosts: Vec<VirtualHost> = if vhosts.is_empty() {
        let port = servers.first().map_or(0, |s| s.number());
        vec![VirtualHost {
            name: format!("blackhole:{port}"),
            domains: vec!["*".into()],
            ..Default::default()
        }]
    } else {
        collapse(vhosts.into_values().collect())
    };
    virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    RouteConfiguration {
        name: name.into(),
        virtual_hosts,
        validate_clusters: bool_value(false),
        ignore_port_in_host_matching: true,
        max_direct_response_body_size_bytes: u32_value(MAX_DIRECT_RESPONSE_BODY),
        ..Default::default()
    }
}

/// Istio's `collapseDuplicateRoutes` (hosts in order; the first of equal ones keeps its name and
/// takes the others' domains), then `SortVHostRoutes` (catch-all routes last).
fn collapse(hosts: Vec<Vhost>) -> Vec<VirtualHost> {
    let mut out: Vec<(Origin, bool, VirtualHost)> = Vec::new();
    for v in hosts {
        if let Some((_, _, vh)) = out
            .iter_mut()
            .find(|(origin, tls, _)| *origin == v.origin && *tls == v.require_tls)
        {
            vh.domains.push(v.host);
            continue;
        }
        let (catch_all, mut routes): (Vec<Route>, Vec<Route>) =
            v.routes.into_iter().partition(is_catch_all);
        routes.extend(catch_all);
        out.push((
            v.origin,
            v.require_tls,
            VirtualHost {
                name: format!("{}:{}", v.host, v.port),
                domains: vec![v.host],
                routes,
                include_request_attempt_count: true,
                require_tls: if v.require_tls {
                    virtual_host::TlsRequirementType::All as i32
                } else {
                    virtual_host::TlsRequirementType::None as i32
                },
                ..Default::default()
            },
        ));
    }
    out.into_iter().map(|(_, _, vh)| vh).collect()
}

#[cfg(test)]
mod tests {
    use super::intersect;

    fn v(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn intersection_takes_the_narrower_name_as_istio() {
        assert_eq!(
            intersect(&["*.example.com"], &v(&["dev.example.com", "example.com"])),
            ["dev.example.com"]
        );
        assert_eq!(intersect(&["*"], &v(&["a.b", "*"])), ["a.b", "*"]);
        assert_eq!(
            intersect(&["dev.example.com"], &v(&["*.example.com"])),
            ["dev.example.com"]
        );
        assert_eq!(
            intersect(&["*.example.com"], &v(&["*.com"])),
            ["*.example.com"]
        );
        assert!(intersect(&["*.example.com"], &v(&["*.example.org"])).is_empty());
        assert_eq!(intersect(&["a.b", "*"], &v(&["a.b"])), ["a.b"]);
    }
}
