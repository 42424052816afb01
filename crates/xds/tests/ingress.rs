//! An ingress gateway (`testdata/ingress.yaml`: the helloworld seed's Gateway and VirtualServices,
//! HTTPS servers with file credentials, an httpsRedirect server) through translation: golden
//! files for its listeners and route configurations (`UPDATE_GOLDEN=1 cargo test -p weft-xds
//! --test ingress` rewrites them), Istio's host matching and merging checked on the decoded
//! routes, and real Envoy (`envoy --mode validate`) accepting the configuration with real
//! certificate files.

mod common;

use common::envoy::{static_resources, temp_dir, validate_bootstrap};
use common::{decode, golden, render, snapshot};
use serde_json::{Map, json};
use std::path::Path;
use std::process::Command;
use weft_proto::envoy_types::pb::envoy::config::core::v3::transport_socket;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::Listener;
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route_match, virtual_host,
};
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, Proxy, PushContext};

const INGRESS: &str = include_str!("../testdata/ingress.yaml");

fn context(yaml: &str) -> PushContext {
    PushContext::new(snapshot(yaml), &Allocations::new(), &MeshConfig::default())
}

fn ingress() -> Proxy {
    let mut meta = Map::new();
    meta.insert("LABELS".into(), json!({"istio": "ingressgateway"}));
    Proxy::from_node_parts(
        "router~10.1.0.2~istio-ingressgateway.istio-system~istio-system.svc.cluster.local",
        meta,
    )
    .unwrap()
}

fn routes(ctx: &PushContext) -> Vec<RouteConfiguration> {
    ctx.generate(&ingress(), type_url::ROUTE)
        .iter()
        .map(|r| decode(&r.resource))
        .collect()
}

#[test]
fn ingress_gateway_golden() {
    let ctx = context(INGRESS);
    for (url, kind) in [
        (type_url::LISTENER, "listeners"),
        (type_url::ROUTE, "routes"),
    ] {
        golden(
            &format!("ingress.{kind}.golden.json"),
            &render(&ctx.generate(&ingress(), url)),
        );
    }
}

#[test]
fn listeners_and_route_names_follow_istio() {
    let ctx = context(INGRESS);
    let listeners: Vec<Listener> = ctx
        .generate(&ingress(), type_url::LISTENER)
        .iter()
        .map(|r| decode(&r.resource))
        .collect();
    let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.0.0.0_443",
            "0.0.0.0_80",
            "0.0.0.0_8080",
            "0.0.0.0_8443",
            "0.0.0.0_9443",
            "0.0.0.0_9444"
        ]
    );
    // The TLS server: TLS terminated, then the TCP route.
    let db = &listeners[4].filter_chains[0];
    let m = db.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.server_names, ["db.example.com"]);
    assert!(db.transport_socket.is_some());
    assert!(db.filters[0].name.ends_with("tcp_proxy"));
    let https = &listeners[0];
    assert_eq!(https.filter_chains.len(), 1);
    let m = https.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(m.server_names, ["*.example.com"]);
    assert!(https.filter_chains[0].transport_socket.is_some());
    assert_eq!(https.listener_filters.len(), 1, "tls_inspector");
    let names: Vec<String> = routes(&ctx).into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "http.80",
            "http.8080",
            "https.443.https.example.default",
            "https.8443.https-mutual.example.default",
            "https.9444.https-mesh.example.default"
        ]
    );
}

