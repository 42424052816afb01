//! Istio mutual TLS with stock Envoy: certificates from the agent over SDS (`default`, `ROOTCA`
//! through the bootstrap's `sds-grpc` cluster).

use crate::names::{SDS_CLUSTER, SDS_DEFAULT, SDS_ROOT};
use crate::util::{bool_value, secs, transport_socket};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, ConfigSource, GrpcService, TransportSocket, api_config_source, config_source,
    grpc_service,
};
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, TlsParameters, UpstreamTlsContext, common_tls_context,
    subject_alt_name_matcher, tls_parameters,
};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use weft_proto::envoy_types::util::pack_any;

pub(crate) const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
pub(crate) const RAW_BUFFER_SOCKET: &str = "envoy.transport_sockets.raw_buffer";

/// ALPN a client offers in-mesh. Istio adds `istio-peer-exchange` when its metadata-exchange
/// filter runs; stock Envoy has none, so Weft offers plain `istio` (which every Istio inbound
/// chain also accepts).
const ALPN_IN_MESH: &[&str] = &["istio"];
const ALPN_IN_MESH_H2: &[&str] = &["istio", "h2"];
/// ALPN an inbound HTTP chain offers once TLS is terminated.
const ALPN_HTTP: &[&str] = &["h2", "http/1.1"];

/// ALPN values marking Istio mTLS on an inbound connection (Istio's `allIstioMtlsALPNs`).
pub(crate) const ISTIO_MTLS_ALPNS: &[&str] = &[
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// ALPN of HTTP an Istio client sniffed, over mTLS (Istio's `mtlsHTTPALPNs`).
pub(crate) const MTLS_HTTP_ALPNS: &[&str] = &["istio-http/1.0", "istio-http/1.1", "istio-h2"];

/// ALPN of TCP over mTLS (Istio's `mtlsTCPWithMxcALPNs`).
pub(crate) const MTLS_TCP_ALPNS: &[&str] = &["istio-peer-exchange", "istio"];

/// Istio's cipher suites for in-mesh TLS 1.2.
const CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// An SDS secret served by the agent over the bootstrap's `sds-grpc` cluster.
pub(crate) fn sds_secret(name: &str) -> SdsSecretConfig {
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
                                cluster_name: SDS_CLUSTER.into(),
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

fn common(alpn: &[&str], sans: &[String], ciphers: bool) -> CommonTlsContext {
    let matchers = sans
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
    CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: tls_parameters::TlsProtocol::TlSv12 as i32,
            tls_maximum_protocol_version: tls_parameters::TlsProtocol::TlSv13 as i32,
            cipher_suites: if ciphers { strings(CIPHERS) } else { vec![] },
            ..Default::default()
        }),
        alpn_protocols: strings(alpn),
        tls_certificate_sds_secret_configs: vec![sds_secret(SDS_DEFAULT)],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: matchers,
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds_secret(SDS_ROOT)),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

/// ISTIO_MUTUAL towards an in-mesh endpoint: our certificate, the peer checked against ROOTCA
/// and (when known) the service's SPIFFE identities; SNI `outbound_.<port>_._.<host>`.
pub(crate) fn istio_mutual_upstream(sni: String, sans: &[String], h2: bool) -> TransportSocket {
    let alpn = if h2 { ALPN_IN_MESH_H2 } else { ALPN_IN_MESH };
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(common(alpn, sans, false)),
        sni,
        ..Default::default()
    };
    transport_socket(TLS_SOCKET, pack_any(ctx))
}

/// Inbound mTLS termination: client certificate required and checked against ROOTCA.
pub(crate) fn istio_mutual_downstream(http: bool) -> TransportSocket {
    let alpn: &[&str] = if http { ALPN_HTTP } else { &[] };
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(common(alpn, &[], true)),
        require_client_certificate: bool_value(true),
        ..Default::default()
    };
    transport_socket(TLS_SOCKET, pack_any(ctx))
}

/// A gateway's `ISTIO_MUTUAL` HTTPS server (Istio's `ApplyToCommonTLSContext` for a router):
/// the router's certificate, client certificates required, checked against ROOTCA and `sans`.
pub(crate) fn istio_mutual_gateway(sans: &[String]) -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(common(ALPN_HTTP, sans, false)),
        require_client_certificate: bool_value(true),
        ..Default::default()
    }
}

pub(crate) fn raw_buffer() -> TransportSocket {
    transport_socket(RAW_BUFFER_SOCKET, pack_any(RawBuffer::default()))
}
