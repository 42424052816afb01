//! One ADS stream, of either flavor. Three entry points: [`Conn::open`] (the first request names
//! the node, authorised against the caller), [`Conn::dispatch`] (every request, by type URL) and
//! [`Conn::close`] (however the stream ends). In between, each new push state makes the stream send
//! what changed for the types Envoy watches, clusters before endpoints before listeners before
//! routes (make before break). What "changed" means is [`Watch`]'s business.

use super::admission::FullSync;
use super::node::Proxy;
use super::push::PushState;
use super::watch::{Diff, Watch};
use super::wire::DeltaOut;
use super::{ConnStatus, XdsState, authorize};
use crate::authn::Caller;
use crate::autoreg::{Lease, locality_string};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use weft_proto::type_url;

/// Types whose empty subscription means "everything" (wildcard).
fn is_wildcard_type(url: &str) -> bool {
    url == type_url::LISTENER || url == type_url::CLUSTER || url == type_url::NAME_TABLE
}

/// Push order: clusters, endpoints, listeners, routes, then anything else.
fn push_rank(url: &str) -> u8 {
    match url {
        type_url::CLUSTER => 0,
        type_url::ENDPOINT => 1,
        type_url::LISTENER => 2,
        type_url::ROUTE => 3,
        _ => 4,
    }
}

/// The protocol-specific half of a stream.
pub trait Flavor {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const DELTA: bool;
    fn node(req: &Self::Request) -> Option<&Node>;
    fn type_url(req: &Self::Request) -> &str;
    fn response_nonce(req: &Self::Request) -> &str;
    fn error(req: &Self::Request) -> Option<&str>;
    /// Applies the request's subscription to `w`; returns `Some(force)` when an answer is due.
    fn subscribe(w: &mut Watch, req: &mut Self::Request, url: &str, first: bool) -> Option<bool>;
    /// The response for `diff` (delta) or for everything `w` now holds (SotW).
    fn response(w: &Watch, diff: Diff, url: &str, nonce: &str, push_version: u64)
    -> Self::Response;
}

pub struct Sotw;
pub struct Delta;

impl Flavor for Sotw {
    type Request = DiscoveryRequest;
    type Response = Box<DiscoveryResponse>;
    const DELTA: bool = false;
    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn type_url(req: &DiscoveryRequest) -> &str {
        &req.type_url
    }
    fn response_nonce(req: &DiscoveryRequest) -> &str {
        &req.response_nonce
    }
    fn error(req: &DiscoveryRequest) -> Option<&str> {
        req.error_detail.as_ref().map(|e| e.message.as_str())
    }
    fn subscribe(
        w: &mut Watch,
        req: &mut DiscoveryRequest,
        url: &str,
        first: bool,
    ) -> Option<bool> {
        let names_changed = w.set_names(&req.resource_names);
        w.wildcard = is_wildcard_type(url) && req.resource_names.is_empty();
        // A first request, or a change of subscribed names, needs an answer even if nothing changed.
        (first || names_changed).then_some(true)
    }
    fn response(
        w: &Watch,
        _: Diff,
        url: &str,
        nonce: &str,
        push_version: u64,
    ) -> Box<DiscoveryResponse> {
        Box::new(DiscoveryResponse {
            version_info: push_version.to_string(),
            resources: w.current().iter().map(|r| r.resource.clone()).collect(),
            type_url: url.to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        })
    }
}

impl Flavor for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = Box<DeltaOut>;
    const DELTA: bool = true;
    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn type_url(req: &DeltaDiscoveryRequest) -> &str {
        &req.type_url
    }
    fn response_nonce(req: &DeltaDiscoveryRequest) -> &str {
        &req.response_nonce
    }
    fn error(req: &DeltaDiscoveryRequest) -> Option<&str> {
        req.error_detail.as_ref().map(|e| e.message.as_str())
    }
    fn subscribe(
        w: &mut Watch,
        req: &mut DeltaDiscoveryRequest,
        url: &str,
        first: bool,
    ) -> Option<bool> {
        if first {
            w.wildcard = req.resource_names_subscribe.is_empty() && is_wildcard_type(url);
            // After a reconnect Envoy tells us what it already has: send only differences.
            if !req.initial_resource_versions.is_empty() {
                w.declare(std::mem::take(&mut req.initial_resource_versions));
            }
        }
        let changed = first
            || !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty();
        for n in &req.resource_names_subscribe {
            w.subscribe(n);
        }
        for n in &req.resource_names_unsubscribe {
            w.unsubscribe(n);
        }
        changed.then_some(first)
    }
    fn response(_: &Watch, diff: Diff, url: &str, nonce: &str, push_version: u64) -> Box<DeltaOut> {
        Box::new(DeltaOut {
            system_version_info: push_version.to_string(),
            updates: diff.updates,
            type_url: url.to_string(),
            nonce: nonce.to_string(),
            removed: diff.removed,
        })
    }
}

