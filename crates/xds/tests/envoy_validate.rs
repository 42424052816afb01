//! Real Envoy accepts what translation produces: each sidecar's listeners and clusters go into a
//! binary `Bootstrap` (`.pb`) as static resources — EDS clusters made STATIC with their
//! generated ClusterLoadAssignment inlined, RDS replaced by the generated route configuration
//! inline, SDS kept and pointed at a static `sds-grpc` cluster on a unix socket nobody serves —
//! and `envoy --mode validate` must accept it. Envoy: `$ENVOY_BINARY`, else
//! `/usr/local/bin/envoy`; the test fails when neither exists (scripts/setup installs it).

mod common;

use common::envoy::{static_resources, temp_dir, validate_bootstrap};
use common::snapshot;
use weft_xds::{Allocations, MeshConfig, OutboundTrafficPolicyMode, Proxy, PushContext};

fn validate(ctx: &PushContext, proxy: &Proxy, tag: &str) {
    let dir = temp_dir(&format!("validate-{tag}"));
    let (listeners, clusters) = static_resources(ctx, proxy);
    let cluster = format!("{}.{}", proxy.name, proxy.namespace);
    let what = format!("{tag} configuration");
    let text = validate_bootstrap(&dir, &proxy.id, &cluster, listeners, clusters, &what);
    if std::env::var_os("WEFT_XDS_SHOW_ENVOY").is_some() {
        eprintln!("{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn forum(mesh: &MeshConfig) -> PushContext {
    let snap = snapshot(include_str!("../testdata/forum.yaml"));
    let mut allocations = Allocations::new();
    allocations.insert(
        ("forum-services".into(), "forum".into()),
        "10.96.0.20".parse().unwrap(),
    );
    PushContext::new(snap, &allocations, mesh)
}

#[test]
fn envoy_accepts_forum_scenario() {
    let ctx = forum(&MeshConfig::default());
    let webapp = Proxy::sidecar(
        "webapp",
        "istioinaction",
        "198.18.1.20",
        &[("app", "webapp")],
    );
    let forum = Proxy::sidecar(
        "forum-vm",
        "forum-services",
        "198.18.1.10",
        &[("app", "forum")],
    );
    validate(&ctx, &webapp, "webapp");
    validate(&ctx, &forum, "forum");
}

#[test]
fn envoy_accepts_registry_only_and_every_mtls_mode() {
    let mut mesh = MeshConfig::default();
    mesh.outbound_traffic_policy.mode = OutboundTrafficPolicyMode::RegistryOnly;
    let yaml = format!(
        "{}\n---\n{}",
        include_str!("../testdata/forum.yaml"),
        include_str!("../testdata/mtls-modes.yaml")
    );
    let ctx = PushContext::new(snapshot(&yaml), &Allocations::new(), &mesh);
    let proxy = Proxy::sidecar("ratings", "bookinfo", "198.18.2.10", &[("app", "ratings")]);
    let policy = ctx.mtls_policy(&proxy);
    assert_eq!(policy.ports.len(), 3, "{policy:?}");
    validate(&ctx, &proxy, "modes");
}

#[test]
fn envoy_accepts_sniffed_ports() {
    let snap = snapshot(include_str!("../testdata/sniffing.yaml"));
    let ctx = PushContext::new(snap, &Allocations::new(), &MeshConfig::default());
    let client = Proxy::sidecar("client", "apps", "198.18.5.20", &[("app", "client")]);
    let legacy = Proxy::sidecar("legacy", "apps", "198.18.5.10", &[("app", "legacy")]);
    validate(&ctx, &client, "sniff-client");
    validate(&ctx, &legacy, "sniff-legacy");
}

/// Every VirtualService feature a sidecar can receive: weighted and subset routes, matches,
/// retries, fault, mirror, headers, rewrites, redirect, direct response, CORS (the HCM's fault
/// and CORS filters take the routes' per-filter configuration), TCP and TLS routes.
#[test]
fn envoy_accepts_virtual_service_routes() {
    let snap = snapshot(include_str!("../testdata/traffic.yaml"));
    let ctx = PushContext::new(snap, &Allocations::new(), &MeshConfig::default());
    let batch = Proxy::sidecar("batch", "default", "198.18.7.20", &[("app", "batch")]);
    let productpage = Proxy::sidecar(
        "productpage",
        "default",
        "198.18.7.21",
        &[("app", "productpage")],
    );
    validate(&ctx, &batch, "traffic-batch");
    validate(&ctx, &productpage, "traffic-productpage");
}

/// Every DestinationRule feature of `traffic-policy.yaml`, for a client in the rules' namespace
/// and one whose namespace overrides a rule. The MUTUAL rule's files are real (a fresh CA).
#[test]
fn envoy_accepts_destination_rules() {
    use std::time::SystemTime;
    use weft_identity::{CertificateAuthority, KeyAlgorithm};
    let dir = temp_dir("dr-certs");
    let ca =
        CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "weft-test", SystemTime::now())
            .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.root_pem()).unwrap();
    std::fs::write(dir.join("client.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("client-key.pem"), ca.key_pem()).unwrap();
    let yaml = include_str!("../testdata/traffic-policy.yaml")
        .replace("/etc/certs/", &format!("{}/", dir.display()));
    let ctx = PushContext::new(snapshot(&yaml), &Allocations::new(), &MeshConfig::default());
    let shop = Proxy::sidecar("frontend", "shop", "198.18.3.50", &[("app", "frontend")]);
    let audit = Proxy::sidecar("auditor", "audit", "198.18.3.60", &[("app", "auditor")]);
    validate(&ctx, &shop, "dr-shop");
    validate(&ctx, &audit, "dr-audit");
    let _ = std::fs::remove_dir_all(&dir);
}
