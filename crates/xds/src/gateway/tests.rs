use crate::mesh::MeshConfig;
use crate::network::MeshNetworks;
use crate::proxy::Proxy;
use crate::registry::Allocations;
use crate::{NamedResource, PushContext};
use prost::Message;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use weft_model::load::{Outcome, load_str};
use weft_model::snapshot::Snapshot;
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, lb_endpoint,
};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter};
use weft_proto::envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy,
};
use weft_proto::type_url;

const LAB: &str = include_str!("../../testdata/seed-lab.yaml");

fn context(yaml: &str, mesh_networks: &str) -> PushContext {
    let resources = load_str("t.yaml", yaml)
        .into_iter()
        .filter_map(|e| match e.outcome {
            Outcome::Valid { resource, .. } => Some(Arc::new(*resource)),
            Outcome::Skipped { .. } => None,
            Outcome::Invalid { errors, .. } => panic!("{} {}: {errors:?}", e.kind, e.name),
        });
    let mesh = MeshConfig {
        networks: serde_saphyr::from_str::<MeshNetworks>(mesh_networks).unwrap(),
        ..Default::default()
    };
    PushContext::new(
        Arc::new(Snapshot::new(1, resources)),
        &Allocations::new(),
        &mesh,
    )
}

fn router(ip: &str, labels: Value) -> Proxy {
    let mut meta = Map::new();
    meta.insert("LABELS".into(), labels);
    meta.insert("NETWORK".into(), json!("cluster"));
    Proxy::from_node_parts(
        &format!("router~{ip}~eastwest.istio-system~istio-system.svc.cluster.local"),
        meta,
    )
    .unwrap()
}

fn eastwest() -> Proxy {
    router("198.18.0.11", json!({"istio": "eastwestgateway"}))
}

const VM_GATEWAY: &str =
    "networks:\n  vm-network:\n    gateways:\n    - {address: 198.18.0.11, port: 15443}\n";

fn decode<M: Message + Default>(r: &NamedResource) -> M {
    M::decode(r.resource.value.as_slice()).unwrap()
}

fn listeners(ctx: &PushContext, proxy: &Proxy) -> Vec<Listener> {
    ctx.generate(proxy, type_url::LISTENER)
        .iter()
        .map(|r| decode(r))
        .collect()
}

fn tcp_proxy(chain: &FilterChain) -> TcpProxy {
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no typed config");
    };
    TcpProxy::decode(any.value.as_slice()).unwrap()
}

