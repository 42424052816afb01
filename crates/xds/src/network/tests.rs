use super::*;
use crate::mesh::MeshConfig;
use crate::registry::{Allocations, Locality, TlsMode};
use std::sync::Arc;
use weft_model::load::{Outcome, load_str};

fn snapshot(yaml: &str) -> Snapshot {
    let resources = load_str("t.yaml", yaml)
        .into_iter()
        .filter_map(|e| match e.outcome {
            Outcome::Valid { resource, .. } => Some(Arc::new(*resource)),
            Outcome::Skipped { .. } => None,
            Outcome::Invalid { errors, .. } => panic!("{errors:?}"),
        });
    Snapshot::new(1, resources)
}

fn networks_of(yaml: &str, mesh_networks: &str) -> Networks {
    let snap = snapshot(yaml);
    let registry = Registry::build(&snap, &Allocations::new(), &MeshConfig::default());
    let mn: MeshNetworks = serde_saphyr::from_str(mesh_networks).unwrap();
    Networks::build(&snap, &registry, &mn, "istio-system")
}

/// Gateways: net-b has two (scale 2), net-c one.
fn two_networks() -> Networks {
    networks_of(
        "",
        "networks:
  net-b:
    gateways:
    - {address: 198.18.2.2, port: 15443}
    - {address: 198.18.2.1, port: 15443}
  net-c:
    gateways:
    - {address: 198.18.3.1, port: 16443}
",
    )
}

fn ep(addr: &str, network: &str, weight: u32, tls: TlsMode, zone: &str) -> Endpoint {
    Endpoint {
        address: addr.into(),
        port: 8080,
        weight,
        locality: Locality::parse(zone),
        network: network.into(),
        service_account: "sa".into(),
        tls_mode: tls,
        workload: format!("ns/{addr}"),
        labels: Default::default(),
    }
}

/// `(address:port, weight)` of each endpoint, in order.
fn brief(eps: &[Endpoint]) -> Vec<(String, u32)> {
    eps.iter()
        .map(|e| (format!("{}:{}", e.address, e.port), e.weight))
        .collect()
}

fn pair(a: &str, w: u32) -> (String, u32) {
    (a.to_string(), w)
}

#[test]
fn without_gateways_endpoints_are_unchanged() {
    let n = networks_of("", "{}");
    assert!(!n.multi_network());
    let eps = vec![
        ep("10.0.0.1", "net-a", 3, TlsMode::Istio, ""),
        ep("10.0.0.2", "net-b", 1, TlsMode::Disabled, ""),
    ];
    assert_eq!(*n.split_horizon(&NetworkView::of("net-a"), &eps), *eps);
}

#[test]
fn remote_endpoints_become_their_networks_gateways_with_summed_weights() {
    let n = two_networks();
    assert!(n.multi_network());
    assert_eq!(n.scale, 2);
    let eps = vec![
        ep("10.0.0.1", "net-a", 3, TlsMode::Istio, ""),
        ep("10.0.1.1", "net-b", 1, TlsMode::Istio, ""),
        ep("10.0.1.2", "net-b", 2, TlsMode::Istio, ""),
        // Plaintext endpoints cannot be reached through a gateway: dropped.
        ep("10.0.1.3", "net-b", 5, TlsMode::Disabled, ""),
        ep("10.0.2.1", "net-c", 1, TlsMode::Istio, ""),
        // A network without gateways is assumed reachable.
        ep("10.0.3.1", "net-d", 1, TlsMode::Disabled, ""),
        // No network: local to everyone.
        ep("10.0.4.1", "", 1, TlsMode::Disabled, ""),
    ];
    let got = n.split_horizon(&NetworkView::of("net-a"), &eps);
    assert_eq!(
        brief(&got),
        vec![
            pair("10.0.0.1:8080", 6),
            pair("10.0.3.1:8080", 2),
            pair("10.0.4.1:8080", 2),
            // (1 + 2) × 2, split over two gateways.
            pair("198.18.2.1:15443", 3),
            pair("198.18.2.2:15443", 3),
            pair("198.18.3.1:16443", 2),
        ]
    );
    let gw = got.last().unwrap();
    assert_eq!(gw.tls_mode, TlsMode::Istio);
    assert_eq!(gw.network, "net-c");
    // On net-b, net-b's endpoints are direct and net-a's (no gateways) too.
    let got = n.split_horizon(&NetworkView::of("net-b"), &eps);
    assert_eq!(
        brief(&got)[..5],
        [
            pair("10.0.0.1:8080", 6),
            pair("10.0.1.1:8080", 2),
            pair("10.0.1.2:8080", 4),
            pair("10.0.1.3:8080", 10),
            pair("10.0.3.1:8080", 2),
        ]
    );
}

#[test]
fn gateway_endpoints_keep_their_endpoints_locality() {
    let n = two_networks();
    let eps = vec![
        ep("10.0.1.1", "net-b", 1, TlsMode::Istio, "us/east"),
        ep("10.0.1.2", "net-b", 1, TlsMode::Istio, "us/west"),
        ep("10.0.1.3", "net-b", 1, TlsMode::Istio, "us/east"),
    ];
    let got = n.split_horizon(&NetworkView::of("net-a"), &eps);
    let zones: Vec<(&str, String, u32)> = got
        .iter()
        .map(|e| (e.locality.zone.as_str(), e.address.clone(), e.weight))
        .collect();
    assert_eq!(
        zones,
        vec![
            ("east", "198.18.2.1".to_string(), 2),
            ("east", "198.18.2.2".to_string(), 2),
            ("west", "198.18.2.1".to_string(), 1),
            ("west", "198.18.2.2".to_string(), 1),
        ]
    );
}

