//! Stream behaviour through the real service (delta on the fast path, SotW on tonic).

use crate::xds::admission::HOLD;
use crate::xds::node;
use crate::xds::test_client::{Client, Server, node};
use crate::xds::test_mesh::{Mesh, eds_name, ns};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use weft_proto::envoy_types::pb::google::rpc::Status as RpcStatus;
use weft_proto::type_url;
use weft_xds::Proxy;

const QUIET: Duration = Duration::from_millis(300);

fn delta(url: &str, subscribe: &[String], nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: url.to_string(),
        resource_names_subscribe: subscribe.to_vec(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

fn first(proxy: &Proxy, url: &str, subscribe: &[String]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(node(proxy)),
        ..delta(url, subscribe, "")
    }
}

fn names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

/// `/debug/syncz`'s state of `proxy` for a type's short name.
fn sync_state(server: &Server, proxy: &Proxy, short: &str) -> String {
    let all = server.state.syncz(Some(&node::key(proxy)));
    all[0]["types"][short]["state"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

fn eds_all(mesh: &Mesh) -> Vec<String> {
    (0..mesh.services).map(eds_name).collect()
}

/// Subscribes like Envoy (CDS, EDS for every cluster, LDS, RDS "80") and ACKs everything;
/// returns what it holds per type.
async fn sync(
    c: &mut Client,
    mesh: &Mesh,
    proxy: &Proxy,
) -> HashMap<&'static str, HashMap<String, String>> {
    let mut held: HashMap<&str, HashMap<String, String>> = HashMap::new();
    let steps = [
        (type_url::CLUSTER, vec![]),
        (type_url::ENDPOINT, eds_all(mesh)),
        (type_url::LISTENER, vec![]),
        (type_url::ROUTE, vec!["80".to_string()]),
    ];
    for (i, (url, subscribe)) in steps.into_iter().enumerate() {
        let req = if i == 0 {
            first(proxy, url, &subscribe)
        } else {
            delta(url, &subscribe, "")
        };
        c.send(req).await;
        let r: DeltaDiscoveryResponse = c.recv().await.unwrap();
        assert_eq!(r.type_url, url);
        for res in &r.resources {
            let of_type = held.entry(url).or_default();
            of_type.insert(res.name.clone(), res.version.clone());
        }
        c.send(delta(url, &[], &r.nonce)).await;
    }
    held
}

#[tokio::test]
async fn delta_sync_acks_nacks_and_pushes_only_to_touched_views() {
    let mut mesh = Mesh::new(12, 24);
    let mut server = Server::new(&mesh, 64);
    let (pa, pb) = (mesh.proxy(0), mesh.proxy(1));
    let mut a = server.delta().await;
    a.send(first(&pa, type_url::CLUSTER, &[])).await;
    let r: DeltaDiscoveryResponse = a.recv().await.unwrap();
    let ctx = mesh.context(None);
    let want: Vec<String> = ctx
        .generate(&pa, type_url::CLUSTER)
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names(&r), want);
    assert_eq!(sync_state(&server, &pa, "Cluster"), "STALE");
    a.send(delta(type_url::CLUSTER, &[], &r.nonce)).await;
    assert!(a.quiet(QUIET).await, "an ACK is not answered");
    assert_eq!(sync_state(&server, &pa, "Cluster"), "SYNCED");
    for (url, sub) in [
        (type_url::ENDPOINT, eds_all(&mesh)),
        (type_url::LISTENER, vec![]),
        (type_url::ROUTE, vec!["80".into()]),
    ] {
        a.send(delta(url, &sub, "")).await;
        let r: DeltaDiscoveryResponse = a.recv().await.unwrap();
        assert!(!r.resources.is_empty(), "{url}");
        a.send(delta(url, &[], &r.nonce)).await;
    }
    let mut b = server.delta().await;
    let _ = sync(&mut b, &mesh, &pb).await;
    assert!(a.quiet(QUIET).await && b.quiet(QUIET).await);

    // One endpoint's weight: one EDS resource to everyone, nothing else.
    mesh.entries[5].1 = 3;
    server.set(&mesh);
    for c in [&mut a, &mut b] {
        let r: DeltaDiscoveryResponse = c.recv().await.unwrap();
        assert_eq!(r.type_url, type_url::ENDPOINT);
        assert_eq!(names(&r), [eds_name(5)]);
        assert!(r.removed_resources.is_empty());
        c.send(delta(type_url::ENDPOINT, &[], &r.nonce)).await;
        assert!(c.quiet(QUIET).await);
    }

    // A PeerAuthentication selecting wl-1 only: b's inbound listener changes, a hears nothing.
    mesh.extra = format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: strict\n  namespace: {}\nspec:\n  selector:\n    matchLabels:\n      app: svc-1\n  mtls:\n    mode: STRICT\n---\n",
        ns(1)
    );
    server.set(&mesh);
    let r: DeltaDiscoveryResponse = b.recv().await.unwrap();
    assert_eq!(r.type_url, type_url::LISTENER);
    assert_eq!(names(&r), ["virtualInbound"]);
    assert!(a.quiet(QUIET).await, "a's view did not change");
    // b rejects it.
    b.send(DeltaDiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: "bad listener".into(),
            ..Default::default()
        }),
        ..delta(type_url::LISTENER, &[], &r.nonce)
    })
    .await;
    assert!(b.quiet(QUIET).await);
    assert_eq!(sync_state(&server, &pb, "Listener"), "NACK");
    assert_eq!(sync_state(&server, &pb, "Cluster"), "SYNCED");
    let syncz = server.state.syncz(Some(&node::key(&pb)));
    assert_eq!(syncz[0]["types"]["Listener"]["nack"], "bad listener");
    assert_eq!(
        server
            .state
            .metrics
            .xds_rejects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // A type nobody serves still reaches the stream's dispatch and is answered (empty).
    let unknown = "type.googleapis.com/example.v1.Unknown";
    a.send(delta(unknown, &["x".into()], "")).await;
    let r: DeltaDiscoveryResponse = a.recv().await.unwrap();
    assert_eq!(r.type_url, unknown);
    assert!(r.resources.is_empty());

    // Closing: the stream ends OK and leaves the registry.
    a.close();
    assert_eq!(a.status().await, "0");
    assert_eq!(
        server.state.syncz(Some(&node::key(&pa))),
        Value::Array(vec![])
    );
    assert_eq!(server.state.syncz(None).as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_reconnect_with_initial_versions_is_sent_only_differences() {
    let mut mesh = Mesh::new(8, 16);
    let mut server = Server::new(&mesh, 64);
    let p = mesh.proxy(2);
    let mut a = server.delta().await;
    let held = sync(&mut a, &mesh, &p).await;
    drop(a);
    mesh.entries[4].1 = 5; // svc-4's endpoints change while the proxy is away
    server.set(&mesh);
    let mut again = server.delta().await;
    let mut first_req = first(&p, type_url::CLUSTER, &[]);
    first_req.initial_resource_versions = held[type_url::CLUSTER].clone();
    again.send(first_req).await;
    let r: DeltaDiscoveryResponse = again.recv().await.unwrap();
    assert!(
        r.resources.is_empty() && r.removed_resources.is_empty(),
        "{r:?}"
    );
    again
        .send(DeltaDiscoveryRequest {
            initial_resource_versions: held[type_url::ENDPOINT].clone(),
            ..delta(type_url::ENDPOINT, &eds_all(&mesh), &r.nonce)
        })
        .await;
    let r: DeltaDiscoveryResponse = again.recv().await.unwrap();
    assert_eq!(names(&r), [eds_name(4)]);
}

#[tokio::test]
async fn sotw_sends_whole_sets_when_they_change() {
    let mut mesh = Mesh::new(6, 12);
    let mut server = Server::new(&mesh, 64);
    let p = mesh.proxy(0);
    let mut c = server.sotw().await;
    c.send(DiscoveryRequest {
        node: Some(node(&p)),
        type_url: type_url::CLUSTER.into(),
        ..Default::default()
    })
    .await;
    let r: DiscoveryResponse = c.recv().await.unwrap();
    assert_eq!(r.resources.len(), 6 + 3 + 1);
    let ack = |r: &DiscoveryResponse, names: &[String]| DiscoveryRequest {
        type_url: r.type_url.clone(),
        version_info: r.version_info.clone(),
        response_nonce: r.nonce.clone(),
        resource_names: names.to_vec(),
        ..Default::default()
    };
    c.send(ack(&r, &[])).await;
    let two = vec![eds_name(0), eds_name(1)];
    c.send(DiscoveryRequest {
        type_url: type_url::ENDPOINT.into(),
        resource_names: two.clone(),
        ..Default::default()
    })
    .await;
    let r: DiscoveryResponse = c.recv().await.unwrap();
    assert_eq!(r.resources.len(), 2);
    c.send(ack(&r, &two)).await;
    assert!(c.quiet(QUIET).await);
    // svc-3 is not subscribed: nothing; svc-1 is: both resources again.
    mesh.entries[3].1 = 4;
    server.set(&mesh);
    assert!(c.quiet(QUIET).await);
    mesh.entries[1].1 = 4;
    server.set(&mesh);
    let r: DiscoveryResponse = c.recv().await.unwrap();
    assert_eq!(r.type_url, type_url::ENDPOINT);
    assert_eq!(r.resources.len(), 2);
    assert_eq!(sync_state(&server, &p, "ClusterLoadAssignment"), "STALE");
    c.send(ack(&r, &two)).await;
    assert!(c.quiet(QUIET).await);
    assert_eq!(sync_state(&server, &p, "ClusterLoadAssignment"), "SYNCED");
}

#[tokio::test(start_paused = true)]
async fn full_syncs_wait_for_a_permit_returning_streams_first() {
    let mesh = Mesh::new(4, 8);
    let mut server = Server::new(&mesh, 1);
    let (pa, pb, pc) = (mesh.proxy(0), mesh.proxy(1), mesh.proxy(2));
    let wait = Duration::from_secs(2);
    let mut a = server.delta().await;
    a.send(first(&pa, type_url::CLUSTER, &[])).await;
    let ra: DeltaDiscoveryResponse = a.recv().await.unwrap();
    let mut b = server.delta().await;
    b.send(first(&pb, type_url::CLUSTER, &[])).await;
    assert!(b.quiet(wait).await, "b waits for a's permit");
    // a's ACK gives the permit to b; a's endpoints wait for it in turn.
    a.send(delta(type_url::CLUSTER, &[], &ra.nonce)).await;
    a.send(delta(type_url::ENDPOINT, &eds_all(&mesh), "")).await;
    let rb: DeltaDiscoveryResponse = b.recv().await.unwrap();
    assert!(!rb.resources.is_empty());
    assert!(a.quiet(wait).await);
    // c comes now; when b answers, a (admitted before) goes first.
    let mut c = server.delta().await;
    c.send(first(&pc, type_url::CLUSTER, &[])).await;
    assert!(c.quiet(wait).await);
    b.send(delta(type_url::CLUSTER, &[], &rb.nonce)).await;
    let r: DeltaDiscoveryResponse = a.recv().await.unwrap();
    assert_eq!(r.resources.len(), 4);
    assert!(c.quiet(wait).await, "a's sync goes on before c's starts");
    a.send(delta(type_url::ENDPOINT, &[], &r.nonce)).await;
    let rc: DeltaDiscoveryResponse = c.recv().await.unwrap();
    assert!(!rc.resources.is_empty());
    // c never answers: a's listeners get the permit once c's hold expires.
    a.send(delta(type_url::LISTENER, &[], "")).await;
    let start = tokio::time::Instant::now();
    let r: Option<DeltaDiscoveryResponse> = a.recv_within(Duration::from_secs(30)).await;
    assert_eq!(r.unwrap().type_url, type_url::LISTENER);
    let waited = start.elapsed();
    assert!(
        waited >= HOLD - Duration::from_secs(1) && waited <= HOLD,
        "{waited:?}"
    );
}