/// Stream state shared by both flavors.
pub struct Conn<F: Flavor> {
    state: Arc<XdsState>,
    proxy: Proxy,
    /// The connection's id in the registry (`/debug/syncz`).
    id: u64,
    watches: BTreeMap<String, Watch>,
    nonces: u64,
    push: Arc<PushState>,
    tx: Sender<Result<F::Response, Box<Status>>>,
    /// Admission of this stream's full responses (see `admission`).
    full_sync: Option<FullSync>,
    /// Whether the stream was admitted before (it then goes first).
    admitted: bool,
    /// The proxy's WorkloadEntry (auto-registered or named by `WORKLOAD_ENTRY`), while connected;
    /// dropped with the stream, which reports the disconnect.
    workload: Option<Lease>,
}

impl<F: Flavor> Conn<F> {
    /// Stream open: the first request's node, authorised against the caller, is registered.
    async fn open(
        state: &Arc<XdsState>,
        caller: &Option<Caller>,
        peer: &str,
        node: Option<&Node>,
        push: Arc<PushState>,
        tx: Sender<Result<F::Response, Box<Status>>>,
    ) -> Result<Self, Status> {
        let node =
            node.ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
        let proxy = super::node::from_node(node).map_err(Status::invalid_argument)?;
        authorize(caller.as_ref(), &proxy)?;
        let locality = node
            .locality
            .as_ref()
            .map(|l| locality_string(&l.region, &l.zone, &l.sub_zone))
            .unwrap_or_default();
        let workload = state
            .workloads
            .connected(&proxy, locality, caller.as_ref())
            .await?;
        let identity = caller
            .as_ref()
            .map(|c| c.identity.to_string())
            .unwrap_or_else(|| "anonymous (plaintext)".into());
        let delta = F::DELTA;
        tracing::info!(proxy = %proxy.id, %identity, %peer, delta, "xDS stream opened");
        let id = state.register(ConnStatus {
            proxy: proxy.clone(),
            peer: peer.to_string(),
            identity,
            delta,
            connected_at: SystemTime::now(),
            types: BTreeMap::new(),
        });
        Ok(Conn {
            state: state.clone(),
            proxy,
            id,
            watches: BTreeMap::new(),
            nonces: 0,
            push,
            tx,
            full_sync: None,
            admitted: false,
            workload,
        })
    }

    /// Stream close, however it ends (called once, from `Drop`).
    fn close(&mut self) {
        self.state.unregister(self.id);
        tracing::info!(proxy = %self.proxy.id, "xDS stream closed");
    }

    /// Every request of the open stream (the first one included), by type URL. Requests that
    /// are not subscriptions are to be routed here; all others are subscriptions (an unknown type
    /// gets an empty answer). Returns false when the stream must end.
    async fn dispatch(&mut self, req: F::Request) -> bool {
        let url = F::type_url(&req).to_string();
        if url == type_url::HEALTH_INFO {
            self.health(F::error(&req));
            return true;
        }
        self.on_subscription(&url, req).await
    }

    /// A `HealthInformation` report: not a subscription, never answered.
    fn health(&self, error: Option<&str>) {
        match &self.workload {
            Some(lease) => self
                .state
                .workloads
                .report_health(lease, error.map(str::to_string)),
            None => tracing::debug!(
                proxy = %self.proxy.id,
                "health report from a proxy without a WorkloadEntry (no AUTO_REGISTER_GROUP or WORKLOAD_ENTRY): ignored"
            ),
        }
    }

    /// A discovery request: ACK/NACK of our latest response, and (un)subscriptions.
    async fn on_subscription(&mut self, url: &str, mut req: F::Request) -> bool {
        self.ack_or_nack(url, F::response_nonce(&req), F::error(&req));
        let first = !self.watches.contains_key(url);
        let w = self.watches.entry(url.to_string()).or_default();
        let answer = F::subscribe(w, &mut req, url, first);
        drop(req); // not kept while the answer waits (for admission, or for the client to read)
        match answer {
            Some(force) => self.send(url, force).await,
            None => true,
        }
    }

    fn ack_or_nack(&mut self, url: &str, nonce: &str, error: Option<&str>) {
        let Some(w) = self.watches.get_mut(url) else {
            return;
        };
        if nonce.is_empty() || nonce != w.nonce {
            return; // not an answer to our latest response
        }
        w.full_unanswered = false;
        match error {
            Some(message) => {
                self.state.metrics.xds_rejects.fetch_add(1, Relaxed);
                tracing::warn!(proxy = %self.proxy.id, type_url = %url, "NACK: {message}");
                w.nacked_push = Some(self.push.version);
                let m = message.to_string();
                self.state.update(self.id, url, |s| s.nack = Some(m));
            }
            None => {
                let n = nonce.to_string();
                self.state.update(self.id, url, |s| {
                    s.acked_nonce = n;
                    s.nack = None;
                });
            }
        }
        if self.full_sync.is_some() && !self.watches.values().any(|w| w.full_unanswered) {
            self.full_sync = None;
        }
    }