fn cluster_of(chain: &FilterChain) -> String {
    match tcp_proxy(chain).cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn server_names(chain: &FilterChain) -> Vec<String> {
    chain
        .filter_chain_match
        .as_ref()
        .map(|m| m.server_names.clone())
        .unwrap_or_default()
}

fn endpoints(ctx: &PushContext, proxy: &Proxy, name: &str) -> Vec<String> {
    let cla: ClusterLoadAssignment = decode(
        ctx.generate(proxy, type_url::ENDPOINT)
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no endpoints for {name}")),
    );
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
                    Some(address::Address::SocketAddress(sa)) => match sa.port_specifier {
                        Some(socket_address::PortSpecifier::PortValue(p)) => {
                            format!("{}:{p}", sa.address)
                        }
                        _ => sa.address.clone(),
                    },
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn the_seed_gateways_give_the_east_west_gateway_its_listeners() {
    let ctx = context(LAB, VM_GATEWAY);
    let ls = listeners(&ctx, &eastwest());
    let names: Vec<&str> = ls.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["0.0.0.0_15012", "0.0.0.0_15017", "0.0.0.0_15443"]);

    // expose-istiod: any SNI on 15012 and 15017 to istiod's ports 15012 and 443.
    for (l, cluster) in [
        (
            &ls[0],
            "outbound|15012||istiod.istio-system.svc.cluster.local",
        ),
        (
            &ls[1],
            "outbound|443||istiod.istio-system.svc.cluster.local",
        ),
    ] {
        assert_eq!(l.filter_chains.len(), 1);
        assert_eq!(l.filter_chains[0].filter_chain_match, None);
        assert_eq!(cluster_of(&l.filter_chains[0]), cluster);
        assert!(l.listener_filters.is_empty(), "no SNI to inspect");
    }

    // cross-network: one chain per service port under *.local, mTLS ALPNs, to the same name.
    let auto = &ls[2];
    assert_eq!(
        auto.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let snis: Vec<String> = auto.filter_chains.iter().flat_map(server_names).collect();
    for sni in [
        "outbound_.80_._.forum.forum-services.svc.cluster.local",
        "outbound_.80_._.webapp.istioinaction.svc.cluster.local",
        "outbound_.15012_._.istiod.istio-system.svc.cluster.local",
        "outbound_.15443_._.istio-eastwestgateway.istio-system.svc.cluster.local",
    ] {
        assert!(snis.iter().any(|s| s == sni), "{sni} missing from {snis:?}");
    }
    for c in &auto.filter_chains {
        assert_eq!(cluster_of(c), server_names(c)[0]);
        let alpns = &c.filter_chain_match.as_ref().unwrap().application_protocols;
        assert!(alpns.contains(&"istio".to_string()), "{alpns:?}");
    }
}

#[test]
fn sni_dnat_clusters_pass_tls_through_to_mtls_endpoints_on_the_gateways_networks() {
    let ctx = context(LAB, VM_GATEWAY);
    let gw = eastwest();
    let clusters: Vec<Cluster> = ctx
        .generate(&gw, type_url::CLUSTER)
        .iter()
        .map(|r| decode(r))
        .collect();
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"BlackHoleCluster"));
    assert!(!names.contains(&"PassthroughCluster"));
    assert!(!names.contains(&"InboundPassthroughCluster"));
    let forum = "outbound_.80_._.forum.forum-services.svc.cluster.local";
    let c = clusters.iter().find(|c| c.name == forum).unwrap();
    assert!(c.transport_socket_matches.is_empty() && c.transport_socket.is_none());
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    assert_eq!(c.eds_cluster_config.as_ref().unwrap().service_name, forum);
    // The gateway is the vm-network's gateway too: it reaches the VM directly.
    assert_eq!(endpoints(&ctx, &gw, forum), ["198.18.1.11:8080"]);
    // istiod is not an mTLS endpoint: never reachable through AUTO_PASSTHROUGH...
    assert!(
        endpoints(
            &ctx,
            &gw,
            "outbound_.15012_._.istiod.istio-system.svc.cluster.local"
        )
        .is_empty()
    );
    // ...only through the expose-istiod route's plain outbound cluster.
    assert_eq!(
        endpoints(
            &ctx,
            &gw,
            "outbound|15012||istiod.istio-system.svc.cluster.local"
        )
        .len(),
        1
    );
}

#[test]
fn every_eds_cluster_of_a_router_has_endpoints() {
    let ctx = context(LAB, VM_GATEWAY);
    let gw = eastwest();
    let eds: Vec<String> = ctx
        .generate(&gw, type_url::ENDPOINT)
        .iter()
        .map(|r| r.name.clone())
        .collect();
    for r in ctx.generate(&gw, type_url::CLUSTER) {
        let c: Cluster = decode(&r);
        if let Some(cfg) = &c.eds_cluster_config {
            assert!(
                eds.contains(&cfg.service_name),
                "{} has no endpoints",
                c.name
            );
        }
    }
}

#[test]
fn gateways_apply_by_selector_and_http_servers_listen_on_rds() {
    let ctx = context(LAB, "{}");
    // Not the east-west gateway: only the selector-less istiod-gateway applies.
    let other = router("198.18.0.50", json!({"istio": "ingressgateway"}));
    let names: Vec<String> = listeners(&ctx, &other)
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["0.0.0.0_15012", "0.0.0.0_15017"]);
    assert!(
        !ctx.generate(&other, type_url::CLUSTER)
            .iter()
            .any(|c| c.name.starts_with("outbound_."))
    );
    // A plain HTTP server listens with an HTTP connection manager on RDS `http.<port>`; with
    // no VirtualService bound, its route configuration is the 404 blackhole.
    let http = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ['*']
";
    let ctx = context(&format!("{LAB}---\n{http}"), "{}");
    let names: Vec<String> = listeners(&ctx, &other)
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["0.0.0.0_15012", "0.0.0.0_15017", "0.0.0.0_8080"]);
    let routes: Vec<RouteConfiguration> = ctx
        .generate(&other, type_url::ROUTE)
        .iter()
        .map(|r| decode(r))
        .collect();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].name, "http.8080");
    assert_eq!(routes[0].virtual_hosts[0].name, "blackhole:8080");
    // The east-west gateway (no HTTP server) gets no route configuration.
    assert!(ctx.generate(&eastwest(), type_url::ROUTE).is_empty());
}

