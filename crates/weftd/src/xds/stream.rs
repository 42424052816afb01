//! One ADS stream: the first request names the node (authorised against the caller), then each
//! request is an ACK/NACK, a new subscription, or both.

use super::generate::NamedResource;
use super::node::Proxy;
use super::{ConnStatus, XdsState, authorize};
use crate::authn::Caller;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;
use tokio::sync::mpsc::Sender;
use tonic::{Status, Streaming};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use weft_proto::type_url;

/// Types whose empty subscription means "everything" (wildcard).
fn is_wildcard_type(url: &str) -> bool {
    url == type_url::LISTENER || url == type_url::CLUSTER
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

fn open(
    state: &Arc<XdsState>,
    caller: &Option<Caller>,
    peer: &str,
    node: Option<&weft_proto::envoy_types::pb::envoy::config::core::v3::Node>,
    delta: bool,
) -> Result<(Proxy, Registration), Status> {
    let node =
        node.ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
    let proxy = Proxy::from_node(node).map_err(Status::invalid_argument)?;
    authorize(caller.as_ref(), &proxy)?;
    let identity = caller
        .as_ref()
        .map(|c| c.identity.to_string())
        .unwrap_or_else(|| "anonymous (plaintext)".into());
    tracing::info!(proxy = %proxy.id, %identity, %peer, delta, "xDS stream opened");
    let id = state.register(ConnStatus {
        proxy: proxy.clone(),
        peer: peer.to_string(),
        identity,
        delta,
        connected_at: SystemTime::now(),
        types: BTreeMap::new(),
    });
    Ok((
        proxy,
        Registration {
            state: state.clone(),
            id,
        },
    ))
}

fn filter(
    resources: Vec<NamedResource>,
    names: &BTreeSet<String>,
    wildcard: bool,
) -> Vec<NamedResource> {
    if wildcard {
        resources
    } else {
        resources
            .into_iter()
            .filter(|r| names.contains(&r.name))
            .collect()
    }
}

#[derive(Default)]
struct SotwType {
    names: BTreeSet<String>,
    nonce: String,
}

pub async fn run_sotw(
    state: Arc<XdsState>,
    caller: Option<Caller>,
    peer: String,
    mut inbound: Streaming<DiscoveryRequest>,
    tx: Sender<Result<DiscoveryResponse, Status>>,
) {
    let mut conn: Option<(Proxy, Registration)> = None;
    let mut types: BTreeMap<String, SotwType> = BTreeMap::new();
    let mut nonce_counter = 0u64;
    loop {
        let req = match inbound.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("xDS stream ended: {e}");
                break;
            }
        };
        if conn.is_none() {
            match open(&state, &caller, &peer, req.node.as_ref(), false) {
                Ok(c) => conn = Some(c),
                Err(status) => {
                    tracing::warn!("xDS stream refused: {}", status.message());
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        let Some((proxy, reg)) = &conn else { return };
        let url = req.type_url.clone();
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        let entry = types.entry(url.clone()).or_default();
        if !req.response_nonce.is_empty() {
            if req.response_nonce != entry.nonce {
                continue; // stale ACK for an older response
            }
            if let Some(err) = &req.error_detail {
                state.metrics.xds_rejects.fetch_add(1, Relaxed);
                tracing::warn!(proxy = %proxy.id, type_url = %url, "NACK: {}", err.message);
                state.update(reg.id, &url, |s| s.nack = Some(err.message.clone()));
            } else {
                state.update(reg.id, &url, |s| {
                    s.acked_nonce = req.response_nonce.clone();
                    s.nack = None;
                });
            }
            if names == entry.names {
                continue;
            }
        }
        entry.names = names;
        let resources = filter(
            state.generator.generate(proxy, &url),
            &entry.names,
            is_wildcard_type(&url) || entry.names.is_empty() && is_wildcard_type(&url),
        );
        nonce_counter += 1;
        let nonce = nonce_counter.to_string();
        let version = combined_version(&resources);
        entry.nonce = nonce.clone();
        state.update(reg.id, &url, |s| {
            s.sent_nonce = nonce.clone();
            s.sent_version = version.clone();
        });
        state.metrics.xds_pushes.fetch_add(1, Relaxed);
        let resp = DiscoveryResponse {
            version_info: version,
            resources: resources.into_iter().map(|r| r.resource).collect(),
            type_url: url,
            nonce,
            ..Default::default()
        };
        if tx.send(Ok(resp)).await.is_err() {
            break;
        }
    }
    if let Some((proxy, _)) = &conn {
        tracing::info!(proxy = %proxy.id, "xDS stream closed");
    }
}

fn combined_version(resources: &[NamedResource]) -> String {
    let joined: Vec<&str> = resources.iter().map(|r| r.version.as_str()).collect();
    let h = joined
        .join(",")
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    format!("{h:016x}")
}

#[derive(Default)]
struct DeltaType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Versions the client holds.
    known: BTreeMap<String, String>,
    nonce: String,
}

pub async fn run_delta(
    state: Arc<XdsState>,
    caller: Option<Caller>,
    peer: String,
    mut inbound: Streaming<DeltaDiscoveryRequest>,
    tx: Sender<Result<DeltaDiscoveryResponse, Status>>,
) {
    let mut conn: Option<(Proxy, Registration)> = None;
    let mut types: BTreeMap<String, DeltaType> = BTreeMap::new();
    let mut nonce_counter = 0u64;
    loop {
        let req = match inbound.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("xDS delta stream ended: {e}");
                break;
            }
        };
        if conn.is_none() {
            match open(&state, &caller, &peer, req.node.as_ref(), true) {
                Ok(c) => conn = Some(c),
                Err(status) => {
                    tracing::warn!("xDS stream refused: {}", status.message());
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        let Some((proxy, reg)) = &conn else { return };
        let url = req.type_url.clone();
        let first = !types.contains_key(&url);
        let entry = types.entry(url.clone()).or_default();
        if !req.response_nonce.is_empty() && req.response_nonce == entry.nonce {
            if let Some(err) = &req.error_detail {
                state.metrics.xds_rejects.fetch_add(1, Relaxed);
                tracing::warn!(proxy = %proxy.id, type_url = %url, "NACK: {}", err.message);
                state.update(reg.id, &url, |s| s.nack = Some(err.message.clone()));
            } else {
                state.update(reg.id, &url, |s| {
                    s.acked_nonce = req.response_nonce.clone();
                    s.nack = None;
                });
            }
        }
        if first {
            entry.wildcard = req.resource_names_subscribe.is_empty() && is_wildcard_type(&url);
            entry.known = req.initial_resource_versions.clone().into_iter().collect();
        }
        let changed = first
            || !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty();
        for n in &req.resource_names_subscribe {
            if n == "*" {
                entry.wildcard = true;
            } else {
                entry.names.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                entry.wildcard = false;
            }
            entry.names.remove(n);
            entry.known.remove(n);
        }
        if !changed {
            continue;
        }
        let resources = filter(
            state.generator.generate(proxy, &url),
            &entry.names,
            entry.wildcard,
        );
        let current: BTreeSet<String> = resources.iter().map(|r| r.name.clone()).collect();
        let removed: Vec<String> = entry
            .known
            .keys()
            .filter(|n| !current.contains(*n) && (entry.wildcard || entry.names.contains(*n)))
            .cloned()
            .collect();
        let updates: Vec<Resource> = resources
            .into_iter()
            .filter(|r| entry.known.get(&r.name) != Some(&r.version))
            .map(|r| Resource {
                name: r.name,
                version: r.version,
                resource: Some(r.resource),
                ..Default::default()
            })
            .collect();
        if updates.is_empty() && removed.is_empty() && !first {
            continue;
        }
        for r in &updates {
            entry.known.insert(r.name.clone(), r.version.clone());
        }
        for n in &removed {
            entry.known.remove(n);
        }
        nonce_counter += 1;
        let nonce = nonce_counter.to_string();
        entry.nonce = nonce.clone();
        let version = format!("{}", updates.len());
        state.update(reg.id, &url, |s| {
            s.sent_nonce = nonce.clone();
            s.sent_version = version.clone();
        });
        state.metrics.xds_pushes.fetch_add(1, Relaxed);
        let resp = DeltaDiscoveryResponse {
            type_url: url,
            resources: updates,
            removed_resources: removed,
            nonce,
            system_version_info: version,
            ..Default::default()
        };
        if tx.send(Ok(resp)).await.is_err() {
            break;
        }
    }
    if let Some((proxy, _)) = &conn {
        tracing::info!(proxy = %proxy.id, "xDS stream closed");
    }
}
