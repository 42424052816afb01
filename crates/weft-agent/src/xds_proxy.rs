//! The xDS proxy between Envoy and weftd (pilot-agent's `xds_proxy.go`).
//!
//! Envoy talks ADS to the agent over a Unix socket; each Envoy stream (SotW or delta) becomes one
//! upstream stream to weftd, opened with a fresh channel from [`Upstream::connect`] and carrying
//! [`Upstream::headers`] (token, cluster id) as request metadata. Requests and responses are
//! forwarded unchanged. When either side ends, the other is ended with the same status; Envoy then
//! reconnects and gets a new upstream stream.
//!
//! [`ProxyHooks`] lets the agent take some types for itself (NDS): their responses go to a
//! handler and a channel instead of Envoy, and the proxy ACKs them upstream, or NACKs them with
//! the handler's error as Istio's agent does (`error_detail {code: 13, message}`).

use crate::upstream::{BoxFuture, Upstream};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use weft_proto::envoy_types::pb::google::rpc::Status as RpcStatus;
use weft_proto::type_url;

/// Largest xDS message accepted either way (Istio allows up to `i32::MAX`; a large mesh's CDS
/// easily exceeds tonic's 4 MiB default).
const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// Responses the agent consumes instead of Envoy.
#[derive(Clone, Debug, Default)]
pub struct ProxyHooks {
    /// Type URLs whose upstream responses go to [`ProxyHooks::intercepted`] instead of Envoy (e.g.
    /// [`type_url::NAME_TABLE`]). The proxy ACKs them upstream itself.
    pub intercept_type_urls: Vec<String>,
    /// Where intercepted responses are delivered. `None`: they are dropped (and still ACKed).
    pub intercepted: Option<mpsc::Sender<Intercepted>>,
    /// Type URLs the proxy subscribes to itself on each upstream stream, right after forwarding
    /// Envoy's first LDS request (Istio's agent does this for NDS, which Envoy never asks for).
    pub request_after_first_lds: Vec<String>,
    /// Per intercepted type URL, what applies a response; an `Err` is sent upstream as a NACK.
    pub handlers: BTreeMap<String, InterceptHandler>,
}

/// Applies an intercepted response (e.g. installs a name table). `Err(message)` rejects it.
pub type HandleFn = dyn Fn(&Intercepted) -> Result<(), String> + Send + Sync;

/// A [`HandleFn`] the hooks can hold (and print).
#[derive(Clone)]
pub struct InterceptHandler(pub Arc<HandleFn>);

impl std::fmt::Debug for InterceptHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterceptHandler")
    }
}

/// One intercepted upstream response.
#[derive(Clone, Debug, PartialEq)]
pub struct Intercepted {
    /// Node id of the Envoy whose stream carried it.
    pub node_id: String,
    pub type_url: String,
    /// SotW `version_info`, or delta `system_version_info`.
    pub version_info: String,
    /// The resources. From a SotW response only `version` and `resource` are set (SotW carries
    /// no names) and they replace everything; from a delta response they are updates.
    pub resources: Vec<Resource>,
    /// Names removed (delta only).
    pub removed_resources: Vec<String>,
    /// Whether this came from a delta stream (incremental) rather than SotW (complete state).
    pub delta: bool,
}

/// Serves ADS on `socket` until `shutdown` completes, proxying every stream to `upstream`.
pub async fn serve_xds_proxy(
    socket: PathBuf,
    upstream: Upstream,
    hooks: ProxyHooks,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let listener = crate::sds::bind_unix(&socket)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let proxy = XdsProxy {
        upstream,
        hooks: Arc::new(hooks),
        stop: stop_rx,
        streams: Arc::new(AtomicU64::new(0)),
    };
    tracing::info!(socket = %socket.display(), "xDS proxy listening");
    let result = tonic::transport::Server::builder()
        .add_service(
            AggregatedDiscoveryServiceServer::new(proxy)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            shutdown.await;
            // Open streams would keep the graceful shutdown waiting forever: end them.
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(|e| format!("xDS proxy on {}: {e}", socket.display()));
    let _ = std::fs::remove_file(&socket);
    result
}

#[derive(Clone)]
struct XdsProxy {
    upstream: Upstream,
    hooks: Arc<ProxyHooks>,
    stop: watch::Receiver<bool>,
    streams: Arc<AtomicU64>,
}

type RespStream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsProxy {
    type StreamAggregatedResourcesStream = RespStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = RespStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.start::<Sotw>(request.into_inner())))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.start::<Delta>(request.into_inner())))
    }
}

