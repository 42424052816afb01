//! Turning generated resources into a static Envoy bootstrap, and running Envoy.

use super::decode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    Address, Http2ProtocolOptions, Pipe, address,
};
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use weft_proto::envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use weft_proto::envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use weft_proto::envoy_types::pb::google::protobuf::Duration;
use weft_proto::envoy_types::util::pack_any;
use weft_proto::type_url;
use weft_xds::{Proxy, PushContext};

/// `$ENVOY_BINARY`, else `/usr/local/bin/envoy`, if it exists.
pub fn envoy_binary() -> Option<PathBuf> {
    let path = std::env::var_os("ENVOY_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/envoy"));
    path.exists().then_some(path)
}

/// What `ctx` gives `proxy`, as static resources: EDS clusters made STATIC with their
/// generated ClusterLoadAssignment inlined; RDS replaced by the generated route configuration.
pub fn static_resources(ctx: &PushContext, proxy: &Proxy) -> (Vec<Listener>, Vec<Cluster>) {
    let routes: BTreeMap<String, RouteConfiguration> = ctx
        .generate(proxy, type_url::ROUTE)
        .iter()
        .map(|r| (r.name.clone(), decode(&r.resource)))
        .collect();
    let endpoints: BTreeMap<String, ClusterLoadAssignment> = ctx
        .generate(proxy, type_url::ENDPOINT)
        .iter()
        .map(|r| (r.name.clone(), decode(&r.resource)))
        .collect();
    let eds = Some(cluster::ClusterDiscoveryType::Type(
        cluster::DiscoveryType::Eds as i32,
    ));
    let clusters = ctx
        .generate(proxy, type_url::CLUSTER)
        .iter()
        .map(|r| {
            let mut c: Cluster = decode(&r.resource);
            if c.cluster_discovery_type == eds {
                let cla = endpoints.get(&c.name).unwrap_or_else(|| {
                    panic!("no ClusterLoadAssignment for EDS cluster {}", c.name)
                });
                c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Static as i32,
                ));
                c.eds_cluster_config = None;
                c.load_assignment = Some(cla.clone());
            }
            c
        })
        .collect();
    let listeners = ctx
        .generate(proxy, type_url::LISTENER)
        .iter()
        .map(|r| {
            let mut l: Listener = decode(&r.resource);
            for chain in l
                .filter_chains
                .iter_mut()
                .chain(&mut l.default_filter_chain)
            {
                for f in &mut chain.filters {
                    let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                        continue;
                    };
                    if !any.type_url.ends_with(".HttpConnectionManager") {
                        continue;
                    }
                    let mut hcm: HttpConnectionManager = decode(any);
                    if let Some(http_connection_manager::RouteSpecifier::Rds(rds)) =
                        &hcm.route_specifier
                    {
                        let rc = routes
                            .get(&rds.route_config_name)
                            .unwrap_or_else(|| {
                                panic!("no route configuration {}", rds.route_config_name)
                            })
                            .clone();
                        hcm.route_specifier =
                            Some(http_connection_manager::RouteSpecifier::RouteConfig(rc));
                    }
                    *any = pack_any(hcm);
                }
            }
            l
        })
        .collect();
    (listeners, clusters)
}

/// A STATIC cluster with one endpoint address.
pub fn static_cluster(name: &str, addr: Address) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(addr),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The bootstrap's `sds-grpc` cluster (HTTP/2) on a unix socket in `dir` nobody serves.
pub fn sds_grpc_cluster(dir: &Path) -> Cluster {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    };
    let mut c = static_cluster(
        "sds-grpc",
        Address {
            address: Some(address::Address::Pipe(Pipe {
                path: dir.join("sds.sock").display().to_string(),
                mode: 0,
            })),
        },
    );
    c.typed_extension_protocol_options = [(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        pack_any(options),
    )]
    .into();
    c
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-xds-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the pinned Envoy in `--mode validate` on a bootstrap with `listeners` and `clusters` (plus
/// the agent's `sds-grpc` cluster) for node `node_id` in `node_cluster`, written under `dir`;
/// returns Envoy's output and panics, naming `what`, when Envoy is missing or rejects it.
pub fn validate_bootstrap(
    dir: &Path,
    node_id: &str,
    node_cluster: &str,
    listeners: Vec<Listener>,
    mut clusters: Vec<Cluster>,
    what: &str,
) -> String {
    use prost::Message;
    use weft_proto::envoy_types::pb::envoy::config::bootstrap::v3::{Bootstrap, bootstrap};
    use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
    let envoy = envoy_binary().expect("Envoy is needed: set ENVOY_BINARY or run scripts/setup");
    clusters.push(sds_grpc_cluster(dir));
    let bootstrap = Bootstrap {
        node: Some(Node {
            id: node_id.to_string(),
            cluster: node_cluster.to_string(),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::StaticResources {
            listeners,
            clusters,
            ..Default::default()
        }),
        ..Default::default()
    };
    let file = dir.join("bootstrap.pb");
    std::fs::write(&file, bootstrap.encode_to_vec()).unwrap();
    let out = std::process::Command::new(&envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(&file)
        .output()
        .expect("run envoy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("OK"),
        "envoy rejected the {what}:\n{text}"
    );
    text
}
