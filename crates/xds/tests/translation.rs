//! Behaviour of the registry and the translators, checked on small scenarios.

mod common;

use common::{decode, snapshot};
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::Cluster;
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, lb_endpoint,
};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route, route_action,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy,
};
use weft_proto::type_url;
use weft_xds::registry::{Protocol, TlsMode};
use weft_xds::{
    Allocations, MeshConfig, MtlsMode, NamedResource, OutboundTrafficPolicyMode, Proxy, PushContext,
};

fn ctx(yaml: &str) -> PushContext {
    PushContext::new(snapshot(yaml), &Allocations::new(), &MeshConfig::default())
}

fn pa(name: &str, ns: &str, created: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: {ns}\n  creationTimestamp: \"{created}\"\nspec:\n{spec}---\n"
    )
}

fn names(rs: &[Arc<NamedResource>]) -> Vec<&str> {
    rs.iter().map(|r| r.name.as_str()).collect()
}

fn find<'a>(rs: &'a [Arc<NamedResource>], name: &str) -> &'a Arc<NamedResource> {
    rs.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", names(rs)))
}

#[test]
fn peer_authentication_precedence() {
    let mut yaml = String::new();
    yaml += &pa("default", "istio-system", "", "  mtls:\n    mode: STRICT\n");
    let c = ctx(&yaml);
    let web = Proxy::sidecar("w", "shop", "10.0.0.1", &[("app", "web")]);
    assert_eq!(
        c.mtls_policy(&web).default,
        MtlsMode::Strict,
        "mesh-wide applies"
    );

    yaml += &pa("ns", "shop", "", "  mtls:\n    mode: DISABLE\n");
    let c = ctx(&yaml);
    assert_eq!(
        c.mtls_policy(&web).default,
        MtlsMode::Disable,
        "namespace beats mesh"
    );
    let other = Proxy::sidecar("o", "other", "10.0.0.2", &[("app", "web")]);
    assert_eq!(c.mtls_policy(&other).default, MtlsMode::Strict);

    // Two workload policies match: the older one wins, even though its name sorts later.
    yaml += &pa(
        "z-old",
        "shop",
        "2024-01-01T00:00:00Z",
        "  selector:\n    matchLabels:\n      app: web\n  mtls:\n    mode: PERMISSIVE\n  portLevelMtls:\n    8080:\n      mode: STRICT\n    8081:\n      mode: UNSET\n",
    );
    yaml += &pa(
        "a-new",
        "shop",
        "2025-01-01T00:00:00Z",
        "  selector:\n    matchLabels:\n      app: web\n  mtls:\n    mode: STRICT\n",
    );
    let c = ctx(&yaml);
    let p = c.mtls_policy(&web);
    assert_eq!(p.default, MtlsMode::Permissive, "workload beats namespace");
    assert_eq!(
        p.for_port(8080),
        MtlsMode::Strict,
        "port level beats workload"
    );
    assert_eq!(
        p.for_port(8081),
        MtlsMode::Permissive,
        "UNSET port inherits the workload mode"
    );
    assert_eq!(p.for_port(9999), MtlsMode::Permissive);
    // A selector that does not match leaves the namespace mode.
    let db = Proxy::sidecar("d", "shop", "10.0.0.3", &[("app", "db")]);
    assert_eq!(c.mtls_policy(&db).default, MtlsMode::Disable);

    // UNSET at workload level inherits the namespace's mode.
    let yaml2 = pa("ns", "shop", "", "  mtls:\n    mode: STRICT\n")
        + &pa(
            "w",
            "shop",
            "",
            "  selector:\n    matchLabels:\n      app: web\n  mtls:\n    mode: UNSET\n  portLevelMtls:\n    80:\n      mode: DISABLE\n",
        );
    let p = ctx(&yaml2).mtls_policy(&web);
    assert_eq!(p.default, MtlsMode::Strict);
    assert_eq!(p.for_port(80), MtlsMode::Disable);

    // A mesh config with another root namespace.
    let mesh = MeshConfig {
        root_namespace: "mesh-root".into(),
        ..Default::default()
    };
    let c = PushContext::new(
        snapshot(&pa(
            "default",
            "istio-system",
            "",
            "  mtls:\n    mode: STRICT\n",
        )),
        &Allocations::new(),
        &mesh,
    );
    assert_eq!(c.mtls_policy(&web).default, MtlsMode::Permissive);
}

const SVC: &str = "apiVersion: v1
kind: Service
metadata:
  name: ratings
  namespace: bookinfo
