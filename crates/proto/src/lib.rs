//! Wire types: Istio's own protos (compiled from `proto/`) and Envoy's xDS (from `envoy-types`).

/// `istio.v1.auth`: IstioCertificateService.
pub mod ca {
    tonic::include_proto!("istio.v1.auth");
}

/// `istio.networking.nds.v1`: the DNS name table.
pub mod nds {
    tonic::include_proto!("istio.networking.nds.v1");

    impl prost::Name for NameTable {
        const NAME: &'static str = "NameTable";
        const PACKAGE: &'static str = "istio.networking.nds.v1";

        fn type_url() -> String {
            super::type_url::NAME_TABLE.into()
        }
    }
}

pub use envoy_types;

/// Type URLs Weft uses on the xDS stream.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    pub const NAME_TABLE: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";
    pub const HEALTH_INFO: &str = "type.googleapis.com/istio.v1.HealthInformation";
}