impl XdsProxy {
    fn start<F: Flavor>(&self, inbound: Streaming<F::Req>) -> RespStream<F::Resp> {
        let (down, rx) = mpsc::channel(16);
        let stream = ProxyStream::<F> {
            id: self.streams.fetch_add(1, Ordering::Relaxed) + 1,
            node: String::new(),
            upstream: self.upstream.clone(),
            hooks: self.hooks.clone(),
            stop: self.stop.clone(),
            down,
            lds_seen: false,
        };
        tokio::spawn(stream.run(inbound));
        ReceiverStream::new(rx)
    }
}

/// What differs between SotW and delta ADS.
trait Flavor: Send + 'static {
    type Req: prost::Message + Default + Send + 'static;
    type Resp: prost::Message + Default + Send + 'static;
    const KIND: &'static str;
    fn node_id(req: &Self::Req) -> Option<&str>;
    fn request_type_url(req: &Self::Req) -> &str;
    fn response_type_url(resp: &Self::Resp) -> &str;
    /// The proxy's own initial request for `type_url`.
    fn subscribe(type_url: &str) -> Self::Req;
    /// Turns an intercepted response into what the agent gets and the ACK to send upstream.
    fn consume(resp: Self::Resp, node_id: &str) -> (Intercepted, Self::Req);
    /// Makes an ACK a NACK.
    fn reject(ack: &mut Self::Req, detail: RpcStatus);
    fn open(
        client: AggregatedDiscoveryServiceClient<Channel>,
        request: Request<ReceiverStream<Self::Req>>,
    ) -> BoxFuture<Result<Response<Streaming<Self::Resp>>, Status>>;
}

struct Sotw;
struct Delta;

impl Flavor for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    const KIND: &'static str = "sotw";

    fn node_id(req: &DiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
    fn request_type_url(req: &DiscoveryRequest) -> &str {
        &req.type_url
    }
    fn response_type_url(resp: &DiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn subscribe(type_url: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url.to_string(),
            ..Default::default()
        }
    }
    fn consume(resp: DiscoveryResponse, node_id: &str) -> (Intercepted, DiscoveryRequest) {
        let ack = DiscoveryRequest {
            type_url: resp.type_url.clone(),
            version_info: resp.version_info.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        };
        let resources = resp
            .resources
            .into_iter()
            .map(|any| Resource {
                version: resp.version_info.clone(),
                resource: Some(any),
                ..Default::default()
            })
            .collect();
        let got = Intercepted {
            node_id: node_id.to_string(),
            type_url: resp.type_url,
            version_info: resp.version_info,
            resources,
            removed_resources: Vec::new(),
            delta: false,
        };
        (got, ack)
    }
    fn reject(ack: &mut DiscoveryRequest, detail: RpcStatus) {
        ack.error_detail = Some(detail);
    }
    fn open(
        mut client: AggregatedDiscoveryServiceClient<Channel>,
        request: Request<ReceiverStream<DiscoveryRequest>>,
    ) -> BoxFuture<Result<Response<Streaming<DiscoveryResponse>>, Status>> {
        Box::pin(async move { client.stream_aggregated_resources(request).await })
    }
}

