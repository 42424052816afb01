//! A cluster being built together with its upstream HTTP protocol options, which are packed into
//! `typed_extension_protocol_options` only at the end (Istio's `clusterWrapper`): upstream
//! protocol, connection-pool and TLS settings each touch the same options message.

use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions,
};
use weft_proto::envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use weft_proto::envoy_types::util::pack_any;

use http_protocol_options::UpstreamProtocolOptions;
use http_protocol_options::explicit_http_config::ProtocolConfig;

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub(crate) struct Draft {
    pub cluster: Cluster,
    pub http: Option<HttpProtocolOptions>,
}

impl Draft {
    pub(crate) fn new(cluster: Cluster) -> Draft {
        Draft {
            cluster,
            http: None,
        }
    }

    /// The HTTP protocol options, created empty on first use.
    pub(crate) fn http(&mut self) -> &mut HttpProtocolOptions {
        self.http.get_or_insert_with(Default::default)
    }

    pub(crate) fn kind(&self) -> Option<cluster::DiscoveryType> {
        match self.cluster.cluster_discovery_type {
            Some(cluster::ClusterDiscoveryType::Type(t)) => {
                cluster::DiscoveryType::try_from(t).ok()
            }
            _ => None,
        }
    }

    pub(crate) fn set_kind(&mut self, kind: cluster::DiscoveryType) {
        self.cluster.cluster_discovery_type =
            Some(cluster::ClusterDiscoveryType::Type(kind as i32));
    }

    /// Upstream HTTP/2, unless an upstream protocol is already chosen (Istio's `setH2Options`).
    pub(crate) fn set_h2(&mut self) {
        let http = self.http();
        if http.upstream_protocol_options.is_none() {
            http.upstream_protocol_options = Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            ));
        }
    }

    /// The upstream HTTP version follows the downstream's (keeping explicit HTTP/1 options).
    pub(crate) fn use_downstream_protocol(&mut self) {
        let http = self.http();
        let http1 = match &http.upstream_protocol_options {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match &e.protocol_config {
                Some(ProtocolConfig::HttpProtocolOptions(h1)) => h1.clone(),
                _ => Http1ProtocolOptions::default(),
            },
            _ => Http1ProtocolOptions::default(),
        };
        http.upstream_protocol_options =
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
                http_protocol_options::UseDownstreamHttpConfig {
                    http_protocol_options: Some(http1),
                    http2_protocol_options: Some(Http2ProtocolOptions::default()),
                    ..Default::default()
                },
            ));
    }

    /// The explicit HTTP/2 options, when the cluster speaks only HTTP/2 upstream.
    pub(crate) fn h2_options(&mut self) -> Option<&mut Http2ProtocolOptions> {
        match self.http.as_mut()?.upstream_protocol_options.as_mut()? {
            UpstreamProtocolOptions::ExplicitHttpConfig(e) => match e.protocol_config.as_mut()? {
                ProtocolConfig::Http2ProtocolOptions(h2) => Some(h2),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn is_h2(&mut self) -> bool {
        self.h2_options().is_some()
    }

    /// The cluster, with the HTTP protocol options packed (explicit HTTP/1.1 when no upstream
    /// protocol was chosen, which Envoy requires).
    pub(crate) fn finish(self) -> Cluster {
        let mut c = self.cluster;
        if let Some(mut http) = self.http {
            if http.upstream_protocol_options.is_none() {
                http.upstream_protocol_options = Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                    http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                            Http1ProtocolOptions::default(),
                        )),
                    },
                ));
            }
            c.typed_extension_protocol_options =
                [(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(http))].into();
        }
        c
    }
}
