//! `virtualInbound` (15006), per proxy: after the `REDIRECT`, `original_dst` restores the
//! destination, `tls_inspector` reads TLS/ALPN and `http_inspector` sniffs plaintext HTTP (each
//! only on the ports whose chains need it); filter chains select by destination port the
//! workload's declared ports (`inbound|<port>||`), with the mTLS mode PeerAuthentication gives
//! that port, and catch-all chains pass everything else to `InboundPassthroughCluster`. Ports
//! without a declared protocol, and the passthrough chains, are sniffed: HTTP (plaintext
//! `http/1.1`/`h2c`, or mTLS ALPN `istio-http/1.0`, `istio-http/1.1`, `istio-h2`) through the
//! HTTP connection manager, anything else as TCP.

use super::inspectors::inspectors;
use super::{
    PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, Routes, TLS, hcm_filter, http_connection_manager,
    original_dst_filter, tcp_proxy_filter,
};
use crate::authn::{MtlsMode, MtlsPolicy};
use crate::names::{
    BLACKHOLE_CLUSTER, INBOUND_CAPTURE_PORT, INBOUND_PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND,
    VIRTUAL_INBOUND_CATCH_ALL_HTTP, inbound_cluster,
};
use crate::registry::{InboundPort, Protocol};
use crate::routes::inbound_route_config;
use crate::tls::{ISTIO_MTLS_ALPNS, MTLS_HTTP_ALPNS, MTLS_TCP_ALPNS, istio_mutual_downstream};
use crate::util::{bool_value, socket_address, u32_value};
use weft_proto::envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use weft_proto::envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager as hcm_types,
};

/// How a port's traffic is handled (Istio's `ListenerProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lp {
    Http,
    Tcp,
    /// Sniffed: HTTP chains for what `http_inspector` (or the mTLS ALPN) says is HTTP, TCP
    /// chains for the rest.
    Auto,
}

fn listener_protocol(p: Protocol) -> Lp {
    if p.is_http() {
        Lp::Http
    } else if p.is_sniffed() {
        Lp::Auto
    } else {
        Lp::Tcp
    }
}

/// One filter chain to build: what it matches, whether it terminates mTLS and whether it runs
/// the HTTP connection manager.
struct ChainOption {
    transport: &'static str,
    alpn: &'static [&'static str],
    tls: bool,
    http: bool,
}

const fn opt(
    transport: &'static str,
    alpn: &'static [&'static str],
    tls: bool,
    http: bool,
) -> ChainOption {
    ChainOption {
        transport,
        alpn,
        tls,
        http,
    }
}

/// DISABLE: no termination, whatever the transport is.
const ANY: &str = "";

