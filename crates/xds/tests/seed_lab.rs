//! The seed lab's configuration (`testdata/seed-lab.yaml`, two networks and an east-west gateway)
//! through translation: golden files for what the gateway and the two sidecars receive
//! (`UPDATE_GOLDEN=1 cargo test -p weft-xds --test seed_lab` rewrites them), and real Envoy
//! (`envoy --mode validate`) accepting the gateway's configuration.

mod common;

use common::envoy::{static_resources, temp_dir, validate_bootstrap};
use common::{golden, render, snapshot};
use serde_json::{Map, Value, json};
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, MeshNetworks, Proxy, PushContext};

/// The vm-network is reached through the gateway's cluster-side address.
const MESH_NETWORKS: &str = "networks:
  vm-network:
    endpoints:
    - fromCidr: 198.18.1.0/24
    gateways:
    - address: 198.18.0.11
      port: 15443
";

fn lab() -> PushContext {
    let mesh = MeshConfig {
        networks: serde_saphyr::from_str::<MeshNetworks>(MESH_NETWORKS).unwrap(),
        ..Default::default()
    };
    let snap = snapshot(include_str!("../testdata/seed-lab.yaml"));
    PushContext::new(snap, &Allocations::new(), &mesh)
}

fn node(id: &str, network: &str, labels: Value) -> Proxy {
    let mut meta = Map::new();
    meta.insert("NETWORK".into(), json!(network));
    meta.insert("LABELS".into(), labels);
    Proxy::from_node_parts(id, meta).unwrap()
}

fn eastwest() -> Proxy {
    node(
        "router~198.18.0.11~istio-eastwestgateway.istio-system~istio-system.svc.cluster.local",
        "cluster",
        json!({"istio": "eastwestgateway", "app": "istio-eastwestgateway"}),
    )
}

fn forum_vm() -> Proxy {
    node(
        "sidecar~198.18.1.11~forum.forum-services~forum-services.svc.cluster.local",
        "vm-network",
        json!({"app": "forum"}),
    )
}

fn webapp() -> Proxy {
    node(
        "sidecar~198.18.0.12~webapp.istioinaction~istioinaction.svc.cluster.local",
        "cluster",
        json!({"app": "webapp"}),
    )
}

#[test]
fn east_west_gateway_golden() {
    let ctx = lab();
    let gw = eastwest();
    for (url, kind) in [
        (type_url::CLUSTER, "clusters"),
        (type_url::ENDPOINT, "endpoints"),
        (type_url::LISTENER, "listeners"),
    ] {
        golden(
            &format!("seed-lab-eastwest.{kind}.golden.json"),
            &render(&ctx.generate(&gw, url)),
        );
    }
}

/// Split horizon: the VM gets webapp as the cluster network's gateway (its external address),
/// webapp gets the VM as the vm-network's gateway; istiod (plaintext, on the cluster network) is
/// left out for the VM and direct for webapp.
#[test]
fn sidecar_endpoints_golden() {
    let ctx = lab();
    golden(
        "seed-lab-forum-vm.endpoints.golden.json",
        &render(&ctx.generate(&forum_vm(), type_url::ENDPOINT)),
    );
    golden(
        "seed-lab-webapp.endpoints.golden.json",
        &render(&ctx.generate(&webapp(), type_url::ENDPOINT)),
    );
}

#[test]
fn envoy_accepts_the_east_west_gateway() {
    let ctx = lab();
    let gw = eastwest();
    let dir = temp_dir("validate-eastwest");
    let (listeners, clusters) = static_resources(&ctx, &gw);
    assert_eq!(listeners.len(), 3);
    validate_bootstrap(
        &dir,
        &gw.id,
        "istio-eastwestgateway.istio-system",
        listeners,
        clusters,
        "gateway",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