const EXTRA: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: forum, namespace: forum-services}
spec:
  host: forum
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: forum-v2, namespace: forum-services}
spec:
  address: 198.18.1.12
  labels: {app: forum, version: v2}
  serviceAccount: forum-sa
  network: vm-network
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: forum-plain, namespace: forum-services}
spec:
  address: 198.18.1.13
  labels: {app: forum, version: v2, security.istio.io/tlsMode: disabled}
  network: vm-network
";

#[test]
fn subsets_get_their_own_sni_chains_clusters_and_endpoints() {
    let ctx = context(&format!("{LAB}---\n{EXTRA}"), VM_GATEWAY);
    let gw = eastwest();
    let ls = listeners(&ctx, &gw);
    let snis: Vec<String> = ls[2].filter_chains.iter().flat_map(server_names).collect();
    for sni in [
        "outbound_.80_._.forum.forum-services.svc.cluster.local",
        "outbound_.80_.v1_.forum.forum-services.svc.cluster.local",
        "outbound_.80_.v2_.forum.forum-services.svc.cluster.local",
    ] {
        assert!(snis.iter().any(|s| s == sni), "{sni} missing");
    }
    let count = |name: &str| endpoints(&ctx, &gw, name).len();
    // All three are forum endpoints; the plaintext one is never sent through the gateway.
    assert_eq!(
        count("outbound_.80_._.forum.forum-services.svc.cluster.local"),
        2
    );
    assert_eq!(
        count("outbound_.80_.v1_.forum.forum-services.svc.cluster.local"),
        0
    );
    assert_eq!(
        count("outbound_.80_.v2_.forum.forum-services.svc.cluster.local"),
        1
    );
}

#[test]
fn server_ports_translate_to_the_routers_service_target_ports() {
    // The gateway's Service maps 15443 to 16443: the listener binds the target port.
    let lab = LAB.replacen(
        "  - name: mtls\n    port: 15443\n    targetPort: 15443",
        "  - name: mtls\n    port: 15443\n    targetPort: 16443",
        1,
    );
    assert_ne!(lab, LAB);
    let ctx = context(&lab, "{}");
    let names: Vec<String> = listeners(&ctx, &eastwest())
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["0.0.0.0_15012", "0.0.0.0_15017", "0.0.0.0_16443"]);
}

#[test]
fn tls_routes_by_sni_with_weights_and_tcp_routes() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: apps}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ['*.example.com']
  - port: {number: 9443, name: tls-dup, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ['*.example.com']
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ['*']
  - port: {number: 9000, name: tcp-2, protocol: TCP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: apps}
spec:
  hosts: ['shop.example.com', 'db.example.com']
  gateways: [edge]
  tls:
  - match:
    - port: 9443
      sniHosts: [shop.example.com]
    route:
    - destination: {host: shop, port: {number: 443}, subset: v1}
      weight: 80
    - destination: {host: shop, port: {number: 443}}
      weight: 20
  - match:
    - sniHosts: [shop.example.com]
      gateways: [apps/edge]
    route:
    - destination: {host: other}
  - match:
    - sniHosts: [db.example.com]
      gateways: [elsewhere]
    route:
    - destination: {host: db}
  tcp:
  - match:
    - port: 9000
    route:
    - destination: {host: db.apps.svc.cluster.local, port: {number: 5432}}
";
    let ctx = context(&format!("{LAB}---\n{yaml}"), "{}");
    let ls = listeners(&ctx, &eastwest());
    let tcp = ls.iter().find(|l| l.name == "0.0.0.0_9000").unwrap();
    assert_eq!(tcp.filter_chains.len(), 1);
    assert_eq!(
        cluster_of(&tcp.filter_chains[0]),
        "outbound|5432||db.apps.svc.cluster.local"
    );
    let tls = ls.iter().find(|l| l.name == "0.0.0.0_9443").unwrap();
    // The second match repeats an SNI host: skipped; the third names another gateway.
    assert_eq!(tls.filter_chains.len(), 1);
    assert_eq!(server_names(&tls.filter_chains[0]), ["shop.example.com"]);
    let tp = tcp_proxy(&tls.filter_chains[0]);
    assert_eq!(tp.stat_prefix, "shop.apps");
    let Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) = tp.cluster_specifier else {
        panic!("not weighted");
    };
    let got: Vec<(String, u32)> = w.clusters.into_iter().map(|c| (c.name, c.weight)).collect();
    assert_eq!(
        got,
        [
            (
                "outbound|443|v1|shop.apps.svc.cluster.local".to_string(),
                80
            ),
            ("outbound|443||shop.apps.svc.cluster.local".to_string(), 20),
        ]
    );
}
