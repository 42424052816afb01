//! The xDS server: ADS over gRPC in both state-of-the-world and delta forms, with each
//! connection authenticated (certificate or token) and authorised against the node it claims.
//! `fast` serves delta ADS (framing in `wire`), tonic serves SotW; both run `stream`, whose
//! per-type state and diffs are `watch` (with `names`); full syncs are admitted by `admission`.

mod admission;
pub mod fast;
mod names;
pub mod node;
pub mod push;
mod stream;
#[cfg(test)]
mod test_client;
#[cfg(test)]
mod test_mesh;
mod watch;
mod wire;

use crate::authn::{Authenticator, Caller};
use crate::autoreg::Controller;
use crate::conn::PeerInfo;
use crate::metrics::Metrics;
use node::Proxy;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::pin::Pin;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

/// Per-type sync state of one connection, for `/debug/syncz` and `proxy-status`.
#[derive(Clone, Debug, Default)]
pub struct TypeStatus {
    pub sent_nonce: String,
    pub sent_version: String,
    pub acked_nonce: String,
    pub nack: Option<String>,
}

impl TypeStatus {
    pub fn state(&self) -> &'static str {
        if self.nack.is_some() {
            "NACK"
        } else if self.sent_nonce.is_empty() {
            "NOT SENT"
        } else if self.acked_nonce == self.sent_nonce {
            "SYNCED"
        } else {
            "STALE"
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnStatus {
    pub proxy: Proxy,
    /// Remote address of the connection.
    pub peer: String,
    pub identity: String,
    pub delta: bool,
    pub connected_at: SystemTime,
    pub types: BTreeMap<String, TypeStatus>,
}

/// Shared state of the xDS server.
pub struct XdsState {
    pub authn: Authenticator,
    /// Auto-registration and health of the proxies' WorkloadEntries.
    pub workloads: Arc<Controller>,
    pub metrics: Arc<Metrics>,
    pushes: tokio::sync::watch::Receiver<Arc<push::PushState>>,
    conns: Mutex<BTreeMap<u64, ConnStatus>>,
    next_id: AtomicU64,
    admission: admission::Admission,
}

impl XdsState {
    pub fn new(
        authn: Authenticator,
        workloads: Arc<Controller>,
        metrics: Arc<Metrics>,
        pushes: tokio::sync::watch::Receiver<Arc<push::PushState>>,
    ) -> Self {
        XdsState {
            authn,
            workloads,
            metrics,
            pushes,
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            admission: admission::Admission::new(admission::MAX_FULL_SYNCS),
        }
    }

    /// The push states, starting with the current one.
    pub fn pushes(&self) -> tokio::sync::watch::Receiver<Arc<push::PushState>> {
        self.pushes.clone()
    }

    fn register(&self, status: ConnStatus) -> u64 {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, status);
        self.metrics.xds_connections.fetch_add(1, Relaxed);
        id
    }

    fn unregister(&self, id: u64) {
        if self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .is_some()
        {
            self.metrics.xds_connections.fetch_sub(1, Relaxed);
        }
    }

    fn update(&self, id: u64, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        if let Some(c) = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
        {
            f(c.types.entry(type_url.to_string()).or_default());
        }
    }

    /// The proxy of a connected stream (`name.namespace`), as its node described it.
    pub fn proxy(&self, key: &str) -> Option<Proxy> {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|c| node::key(&c.proxy) == key)
            .map(|c| c.proxy.clone())
    }

    /// Snapshot for `/debug/syncz`, optionally for one proxy (`name.namespace`).
    pub fn syncz(&self, proxy: Option<&str>) -> Value {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list: Vec<Value> = conns
            .iter()
            .filter(|(_, c)| proxy.is_none_or(|p| node::key(&c.proxy) == p))
            .map(|(id, c)| {
                let types: serde_json::Map<String, Value> = c
                    .types
                    .iter()
                    .map(|(t, s)| {
                        let short = t.rsplit('.').next().unwrap_or(t).to_string();
                        (
                            short,
                            json!({"state": s.state(), "sentNonce": s.sent_nonce, "version": s.sent_version,
                                   "ackedNonce": s.acked_nonce, "nack": s.nack}),
                        )
                    })
                    .collect();
                json!({
                    "connectionId": id,
                    "proxy": node::key(&c.proxy),
                    "nodeId": c.proxy.id,
                    "identity": c.identity,
                    "peer": c.peer,
                    "ip": c.proxy.ip,
                    "version": c.proxy.metadata.get("ISTIO_VERSION"),
                    "cluster": c.proxy.metadata.get("CLUSTER_ID"),
                    "delta": c.delta,
                    "connectedAt": c.connected_at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs(),
                    "types": types,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Authenticates the stream's caller. Plaintext connections without credentials are allowed
    /// (15010 is loopback/dev only, as in Istio); anything presented must be valid.
    fn authenticate<T>(&self, req: &Request<T>) -> Result<Option<Caller>, Status> {
        let plaintext = req.extensions().get::<PeerInfo>().is_some_and(|p| !p.tls);
        let has_credentials = req.metadata().get("authorization").is_some()
            || req
                .extensions()
                .get::<PeerInfo>()
                .is_some_and(|p| p.certs.is_some());
        if plaintext && !has_credentials {
            return Ok(None);
        }
        self.authn.authenticate(req).map(Some)
    }

    fn peer<T>(req: &Request<T>) -> String {
        req.extensions()
            .get::<PeerInfo>()
            .and_then(|p| p.remote)
            .map(|a| a.to_string())
            .unwrap_or_default()
    }
}

/// The node must belong to the caller: same namespace, and same service account when it names one.
pub fn authorize(caller: Option<&Caller>, proxy: &Proxy) -> Result<(), Status> {
    let Some(caller) = caller else { return Ok(()) };
    let id = &caller.identity;
    let sa_ok = proxy.service_account.is_empty() || proxy.service_account == id.service_account;
    if id.namespace == proxy.namespace && sa_ok {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "authorization failed: node {:?} claims namespace {:?} and service account {:?}, but the caller is {}",
        proxy.id, proxy.namespace, proxy.service_account, id
    )))
}

/// A response stream for tonic.
type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The tonic service. Mounted behind [`fast::AdsService`], which serves delta streams itself;
/// its delta method serves the same streams through tonic's codec.
#[derive(Clone)]
pub struct Ads {
    pub state: Arc<XdsState>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let caller = self.state.authenticate(&request)?;
        let peer = XdsState::peer(&request);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(stream::run::<stream::Sotw>(
            self.state.clone(),
            caller,
            peer,
            request.into_inner(),
            tx,
        ));
        let out = ReceiverStream::new(rx).map(|r| r.map(|b| *b).map_err(|s| *s));
        Ok(Response::new(Box::pin(out)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let caller = self.state.authenticate(&request)?;
        let peer = XdsState::peer(&request);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(stream::run::<stream::Delta>(
            self.state.clone(),
            caller,
            peer,
            request.into_inner(),
            tx,
        ));
        let out = ReceiverStream::new(rx).map(|r| r.map(|o| o.to_message()).map_err(|s| *s));
        Ok(Response::new(Box::pin(out)))
    }
}