spec:
  clusterIP: 10.96.1.10
  selector:
    app: ratings
  ports:
  - name: http
    port: 9080
    targetPort: http-web
  - name: grpc-api
    port: 9090
    targetPort: 9091
---
";

fn we(name: &str, addr: &str, extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: bookinfo\n{extra}spec:\n  address: {addr}\n  labels:\n    app: ratings\n  serviceAccount: ratings\n"
    )
}

#[test]
fn target_port_by_name_and_workload_port_overrides() {
    let yaml = format!(
        "{SVC}{}  ports:\n    http-web: 19080\n    grpc-api: 19091\n---\n{}",
        we("a", "10.1.0.1", ""),
        we("b", "10.1.0.2", "")
    );
    let c = ctx(&yaml);
    let svc = c
        .registry()
        .service("ratings.bookinfo.svc.cluster.local")
        .unwrap();
    assert_eq!(svc.ports[0].protocol, Protocol::Http);
    assert_eq!(svc.ports[1].protocol, Protocol::Grpc);
    // Named target port: only the workload that names it is an endpoint, at its port.
    let http: Vec<(&str, u32)> = svc
        .endpoints(9080)
        .iter()
        .map(|e| (e.address.as_str(), e.port))
        .collect();
    assert_eq!(http, vec![("10.1.0.1", 19080)]);
    // Numbered target port: a workload's ports[<service port name>] overrides it.
    let grpc: Vec<(&str, u32)> = svc
        .endpoints(9090)
        .iter()
        .map(|e| (e.address.as_str(), e.port))
        .collect();
    assert_eq!(grpc, vec![("10.1.0.1", 19091), ("10.1.0.2", 9091)]);
    assert!(
        svc.endpoints(9090)
            .iter()
            .all(|e| e.tls_mode == TlsMode::Istio)
    );

    // The proxy of workload a serves 19080 and 19091: inbound clusters and chains by those ports.
    let proxy = Proxy::sidecar("a", "bookinfo", "10.1.0.1", &[]);
    let inbound: Vec<(u32, Protocol)> = c
        .registry()
        .inbound_ports(&proxy)
        .iter()
        .map(|p| (p.port, p.protocol))
        .collect();
    assert_eq!(
        inbound,
        vec![(19080, Protocol::Http), (19091, Protocol::Grpc)]
    );
    let clusters = c.generate(&proxy, type_url::CLUSTER);
    let grpc: Cluster = decode(&find(&clusters, "inbound|19091||").resource);
    assert!(
        grpc.typed_extension_protocol_options
            .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    );
    let b = Proxy::sidecar("b", "bookinfo", "10.1.0.2", &[]);
    let ports: Vec<u32> = c
        .registry()
        .inbound_ports(&b)
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, vec![9091]);
}

#[test]
fn health_checked_entries_need_healthy_true() {
    let ann = "  annotations:\n    proxy.istio.io/health-checks-enabled: \"true\"\n";
    let yaml = format!(
        "{SVC}{}---\n{}status:\n  conditions:\n  - type: Healthy\n    status: \"True\"\n---\n{}status:\n  conditions:\n  - type: Healthy\n    status: \"False\"\n---\n{}",
        we("unprobed", "10.1.0.1", ann),
        we("healthy", "10.1.0.2", ann),
        we("unhealthy", "10.1.0.3", ann),
        we("plain", "10.1.0.4", ""),
    );
    let c = ctx(&yaml);
    let svc = c
        .registry()
        .service("ratings.bookinfo.svc.cluster.local")
        .unwrap();
    let addrs: Vec<&str> = svc
        .endpoints(9090)
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addrs, vec!["10.1.0.2", "10.1.0.4"]);
    let proxy = Proxy::sidecar("x", "bookinfo", "10.9.9.9", &[]);
    let eds = c.generate(&proxy, type_url::ENDPOINT);
    let cla: ClusterLoadAssignment =
        decode(&find(&eds, "outbound|9090||ratings.bookinfo.svc.cluster.local").resource);
    let sent: Vec<String> = cla
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => format!("{:?}", ep.address),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].contains("10.1.0.2") && sent[1].contains("10.1.0.4"));
    // Identities do not depend on health (so health changes only touch EDS).
    assert_eq!(
        svc.identities,
        vec!["spiffe://cluster.local/ns/bookinfo/sa/ratings"]
    );
}

