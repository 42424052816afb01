//! VirtualServices as sidecars receive them: host binding, precedence, visibility, per-proxy
//! routes, TCP and TLS routes, checked on small scenarios.

mod common;

use common::{decode, snapshot};
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    Route, RouteConfiguration, VirtualHost, route, route_action,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy,
};
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, NamedResource, Proxy, PushContext};

fn ctx(yaml: &str) -> PushContext {
    PushContext::new(snapshot(yaml), &Allocations::new(), &MeshConfig::default())
}

fn traffic() -> PushContext {
    ctx(include_str!("../testdata/traffic.yaml"))
}

fn find<'a>(rs: &'a [Arc<NamedResource>], name: &str) -> &'a Arc<NamedResource> {
    rs.iter().find(|r| r.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
        panic!("no {name} in {names:?}")
    })
}

fn route_config(ctx: &PushContext, proxy: &Proxy, name: &str) -> RouteConfiguration {
    decode(&find(&ctx.generate(proxy, type_url::ROUTE), name).resource)
}

fn vhost<'a>(rc: &'a RouteConfiguration, name: &str) -> &'a VirtualHost {
    rc.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
            panic!("no virtual host {name} in {}: {names:?}", rc.name)
        })
}

fn vhost_names(rc: &RouteConfiguration) -> Vec<&str> {
    rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect()
}

fn cluster(r: &Route) -> String {
    match &r.action {
        Some(route::Action::Route(a)) => match &a.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
            Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
                .clusters
                .iter()
                .map(|c| format!("{}={}", c.name, c.weight.as_ref().map_or(0, |w| w.value)))
                .collect::<Vec<_>>()
                .join(","),
            other => panic!("{other:?}"),
        },
        other => panic!("not routed: {other:?}"),
    }
}

fn client(labels: &[(&str, &str)]) -> Proxy {
    Proxy::sidecar("client", "default", "198.18.7.20", labels)
}

#[test]
fn seed_split_sends_helloworld_to_both_services_by_weight() {
    let ctx = traffic();
    let rc = route_config(&ctx, &client(&[]), "5000");
    let hello = vhost(&rc, "helloworld.default.svc.cluster.local:5000");
    assert_eq!(hello.routes.len(), 1, "no default route is appended");
    assert_eq!(
        cluster(&hello.routes[0]),
        "outbound|5000||helloworld-v1.default.svc.cluster.local=20,\
         outbound|5000||helloworld-v2.default.svc.cluster.local=80"
    );
    assert!(hello.domains.contains(&"helloworld".to_string()));
    // The two version Services keep their own default routes.
    let v1 = vhost(&rc, "helloworld-v1.default.svc.cluster.local:5000");
    assert_eq!(v1.routes[0].name, "default");
    assert_eq!(
        cluster(&v1.routes[0]),
        "outbound|5000||helloworld-v1.default.svc.cluster.local"
    );
}

#[test]
fn exact_hosts_beat_wildcards_and_other_hosts_live_on_port_80() {
    let ctx = traffic();
    let rc = route_config(&ctx, &client(&[]), "80");
    let timeout = |vh: &VirtualHost| match &vh.routes[0].action {
        Some(route::Action::Route(a)) => a.timeout.as_ref().map_or(0, |d| d.seconds),
        other => panic!("{other:?}"),
    };
    // `*.example.com` claims api.example.com; docs.example.com has its own VirtualService.
    assert_eq!(timeout(vhost(&rc, "api.example.com:80")), 5);
    assert_eq!(timeout(vhost(&rc, "docs.example.com:80")), 0);
    assert_eq!(
        cluster(&vhost(&rc, "docs.example.com:80").routes[0]),
        "outbound|80||docs.example.com"
    );
    // A host outside the registry: port 80 only, its own name as the only domain.
    assert_eq!(
        vhost(&rc, "legacy.internal:80").domains,
        vec!["legacy.internal"]
    );
    let rc = route_config(&ctx, &client(&[]), "9080");
    assert!(!vhost_names(&rc).contains(&"legacy.internal:9080"));
}