impl Flavor for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    const KIND: &'static str = "delta";

    fn node_id(req: &DeltaDiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
    fn request_type_url(req: &DeltaDiscoveryRequest) -> &str {
        &req.type_url
    }
    fn response_type_url(resp: &DeltaDiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn subscribe(type_url: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            ..Default::default()
        }
    }
    fn consume(
        resp: DeltaDiscoveryResponse,
        node_id: &str,
    ) -> (Intercepted, DeltaDiscoveryRequest) {
        let ack = DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        };
        let mut removed = resp.removed_resources;
        removed.extend(resp.removed_resource_names.into_iter().map(|n| n.name));
        let got = Intercepted {
            node_id: node_id.to_string(),
            type_url: resp.type_url,
            version_info: resp.system_version_info,
            resources: resp.resources,
            removed_resources: removed,
            delta: true,
        };
        (got, ack)
    }
    fn reject(ack: &mut DeltaDiscoveryRequest, detail: RpcStatus) {
        ack.error_detail = Some(detail);
    }
    fn open(
        mut client: AggregatedDiscoveryServiceClient<Channel>,
        request: Request<ReceiverStream<DeltaDiscoveryRequest>>,
    ) -> BoxFuture<Result<Response<Streaming<DeltaDiscoveryResponse>>, Status>> {
        Box::pin(async move { client.delta_aggregated_resources(request).await })
    }
}

/// How a proxied stream ended.
enum End {
    /// Envoy closed its side, reset the stream or went away.
    Envoy(Option<Status>),
    /// weftd ended the stream (`None`: with OK) or could not be reached.
    Upstream(Option<Status>),
    Shutdown,
}

struct ProxyStream<F: Flavor> {
    id: u64,
    node: String,
    upstream: Upstream,
    hooks: Arc<ProxyHooks>,
    stop: watch::Receiver<bool>,
    down: mpsc::Sender<Result<F::Resp, Status>>,
    lds_seen: bool,
}