#[test]
fn a_proxy_without_network_uses_gateways_where_they_exist() {
    let n = two_networks();
    let eps = vec![
        ep("10.0.1.1", "net-b", 1, TlsMode::Istio, ""),
        ep("10.0.3.1", "net-d", 1, TlsMode::Istio, ""),
        ep("10.0.4.1", "", 1, TlsMode::Istio, ""),
    ];
    let got = n.split_horizon(&NetworkView::of(""), &eps);
    assert_eq!(
        brief(&got),
        vec![
            pair("10.0.3.1:8080", 2),
            pair("10.0.4.1:8080", 2),
            pair("198.18.2.1:15443", 1),
            pair("198.18.2.2:15443", 1),
        ]
    );
}

#[test]
fn requested_network_view_limits_what_is_sent() {
    let n = two_networks();
    let mut p = Proxy::sidecar("gw", "istio-system", "198.18.0.5", &[]);
    p.network = "net-a".into();
    p.metadata
        .insert(REQUESTED_NETWORK_VIEW.into(), "net-a, net-d".into());
    let view = n.view(&p);
    assert_eq!(view.plain(), None);
    let eps = vec![
        ep("10.0.0.1", "net-a", 1, TlsMode::Istio, ""),
        ep("10.0.1.1", "net-b", 1, TlsMode::Istio, ""),
        ep("10.0.3.1", "net-d", 1, TlsMode::Istio, ""),
        ep("10.0.4.1", "", 1, TlsMode::Istio, ""),
    ];
    assert_eq!(
        brief(&n.split_horizon(&view, &eps)),
        vec![
            pair("10.0.0.1:8080", 2),
            pair("10.0.3.1:8080", 2),
            pair("10.0.4.1:8080", 2),
        ]
    );
}

#[test]
fn a_router_is_on_the_networks_it_is_the_gateway_of() {
    let n = two_networks();
    let mut router = Proxy::from_node_parts(
        "router~198.18.0.9~eastwest.istio-system~istio-system.svc.cluster.local",
        Default::default(),
    )
    .unwrap();
    router.network = "net-a".into();
    router
        .metadata
        .insert("INSTANCE_IPS".into(), "198.18.0.9,198.18.2.2".into());
    let view = n.view(&router);
    assert_eq!(view.also_local, BTreeSet::from(["net-b".to_string()]));
    assert_eq!(view.plain(), None);
    let eps = vec![
        ep("10.0.1.1", "net-b", 1, TlsMode::Istio, ""),
        ep("10.0.2.1", "net-c", 1, TlsMode::Istio, ""),
    ];
    assert_eq!(
        brief(&n.split_horizon(&view, &eps)),
        vec![pair("10.0.1.1:8080", 2), pair("198.18.3.1:16443", 2)]
    );
    // A sidecar at a gateway's address gets no such treatment.
    let mut sidecar = Proxy::sidecar("x", "istio-system", "198.18.2.2", &[]);
    sidecar.network = "net-a".into();
    assert_eq!(n.view(&sidecar), NetworkView::of("net-a"));
}

#[test]
fn endpoint_networks_fall_back_as_in_istio() {
    let entry = |name: &str, addr: &str, extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: ns\nspec:\n  address: {addr}\n{extra}---\n"
        )
    };
    let yaml = [
        entry("own", "10.1.0.1", "  network: own-net\n"),
        entry(
            "labelled",
            "10.1.0.2",
            "  labels:\n    topology.istio.io/network: label-net\n",
        ),
        entry("plain", "10.1.0.3", ""),
    ]
    .concat();
    let system_ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n  labels:\n    topology.istio.io/network: system-net\n";
    let cidr = "networks:\n  cidr-net:\n    endpoints:\n    - fromCidr: 10.1.0.0/24\n";
    let both = format!("{cidr}  reg-net:\n    endpoints:\n    - fromRegistry: Kubernetes\n");
    let e = |workload: &str, addr: &str, network: &str| Endpoint {
        workload: format!("ns/{workload}"),
        ..ep(addr, network, 1, TlsMode::Istio, "")
    };
    let (own, labelled, plain) = (
        e("own", "10.1.0.1", "own-net"),
        e("labelled", "10.1.0.2", ""),
        e("plain", "10.1.0.3", ""),
    );
    let n = networks_of(&format!("{yaml}{system_ns}"), cidr);
    assert_eq!(n.network_of(&own), "own-net");
    assert_eq!(n.network_of(&labelled), "label-net");
    assert_eq!(n.network_of(&plain), "system-net");
    let n = networks_of(&yaml, &both);
    assert_eq!(n.network_of(&plain), "reg-net");
    let n = networks_of(&yaml, cidr);
    assert_eq!(n.network_of(&plain), "cidr-net");
    assert_eq!(
        n.network_of(&e("plain", "10.2.0.3", "")),
        "",
        "outside every CIDR"
    );
    assert!(n.known().contains("label-net") && n.known().contains("own-net"));
}

#[test]
fn scale_is_the_least_common_multiple_of_gateway_counts() {
    assert_eq!(lcm(1, 2), 2);
    assert_eq!(lcm(2, 3), 6);
    assert_eq!(lcm(4, 6), 12);
    assert_eq!(scaled(3, 6), 18);
    assert_eq!(scaled(u32::MAX, 2), u32::MAX);
}

use super::split::scaled;
