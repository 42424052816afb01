//! `virtualInbound` (15006), per proxy: after the `REDIRECT`, `original_dst` restores the
//! destination and `tls_inspector` reads TLS/ALPN; filter chains select by destination port the
//! workload's declared ports (`inbound|<port>||`), with the mTLS mode PeerAuthentication gives
//! that port, and catch-all chains pass everything else to `InboundPassthroughCluster`.

use super::{
    Routes, hcm_filter, http_connection_manager, original_dst_filter, tcp_proxy_filter,
    tls_inspector_filter,
};
use crate::authn::{MtlsMode, MtlsPolicy};
use crate::names::{
    BLACKHOLE_CLUSTER, INBOUND_CAPTURE_PORT, INBOUND_PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND,
    inbound_cluster,
};
use crate::registry::InboundPort;
use crate::routes::inbound_route_config;
use crate::tls::{ISTIO_MTLS_ALPNS, istio_mutual_downstream};
use crate::util::{bool_value, socket_address, u32_value};
use weft_proto::envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager as hcm_types;

/// One filter chain to build: what it matches and whether it terminates mTLS.
struct ChainOption {
    transport: &'static str,
    alpn: &'static [&'static str],
    tls: bool,
}

const MTLS: ChainOption = ChainOption {
    transport: "tls",
    alpn: ISTIO_MTLS_ALPNS,
    tls: true,
};
const STRICT: ChainOption = ChainOption {
    transport: "tls",
    alpn: &[],
    tls: true,
};
const PLAIN_TLS: ChainOption = ChainOption {
    transport: "tls",
    alpn: &[],
    tls: false,
};
const PLAINTEXT: ChainOption = ChainOption {
    transport: "raw_buffer",
    alpn: &[],
    tls: false,
};
/// DISABLE: no termination, whatever the bytes are.
const ANYTHING: ChainOption = ChainOption {
    transport: "",
    alpn: &[],
    tls: false,
};

/// Istio's `getFilterChainMatchOptions`, except that DISABLE matches any transport (Istio's
/// matches raw_buffer only and leaves TLS to the catch-all; the result is the same).
fn options(mode: MtlsMode, http: bool) -> &'static [ChainOption] {
    match (mode, http) {
        (MtlsMode::Strict, _) => &[STRICT],
        (MtlsMode::Permissive, true) => &[MTLS, PLAINTEXT],
        (MtlsMode::Permissive, false) => &[MTLS, PLAIN_TLS, PLAINTEXT],
        (MtlsMode::Disable, _) => &[ANYTHING],
    }
}

fn chains(
    name: &str,
    port: Option<u32>,
    mode: MtlsMode,
    http: bool,
    filters: impl Fn(bool) -> Vec<Filter>,
) -> Vec<FilterChain> {
    options(mode, http)
        .iter()
        .map(|opt| FilterChain {
            name: name.into(),
            filter_chain_match: Some(FilterChainMatch {
                destination_port: port.and_then(u32_value),
                transport_protocol: opt.transport.into(),
                application_protocols: opt.alpn.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            transport_socket: opt.tls.then(|| istio_mutual_downstream(http)),
            filters: filters(opt.tls),
            ..Default::default()
        })
        .collect()
}

/// `tls`: the chain terminates mTLS, so the caller's identity is known.
fn http_filters(p: &InboundPort, tls: bool) -> Vec<Filter> {
    let cluster = inbound_cluster(p.port);
    let name = format!("0.0.0.0_{}", p.port);
    let routes = inbound_route_config(
        &cluster,
        p.port,
        format!("{}:{}/*", p.service_host, p.service_port),
        p.protocol.is_grpc(),
    );
    let mut hcm =
        http_connection_manager(format!("inbound_{name}"), Routes::Inline(Box::new(routes)));
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
    vec![hcm_filter(hcm)]
}

pub(crate) fn virtual_inbound(ports: &[InboundPort], policy: &MtlsPolicy) -> Listener {
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
    for p in ports.iter().filter(|p| p.port != INBOUND_CAPTURE_PORT) {
        let name = format!("0.0.0.0_{}", p.port);
        let mode = policy.for_port(p.port);
        if p.protocol.is_http() {
            filter_chains.extend(chains(&name, Some(p.port), mode, true, |tls| {
                http_filters(p, tls)
            }));
        } else {
            let cluster = inbound_cluster(p.port);
            filter_chains.extend(chains(&name, Some(p.port), mode, false, |_| {
                vec![tcp_proxy_filter(&cluster)]
            }));
        }
    }
    // Ports with their own PeerAuthentication mode but no service: passthrough in that mode.
    for (&port, &mode) in &policy.ports {
        if port != INBOUND_CAPTURE_PORT && !ports.iter().any(|p| p.port == port) {
            filter_chains.extend(chains(VIRTUAL_INBOUND, Some(port), mode, false, |_| {
                vec![tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER)]
            }));
        }
    }
    filter_chains.extend(chains(VIRTUAL_INBOUND, None, policy.default, false, |_| {
        vec![tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER)]
    }));
    Listener {
        name: VIRTUAL_INBOUND.into(),
        address: socket_address("0.0.0.0", INBOUND_CAPTURE_PORT),
        traffic_direction: TrafficDirection::Inbound as i32,
        listener_filters: vec![original_dst_filter(), tls_inspector_filter()],
        // Server-first protocols send nothing for tls_inspector to read: go on after the
        // (default 15s) listener filter timeout rather than close.
        continue_on_listener_filters_timeout: true,
        filter_chains,
        ..Default::default()
    }
}
