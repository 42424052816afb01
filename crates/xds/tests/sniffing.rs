//! Protocol sniffing in the generated listeners: which ports are sniffed, how services sharing
//! a port merge, and the inbound chains of sniffed ports per mTLS mode.

mod common;

use common::{decode, snapshot};
use std::sync::Arc;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter};
use weft_proto::envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy,
};
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, NamedResource, Proxy, PushContext};

const SNIFFING: &str = include_str!("../testdata/sniffing.yaml");

fn ctx(yaml: &str) -> PushContext {
    PushContext::new(snapshot(yaml), &Allocations::new(), &MeshConfig::default())
}

fn listener(rs: &[Arc<NamedResource>], name: &str) -> Listener {
    let r = rs
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"));
    decode(&r.resource)
}

/// What a chain does: `tcp:<cluster>` or `http:<rds>` (`http:inline` for inline routes).
fn action(c: &FilterChain) -> String {
    let Some(filter::ConfigType::TypedConfig(any)) = &c.filters.last().unwrap().config_type else {
        panic!("no typed config")
    };
    if any.type_url.ends_with(".TcpProxy") {
        let t: TcpProxy = decode(any);
        let Some(tcp_proxy::ClusterSpecifier::Cluster(c)) = t.cluster_specifier else {
            panic!("no cluster")
        };
        return format!("tcp:{c}");
    }
    let h: HttpConnectionManager = decode(any);
    match h.route_specifier {
        Some(RouteSpecifier::Rds(r)) => format!("http:{}", r.route_config_name),
        _ => "http:inline".into(),
    }
}

/// `(transport, alpn, action)` of each chain for `port` (`None`: no destination port).
fn inbound_chains(l: &Listener, port: Option<u32>) -> Vec<(String, Vec<String>, String)> {
    l.filter_chains
        .iter()
        .filter(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            m.destination_port.map(|p| p.value) == port && c.name != "virtualInbound-blackhole"
        })
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            (m.transport_protocol, m.application_protocols, action(c))
        })
        .collect()
}

fn filter_names(l: &Listener) -> Vec<String> {
    l.listener_filters
        .iter()
        .map(|f| f.name.rsplit('.').next().unwrap().to_string())
        .collect()
}

#[test]
fn undeclared_port_on_a_vip_is_sniffed_to_its_own_route() {
    let c = ctx(SNIFFING);
    let proxy = Proxy::sidecar("x", "apps", "10.9.9.9", &[]);
    let ls = c.generate(&proxy, type_url::LISTENER);
    let l = listener(&ls, "10.96.5.5_8000");
    assert_eq!(filter_names(&l), vec!["http_inspector"]);
    assert!(l.continue_on_listener_filters_timeout);
    assert_eq!(l.filter_chains.len(), 1);
    let http = &l.filter_chains[0];
    let m = http.filter_chain_match.clone().unwrap();
    assert_eq!(m.transport_protocol, "raw_buffer");
    assert_eq!(m.application_protocols, vec!["http/1.1", "h2c"]);
    assert_eq!(action(http), "http:legacy.apps.svc.cluster.local:8000");
    // Anything else: TCP to the same service.
    let default = l.default_filter_chain.as_ref().unwrap();
    assert_eq!(
        action(default),
        "tcp:outbound|8000||legacy.apps.svc.cluster.local"
    );

    // Its route configuration: the service only, any Host, no catch-all.
    let routes = c.generate(&proxy, type_url::ROUTE);
    let r = routes
        .iter()
        .find(|r| r.name == "legacy.apps.svc.cluster.local:8000")
        .unwrap();
    let rc: RouteConfiguration = decode(&r.resource);
    assert_eq!(rc.virtual_hosts.len(), 1);
    assert_eq!(rc.virtual_hosts[0].domains, vec!["*"]);
    // The shared "8000" route configuration has it too (for 0.0.0.0_8000), with the catch-all.
    let r = routes.iter().find(|r| r.name == "8000").unwrap();
    let rc: RouteConfiguration = decode(&r.resource);
    let names: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "legacy.apps.svc.cluster.local:8000",
            "plain.apps.svc.cluster.local:8000",
            "allow_any"
        ]
    );
}

