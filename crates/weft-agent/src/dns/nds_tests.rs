//! NDS end to end in the agent: a fake weftd, the real xDS proxy with the DNS proxy's hooks, a
//! test "Envoy" on the proxy's socket, and `dig` against the DNS server.

use super::testutil::{Proxy, lab_table, start_upstream, temp_root, unique_loopback};
use crate::sds::testutil::uds_channel;
use crate::upstream::Upstream;
use crate::xds_proxy::serve_xds_proxy;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use weft_proto::envoy_types::pb::google::protobuf::Any;
use weft_proto::type_url;

/// A request the fake weftd received: (delta?, type URL, nonce, error_detail code and message).
type Seen = (bool, String, String, Option<(i32, String)>);

/// Answers LDS with an empty listener set and NDS with `table`; ACKs get nothing.
#[derive(Clone)]
struct FakeWeftd {
    seen: mpsc::UnboundedSender<Seen>,
    table: Arc<Mutex<Vec<u8>>>,
}

type Out<T> = ReceiverStream<Result<T, Status>>;

impl FakeWeftd {
    fn any(&self) -> Any {
        Any {
            type_url: type_url::NAME_TABLE.into(),
            value: self.table.lock().unwrap().clone(),
        }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for FakeWeftd {
    type StreamAggregatedResourcesStream = Out<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Out<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let me = self.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Some(r)) = inbound.message().await {
                let err = r.error_detail.as_ref().map(|e| (e.code, e.message.clone()));
                let _ = me
                    .seen
                    .send((false, r.type_url.clone(), r.response_nonce.clone(), err));
                if !r.response_nonce.is_empty() {
                    continue;
                }
                let resources = match r.type_url.as_str() {
                    type_url::LISTENER => vec![],
                    type_url::NAME_TABLE => vec![me.any()],
                    _ => continue,
                };
                n += 1;
                let resp = DiscoveryResponse {
                    version_info: format!("v{n}"),
                    type_url: r.type_url,
                    nonce: format!("nonce-{n}"),
                    resources,
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let me = self.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Some(r)) = inbound.message().await {
                let err = r.error_detail.as_ref().map(|e| (e.code, e.message.clone()));
                let _ = me
                    .seen
                    .send((true, r.type_url.clone(), r.response_nonce.clone(), err));
                if !r.response_nonce.is_empty() {
                    continue;
                }
                let resources = match r.type_url.as_str() {
                    type_url::LISTENER => vec![],
                    type_url::NAME_TABLE => vec![Resource {
                        resource: Some(me.any()),
                        version: format!("v{n}"),
                        ..Default::default()
                    }],
                    _ => continue,
                };
                n += 1;
                let resp = DeltaDiscoveryResponse {
                    system_version_info: format!("v{n}"),
                    type_url: r.type_url,
                    nonce: format!("nonce-{n}"),
                    resources,
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn upstream_to(addr: SocketAddr) -> Upstream {
    Upstream {
        connect: Arc::new(move || {
            Box::pin(async move {
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| e.to_string())?
                    .connect()
                    .await
                    .map_err(|e| e.to_string())
            })
        }),
        headers: Arc::new(Vec::new),
    }
}

struct Lab {
    seen: mpsc::UnboundedReceiver<Seen>,
    table: Arc<Mutex<Vec<u8>>>,
    client: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
}

impl Lab {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("weftd saw a request in time")
            .unwrap()
    }

    async fn quiet(&mut self) {
        if let Ok(s) = tokio::time::timeout(Duration::from_millis(300), self.seen.recv()).await {
            panic!("weftd saw an unexpected request: {s:?}");
        }
    }
}

fn envoy_request(t: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "sidecar~10.0.0.9~forum.forum-services~forum-services.svc.cluster.local".into(),
            ..Default::default()
        }),
        type_url: t.into(),
        ..Default::default()
    }
}

fn seen(delta: bool, t: &str, nonce: &str) -> Seen {
    (delta, t.to_string(), nonce.to_string(), None)
}