#[test]
fn source_labels_make_routes_per_proxy() {
    let ctx = traffic();
    let routes = |labels: &[(&str, &str)]| -> Vec<String> {
        let rc = route_config(&ctx, &client(labels), "9080");
        vhost(&rc, "reviews.default.svc.cluster.local:9080")
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    // productpage's own match (everything) comes right after the header match and ends the
    // list: nothing after a catch-all is generated.
    assert_eq!(routes(&[("app", "productpage")]), vec!["jason", "jason"]);
    assert_eq!(
        routes(&[("app", "web")]),
        vec!["jason", "old-api", "gone", "rewrite"]
    );
}

fn listener(ctx: &PushContext, proxy: &Proxy, name: &str) -> Listener {
    decode(&find(&ctx.generate(proxy, type_url::LISTENER), name).resource)
}

fn tcp_target(f: &weft_proto::envoy_types::pb::envoy::config::listener::v3::FilterChain) -> String {
    let Some(filter::ConfigType::TypedConfig(any)) = &f.filters[0].config_type else {
        panic!("{f:?}");
    };
    let tp: TcpProxy = decode(any);
    match tp.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| format!("{}={}", c.name, c.weight))
            .collect::<Vec<_>>()
            .join(","),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tcp_routes_by_subnet_and_weight() {
    let ctx = traffic();
    let weighted = "outbound|5432|primary|db.default.svc.cluster.local=80,\
                    outbound|5432|replica|db.default.svc.cluster.local=20";
    // batch's subnet match first, the weighted route for everything else.
    let l = listener(&ctx, &client(&[("app", "batch")]), "10.96.1.30_5432");
    assert_eq!(l.filter_chains.len(), 1);
    let m = l.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(m.prefix_ranges[0].address_prefix, "10.96.1.30");
    assert_eq!(
        tcp_target(&l.filter_chains[0]),
        "outbound|5432|replica|db.default.svc.cluster.local"
    );
    assert_eq!(
        tcp_target(l.default_filter_chain.as_ref().unwrap()),
        weighted
    );
    // Others only get the weighted route.
    let l = listener(&ctx, &client(&[("app", "web")]), "10.96.1.30_5432");
    assert_eq!(l.filter_chains.len(), 1);
    assert!(l.filter_chains[0].filter_chain_match.is_none());
    assert_eq!(tcp_target(&l.filter_chains[0]), weighted);
}

#[test]
fn tls_routes_by_sni() {
    let ctx = traffic();
    let l = listener(&ctx, &client(&[]), "0.0.0.0_443");
    let by_sni: Vec<(Vec<String>, String)> = l
        .filter_chains
        .iter()
        .map(|c| {
            (
                c.filter_chain_match.as_ref().unwrap().server_names.clone(),
                tcp_target(c),
            )
        })
        .collect();
    assert_eq!(
        by_sni,
        vec![
            (
                vec!["mirror.example.org".to_string()],
                "outbound|443||mirror.example.org".to_string()
            ),
            (
                vec!["secure.example.org".to_string()],
                "outbound|443||mirror.example.org".to_string()
            ),
        ]
    );
}

const SHARED_HOST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.2.10
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: newer, namespace: shop, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web, subset: newer}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: older, namespace: shop, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web, subset: older}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: shop, creationTimestamp: "2024-03-01T00:00:00Z"}
spec:
  hosts: [web]
  exportTo: ["."]
  http: [{route: [{destination: {host: web, subset: private}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: only-admins, namespace: shop}
spec:
  hosts: [admin.shop.svc.cluster.local]
  http:
  - match: [{sourceLabels: {role: admin}}]
    route: [{destination: {host: admin.shop.svc.cluster.local, subset: v2}}]
---
apiVersion: v1
kind: Service
metadata: {name: admin, namespace: shop}
spec:
  clusterIP: 10.96.2.11
  selector: {app: admin}
  ports: [{name: http, port: 8080}]
"#;

#[test]
fn one_virtual_service_per_host_private_ones_first() {
    let ctx = ctx(SHARED_HOST);
    let subset = |ns: &str| {
        let p = Proxy::sidecar("c", ns, "198.18.8.1", &[]);
        let rc = route_config(&ctx, &p, "8080");
        cluster(&vhost(&rc, "web.shop.svc.cluster.local:8080").routes[0])
    };
    // In shop, the private VirtualService comes first although it is the newest.
    assert_eq!(
        subset("shop"),
        "outbound|8080|private|web.shop.svc.cluster.local"
    );
    // Elsewhere it is invisible: the oldest public one wins; the other adds nothing.
    assert_eq!(
        subset("other"),
        "outbound|8080|older|web.shop.svc.cluster.local"
    );
}

#[test]
fn a_virtual_service_whose_routes_skip_the_proxy_leaves_the_default_route() {
    let ctx = ctx(SHARED_HOST);
    let routes = |labels: &[(&str, &str)]| {
        let p = Proxy::sidecar("c", "shop", "198.18.8.1", labels);
        let rc = route_config(&ctx, &p, "8080");
        cluster(&vhost(&rc, "admin.shop.svc.cluster.local:8080").routes[0])
    };
    assert_eq!(
        routes(&[("role", "admin")]),
        "outbound|8080|v2|admin.shop.svc.cluster.local"
    );
    assert_eq!(
        routes(&[("role", "guest")]),
        "outbound|8080||admin.shop.svc.cluster.local"
    );
}

const SNIFFED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: apps}
spec:
  clusterIP: 10.96.3.10
  selector: {app: legacy}
  ports: [{name: web, port: 7070}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: apps}
spec:
  hosts: [legacy]
  http:
  - match: [{uri: {prefix: /beta}}]
    route: [{destination: {host: legacy, subset: beta}}]
"#;

#[test]
fn sniffed_ports_use_the_virtual_service_routes_for_any_domain() {
    let ctx = ctx(SNIFFED);
    let p = Proxy::sidecar("c", "apps", "198.18.9.1", &[]);
    let rc = route_config(&ctx, &p, "legacy.apps.svc.cluster.local:7070");
    assert_eq!(rc.virtual_hosts.len(), 1, "no catch-all on a sniffed VIP");
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, vec!["*"]);
    // Only the VirtualService's route: requests outside /beta get a 404 (no route).
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(
        cluster(&vh.routes[0]),
        "outbound|7070|beta|legacy.apps.svc.cluster.local"
    );
}

#[test]
fn listeners_stay_shared_without_tcp_or_tls_routes() {
    let ctx = ctx(SHARED_HOST);
    let a = ctx.generate(
        &Proxy::sidecar("a", "shop", "198.18.8.1", &[]),
        type_url::LISTENER,
    );
    let b = ctx.generate(
        &Proxy::sidecar("b", "other", "198.18.8.2", &[]),
        type_url::LISTENER,
    );
    let outbound = |rs: &[Arc<NamedResource>]| {
        rs.iter()
            .filter(|r| r.name != "virtualInbound")
            .cloned()
            .collect::<Vec<_>>()
    };
    let (a, b) = (outbound(&a), outbound(&b));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).all(|(x, y)| Arc::ptr_eq(x, y)));
}