/// Istio's `getFilterChainMatchOptions`, except that DISABLE's TCP chains match any transport
/// (Istio's match raw_buffer only and leave TLS to the catch-all; the result is the same).
fn options(mode: MtlsMode, lp: Lp) -> &'static [ChainOption] {
    const STRICT_HTTP: &[ChainOption] = &[opt(TLS, &[], true, true)];
    const STRICT_TCP: &[ChainOption] = &[opt(TLS, &[], true, false)];
    const STRICT_AUTO: &[ChainOption] = &[
        opt(TLS, MTLS_HTTP_ALPNS, true, true),
        opt(TLS, &[], true, false),
    ];
    const PERMISSIVE_HTTP: &[ChainOption] = &[
        opt(TLS, ISTIO_MTLS_ALPNS, true, true),
        opt(RAW_BUFFER, &[], false, true),
    ];
    const PERMISSIVE_TCP: &[ChainOption] = &[
        opt(TLS, ISTIO_MTLS_ALPNS, true, false),
        opt(TLS, &[], false, false),
        opt(RAW_BUFFER, &[], false, false),
    ];
    const PERMISSIVE_AUTO: &[ChainOption] = &[
        opt(TLS, MTLS_HTTP_ALPNS, true, true),
        opt(RAW_BUFFER, PLAINTEXT_HTTP_ALPNS, false, true),
        opt(TLS, MTLS_TCP_ALPNS, true, false),
        opt(RAW_BUFFER, &[], false, false),
        opt(TLS, &[], false, false),
    ];
    const DISABLE_HTTP: &[ChainOption] = &[opt(ANY, &[], false, true)];
    const DISABLE_TCP: &[ChainOption] = &[opt(ANY, &[], false, false)];
    const DISABLE_AUTO: &[ChainOption] = &[
        opt(RAW_BUFFER, PLAINTEXT_HTTP_ALPNS, false, true),
        opt(ANY, &[], false, false),
    ];
    match (mode, lp) {
        (MtlsMode::Strict, Lp::Http) => STRICT_HTTP,
        (MtlsMode::Strict, Lp::Tcp) => STRICT_TCP,
        (MtlsMode::Strict, Lp::Auto) => STRICT_AUTO,
        (MtlsMode::Permissive, Lp::Http) => PERMISSIVE_HTTP,
        (MtlsMode::Permissive, Lp::Tcp) => PERMISSIVE_TCP,
        (MtlsMode::Permissive, Lp::Auto) => PERMISSIVE_AUTO,
        (MtlsMode::Disable, Lp::Http) => DISABLE_HTTP,
        (MtlsMode::Disable, Lp::Tcp) => DISABLE_TCP,
        (MtlsMode::Disable, Lp::Auto) => DISABLE_AUTO,
    }
}