#[tokio::test]
async fn nds_after_first_lds_on_every_upstream_stream_acked_or_nacked() {
    let root = temp_root("nds");
    let up = unique_loopback();
    start_upstream(up).await;
    let dns = Proxy::start(&root, up, &[]).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let weftd_addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let table = Arc::new(Mutex::new(prost::Message::encode_to_vec(&lab_table())));
    let fake = FakeWeftd {
        seen: seen_tx,
        table: table.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let socket = root.join("etc/istio/proxy/XDS");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(serve_xds_proxy(
        socket.clone(),
        upstream_to(weftd_addr),
        dns.hooks.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut lab = Lab {
        seen: seen_rx,
        table,
        client: AggregatedDiscoveryServiceClient::new(uds_channel(socket).await),
    };

    // Envoy's CDS request alone: no NDS yet, and no table.
    let (tx, rx) = mpsc::channel(8);
    tx.send(envoy_request(type_url::CLUSTER)).await.unwrap();
    let mut envoy = lab
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lab.next().await, seen(false, type_url::CLUSTER, ""));
    lab.quiet().await;
    assert_eq!(dns.dig(&["webapp.istioinaction"]).await.status, "SERVFAIL");

    // Its first LDS request: forwarded, then the agent's own NDS request, then the ACK.
    tx.send(envoy_request(type_url::LISTENER)).await.unwrap();
    let lds = tokio::time::timeout(Duration::from_secs(10), envoy.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(lds.type_url, type_url::LISTENER);
    assert_eq!(lab.next().await, seen(false, type_url::LISTENER, ""));
    assert_eq!(lab.next().await, seen(false, type_url::NAME_TABLE, ""));
    assert_eq!(
        lab.next().await,
        seen(false, type_url::NAME_TABLE, "nonce-2")
    );
    assert_eq!(
        dns.dig(&["+short", "webapp.istioinaction"]).await.data(),
        ["10.96.0.10"]
    );
    // A second LDS request does not ask again; Envoy never sees the name table.
    tx.send(envoy_request(type_url::LISTENER)).await.unwrap();
    assert_eq!(lab.next().await, seen(false, type_url::LISTENER, ""));
    let next = tokio::time::timeout(Duration::from_secs(10), envoy.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.type_url, type_url::LISTENER);
    lab.quiet().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), envoy.message())
            .await
            .is_err(),
        "nothing else reaches Envoy"
    );

    // Envoy reconnects (a new upstream stream): NDS is requested again after its first LDS.
    drop((tx, envoy));
    let (tx, rx) = mpsc::channel(8);
    tx.send(envoy_request(type_url::LISTENER)).await.unwrap();
    let _envoy = lab
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lab.next().await, seen(false, type_url::LISTENER, ""));
    assert_eq!(lab.next().await, seen(false, type_url::NAME_TABLE, ""));
    assert_eq!(
        lab.next().await,
        seen(false, type_url::NAME_TABLE, "nonce-2")
    );
    drop(tx);

    // A delta stream gets delta requests; a table that does not decode is NACKed (code 13, the
    // reason) and the DNS proxy keeps answering from the table it has.
    *lab.table.lock().unwrap() = vec![0xff, 0xff];
    let (dtx, drx) = mpsc::channel(8);
    let first = envoy_request(type_url::LISTENER);
    dtx.send(DeltaDiscoveryRequest {
        node: first.node,
        type_url: first.type_url,
        ..Default::default()
    })
    .await
    .unwrap();
    let _delta = lab
        .client
        .delta_aggregated_resources(ReceiverStream::new(drx))
        .await
        .unwrap()
        .into_inner();
    // The SotW stream's end may be seen first; skip to the delta stream's requests.
    let mut got = lab.next().await;
    while !got.0 {
        got = lab.next().await;
    }
    assert_eq!(got, seen(true, type_url::LISTENER, ""));
    assert_eq!(lab.next().await, seen(true, type_url::NAME_TABLE, ""));
    let (delta, t, nonce, err) = lab.next().await;
    assert!(delta && t == type_url::NAME_TABLE && nonce == "nonce-2");
    let (code, message) = err.expect("a NACK");
    assert_eq!(code, 13);
    assert!(
        message.starts_with("failed to unmarshal name table"),
        "{message}"
    );
    assert_eq!(
        dns.dig(&["+short", "webapp.istioinaction"]).await.data(),
        ["10.96.0.10"]
    );
    drop(dtx);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), proxy)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}
