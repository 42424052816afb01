//! A fake weftd for the proxy's tests: records what reaches it and answers like an ADS server.

use super::*;
use crate::sds::testutil::{temp_dir, uds_channel};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::google::protobuf::Any;

/// What the fake weftd saw.
#[derive(Debug)]
pub(super) enum Seen {
    Sotw(DiscoveryRequest),
    Delta(DeltaDiscoveryRequest),
    /// A request stream ended (the proxy closed it).
    Ended,
}

/// A fake weftd: records metadata and requests, answers each request that is neither an ACK nor a
/// health report with one response; type URL `fail` ends the stream with `internal: boom`.
#[derive(Clone)]
pub(super) struct FakeAds {
    metadata: Arc<Mutex<Vec<MetadataMap>>>,
    seen: mpsc::UnboundedSender<Seen>,
}

pub(super) fn fake_any(t: &str) -> Any {
    Any {
        type_url: t.to_string(),
        value: b"payload".to_vec(),
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for FakeAds {
    type StreamAggregatedResourcesStream = RespStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = RespStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        self.metadata
            .lock()
            .unwrap()
            .push(request.metadata().clone());
        let mut inbound = request.into_inner();
        let seen = self.seen.clone();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Some(req)) = inbound.message().await {
                let _ = seen.send(Seen::Sotw(req.clone()));
                if req.type_url == "fail" {
                    let _ = tx.send(Err(Status::internal("boom"))).await;
                    return;
                }
                // ACKs and health reports (as weftd treats them) get no response.
                if !req.response_nonce.is_empty() || req.type_url == type_url::HEALTH_INFO {
                    continue;
                }
                n += 1;
                let resp = DiscoveryResponse {
                    version_info: format!("v{n}"),
                    resources: vec![fake_any(&req.type_url)],
                    type_url: req.type_url.clone(),
                    nonce: format!("nonce-{n}"),
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
            let _ = seen.send(Seen::Ended);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        self.metadata
            .lock()
            .unwrap()
            .push(request.metadata().clone());
        let mut inbound = request.into_inner();
        // Like a server that needs the node first: it answers with headers only after the
        // first request, which the proxy must therefore send before the stream is open.
        let mut pending = inbound.message().await?;
        let seen = self.seen.clone();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let req = match pending.take() {
                    Some(r) => r,
                    None => match inbound.message().await {
                        Ok(Some(r)) => r,
                        _ => break,
                    },
                };
                let _ = seen.send(Seen::Delta(req.clone()));
                if req.type_url == "fail" {
                    let _ = tx.send(Err(Status::internal("boom"))).await;
                    return;
                }
                // ACKs and health reports (as weftd treats them) get no response.
                if !req.response_nonce.is_empty() || req.type_url == type_url::HEALTH_INFO {
                    continue;
                }
                n += 1;
                let resp = DeltaDiscoveryResponse {
                    system_version_info: format!("v{n}"),
                    resources: vec![Resource {
                        name: format!("r{n}"),
                        version: format!("v{n}"),
                        resource: Some(fake_any(&req.type_url)),
                        ..Default::default()
                    }],
                    type_url: req.type_url.clone(),
                    nonce: format!("nonce-{n}"),
                    removed_resources: vec!["gone".into()],
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
            let _ = seen.send(Seen::Ended);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub(super) struct Fixture {
    pub(super) dir: PathBuf,
    pub(super) socket: PathBuf,
    pub(super) metadata: Arc<Mutex<Vec<MetadataMap>>>,
    pub(super) seen: mpsc::UnboundedReceiver<Seen>,
    pub(super) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(super) proxy: tokio::task::JoinHandle<Result<(), String>>,
    pub(super) client: AggregatedDiscoveryServiceClient<Channel>,
}

pub(super) fn upstream_to(addr: SocketAddr) -> Upstream {
    Upstream {
        connect: Arc::new(move || {
            Box::pin(async move {
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| e.to_string())?
                    .connect()
                    .await
                    .map_err(|e| format!("{addr}: {e}"))
            })
        }),
        headers: Arc::new(|| {
            vec![
                ("authorization".to_string(), "Bearer test-token".to_string()),
                ("ClusterID".to_string(), "Kubernetes".to_string()),
            ]
        }),
    }
}

pub(super) type FakeHandles = (
    SocketAddr,
    Arc<Mutex<Vec<MetadataMap>>>,
    mpsc::UnboundedReceiver<Seen>,
);

pub(super) async fn start_fake() -> FakeHandles {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metadata = Arc::new(Mutex::new(Vec::new()));
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let fake = FakeAds {
        metadata: metadata.clone(),
        seen: seen_tx,
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, metadata, seen)
}

/// A TCP relay to `target`; aborting the returned tasks' handles cuts every connection.
pub(super) async fn start_relay(
    target: SocketAddr,
) -> (SocketAddr, Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(Mutex::new(Vec::new()));
    let tasks = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let task = tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
            tasks.lock().unwrap().push(task);
        }
    });
    (addr, conns)
}

impl Fixture {
    pub(super) async fn start(hooks: ProxyHooks) -> Self {
        let (addr, metadata, seen) = start_fake().await;
        Self::start_with(upstream_to(addr), hooks, metadata, seen).await
    }

    pub(super) async fn start_with(
        upstream: Upstream,
        hooks: ProxyHooks,
        metadata: Arc<Mutex<Vec<MetadataMap>>>,
        seen: mpsc::UnboundedReceiver<Seen>,
    ) -> Self {
        let dir = temp_dir("xds");
        let socket = dir.join("proxy/XDS");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let proxy = tokio::spawn(serve_xds_proxy(
            socket.clone(),
            upstream,
            hooks,
            async move {
                let _ = stopped.await;
            },
        ));
        let client = AggregatedDiscoveryServiceClient::new(uds_channel(socket.clone()).await);
        Fixture {
            dir,
            socket,
            metadata,
            seen,
            stop: Some(stop),
            proxy,
            client,
        }
    }

    pub(super) async fn seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("upstream saw something in time")
            .unwrap()
    }

    pub(super) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.proxy)
            .await
            .expect("proxy stops with open streams")
            .unwrap()
            .unwrap();
        assert!(!self.socket.exists(), "socket removed on exit");
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