#[test]
fn http_and_tcp_sharing_the_wildcard_port_merge_into_a_sniffed_listener() {
    let c = ctx(SNIFFING);
    let proxy = Proxy::sidecar("x", "apps", "10.9.9.9", &[]);
    let ls = c.generate(&proxy, type_url::LISTENER);
    // HTTP `plain` and TCP `mixed.example.com` (address-less) on 8000.
    let l = listener(&ls, "0.0.0.0_8000");
    assert_eq!(filter_names(&l), vec!["http_inspector"]);
    let chains: Vec<String> = l.filter_chains.iter().map(action).collect();
    assert_eq!(chains, vec!["http:8000"]);
    assert_eq!(
        action(l.default_filter_chain.as_ref().unwrap()),
        "tcp:outbound|8000||mixed.example.com"
    );
    // A declared HTTP port alone: sniffed too, other bytes pass through.
    let l = listener(&ls, "0.0.0.0_7070");
    let default = l.default_filter_chain.as_ref().unwrap();
    assert_eq!(default.name, "PassthroughFilterChain");
    assert_eq!(action(default), "tcp:PassthroughCluster");
    // A declared TCP port: no inspection, one chain.
    let yaml = format!(
        "{SNIFFING}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: pg\n  namespace: apps\nspec:\n  clusterIP: 10.96.5.9\n  ports:\n  - name: tcp-pg\n    port: 5432\n"
    );
    let ls = ctx(&yaml).generate(&proxy, type_url::LISTENER);
    let l = listener(&ls, "10.96.5.9_5432");
    assert!(l.listener_filters.is_empty());
    assert_eq!(l.filter_chains.len(), 1);
    assert!(l.default_filter_chain.is_none());
}

#[test]
fn mysql_keeps_its_port_to_itself() {
    let se = |name: &str, proto: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  hosts:\n  - {name}.example.com\n  resolution: DNS\n  ports:\n  - number: 3306\n    name: p\n    protocol: {proto}\n---\n"
        )
    };
    let yaml = format!("{}{}", se("a-db", "MYSQL"), se("b-web", "HTTP"));
    let proxy = Proxy::sidecar("x", "apps", "10.9.9.9", &[]);
    let ls = ctx(&yaml).generate(&proxy, type_url::LISTENER);
    let l = listener(&ls, "0.0.0.0_3306");
    assert!(l.listener_filters.is_empty(), "{l:?}");
    let chains: Vec<String> = l.filter_chains.iter().map(action).collect();
    assert_eq!(chains, vec!["tcp:outbound|3306||a-db.example.com"]);
}

#[test]
fn inbound_sniffed_ports_split_http_from_tcp_per_mtls_mode() {
    let c = ctx(SNIFFING);
    let legacy = Proxy::sidecar("legacy", "apps", "198.18.5.10", &[("app", "legacy")]);
    let ls = c.generate(&legacy, type_url::LISTENER);
    let l = listener(&ls, "virtualInbound");
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let http = "http:inline".to_string();
    let tcp8000 = "tcp:inbound|8000||".to_string();
    // PERMISSIVE: Istio's five chains.
    assert_eq!(
        inbound_chains(&l, Some(8000)),
        vec![
            (
                "tls".into(),
                s(&["istio-http/1.0", "istio-http/1.1", "istio-h2"]),
                http.clone()
            ),
            ("raw_buffer".into(), s(&["http/1.1", "h2c"]), http.clone()),
            (
                "tls".into(),
                s(&["istio-peer-exchange", "istio"]),
                tcp8000.clone()
            ),
            ("raw_buffer".into(), vec![], tcp8000.clone()),
            ("tls".into(), vec![], tcp8000),
        ]
    );
    // DISABLE: plaintext HTTP, else TCP whatever the transport.
    assert_eq!(
        inbound_chains(&l, Some(9000)),
        vec![
            ("raw_buffer".into(), s(&["http/1.1", "h2c"]), http.clone()),
            ("".into(), vec![], "tcp:inbound|9000||".into()),
        ]
    );
    // The catch-all is sniffed as well.
    let catch_all = inbound_chains(&l, None);
    assert_eq!(catch_all.len(), 5);
    assert_eq!(catch_all[1].2, http);
    // Inspectors only where needed: no TLS inspection on the DISABLE port, no HTTP inspection
    // on 15006.
    assert_eq!(
        filter_names(&l),
        vec!["original_dst", "tls_inspector", "http_inspector"]
    );
    let tls_off = format!("{:?}", l.listener_filters[1].filter_disabled);
    assert!(tls_off.contains("start: 9000"), "{tls_off}");
    let http_off = format!("{:?}", l.listener_filters[2].filter_disabled);
    assert!(
        !http_off.contains("9000") && http_off.contains("15006"),
        "{http_off}"
    );

    // STRICT: mTLS HTTP by ALPN, else TCP over mTLS; plaintext only on the DISABLE port.
    let yaml = SNIFFING.replace("mode: PERMISSIVE", "mode: STRICT");
    let ls = ctx(&yaml).generate(&legacy, type_url::LISTENER);
    let l = listener(&ls, "virtualInbound");
    assert_eq!(
        inbound_chains(&l, Some(8000)),
        vec![
            (
                "tls".into(),
                s(&["istio-http/1.0", "istio-http/1.1", "istio-h2"]),
                http
            ),
            ("tls".into(), vec![], "tcp:inbound|8000||".into()),
        ]
    );
    assert!(l.filter_chains.iter().all(|c| {
        c.filter_chain_match.as_ref().is_none_or(|m| {
            m.transport_protocol != "raw_buffer"
                || m.destination_port.is_some_and(|p| p.value == 9000)
        })
    }));
}