    /// Sends `url`'s changes (SotW: its whole current set) if there are any, or if `force`.
    async fn send(&mut self, url: &str, force: bool) -> bool {
        let push = self.push.clone();
        let Some(w) = self.watches.get_mut(url) else {
            return true;
        };
        if w.nacked_push == Some(push.version) && !force {
            return true;
        }
        let diff = w.update(&push.context, &self.proxy, url);
        if diff.is_empty() && !force {
            return true;
        }
        // Envoy warms an updated cluster until it gets its endpoints again, even unchanged ones:
        // they must be re-sent (the push order sends them right after the clusters).
        let rewarm: Vec<String> = if url == type_url::CLUSTER {
            diff.updates.iter().map(|r| r.name.clone()).collect()
        } else {
            Vec::new()
        };
        let full = w.responses == 0 && !diff.updates.is_empty();
        if full {
            self.admit().await;
        }
        let Some(w) = self.watches.get_mut(url) else {
            return true;
        };
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let resp = F::response(w, diff, url, &nonce, push.version);
        w.nonce = nonce.clone();
        w.responses += 1;
        w.full_unanswered = full;
        let version = push.version.to_string();
        self.state.update(self.id, url, |s| {
            s.sent_nonce = nonce;
            s.sent_version = version;
        });
        self.state.metrics.xds_pushes.fetch_add(1, Relaxed);
        if let Some(eds) = self.watches.get_mut(type_url::ENDPOINT) {
            eds.forget(&rewarm.iter().map(String::as_str).collect::<Vec<_>>());
        }
        self.tx.send(Ok(resp)).await.is_ok()
    }

    /// Takes (or keeps) this stream's full-sync permit.
    async fn admit(&mut self) {
        match &mut self.full_sync {
            Some(f) => f.extend(),
            None => {
                let continuing = self.admitted;
                self.full_sync = Some(self.state.admission.enter(continuing).await);
                self.admitted = true;
            }
        }
    }

    /// A new configuration: send every watched type what changed, in make-before-break order.
    async fn on_push(&mut self, push: Arc<PushState>) -> bool {
        self.push = push;
        let mut urls: Vec<String> = self.watches.keys().cloned().collect();
        urls.sort_by_key(|u| push_rank(u));
        for url in urls {
            if !self.send(&url, false).await {
                return false;
            }
        }
        true
    }

    fn full_sync_deadline(&self) -> Option<Instant> {
        self.full_sync.as_ref().map(|f| f.deadline)
    }
}

impl<F: Flavor> Drop for Conn<F> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The next push state; waits forever once no more can come.
async fn next_push(rx: &mut watch::Receiver<Arc<PushState>>) -> Arc<PushState> {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    rx.borrow_and_update().clone()
}

/// Runs one ADS stream of either flavor until either side ends it. An error from `inbound` (a
/// request too large or undecodable) ends the stream with that status.
pub async fn run<F: Flavor>(
    state: Arc<XdsState>,
    caller: Option<Caller>,
    peer: String,
    inbound: impl Stream<Item = Result<F::Request, Status>>,
    tx: Sender<Result<F::Response, Box<Status>>>,
) {
    tokio::pin!(inbound);
    let mut pushes = state.pushes();
    let mut conn: Option<Conn<F>> = None;
    loop {
        let hold = conn.as_ref().and_then(Conn::full_sync_deadline);
        let far = Instant::now() + Duration::from_secs(3600);
        let req = tokio::select! {
            r = inbound.next() => match r {
                Some(Ok(r)) => r,
                None => break,
                Some(Err(status)) => {
                    tracing::debug!("xDS stream ended: {status}");
                    let _ = tx.send(Err(Box::new(status))).await;
                    break;
                }
            },
            p = next_push(&mut pushes), if conn.is_some() => {
                if let Some(c) = conn.as_mut() && !c.on_push(p).await { break; }
                continue;
            }
            _ = tokio::time::sleep_until(hold.unwrap_or(far)), if hold.is_some() => {
                if let Some(c) = conn.as_mut() { c.full_sync = None; }
                continue;
            }
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let push = pushes.borrow_and_update().clone();
                match Conn::open(&state, &caller, &peer, F::node(&req), push, tx.clone()).await {
                    Ok(c) => conn.insert(c),
                    Err(status) => {
                        tracing::warn!("xDS stream refused: {}", status.message());
                        let _ = tx.send(Err(Box::new(status))).await;
                        return;
                    }
                }
            }
        };
        if !c.dispatch(req).await {
            break;
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
