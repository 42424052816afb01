//! The delta transport: gRPC framing both ways, and the statuses that end a stream.

use super::*;
use crate::xds::test_client::{Server, grpc_frame, node};
use crate::xds::test_mesh::Mesh;
use prost::Message;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use weft_proto::type_url;

fn cds(mesh: &Mesh) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(node(&mesh.proxy(0))),
        type_url: type_url::CLUSTER.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_response_is_grpc_and_two_requests_in_one_data_frame_are_both_served() {
    let mesh = Mesh::new(3, 3);
    let mut server = Server::new(&mesh, 64);
    let mut c = server.delta().await;
    assert_eq!(c.headers.get("content-type").unwrap(), "application/grpc");
    let lds = DeltaDiscoveryRequest {
        type_url: type_url::LISTENER.into(),
        ..Default::default()
    };
    let mut both = grpc_frame(&cds(&mesh).encode_to_vec()).to_vec();
    both.extend_from_slice(&grpc_frame(&lds.encode_to_vec()));
    c.send_raw(both.into()).await;
    let r1: DeltaDiscoveryResponse = c.recv().await.unwrap();
    let r2: DeltaDiscoveryResponse = c.recv().await.unwrap();
    assert_eq!(
        (r1.type_url.as_str(), r2.type_url.as_str()),
        (type_url::CLUSTER, type_url::LISTENER)
    );
    assert_eq!((r1.nonce.as_str(), r2.nonce.as_str()), ("1", "2"));
    assert_eq!(r1.resources.len(), 3 + 3 + 1);
    let ctx = mesh.context(None);
    let want = ctx.generate(&mesh.proxy(0), type_url::CLUSTER);
    for (got, want) in r1.resources.iter().zip(&want) {
        assert_eq!((&got.name, &got.version), (&want.name, &want.version));
        assert_eq!(got.resource.as_ref(), Some(&want.resource));
    }
}

#[tokio::test]
async fn bad_requests_end_the_stream_with_their_status() {
    let mesh = Mesh::new(2, 2);
    let mut server = Server::new(&mesh, 64);
    // Too large: refused from the header alone.
    let mut c = server.delta().await;
    let mut header = vec![0u8];
    header.extend_from_slice(&((super::super::wire::MAX_REQUEST + 1) as u32).to_be_bytes());
    c.send_raw(header.into()).await;
    assert_eq!(c.status().await, "8", "RESOURCE_EXHAUSTED");
    // Compressed.
    let mut c = server.delta().await;
    c.send_raw(vec![1u8, 0, 0, 0, 0].into()).await;
    assert_eq!(c.status().await, "12", "UNIMPLEMENTED");
    // Not a DeltaDiscoveryRequest.
    let mut c = server.delta().await;
    c.send_raw(grpc_frame(&[0xff, 0xff, 0xff])).await;
    assert_eq!(c.status().await, "13", "INTERNAL");
    // Ends inside a message.
    let mut c = server.delta().await;
    c.send_raw(grpc_frame(&cds(&mesh).encode_to_vec()).slice(..9))
        .await;
    c.close();
    assert_eq!(c.status().await, "13");
    // No node on the first request.
    let mut c = server.delta().await;
    c.send(DeltaDiscoveryRequest::default()).await;
    assert_eq!(c.status().await, "3", "INVALID_ARGUMENT");
    assert_eq!(server.state.syncz(None), serde_json::json!([]));
}

#[tokio::test]
async fn callers_on_the_tls_port_must_authenticate() {
    let mesh = Mesh::new(2, 2);
    let mut server = Server::new(&mesh, 64);
    let c = server.open_as(DELTA_PATH, true).await;
    assert_eq!(
        c.headers.get("grpc-status").unwrap(),
        "16",
        "UNAUTHENTICATED"
    );
}