pub(super) fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.to_string(),
        ..Default::default()
    })
}

pub(super) fn sotw(t: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: t.to_string(),
        ..Default::default()
    }
}

pub(super) fn delta(t: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: t.to_string(),
        ..Default::default()
    }
}

pub(super) async fn next<T: prost::Message + Default + 'static>(s: &mut Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a response in time")
        .expect("stream ok")
        .expect("stream open")
}

pub(super) async fn nothing<T: prost::Message + Default + std::fmt::Debug + 'static>(
    s: &mut Streaming<T>,
) {
    if let Ok(m) = tokio::time::timeout(Duration::from_millis(300), s.message()).await {
        panic!("expected no message, got {m:?}");
    }
}

pub(super) async fn failure<T: prost::Message + Default + std::fmt::Debug + 'static>(
    s: &mut Streaming<T>,
) -> Status {
    match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
        Ok(Err(status)) => status,
        other => panic!("expected the stream to fail, got {other:?}"),
    }
}

pub(super) const NODE: &str = "sidecar~10.0.0.1~vm.ns~ns.svc.cluster.local";

/// Opens a SotW stream through the proxy whose first request (with the node) asks for CDS.
pub(super) async fn open_cds_stream(
    f: &mut Fixture,
) -> (
    mpsc::Sender<DiscoveryRequest>,
    tonic::Streaming<DiscoveryResponse>,
) {
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: node(NODE),
        ..sotw(type_url::CLUSTER)
    })
    .await
    .unwrap();
    let s = f
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, s)
}
