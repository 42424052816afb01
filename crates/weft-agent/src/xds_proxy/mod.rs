//! The xDS proxy between Envoy and weftd (pilot-agent's `xds_proxy.go`).
//!
//! Envoy talks ADS to the agent over a Unix socket; each Envoy stream (SotW or delta) becomes one
//! upstream stream to weftd, opened with a fresh channel from [`Upstream::connect`] and carrying
//! [`Upstream::headers`] (token, cluster id) as request metadata. Requests and responses are
//! forwarded unchanged. When either side ends, the other is ended with the same status; Envoy then
//! reconnects and gets a new upstream stream.
//!
//! [`ProxyHooks`] lets the agent take some types for itself (NDS): their responses go to a channel
//! instead of Envoy and the proxy ACKs them upstream. It also carries the application's health,
//! which the proxy reports on every upstream stream as Istio's agent does: an
//! `istio.v1.HealthInformation` request (a `DiscoveryRequest` on a SotW stream, a
//! `DeltaDiscoveryRequest` on a delta one; no `error_detail` when healthy, `error_detail {code: 13,
//! message}` when not), first right after Envoy's first LDS request of the stream, then on each
//! change. A new upstream stream (Envoy reconnecting) gets the current state again.

use crate::probe::ProbeState;
use crate::upstream::Upstream;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use weft_proto::type_url;

#[cfg(test)]
mod fake_upstream;
mod flavor;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod tests;

use flavor::{Delta, Flavor, Sotw};

/// Largest xDS message accepted either way (Istio allows up to `i32::MAX`; a large mesh's CDS
/// easily exceeds tonic's 4 MiB default).
const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// What the agent adds to the streams it proxies: responses it consumes instead of Envoy, its own
/// subscriptions, and health reports.
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
    /// The application's health to report upstream (the readiness prober's channel): `None` for
    /// no reports; a `None` state (no verdict yet) is not reported.
    pub health: Option<watch::Receiver<Option<ProbeState>>>,
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
            health: self.hooks.health.clone(),
            health_sent: None,
        };
        tokio::spawn(stream.run(inbound));
        ReceiverStream::new(rx)
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
    /// This stream's view of the health channel (dropped when the prober is gone).
    health: Option<watch::Receiver<Option<ProbeState>>>,
    /// The health state last reported on this stream's upstream.
    health_sent: Option<ProbeState>,
}

/// Resolves when the agent stops (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves when the health state changes (true) or the prober is gone (false); never without one.
async fn health_changed(health: &mut Option<watch::Receiver<Option<ProbeState>>>) -> bool {
    match health {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
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
                changed = health_changed(&mut self.health), if self.lds_seen && !upstream_gone => {
                    if !changed {
                        self.health = None;
                    } else if !self.report_health(&up).await {
                        upstream_gone = true;
                    }
                }
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
            // Health is reported only once the stream carries Envoy's listeners request.
            return self.report_health(up).await;
        }
        true
    }

    /// Sends the current health state upstream unless it is unknown or what this stream last
    /// sent. Returns false when the upstream request stream is gone.
    async fn report_health(&mut self, up: &mpsc::Sender<F::Req>) -> bool {
        let Some(rx) = self.health.as_mut() else {
            return true;
        };
        let Some(state) = rx.borrow_and_update().clone() else {
            return true;
        };
        if self.health_sent.as_ref() == Some(&state) {
            return true;
        }
        match &state.message {
            None => tracing::info!(stream = self.id, "health reported upstream: healthy"),
            Some(m) => {
                tracing::info!(stream = self.id, error = %m, "health reported upstream: unhealthy")
            }
        }
        if up.send(F::health(&state)).await.is_err() {
            return false;
        }
        self.health_sent = Some(state);
        true
    }

    /// Delivers an intercepted response to the agent and ACKs it upstream. Returns false when the
    /// upstream request stream is gone.
    async fn intercept(&self, up: &mpsc::Sender<F::Req>, resp: F::Resp) -> bool {
        let (got, mut ack) = F::consume(resp, &self.node);
        if let Some(handler) = self.hooks.handlers.get(&got.type_url)
            && let Err(message) = (handler.0)(&got)
        {
            tracing::warn!(stream = self.id, type_url = %got.type_url, version = %got.version_info, "rejected (NACK): {message}");
            // Istio's agent: codes.Internal.
            F::reject(
                &mut ack,
                weft_proto::envoy_types::pb::google::rpc::Status {
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
