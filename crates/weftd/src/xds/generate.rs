//! What each proxy is sent. This is the identity slice's minimal configuration: an inbound mTLS
//! listener whose certificates come from the agent over SDS (`default`, `ROOTCA`), in front of the
//! inbound passthrough cluster. The discovery work replaces it with full translation.

use super::node::Proxy;
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, ConfigSource, GrpcService, SocketAddress, TransportSocket, address,
    api_config_source, config_source, grpc_service, socket_address,
};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, ListenerFilter, filter, listener_filter,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy,
};
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    common_tls_context,
};
use weft_proto::envoy_types::pb::google::protobuf::{Any, BoolValue, Duration};
use weft_proto::envoy_types::util::pack_any;
use weft_proto::type_url;

/// One named resource ready to send, with a version derived from its bytes.
#[derive(Clone, Debug)]
pub struct NamedResource {
    pub name: String,
    pub version: String,
    pub resource: Any,
}

impl NamedResource {
    pub fn new(name: &str, resource: Any) -> Self {
        let version = format!("{:016x}", fnv1a(&resource.value));
        NamedResource {
            name: name.to_string(),
            version,
            resource,
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Produces the resources of one type for one proxy. Pure; resources shared between proxies are
/// returned as clones of the same `Arc` (encoded once).
pub trait Generator: Send + Sync + 'static {
    fn generate(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>>;
}

pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";
pub const BLACKHOLE: &str = "BlackHoleCluster";

/// The identity slice's generator (see module docs).
pub struct InboundMtlsOnly;

impl Generator for InboundMtlsOnly {
    fn generate(&self, proxy: &Proxy, url: &str) -> Vec<Arc<NamedResource>> {
        let v = match url {
            type_url::CLUSTER => vec![
                NamedResource::new(INBOUND_PASSTHROUGH, pack_any(passthrough_cluster())),
                NamedResource::new(BLACKHOLE, pack_any(blackhole_cluster())),
            ],
            type_url::LISTENER if proxy.kind == super::node::ProxyKind::Sidecar => {
                vec![NamedResource::new(
                    "virtualInbound",
                    pack_any(virtual_inbound()),
                )]
            }
            _ => vec![],
        };
        v.into_iter().map(Arc::new).collect()
    }
}

fn secs(s: i64) -> Option<Duration> {
    Some(Duration {
        seconds: s,
        nanos: 0,
    })
}

fn passthrough_cluster() -> Cluster {
    Cluster {
        name: INBOUND_PASSTHROUGH.into(),
        connect_timeout: secs(10),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        ..Default::default()
    }
}

fn blackhole_cluster() -> Cluster {
    Cluster {
        name: BLACKHOLE.into(),
        connect_timeout: secs(10),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        ..Default::default()
    }
}

/// SDS through the agent's `sds-grpc` cluster (declared in the bootstrap).
pub fn sds_secret(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ConfigSource {
            resource_api_version: 2, // V3
            initial_fetch_timeout: secs(0),
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: api_config_source::ApiType::Grpc as i32,
                    transport_api_version: 2, // V3
                    set_node_on_first_message_only: true,
                    grpc_services: vec![GrpcService {
                        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                            grpc_service::EnvoyGrpc {
                                cluster_name: "sds-grpc".into(),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
    }
}

/// Istio's workload TLS context: certificate `default`, peers validated against `ROOTCA`.
pub fn workload_tls_context() -> CommonTlsContext {
    CommonTlsContext {
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
        tls_certificate_sds_secret_configs: vec![sds_secret("default")],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext::default()),
                    validation_context_sds_secret_config: Some(sds_secret("ROOTCA")),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

fn virtual_inbound() -> Listener {
    let tls = DownstreamTlsContext {
        common_tls_context: Some(workload_tls_context()),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let tcp = TcpProxy {
        stat_prefix: INBOUND_PASSTHROUGH.into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
            INBOUND_PASSTHROUGH.into(),
        )),
        ..Default::default()
    };
    Listener {
        name: "virtualInbound".into(),
        address: Some(weft_proto::envoy_types::pb::envoy::config::core::v3::Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(15006)),
                ..Default::default()
            })),
        }),
        use_original_dst: Some(BoolValue { value: true }),
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.original_dst".into(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(OriginalDst::default()))),
            ..Default::default()
        }],
        filter_chains: vec![FilterChain {
            name: "virtualInbound-catchall-mtls".into(),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(
                    weft_proto::envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                        pack_any(tls),
                    ),
                ),
            }),
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(tcp))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}