#[test]
fn virtual_hosts_match_merge_and_redirect_as_istio() {
    let ctx = context(INGRESS);
    let rcs = routes(&ctx);
    let by_name = |n: &str| rcs.iter().find(|r| r.name == n).unwrap();
    // `*` admits both VirtualServices' hosts: `*` and the subset VirtualService's host.
    let http = by_name("http.80");
    let domains: Vec<&[String]> = http.virtual_hosts.iter().map(|v| &v.domains[..]).collect();
    assert_eq!(
        domains,
        [
            &["*".to_string()][..],
            &["helloworld.default.svc.cluster.local".to_string()][..]
        ]
    );
    // `*.example.com` admits dev.example.com and api.example.com, not example.com; dev has the
    // two VirtualServices merged with the catch-all last; api and mesh have the first's routes
    // only, the same ones: collapsed into one virtual host (Istio's route collapse).
    let https = by_name("https.443.https.example.default");
    let vhosts: Vec<(&str, &[String])> = https
        .virtual_hosts
        .iter()
        .map(|v| (v.name.as_str(), &v.domains[..]))
        .collect();
    assert_eq!(
        vhosts,
        [
            (
                "api.example.com:443",
                &[
                    "api.example.com".to_string(),
                    "mesh.example.com".to_string()
                ][..]
            ),
            ("dev.example.com:443", &["dev.example.com".to_string()][..]),
        ]
    );
    let prefixes = |i: usize| -> Vec<String> {
        https.virtual_hosts[i]
            .routes
            .iter()
            .map(
                |r| match r.r#match.as_ref().and_then(|m| m.path_specifier.clone()) {
                    Some(route_match::PathSpecifier::Prefix(p)) => p,
                    other => format!("{other:?}"),
                },
            )
            .collect()
    };
    assert_eq!(prefixes(0), ["/v1", "/"]);
    assert_eq!(prefixes(1), ["/v1", "/v2", "/"]);
    // `default/api.example.com` admits api.example.com of a VirtualService in `default`.
    let mutual = by_name("https.8443.https-mutual.example.default");
    assert_eq!(mutual.virtual_hosts.len(), 1);
    assert_eq!(mutual.virtual_hosts[0].domains, ["api.example.com"]);
    // ISTIO_MUTUAL: the router's mesh certificate over SDS, client certificates required.
    let listeners: Vec<Listener> = ctx
        .generate(&ingress(), type_url::LISTENER)
        .iter()
        .map(|r| decode(&r.resource))
        .collect();
    let mesh = listeners.iter().find(|l| l.name == "0.0.0.0_9444").unwrap();
    let ts = mesh.filter_chains[0].transport_socket.as_ref().unwrap();
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("no TLS context");
    };
    let tls: DownstreamTlsContext = decode(any);
    assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
    let common = tls.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    assert!(common.tls_certificates.is_empty());
    // httpsRedirect without a VirtualService: a virtual host requiring TLS, no routes.
    let redirect = by_name("http.8080");
    assert_eq!(redirect.virtual_hosts.len(), 1);
    let vh = &redirect.virtual_hosts[0];
    assert_eq!(vh.domains, ["redirect.example.com"]);
    assert_eq!(vh.require_tls, virtual_host::TlsRequirementType::All as i32);
    assert!(vh.routes.is_empty());
}

#[test]
fn a_route_configuration_without_hosts_is_the_404_blackhole() {
    // The seed Gateway's server (indented under `servers`) now admits only *.example.org.
    let yaml = INGRESS.replace("    hosts: [\"*\"]", "    hosts: [\"*.example.org\"]");
    let yaml = yaml.replace("  hosts: [\"*\"]", "  hosts: [www.example.net]");
    let ctx = context(&yaml);
    let rcs = routes(&ctx);
    let http = rcs.iter().find(|r| r.name == "http.80").unwrap();
    assert_eq!(http.virtual_hosts.len(), 1);
    assert_eq!(http.virtual_hosts[0].name, "blackhole:80");
    assert_eq!(http.virtual_hosts[0].domains, ["*"]);
    assert!(http.virtual_hosts[0].routes.is_empty());
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is needed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn envoy_accepts_the_ingress_gateway() {
    let dir = temp_dir("validate-ingress");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.crt",
            "-days",
            "1",
            "-subj",
            "/CN=example.com",
        ],
    );
    std::fs::copy(dir.join("tls.crt"), dir.join("ca.crt")).unwrap();
    let yaml = INGRESS.replace("/etc/weft/ingress", &dir.to_string_lossy());
    let ctx = context(&yaml);
    let gw = ingress();
    let (listeners, clusters) = static_resources(&ctx, &gw);
    assert_eq!(listeners.len(), 6);
    validate_bootstrap(
        &dir,
        &gw.id,
        "istio-ingressgateway.istio-system",
        listeners,
        clusters,
        "ingress gateway",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