fn catch_all_cluster(listeners: &[Arc<NamedResource>]) -> String {
    let l: Listener = decode(&find(listeners, "virtualOutbound").resource);
    let chain = l
        .filter_chains
        .iter()
        .find(|c| c.name == "virtualOutbound-catchall-tcp")
        .unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!()
    };
    let tcp: TcpProxy = decode(any);
    match tcp.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn registry_only_sends_unknown_traffic_to_the_blackhole() {
    let proxy = Proxy::sidecar("x", "bookinfo", "10.9.9.9", &[]);
    let allow = ctx(SVC);
    assert_eq!(
        catch_all_cluster(&allow.generate(&proxy, type_url::LISTENER)),
        "PassthroughCluster"
    );
    let mut mesh = MeshConfig::default();
    mesh.outbound_traffic_policy.mode = OutboundTrafficPolicyMode::RegistryOnly;
    let deny = PushContext::new(snapshot(SVC), &Allocations::new(), &mesh);
    assert_eq!(
        catch_all_cluster(&deny.generate(&proxy, type_url::LISTENER)),
        "BlackHoleCluster"
    );
    let routes = deny.generate(&proxy, type_url::ROUTE);
    let rc: RouteConfiguration = decode(&find(&routes, "9080").resource);
    let last = rc.virtual_hosts.last().unwrap();
    assert_eq!(last.name, "block_all");
    assert!(matches!(
        &last.routes[0].action,
        Some(route::Action::DirectResponse(d)) if d.status == 502
    ));
    let rc: RouteConfiguration =
        decode(&find(&allow.generate(&proxy, type_url::ROUTE), "9080").resource);
    let last = rc.virtual_hosts.last().unwrap();
    assert_eq!(last.name, "allow_any");
    assert_eq!(last.domains, vec!["*"]);
    match &last.routes[0].action {
        Some(route::Action::Route(r)) => assert_eq!(
            r.cluster_specifier,
            Some(route_action::ClusterSpecifier::Cluster(
                "PassthroughCluster".into()
            ))
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn shared_resources_are_shared() {
    let yaml = format!("{SVC}{}", we("a", "10.1.0.1", ""));
    let c = ctx(&yaml);
    let p1 = Proxy::sidecar("a", "bookinfo", "10.1.0.1", &[("app", "ratings")]);
    let p2 = Proxy::sidecar("b", "bookinfo", "10.1.0.2", &[]);
    let p3 = Proxy::sidecar("c", "elsewhere", "10.1.0.3", &[]);
    for url in [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ] {
        let a = c.generate(&p1, url);
        let b = c.generate(&p2, url);
        let shared: Vec<(&Arc<NamedResource>, &Arc<NamedResource>)> = a
            .iter()
            .filter_map(|x| b.iter().find(|y| y.name == x.name).map(|y| (x, y)))
            .filter(|(x, _)| x.name != "virtualInbound")
            .collect();
        assert!(!shared.is_empty(), "{url}");
        for (x, y) in shared {
            assert!(Arc::ptr_eq(x, y), "{url} {} is not shared", x.name);
        }
    }
    // Routes depend on the namespace (short host names): another namespace, other resources.
    let r1 = c.generate(&p1, type_url::ROUTE);
    let r3 = c.generate(&p3, type_url::ROUTE);
    assert!(!Arc::ptr_eq(&r1[0], &r3[0]));
    assert_ne!(r1[0].version, r3[0].version);
    // Per-proxy: the inbound listener and clusters differ.
    let l1 = c.generate(&p1, type_url::LISTENER);
    let l2 = c.generate(&p2, type_url::LISTENER);
    assert_ne!(
        find(&l1, "virtualInbound").version,
        find(&l2, "virtualInbound").version
    );
}

#[test]
fn versions_are_deterministic_across_contexts() {
    let yaml = format!(
        "{}\n---\n{}",
        include_str!("../testdata/forum.yaml"),
        include_str!("../testdata/mtls-modes.yaml")
    );
    let proxy = Proxy::sidecar("ratings", "bookinfo", "198.18.2.10", &[("app", "ratings")]);
    let versions = |c: &PushContext| -> Vec<(String, String)> {
        [
            type_url::CLUSTER,
            type_url::ENDPOINT,
            type_url::LISTENER,
            type_url::ROUTE,
        ]
        .iter()
        .flat_map(|u| c.generate(&proxy, u))
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
    };
    let a = versions(&ctx(&yaml));
    let b = versions(&ctx(&yaml));
    assert_eq!(a, b);
    assert!(a.len() > 20);
}

#[test]
fn route_domains_follow_the_namespace_relation() {
    let yaml = format!("{SVC}{}", we("a", "10.1.0.1", ""));
    let c = ctx(&yaml);
    let domains = |ns: &str| {
        let p = Proxy::sidecar("p", ns, "10.5.5.5", &[]);
        let rc: RouteConfiguration =
            decode(&find(&c.generate(&p, type_url::ROUTE), "9080").resource);
        assert!(rc.ignore_port_in_host_matching);
        rc.virtual_hosts[0].domains.clone()
    };
    assert_eq!(
        domains("bookinfo"),
        vec![
            "ratings.bookinfo.svc.cluster.local",
            "ratings.bookinfo.svc.cluster.local.",
            "ratings",
            "ratings.bookinfo.svc",
            "ratings.bookinfo",
            "10.96.1.10"
        ]
    );
    assert_eq!(
        domains("other"),
        vec![
            "ratings.bookinfo.svc.cluster.local",
            "ratings.bookinfo.svc.cluster.local.",
            "ratings.bookinfo",
            "ratings.bookinfo.svc",
            "10.96.1.10"
        ]
    );
}

#[test]
fn allocations_and_tls_mode_label() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: forum\n  namespace: f\nspec:\n  selector:\n    app: forum\n  ports:\n  - name: tcp\n    port: 5000\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: vm\n  namespace: f\n  labels:\n    security.istio.io/tlsMode: disabled\nspec:\n  address: 10.1.0.1\n  labels:\n    app: forum\n  serviceAccount: forum\n  weight: 7\n";
    let mut alloc = Allocations::new();
    alloc.insert(("f".into(), "forum".into()), "240.240.0.1".parse().unwrap());
    let c = PushContext::new(snapshot(yaml), &alloc, &MeshConfig::default());
    let svc = c.registry().service("forum.f.svc.cluster.local").unwrap();
    assert_eq!(svc.vip(), Some("240.240.0.1".parse().unwrap()));
    let ep = &svc.endpoints(5000)[0];
    assert_eq!((ep.tls_mode, ep.weight), (TlsMode::Disabled, 7));
    let proxy = Proxy::sidecar("x", "f", "10.9.9.9", &[]);
    let listeners = c.generate(&proxy, type_url::LISTENER);
    assert!(names(&listeners).contains(&"240.240.0.1_5000"));
}

#[test]
fn service_entries() {
    let c = ctx(include_str!("../testdata/mtls-modes.yaml"));
    let reg = c.registry();
    let legacy = reg.service("legacy.internal").unwrap();
    assert!(!legacy.mesh_external);
    assert_eq!(legacy.vip(), Some("10.200.0.5".parse().unwrap()));
    let eps: Vec<(&str, u32, u32, TlsMode)> = legacy
        .endpoints(7000)
        .iter()
        .map(|e| (e.address.as_str(), e.port, e.weight, e.tls_mode))
        .collect();
    assert_eq!(
        eps,
        vec![
            ("10.20.0.1", 7000, 1, TlsMode::Istio),
            ("10.20.0.2", 7000, 3, TlsMode::Disabled)
        ]
    );
    let proxy = Proxy::sidecar("x", "bookinfo", "10.9.9.9", &[]);
    let eds = c.generate(&proxy, type_url::ENDPOINT);
    let cla: ClusterLoadAssignment = decode(&find(&eds, "outbound|7000||legacy.internal").resource);
    // Two localities (none, eu/eu-1), in order, weights summed per locality.
    assert_eq!(cla.endpoints.len(), 2);
    assert_eq!(cla.endpoints[1].locality.as_ref().unwrap().region, "eu");
    assert_eq!(cla.endpoints[1].load_balancing_weight.unwrap().value, 3);
    // Only EDS clusters have assignments.
    assert!(!names(&eds).iter().any(|n| n.contains("example.com")));
    let cds = c.generate(&proxy, type_url::CLUSTER);
    let rr: Cluster = decode(&find(&cds, "outbound|8443||rr.example.com").resource);
    assert_eq!(
        rr.cluster_discovery_type,
        Some(weft_proto::envoy_types::pb::envoy::config::cluster::v3::cluster::ClusterDiscoveryType::Type(2))
    );
    assert!(
        rr.transport_socket_matches.is_empty(),
        "MESH_EXTERNAL: no auto mTLS"
    );
    let wild: Cluster = decode(&find(&cds, "outbound|8080||*.wild.example.com").resource);
    assert_eq!(
        wild.cluster_discovery_type,
        Some(weft_proto::envoy_types::pb::envoy::config::cluster::v3::cluster::ClusterDiscoveryType::Type(4))
    );
    // Address-less TLS ports: one wildcard listener choosing by SNI.
    let lds = c.generate(&proxy, type_url::LISTENER);
    let l: Listener = decode(&find(&lds, "0.0.0.0_9443").resource);
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names,
        vec!["*.wild.example.com"]
    );
    assert_eq!(l.listener_filters.len(), 1);
}