/// Resolves when the agent stops (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The next upstream response, or never while the upstream stream is not open yet.
async fn next_response<T: prost::Message + Default + 'static>(
    s: &mut Option<Streaming<T>>,
) -> Result<Option<T>, Status> {
    match s {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

/// Adds the upstream headers as request metadata (keys lower-cased). Values are never logged.
fn add_headers(md: &mut MetadataMap, headers: Vec<(String, String)>) {
    for (k, v) in headers {
        let key = k.to_ascii_lowercase();
        match (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(v.as_str()),
        ) {
            (Ok(k), Ok(v)) => {
                md.insert(k, v);
            }
            _ => tracing::warn!(header = %key, "invalid upstream header skipped"),
        }
    }
}

impl<F: Flavor> ProxyStream<F> {
    async fn run(mut self, mut inbound: Streaming<F::Req>) {
        // The first request names the node; wait for it before connecting upstream.
        let first = tokio::select! {
            m = inbound.message() => m,
            _ = self.down.closed() => return,
            _ = stopped(&mut self.stop) => return,
        };
        let first = match first {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(s) => {
                tracing::debug!(stream = self.id, status = %s, "xDS stream failed before its first request");
                return;
            }
        };
        self.node = F::node_id(&first).unwrap_or_default().to_string();
        tracing::info!(stream = self.id, node = %self.node, kind = F::KIND, "xDS stream opened");
        let end = self.proxy(first, inbound).await;
        let to_envoy = match end {
            End::Envoy(None) => {
                tracing::info!(stream = self.id, node = %self.node, "xDS stream closed by Envoy");
                None
            }
            End::Envoy(Some(s)) => {
                tracing::info!(stream = self.id, node = %self.node, code = ?s.code(), message = s.message(), "xDS stream closed by Envoy");
                None
            }
            End::Upstream(None) => {
                tracing::info!(stream = self.id, node = %self.node, "xDS stream closed by upstream");
                None
            }
            End::Upstream(Some(s)) => {
                tracing::info!(stream = self.id, node = %self.node, code = ?s.code(), message = s.message(), "xDS stream closed by upstream");
                Some(s)
            }
            End::Shutdown => {
                tracing::info!(stream = self.id, node = %self.node, "xDS stream closed: agent stopping");
                Some(Status::unavailable("agent is shutting down"))
            }
        };
        if let Some(s) = to_envoy {
            let _ = self.down.send(Err(s)).await;
        }
        // Dropping `down` ends Envoy's stream (with OK if no status was sent).
    }

    async fn proxy(&mut self, first: F::Req, mut inbound: Streaming<F::Req>) -> End {
        let connected = tokio::select! {
            c = (self.upstream.connect)() => c,
            _ = self.down.closed() => return End::Envoy(None),
            _ = stopped(&mut self.stop) => return End::Shutdown,
        };
        let channel = match connected {
            Ok(c) => c,
            Err(e) => {
                return End::Upstream(Some(Status::unavailable(format!(
                    "xDS upstream unavailable: {e}"
                ))));
            }
        };
        let (up, up_rx) = mpsc::channel::<F::Req>(32);
        let mut request = Request::new(ReceiverStream::new(up_rx));
        add_headers(request.metadata_mut(), (self.upstream.headers)());
        let client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        // Opening resolves when weftd answers with headers; requests flow meanwhile.
        let mut opening = F::open(client, request);
        let mut responses: Option<Streaming<F::Resp>> = None;
        // Set when the upstream request stream is gone: its status comes from the response side.
        let mut upstream_gone = !self.forward(&up, first).await;
        loop {
            tokio::select! {
                r = &mut opening, if responses.is_none() => match r {
                    Ok(resp) => responses = Some(resp.into_inner()),
                    Err(s) => return End::Upstream(Some(s)),
                },
                m = inbound.message(), if !upstream_gone => match m {
                    Ok(Some(req)) => upstream_gone = !self.forward(&up, req).await,
                    Ok(None) => return End::Envoy(None),
                    Err(s) => return End::Envoy(Some(s)),
                },
                r = next_response(&mut responses) => match r {
                    Ok(Some(resp)) => {
                        let t = F::response_type_url(&resp);
                        if self.hooks.intercept_type_urls.iter().any(|i| i == t) {
                            if !self.intercept(&up, resp).await {
                                upstream_gone = true;
                            }
                        } else if self.down.send(Ok(resp)).await.is_err() {
                            return End::Envoy(None);
                        }
                    }
                    Ok(None) => return End::Upstream(None),
                    Err(s) => return End::Upstream(Some(s)),
                },
                _ = self.down.closed() => return End::Envoy(None),
                _ = stopped(&mut self.stop) => return End::Shutdown,
            }
        }
    }

    /// Sends an Envoy request upstream (plus the proxy's own subscriptions after the first LDS
    /// request). Returns false when the upstream request stream is gone.
    async fn forward(&mut self, up: &mpsc::Sender<F::Req>, req: F::Req) -> bool {
        let is_lds = F::request_type_url(&req) == type_url::LISTENER;
        if up.send(req).await.is_err() {
            return false;
        }
        if is_lds && !self.lds_seen {
            self.lds_seen = true;
            for t in &self.hooks.request_after_first_lds {
                tracing::debug!(stream = self.id, type_url = %t, "agent subscribes upstream");
                if up.send(F::subscribe(t)).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    /// Delivers an intercepted response to the agent and ACKs it upstream (NACKs it when its
    /// handler rejects it). Returns false when the upstream request stream is gone.
    async fn intercept(&self, up: &mpsc::Sender<F::Req>, resp: F::Resp) -> bool {
        let (got, mut ack) = F::consume(resp, &self.node);
        if let Some(handler) = self.hooks.handlers.get(&got.type_url)
            && let Err(message) = (handler.0)(&got)
        {
            tracing::warn!(stream = self.id, type_url = %got.type_url, version = %got.version_info, "rejected (NACK): {message}");
            // Istio's agent: codes.Internal.
            F::reject(
                &mut ack,
                RpcStatus {
                    code: 13,
                    message,
                    details: Vec::new(),
                },
            );
        }
        tracing::debug!(
            stream = self.id,
            type_url = %got.type_url,
            version = %got.version_info,
            resources = got.resources.len(),
            "intercepted upstream response"
        );
        if let Some(tx) = &self.hooks.intercepted
            && tx.send(got).await.is_err()
        {
            tracing::debug!(
                stream = self.id,
                "intercepted response dropped: nobody listens"
            );
        }
        up.send(ack).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sds::testutil::{temp_dir, uds_channel};
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio_stream::wrappers::TcpListenerStream;
    use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
    use weft_proto::envoy_types::pb::google::protobuf::Any;

    /// What the fake weftd saw.
    #[derive(Debug)]
    enum Seen {
        Sotw(DiscoveryRequest),
        Delta(DeltaDiscoveryRequest),
        /// A request stream ended (the proxy closed it).
        Ended,
    }

    /// A fake weftd: records metadata and requests, answers each request that is not an ACK with
    /// one response; type URL `fail` ends the stream with `internal: boom`.
    #[derive(Clone)]
    struct FakeAds {
        metadata: Arc<Mutex<Vec<MetadataMap>>>,
        seen: mpsc::UnboundedSender<Seen>,
    }

    fn fake_any(t: &str) -> Any {
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
                    if !req.response_nonce.is_empty() {
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
                    if !req.response_nonce.is_empty() {
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

    struct Fixture {
        dir: PathBuf,
        socket: PathBuf,
        metadata: Arc<Mutex<Vec<MetadataMap>>>,
        seen: mpsc::UnboundedReceiver<Seen>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        proxy: tokio::task::JoinHandle<Result<(), String>>,
        client: AggregatedDiscoveryServiceClient<Channel>,
    }

    fn upstream_to(addr: SocketAddr) -> Upstream {
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

    type FakeHandles = (
        SocketAddr,
        Arc<Mutex<Vec<MetadataMap>>>,
        mpsc::UnboundedReceiver<Seen>,
    );

    async fn start_fake() -> FakeHandles {
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
    async fn start_relay(
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
        async fn start(hooks: ProxyHooks) -> Self {
            let (addr, metadata, seen) = start_fake().await;
            Self::start_with(upstream_to(addr), hooks, metadata, seen).await
        }

        async fn start_with(
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

        async fn seen(&mut self) -> Seen {
            tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
                .await
                .expect("upstream saw something in time")
                .unwrap()
        }

        async fn stop(mut self) {
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

    fn node(id: &str) -> Option<Node> {
        Some(Node {
            id: id.to_string(),
            ..Default::default()
        })
    }

    fn sotw(t: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: t.to_string(),
            ..Default::default()
        }
    }

    fn delta(t: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: t.to_string(),
            ..Default::default()
        }
    }

    async fn next<T: prost::Message + Default + 'static>(s: &mut Streaming<T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open")
    }

    async fn nothing<T: prost::Message + Default + std::fmt::Debug + 'static>(
        s: &mut Streaming<T>,
    ) {
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(300), s.message()).await {
            panic!("expected no message, got {m:?}");
        }
    }

    async fn failure<T: prost::Message + Default + std::fmt::Debug + 'static>(
        s: &mut Streaming<T>,
    ) -> Status {
        match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
            Ok(Err(status)) => status,
            other => panic!("expected the stream to fail, got {other:?}"),
        }
    }

    const NODE: &str = "sidecar~10.0.0.1~vm.ns~ns.svc.cluster.local";

    /// Opens a SotW stream through the proxy whose first request (with the node) asks for CDS.
    async fn open_cds_stream(
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

    #[tokio::test]
    async fn proxies_sotw_and_delta_with_upstream_headers() {
        let mut f = Fixture::start(ProxyHooks::default()).await;

        // SotW.
        let (tx, mut s) = open_cds_stream(&mut f).await;
        let r1 = next(&mut s).await;
        assert_eq!(r1.type_url, type_url::CLUSTER);
        assert_eq!(r1.resources, vec![fake_any(type_url::CLUSTER)]);
        match f.seen().await {
            Seen::Sotw(r) => assert_eq!(r.node.unwrap().id, NODE, "forwarded unchanged"),
            other => panic!("unexpected {other:?}"),
        }
        // An ACK is forwarded, and answered by nothing.
        tx.send(DiscoveryRequest {
            version_info: r1.version_info.clone(),
            response_nonce: r1.nonce.clone(),
            ..sotw(type_url::CLUSTER)
        })
        .await
        .unwrap();
        match f.seen().await {
            Seen::Sotw(r) => assert_eq!(r.response_nonce, r1.nonce),
            other => panic!("unexpected {other:?}"),
        }
        nothing(&mut s).await;
        tx.send(sotw(type_url::LISTENER)).await.unwrap();
        assert_eq!(next(&mut s).await.type_url, type_url::LISTENER);
        assert!(matches!(f.seen().await, Seen::Sotw(_)));

        // Envoy closing its stream closes the upstream one.
        drop(tx);
        assert!(
            tokio::time::timeout(Duration::from_secs(10), s.message())
                .await
                .unwrap()
                .unwrap()
                .is_none()
        );
        assert!(matches!(f.seen().await, Seen::Ended));

        // Delta.
        let (tx, rx) = mpsc::channel(8);
        tx.send(DeltaDiscoveryRequest {
            node: node(NODE),
            resource_names_subscribe: vec!["a".into()],
            ..delta(type_url::ENDPOINT)
        })
        .await
        .unwrap();
        let mut d = f
            .client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let r = next(&mut d).await;
        assert_eq!(r.type_url, type_url::ENDPOINT);
        assert_eq!(r.resources[0].name, "r1");
        match f.seen().await {
            Seen::Delta(r) => assert_eq!(r.resource_names_subscribe, ["a"]),
            other => panic!("unexpected {other:?}"),
        }

        {
            let md = f.metadata.lock().unwrap();
            assert_eq!(md.len(), 2, "one upstream stream per Envoy stream");
            for m in md.iter() {
                assert_eq!(m.get("authorization").unwrap(), "Bearer test-token");
                assert_eq!(m.get("clusterid").unwrap(), "Kubernetes");
            }
        }
        drop(tx);
        f.stop().await;
    }

    #[tokio::test]
    async fn intercepted_types_go_to_the_agent_and_are_acked_upstream() {
        let (got_tx, mut got) = mpsc::channel(8);
        let hooks = ProxyHooks {
            intercept_type_urls: vec![type_url::NAME_TABLE.to_string()],
            intercepted: Some(got_tx),
            request_after_first_lds: vec![type_url::NAME_TABLE.to_string()],
            ..Default::default()
        };
        let mut f = Fixture::start(hooks).await;

        // SotW: Envoy's first LDS request makes the proxy ask for NDS itself.
        let (tx, rx) = mpsc::channel(8);
        tx.send(DiscoveryRequest {
            node: node(NODE),
            ..sotw(type_url::LISTENER)
        })
        .await
        .unwrap();
        let mut s = f
            .client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut s).await.type_url, type_url::LISTENER);
        let i = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(i.type_url, type_url::NAME_TABLE);
        assert_eq!(i.node_id, NODE);
        assert!(!i.delta);
        assert_eq!(
            i.resources[0].resource,
            Some(fake_any(type_url::NAME_TABLE))
        );
        let mut requests = Vec::new();
        for _ in 0..3 {
            match f.seen().await {
                Seen::Sotw(r) => requests.push(r),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(requests[0].type_url, type_url::LISTENER);
        assert_eq!(requests[1].type_url, type_url::NAME_TABLE);
        assert!(requests[1].response_nonce.is_empty());
        // The ACK carries the NDS response's version and nonce (response 2 of the stream).
        assert_eq!(requests[2].type_url, type_url::NAME_TABLE);
        assert_eq!(requests[2].version_info, i.version_info);
        assert_eq!(requests[2].response_nonce, "nonce-2");
        assert!(requests[2].error_detail.is_none());
        // A second LDS request does not subscribe again; NDS never reaches Envoy.
        tx.send(sotw(type_url::LISTENER)).await.unwrap();
        assert_eq!(next(&mut s).await.type_url, type_url::LISTENER);
        nothing(&mut s).await;
        assert!(got.try_recv().is_err());

        // Delta.
        let (dtx, drx) = mpsc::channel(8);
        dtx.send(DeltaDiscoveryRequest {
            node: node(NODE),
            ..delta(type_url::LISTENER)
        })
        .await
        .unwrap();
        let mut d = f
            .client
            .delta_aggregated_resources(ReceiverStream::new(drx))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut d).await.type_url, type_url::LISTENER);
        let i = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(i.type_url, type_url::NAME_TABLE);
        assert!(i.delta);
        assert_eq!(i.resources[0].name, "r2");
        assert_eq!(i.removed_resources, ["gone"]);
        nothing(&mut d).await;
        let mut acked = false;
        while let Ok(Some(seen)) =
            tokio::time::timeout(Duration::from_secs(10), f.seen.recv()).await
        {
            if let Seen::Delta(r) = seen
                && r.type_url == type_url::NAME_TABLE
                && r.response_nonce == "nonce-2"
            {
                acked = true;
                break;
            }
        }
        assert!(acked, "the proxy ACKed the delta NDS response upstream");
        drop((tx, dtx));
        f.stop().await;
    }

    #[tokio::test]
    async fn upstream_failure_ends_envoy_stream_with_its_status() {
        let mut f = Fixture::start(ProxyHooks::default()).await;
        let (tx, mut s) = open_cds_stream(&mut f).await;
        next(&mut s).await;
        tx.send(sotw("fail")).await.unwrap();
        let st = failure(&mut s).await;
        assert_eq!(st.code(), tonic::Code::Internal);
        assert_eq!(st.message(), "boom");

        // Same for delta.
        let (dtx, drx) = mpsc::channel(8);
        dtx.send(delta("fail")).await.unwrap();
        let mut d = f
            .client
            .delta_aggregated_resources(ReceiverStream::new(drx))
            .await
            .unwrap()
            .into_inner();
        let st = failure(&mut d).await;
        assert_eq!(st.code(), tonic::Code::Internal);
        drop((tx, dtx));
        f.stop().await;
    }

    #[tokio::test]
    async fn unreachable_upstream_is_unavailable() {
        // A port nothing listens on.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (_seen_tx, seen) = mpsc::unbounded_channel();
        let mut f = Fixture::start_with(
            upstream_to(addr),
            ProxyHooks::default(),
            Arc::new(Mutex::new(Vec::new())),
            seen,
        )
        .await;
        let (tx, mut s) = open_cds_stream(&mut f).await;
        let st = failure(&mut s).await;
        assert_eq!(st.code(), tonic::Code::Unavailable);
        assert!(st.message().contains(&addr.to_string()), "{}", st.message());
        drop(tx);
        f.stop().await;
    }

    #[tokio::test]
    async fn shutdown_ends_open_streams() {
        let mut f = Fixture::start(ProxyHooks::default()).await;
        let (tx, mut s) = open_cds_stream(&mut f).await;
        next(&mut s).await;
        f.stop().await;
        let st = failure(&mut s).await;
        assert_eq!(st.code(), tonic::Code::Unavailable);
        drop(tx);
    }

    #[tokio::test]
    async fn upstream_connection_drop_ends_envoy_stream_with_error() {
        let (fake, metadata, seen) = start_fake().await;
        let (relay, conns) = start_relay(fake).await;
        let mut f =
            Fixture::start_with(upstream_to(relay), ProxyHooks::default(), metadata, seen).await;
        let (tx, mut s) = open_cds_stream(&mut f).await;
        next(&mut s).await;
        for c in conns.lock().unwrap().drain(..) {
            c.abort();
        }
        let st = failure(&mut s).await;
        assert_ne!(st.code(), tonic::Code::Ok);

        // Envoy reconnects: a new stream gets a new upstream connection.
        let (tx2, rx2) = mpsc::channel(8);
        tx2.send(DiscoveryRequest {
            node: node(NODE),
            ..sotw(type_url::LISTENER)
        })
        .await
        .unwrap();
        let mut s2 = f
            .client
            .stream_aggregated_resources(ReceiverStream::new(rx2))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut s2).await.type_url, type_url::LISTENER);
        drop((tx, tx2));
        f.stop().await;
    }
}
