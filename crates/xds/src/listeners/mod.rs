//! LDS: the shared outbound listeners and the per-proxy `virtualInbound`.

pub(crate) mod inbound;
mod inspectors;
pub(crate) mod outbound;
pub(crate) mod outbound_plan;
pub(crate) mod tcp_routes;

use crate::http_route::{CORS_FILTER, FAULT_FILTER};
use crate::util::{ads_config_source, bool_value, network_filter, secs};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{
    Filter, ListenerFilter, listener_filter,
};
use weft_proto::envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use weft_proto::envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use weft_proto::envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use weft_proto::envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy,
};
use weft_proto::envoy_types::util::pack_any;

pub(crate) const HCM: &str = "envoy.filters.network.http_connection_manager";
pub(crate) const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
pub(crate) const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
/// `transport_protocol` of connections no listener filter found TLS in.
pub(crate) const RAW_BUFFER: &str = "raw_buffer";
pub(crate) const TLS: &str = "tls";
/// What `http_inspector` reports for plaintext HTTP (Istio's `plaintextHTTPALPNs`, HTTP/1.0
/// not accepted).
pub(crate) const PLAINTEXT_HTTP_ALPNS: &[&str] = &["http/1.1", "h2c"];
pub(crate) const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";

/// `tcp_proxy` over weighted clusters (a TCP VirtualService route with several destinations).
pub(crate) fn weighted_tcp_proxy_filter(stat_prefix: &str, clusters: &[(String, u32)]) -> Filter {
    network_filter(
        TCP_PROXY,
        pack_any(TcpProxy {
            stat_prefix: stat_prefix.into(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::WeightedClusters(
                tcp_proxy::WeightedCluster {
                    clusters: clusters
                        .iter()
                        .map(
                            |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                                name: name.clone(),
                                weight: *weight,
                                ..Default::default()
                            },
                        )
                        .collect(),
                },
            )),
            ..Default::default()
        }),
    )
}

pub(crate) fn tcp_proxy_filter(cluster: &str) -> Filter {
    network_filter(
        TCP_PROXY,
        pack_any(TcpProxy {
            stat_prefix: cluster.into(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        }),
    )
}

pub(crate) enum Routes {
    /// RDS over ADS, by route configuration name.
    Rds(String),
    Inline(Box<RouteConfiguration>),
}

fn http_filter<M: prost::Message + prost::Name>(name: &str, config: M) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(config))),
        ..Default::default()
    }
}

/// Istio's sidecar HTTP connection manager: the fault and CORS filters (empty: routes configure
/// them per route) before the router, as istiod puts them in every HTTP connection manager.
pub(crate) fn http_connection_manager(
    stat_prefix: String,
    routes: Routes,
) -> HttpConnectionManager {
    HttpConnectionManager {
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix,
        route_specifier: Some(match routes {
            Routes::Rds(name) => http_connection_manager::RouteSpecifier::Rds(Rds {
                config_source: ads_config_source(),
                route_config_name: name,
            }),
            Routes::Inline(rc) => http_connection_manager::RouteSpecifier::RouteConfig(*rc),
        }),
        http_filters: vec![
            http_filter(FAULT_FILTER, HttpFault::default()),
            http_filter(CORS_FILTER, Cors::default()),
            http_filter("envoy.filters.http.router", Router::default()),
        ],
        use_remote_address: bool_value(false),
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        }],
        stream_idle_timeout: secs(0),
        normalize_path: bool_value(true),
        path_with_escaped_slashes_action:
            http_connection_manager::PathWithEscapedSlashesAction::KeepUnchanged as i32,
        ..Default::default()
    }
}

pub(crate) fn hcm_filter(hcm: HttpConnectionManager) -> Filter {
    network_filter(HCM, pack_any(hcm))
}

pub(crate) fn original_dst_filter() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.original_dst".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            OriginalDst::default(),
        ))),
        ..Default::default()
    }
}

pub(crate) fn tls_inspector_filter() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// Sets `application_protocols` to `http/1.1` or `h2c` when the first bytes are plaintext HTTP.
pub(crate) fn http_inspector_filter() -> ListenerFilter {
    ListenerFilter {
        name: HTTP_INSPECTOR.into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            HttpInspector::default(),
        ))),
        ..Default::default()
    }
}