/// The chains of one port (`None`: the catch-all). `name(http)` names a chain; `filters(http,
/// tls)` builds its filters.
fn chains(
    port: Option<u32>,
    mode: MtlsMode,
    lp: Lp,
    name: impl Fn(bool) -> String,
    filters: impl Fn(bool, bool) -> Vec<Filter>,
) -> Vec<FilterChain> {
    options(mode, lp)
        .iter()
        .map(|opt| FilterChain {
            name: name(opt.http),
            filter_chain_match: Some(FilterChainMatch {
                destination_port: port.and_then(u32_value),
                transport_protocol: opt.transport.into(),
                application_protocols: opt.alpn.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            transport_socket: opt.tls.then(|| istio_mutual_downstream(opt.http)),
            filters: filters(opt.http, opt.tls),
            ..Default::default()
        })
        .collect()
}

/// The HTTP connection manager of a port's HTTP chains (`tls`: the chain terminates mTLS, so the
/// caller's identity is known).
fn http_filters(p: &InboundPort, tls: bool, authz: &InboundAuthz) -> Vec<Filter> {
    let cluster = inbound_cluster(p.port);
    let routes = inbound_route_config(
        &cluster,
        p.port,
        format!("{}:{}/*", p.service_host, p.service_port),
        p.protocol.is_grpc(),
    );
    let stat_prefix = format!("inbound_0.0.0.0_{}", p.port);
    vec![hcm_filter(inbound_hcm(stat_prefix, routes, tls, authz))]
}

/// The passthrough chains' HTTP connection manager: everything to `InboundPassthroughCluster`.
fn passthrough_http_filters(tls: bool, authz: &InboundAuthz) -> Vec<Filter> {
    let routes = inbound_route_config(INBOUND_PASSTHROUGH_CLUSTER, 0, ":0/*".into(), false);
    vec![hcm_filter(inbound_hcm(
        INBOUND_PASSTHROUGH_CLUSTER.into(),
        routes,
        tls,
        authz,
    ))]
}

/// The workload's authorization (RBAC) filters, put on every inbound chain but the blackhole.
#[derive(Default)]
pub(crate) struct InboundAuthz {
    pub http: Vec<HttpFilter>,
    pub tcp: Vec<Filter>,
}

impl InboundAuthz {
    /// The TCP RBAC filters, then `tcp_proxy` to `cluster`.
    fn tcp_filters(&self, cluster: &str) -> Vec<Filter> {
        let mut out = self.tcp.clone();
        out.push(tcp_proxy_filter(cluster));
        out
    }
}

fn inbound_hcm(
    stat_prefix: String,
    routes: RouteConfiguration,
    tls: bool,
    authz: &InboundAuthz,
) -> HttpConnectionManager {
    let mut hcm = http_connection_manager(stat_prefix, Routes::Inline(Box::new(routes)));
    // RBAC runs before the router.
    hcm.http_filters.splice(0..0, authz.http.iter().cloned());
    if tls {
        // The application sees the caller's SPIFFE identity in x-forwarded-client-cert.
        hcm.forward_client_cert_details = hcm_types::ForwardClientCertDetails::AppendForward as i32;
        hcm.set_current_client_cert_details = Some(hcm_types::SetCurrentClientCertDetails {
            subject: bool_value(true),
            dns: true,
            uri: true,
            ..Default::default()
        });
    }
    // Plaintext chains keep HCM's default, SANITIZE: Istio uses APPEND_FORWARD there too, which
    // lets a plaintext (PERMISSIVE/DISABLE) caller hand the application a forged identity.
    hcm
}

/// Passthrough chains (catch-all or a PeerAuthentication port without a service), sniffed:
/// `virtualInbound-catchall-http` (HTTP) and `virtualInbound` (TCP) to InboundPassthroughCluster.
fn passthrough_chains(port: Option<u32>, mode: MtlsMode, authz: &InboundAuthz) -> Vec<FilterChain> {
    chains(
        port,
        mode,
        Lp::Auto,
        |http| {
            if http {
                VIRTUAL_INBOUND_CATCH_ALL_HTTP
            } else {
                VIRTUAL_INBOUND
            }
            .to_string()
        },
        |http, tls| {
            if http {
                passthrough_http_filters(tls, authz)
            } else {
                authz.tcp_filters(INBOUND_PASSTHROUGH_CLUSTER)
            }
        },
    )
}

pub(crate) fn virtual_inbound(
    ports: &[InboundPort],
    policy: &MtlsPolicy,
    authz: &InboundAuthz,
) -> Listener {
    let mut filter_chains = vec![FilterChain {
        // A connection to 15006 itself would loop.
        name: "virtualInbound-blackhole".into(),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: u32_value(INBOUND_CAPTURE_PORT),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(BLACKHOLE_CLUSTER)],
        ..Default::default()
    }];
    // Istio's order: the passthrough chains (catch-all, then PeerAuthentication ports without a
    // service), then the service ports.
    filter_chains.extend(passthrough_chains(None, policy.default, authz));
    for (&port, &mode) in &policy.ports {
        if port != INBOUND_CAPTURE_PORT && !ports.iter().any(|p| p.port == port) {
            filter_chains.extend(passthrough_chains(Some(port), mode, authz));
        }
    }
    for p in ports.iter().filter(|p| p.port != INBOUND_CAPTURE_PORT) {
        let name = format!("0.0.0.0_{}", p.port);
        let cluster = inbound_cluster(p.port);
        filter_chains.extend(chains(
            Some(p.port),
            policy.for_port(p.port),
            listener_protocol(p.protocol),
            |_| name.clone(),
            |http, tls| {
                if http {
                    http_filters(p, tls, authz)
                } else {
                    authz.tcp_filters(&cluster)
                }
            },
        ));
    }
    let mut listener_filters = vec![original_dst_filter()];
    listener_filters.extend(inspectors(&filter_chains));
    Listener {
        name: VIRTUAL_INBOUND.into(),
        address: socket_address("0.0.0.0", INBOUND_CAPTURE_PORT),
        traffic_direction: TrafficDirection::Inbound as i32,
        listener_filters,
        // Server-first protocols send nothing for the inspectors to read: go on after the
        // (default 15s) listener filter timeout rather than wait for ever (Istio's default
        // protocol detection timeout, 0s, disables the timeout).
        continue_on_listener_filters_timeout: true,
        filter_chains,
        ..Default::default()
    }
}
