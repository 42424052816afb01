//! One ADS stream. The first request names the node (authorised against the caller). After that the
//! stream reacts to two things: requests from Envoy (subscriptions, ACKs, NACKs) and new push states,
//! after which it sends only what changed for the types Envoy watches, clusters before endpoints
//! before listeners before routes (make before break).

use super::generate::NamedResource;
use super::node::Proxy;
use super::push::PushState;
use super::{ConnStatus, XdsState, authorize};
use crate::authn::Caller;
use crate::autoreg::{Lease, locality_string};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use tonic::{Status, Streaming};
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
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

/// Removes the connection from the registry however the stream ends.
struct Registration {
    state: Arc<XdsState>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.state.unregister(self.id);
    }
}

/// What Envoy watches of one type, and what it was last sent.
#[derive(Default)]
struct Watch {
    wildcard: bool,
    names: BTreeSet<String>,
    /// name → version the client holds (as far as we know).
    sent: BTreeMap<String, String>,
    nonce: String,
    /// A NACKed state is not re-sent until the configuration changes again.
    nacked_push: Option<u64>,
}

impl Watch {
    fn selects(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// The protocol-specific half of a stream.
trait Flavor {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const DELTA: bool;
    fn node(req: &Self::Request) -> Option<&Node>;
    fn type_url(req: &Self::Request) -> &str;
    fn response_nonce(req: &Self::Request) -> &str;
    fn error(req: &Self::Request) -> Option<&str>;
    /// Applies the request's subscription to `w`; returns `Some(force)` when an answer is due.
    fn subscribe(w: &mut Watch, req: &Self::Request, url: &str, first: bool) -> Option<bool>;
    /// A response carrying the full current set (SotW) or the changes (delta); `None` = nothing to send.
    fn response(
        w: &mut Watch,
        url: &str,
        current: &[Arc<NamedResource>],
        nonce: &str,
        push_version: u64,
        force: bool,
    ) -> Option<Self::Response>;
}

struct Sotw;
struct Delta;

impl Flavor for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
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
    fn subscribe(w: &mut Watch, req: &DiscoveryRequest, url: &str, first: bool) -> Option<bool> {
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        let names_changed = names != w.names;
        w.wildcard = is_wildcard_type(url) && names.is_empty();
        w.names = names;
        // A first request, or a change of subscribed names, needs an answer even if nothing changed.
        (first || names_changed).then_some(true)
    }
    fn response(
        w: &mut Watch,
        url: &str,
        current: &[Arc<NamedResource>],
        nonce: &str,
        push_version: u64,
        force: bool,
    ) -> Option<DiscoveryResponse> {
        let now: BTreeMap<String, String> = current
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect();
        if !force && now == w.sent {
            return None;
        }
        w.sent = now;
        Some(DiscoveryResponse {
            version_info: push_version.to_string(),
            resources: current.iter().map(|r| r.resource.clone()).collect(),
            type_url: url.to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        })
    }
}

impl Flavor for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
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
        req: &DeltaDiscoveryRequest,
        url: &str,
        first: bool,
    ) -> Option<bool> {
        if first {
            w.wildcard = req.resource_names_subscribe.is_empty() && is_wildcard_type(url);
            // After a reconnect Envoy tells us what it already has: send only differences.
            w.sent = req.initial_resource_versions.clone().into_iter().collect();
        }
        let mut changed = first;
        for n in &req.resource_names_subscribe {
            changed = true;
            if n == "*" {
                w.wildcard = true;
            } else {
                w.names.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            changed = true;
            if n == "*" {
                w.wildcard = false;
            }
            w.names.remove(n);
            w.sent.remove(n);
        }
        changed.then_some(first)
    }
    fn response(
        w: &mut Watch,
        url: &str,
        current: &[Arc<NamedResource>],
        nonce: &str,
        push_version: u64,
        force: bool,
    ) -> Option<DeltaDiscoveryResponse> {
        let names: BTreeSet<&str> = current.iter().map(|r| r.name.as_str()).collect();
        let removed: Vec<String> = w
            .sent
            .keys()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect();
        let updates: Vec<Resource> = current
            .iter()
            .filter(|r| w.sent.get(&r.name) != Some(&r.version))
            .map(|r| Resource {
                name: r.name.clone(),
                version: r.version.clone(),
                resource: Some(r.resource.clone()),
                ..Default::default()
            })
            .collect();
        if updates.is_empty() && removed.is_empty() && !force {
            return None;
        }
        for r in &updates {
            w.sent.insert(r.name.clone(), r.version.clone());
        }
        for n in &removed {
            w.sent.remove(n);
        }
        Some(DeltaDiscoveryResponse {
            type_url: url.to_string(),
            resources: updates,
            removed_resources: removed,
            nonce: nonce.to_string(),
            system_version_info: push_version.to_string(),
            ..Default::default()
        })
    }
}

/// Stream state shared by both flavors.
struct Conn<F: Flavor> {
    state: Arc<XdsState>,
    proxy: Proxy,
    reg: Registration,
    /// The proxy's WorkloadEntry (auto-registered or named by `WORKLOAD_ENTRY`), while connected.
    workload: Option<Lease>,
    watches: BTreeMap<String, Watch>,
    nonces: u64,
    push: Arc<PushState>,
    tx: Sender<Result<F::Response, Status>>,
}

