//! Golden tests: the resources two sidecars of the forum scenario receive, as Envoy-style JSON
//! (`testdata/*.golden.json`; `UPDATE_GOLDEN=1 cargo test -p weft-xds --test golden` rewrites).

mod common;

use common::{golden, render, snapshot};
use std::sync::Arc;
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, Proxy, PushContext};

pub fn forum_context() -> PushContext {
    let snap = snapshot(include_str!("../testdata/forum.yaml"));
    let mut allocations = Allocations::new();
    allocations.insert(
        ("forum-services".into(), "forum".into()),
        "10.96.0.20".parse().unwrap(),
    );
    PushContext::new(snap, &allocations, &MeshConfig::default())
}

fn check(ctx: &PushContext, proxy: &Proxy, prefix: &str) {
    for (url, kind) in [
        (type_url::CLUSTER, "clusters"),
        (type_url::ENDPOINT, "endpoints"),
        (type_url::LISTENER, "listeners"),
        (type_url::ROUTE, "routes"),
    ] {
        let resources: Vec<Arc<_>> = ctx.generate(proxy, url);
        golden(&format!("{prefix}.{kind}.golden.json"), &render(&resources));
    }
}

#[test]
fn webapp_sidecar() {
    let ctx = forum_context();
    let proxy = Proxy::sidecar(
        "webapp",
        "istioinaction",
        "198.18.1.20",
        &[("app", "webapp")],
    );
    check(&ctx, &proxy, "webapp");
}

#[test]
fn forum_sidecar() {
    let ctx = forum_context();
    let proxy = Proxy::sidecar(
        "forum-vm",
        "forum-services",
        "198.18.1.10",
        &[("app", "forum")],
    );
    check(&ctx, &proxy, "forum");
}

pub fn sniffing_context() -> PushContext {
    let snap = snapshot(include_str!("../testdata/sniffing.yaml"));
    PushContext::new(snap, &Allocations::new(), &MeshConfig::default())
}

/// A client of sniffed services (STRICT inbound on a declared gRPC port).
#[test]
fn sniffing_client_sidecar() {
    let ctx = sniffing_context();
    let proxy = Proxy::sidecar("client", "apps", "198.18.5.20", &[("app", "client")]);
    check(&ctx, &proxy, "sniff-client");
}

/// The sniffed services' own sidecar: PERMISSIVE and DISABLE inbound chains for sniffed ports.
#[test]
fn sniffing_server_sidecar() {
    let ctx = sniffing_context();
    let proxy = Proxy::sidecar("legacy", "apps", "198.18.5.10", &[("app", "legacy")]);
    check(&ctx, &proxy, "sniff-legacy");
}

pub fn traffic_context() -> PushContext {
    let snap = snapshot(include_str!("../testdata/traffic.yaml"));
    PushContext::new(snap, &Allocations::new(), &MeshConfig::default())
}

/// VirtualServices for a sidecar: the listeners (TCP and TLS routes) and routes a client in
/// `default` receives. Clusters are not VirtualService business and are not pinned here.
#[test]
fn traffic_client_sidecar() {
    let ctx = traffic_context();
    let proxy = Proxy::sidecar("client", "default", "198.18.7.20", &[("app", "batch")]);
    for (url, kind) in [
        (type_url::LISTENER, "listeners"),
        (type_url::ROUTE, "routes"),
    ] {
        let resources: Vec<Arc<_>> = ctx.generate(&proxy, url);
        golden(&format!("traffic.{kind}.golden.json"), &render(&resources));
    }
}

pub fn traffic_policy_context() -> PushContext {
    let snap = snapshot(include_str!("../testdata/traffic-policy.yaml"));
    PushContext::new(snap, &Allocations::new(), &MeshConfig::default())
}

/// What DestinationRules change: clusters, endpoints, and the routes' hash policies.
fn check_traffic_policy(ctx: &PushContext, proxy: &Proxy, prefix: &str) {
    for (url, kind) in [
        (type_url::CLUSTER, "clusters"),
        (type_url::ENDPOINT, "endpoints"),
        (type_url::ROUTE, "routes"),
    ] {
        let resources: Vec<Arc<_>> = ctx.generate(proxy, url);
        golden(&format!("{prefix}.{kind}.golden.json"), &render(&resources));
    }
}

/// A client in the rules' own namespace (the shared view), in us-east.
#[test]
fn traffic_policy_shop_sidecar() {
    let ctx = traffic_policy_context();
    let proxy = Proxy::sidecar("frontend", "shop", "198.18.3.50", &[("app", "frontend")]);
    check_traffic_policy(&ctx, &proxy, "tp-shop");
}

/// A client whose namespace has its own rule for reviews.
#[test]
fn traffic_policy_audit_sidecar() {
    let ctx = traffic_policy_context();
    let proxy = Proxy::sidecar("auditor", "audit", "198.18.3.60", &[("app", "auditor")]);
    check_traffic_policy(&ctx, &proxy, "tp-audit");
}

/// A reviews workload: its inbound cluster takes the rule's connection pool.
#[test]
fn traffic_policy_reviews_sidecar() {
    let ctx = traffic_policy_context();
    let proxy = Proxy::sidecar(
        "reviews-v1",
        "shop",
        "198.18.3.11",
        &[("app", "reviews"), ("version", "v1")],
    );
    let inbound: Vec<Arc<_>> = ctx
        .generate(&proxy, type_url::CLUSTER)
        .into_iter()
        .filter(|r| r.name.starts_with("inbound|"))
        .collect();
    golden("tp-reviews.inbound-clusters.golden.json", &render(&inbound));
}
