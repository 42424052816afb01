//! CDS: outbound clusters per service port, the passthrough/blackhole clusters, and the
//! per-proxy inbound clusters.

use crate::endpoints::load_assignment;
use crate::names::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_BIND, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER,
    inbound_cluster, outbound_cluster, outbound_sni,
};
use crate::registry::{InboundPort, Port, Resolution, Service};
use crate::tls::{istio_mutual_upstream, raw_buffer};
use crate::util::{ads_config_source, one_field_struct, secs, u32_value};
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, circuit_breakers, cluster,
};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    BindConfig, Http1ProtocolOptions, Http2ProtocolOptions, SocketAddress, socket_address,
};
use weft_proto::envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use weft_proto::envoy_types::pb::google::protobuf::Duration;
use weft_proto::envoy_types::util::pack_any;

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Istio's "never" for ORIGINAL_DST cleanup on inbound clusters (the largest Envoy accepts).
const MAX_SECONDS: i64 = 9_223_372_035;

fn base(name: String, kind: cluster::DiscoveryType) -> Cluster {
    Cluster {
        name,
        connect_timeout: secs(10),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        lb_policy: if kind == cluster::DiscoveryType::OriginalDst {
            cluster::LbPolicy::ClusterProvided as i32
        } else {
            // Istio's default load balancer.
            cluster::LbPolicy::LeastRequest as i32
        },
        circuit_breakers: Some(default_circuit_breakers()),
        ..Default::default()
    }
}

/// Istio's defaults: effectively unlimited (Envoy's own 1024 would throttle a busy sidecar).
fn default_circuit_breakers() -> CircuitBreakers {
    let max = u32_value(u32::MAX);
    CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            max_connections: max,
            max_pending_requests: max,
            max_requests: max,
            max_retries: max,
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn set_http_options(c: &mut Cluster, opts: http_protocol_options::UpstreamProtocolOptions) {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(opts),
        ..Default::default()
    };
    c.typed_extension_protocol_options =
        [(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(options))].into();
}

fn http2_only(c: &mut Cluster) {
    set_http_options(
        c,
        http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(
                    http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    ),
                ),
            },
        ),
    );
}

/// Upstream HTTP version follows the downstream's (passthrough clusters carry both).
fn use_downstream_protocol(c: &mut Cluster) {
    set_http_options(
        c,
        http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            http_protocol_options::UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(Http2ProtocolOptions::default()),
                ..Default::default()
            },
        ),
    );
}

/// `outbound|<port>||<host>`: EDS for registry endpoints, STRICT/LOGICAL_DNS for DNS
/// ServiceEntries (endpoints inline), ORIGINAL_DST for resolution NONE. In-mesh services get
/// Istio's auto-mTLS `transport_socket_matches`: endpoints marked `tlsMode: istio` are dialled
/// with ISTIO_MUTUAL, others in plaintext.
pub(crate) fn outbound(svc: &Service, port: &Port) -> Cluster {
    let name = outbound_cluster(port.port, &svc.hostname);
    let mut c = match svc.resolution {
        Resolution::ClientSideLb => {
            let mut c = base(name.clone(), cluster::DiscoveryType::Eds);
            c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: ads_config_source(),
                service_name: name.clone(),
            });
            c
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            let eps = svc.endpoints(port.port);
            let kind = if svc.resolution == Resolution::DnsRoundRobin && eps.len() == 1 {
                cluster::DiscoveryType::LogicalDns
            } else {
                cluster::DiscoveryType::StrictDns
            };
            let mut c = base(name.clone(), kind);
            c.load_assignment = Some(load_assignment(&name, eps));
            c.dns_lookup_family = cluster::DnsLookupFamily::V4Only as i32;
            c
        }
        Resolution::Passthrough => base(name.clone(), cluster::DiscoveryType::OriginalDst),
    };
    if port.protocol.is_http2() {
        http2_only(&mut c);
    } else if port.protocol.is_sniffed() {
        // Sniffed HTTP goes upstream as it came: HTTP/1.1 or HTTP/2.
        use_downstream_protocol(&mut c);
    }
    if svc.auto_mtls() && svc.resolution != Resolution::Passthrough {
        c.transport_socket_matches = vec![
            cluster::TransportSocketMatch {
                name: "tlsMode-istio".into(),
                r#match: Some(one_field_struct("tlsMode", "istio")),
                transport_socket: Some(istio_mutual_upstream(
                    outbound_sni(port.port, &svc.hostname),
                    &svc.identities,
                    port.protocol.is_http2(),
                )),
            },
            cluster::TransportSocketMatch {
                name: "tlsMode-disabled".into(),
                r#match: Some(Default::default()),
                transport_socket: Some(raw_buffer()),
            },
        ];
    }
    c
}

/// Unknown destinations, ALLOW_ANY: to wherever the client dialled.
pub(crate) fn passthrough() -> Cluster {
    let mut c = base(
        PASSTHROUGH_CLUSTER.into(),
        cluster::DiscoveryType::OriginalDst,
    );
    use_downstream_protocol(&mut c);
    c
}

/// Unknown destinations, REGISTRY_ONLY: nowhere (no endpoints).
pub(crate) fn blackhole() -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.into(),
        connect_timeout: secs(10),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        ..Default::default()
    }
}

fn bind_127_0_0_6() -> Option<BindConfig> {
    Some(BindConfig {
        source_address: Some(SocketAddress {
            address: INBOUND_PASSTHROUGH_BIND.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Inbound traffic to ports the proxy does not declare: to the original destination, from
/// 127.0.0.6 (see [`inbound`]).
pub(crate) fn inbound_passthrough() -> Cluster {
    let mut c = base(
        INBOUND_PASSTHROUGH_CLUSTER.into(),
        cluster::DiscoveryType::OriginalDst,
    );
    c.upstream_bind_config = bind_127_0_0_6();
    use_downstream_protocol(&mut c);
    c
}

/// `inbound|<port>||` for one port the proxy serves.
///
/// ORIGINAL_DST bound to source 127.0.0.6, as istiod does today, rather than STATIC
/// 127.0.0.1:<port>: the connection goes to the address the client dialled (the workload's own
/// IP, restored by the `original_dst` listener filter after the `REDIRECT` to 15006), so an
/// application listening on 0.0.0.0 *or* only on its interface address is reached, and the
/// application sees the same destination it would without the mesh. Envoy runs as UID 1337,
/// whose loopback traffic to a non-127.0.0.1 address the capture rules would otherwise send back
/// to 15006 (`-o lo ! -d 127.0.0.1/32 ... --uid-owner 1337 -j ISTIO_IN_REDIRECT`); binding the
/// source to 127.0.0.6 hits the earlier `-o lo -s 127.0.0.6/32 -j RETURN`, so it is not
/// re-captured.
pub(crate) fn inbound(port: &InboundPort) -> Cluster {
    let mut c = base(
        inbound_cluster(port.port),
        cluster::DiscoveryType::OriginalDst,
    );
    c.upstream_bind_config = bind_127_0_0_6();
    c.cleanup_interval = Some(Duration {
        seconds: MAX_SECONDS,
        nanos: 0,
    });
    if port.protocol.is_http2() {
        http2_only(&mut c);
    } else if port.protocol.is_sniffed() {
        use_downstream_protocol(&mut c);
    }
    c
}