impl<F: Flavor> Conn<F> {
    async fn open(
        state: &Arc<XdsState>,
        caller: &Option<Caller>,
        peer: &str,
        node: Option<&Node>,
        push: Arc<PushState>,
        tx: Sender<Result<F::Response, Status>>,
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
            reg: Registration {
                state: state.clone(),
                id,
            },
            workload,
            watches: BTreeMap::new(),
            nonces: 0,
            push,
            tx,
        })
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

    fn ack_or_nack(&mut self, url: &str, nonce: &str, error: Option<&str>) {
        let Some(w) = self.watches.get_mut(url) else {
            return;
        };
        if nonce.is_empty() || nonce != w.nonce {
            return; // not an answer to our latest response
        }
        match error {
            Some(message) => {
                self.state.metrics.xds_rejects.fetch_add(1, Relaxed);
                tracing::warn!(proxy = %self.proxy.id, type_url = %url, "NACK: {message}");
                w.nacked_push = Some(self.push.version);
                let m = message.to_string();
                self.state.update(self.reg.id, url, |s| s.nack = Some(m));
            }
            None => {
                let n = nonce.to_string();
                self.state.update(self.reg.id, url, |s| {
                    s.acked_nonce = n;
                    s.nack = None;
                });
            }
        }
    }

    /// Sends `url`'s resources if they differ from what the client has (or `force`).
    async fn send(&mut self, url: &str, force: bool) -> bool {
        let push = self.push.clone();
        let Some(w) = self.watches.get_mut(url) else {
            return true;
        };
        if w.nacked_push == Some(push.version) && !force {
            return true;
        }
        let current: Vec<Arc<NamedResource>> = push
            .generator
            .generate(&self.proxy, url)
            .into_iter()
            .filter(|r| w.selects(&r.name))
            .collect();
        let nonce = (self.nonces + 1).to_string();
        let Some(resp) = F::response(w, url, &current, &nonce, push.version, force) else {
            return true;
        };
        self.nonces += 1;
        w.nonce = nonce.clone();
        let version = push.version.to_string();
        self.state.update(self.reg.id, url, |s| {
            s.sent_nonce = nonce;
            s.sent_version = version;
        });
        self.state.metrics.xds_pushes.fetch_add(1, Relaxed);
        self.tx.send(Ok(resp)).await.is_ok()
    }

    /// A new configuration: send every watched type what changed, in make-before-break order.
    /// A cluster Envoy receives again (changed) stays warming until it gets its endpoints
    /// again, even when they did not change: those assignments are re-sent too.
    async fn on_push(&mut self, push: Arc<PushState>) -> bool {
        self.push = push;
        let mut urls: Vec<String> = self.watches.keys().cloned().collect();
        urls.sort_by_key(|u| push_rank(u));
        for url in urls {
            let before = (url == type_url::CLUSTER)
                .then(|| self.watches.get(&url).map(|w| w.sent.clone()))
                .flatten();
            if !self.send(&url, false).await {
                return false;
            }
            let Some(before) = before else { continue };
            let changed: Vec<String> = self
                .watches
                .get(type_url::CLUSTER)
                .into_iter()
                .flat_map(|w| &w.sent)
                .filter(|(name, version)| before.get(*name).is_some_and(|v| v != *version))
                .map(|(name, _)| name.clone())
                .collect();
            if let Some(eds) = self.watches.get_mut(type_url::ENDPOINT) {
                for name in changed {
                    eds.sent.remove(&name);
                }
            }
        }
        true
    }
}

/// The next push state; waits forever once no more can come.
async fn next_push(rx: &mut watch::Receiver<Arc<PushState>>) -> Option<Arc<PushState>> {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    Some(rx.borrow_and_update().clone())
}

/// Runs one ADS stream of either flavor until either side ends it.
async fn run<F: Flavor>(
    state: Arc<XdsState>,
    caller: Option<Caller>,
    peer: String,
    mut inbound: Streaming<F::Request>,
    tx: Sender<Result<F::Response, Status>>,
) where
    F::Request: prost::Message + Default,
{
    let mut pushes = state.pushes();
    let mut conn: Option<Conn<F>> = None;
    loop {
        let req = tokio::select! {
            r = inbound.message() => match r {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => { tracing::debug!("xDS stream ended: {e}"); break; }
            },
            p = next_push(&mut pushes), if conn.is_some() => {
                let Some(p) = p else { break };
                if let Some(c) = conn.as_mut() && !c.on_push(p).await { break; }
                continue;
            }
        };
        if conn.is_none() {
            let push = pushes.borrow_and_update().clone();
            match Conn::open(&state, &caller, &peer, F::node(&req), push, tx.clone()).await {
                Ok(c) => conn = Some(c),
                Err(status) => {
                    tracing::warn!("xDS stream refused: {}", status.message());
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        let Some(c) = conn.as_mut() else { return };
        let url = F::type_url(&req).to_string();
        if url == type_url::HEALTH_INFO {
            c.health(F::error(&req));
            continue;
        }
        c.ack_or_nack(&url, F::response_nonce(&req), F::error(&req));
        let first = !c.watches.contains_key(&url);
        let w = c.watches.entry(url.clone()).or_default();
        if let Some(force) = F::subscribe(w, &req, &url, first)
            && !c.send(&url, force).await
        {
            break;
        }
    }
    if let Some(c) = &conn {
        tracing::info!(proxy = %c.proxy.id, "xDS stream closed");
    }
}

pub async fn run_sotw(
    state: Arc<XdsState>,
    caller: Option<Caller>,
    peer: String,
    inbound: Streaming<DiscoveryRequest>,
    tx: Sender<Result<DiscoveryResponse, Status>>,
) {
    run::<Sotw>(state, caller, peer, inbound, tx).await
}

pub async fn run_delta(
    state: Arc<XdsState>,
    caller: Option<Caller>,
    peer: String,
    inbound: Streaming<DeltaDiscoveryRequest>,
    tx: Sender<Result<DeltaDiscoveryResponse, Status>>,
) {
    run::<Delta>(state, caller, peer, inbound, tx).await
}
