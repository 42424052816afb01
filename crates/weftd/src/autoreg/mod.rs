//! The WorkloadEntry controller: auto-registration of proxies that join a WorkloadGroup
//! (`AUTO_REGISTER_GROUP` node metadata), health reports (`HealthInformation` on the xDS stream)
//! for those and for manually created entries (`WORKLOAD_ENTRY` metadata), and clean-up of
//! auto-registered entries whose proxy went away, after a grace period.
//!
//! Stricter than Istio on identity: the caller must be authenticated, and its namespace and
//! service account must be the group's (istio#45329); an address held by another connected
//! workload cannot be claimed. Every store write is retried until it lands (istio#29741).

pub mod entry;

use crate::authn::Caller;
use crate::store::{StoreError, StoreHandle};
use entry::Joiner;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tonic::Status;
use weft_model::snapshot::Key;
use weft_model::{Kind, Resource, Spec};
use weft_xds::Proxy;

/// Istio's `PILOT_WORKLOAD_ENTRY_GRACE_PERIOD` default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Live streams of one WorkloadEntry.
struct Live {
    streams: usize,
    auto: bool,
    address: String,
    network: String,
    identity: String,
}

pub struct Controller {
    store: StoreHandle,
    /// `istio.io/workloadController` value: this weftd instance.
    instance: String,
    grace: Duration,
    started: Instant,
    live: Mutex<HashMap<Key, Live>>,
    /// Serialises read-modify-write cycles on entries.
    ops: tokio::sync::Mutex<()>,
    /// Latest health report per entry (a retried write gives way to a newer report).
    health_seq: Mutex<HashMap<Key, u64>>,
}

/// Held by a stream for as long as it is open; dropping it reports the disconnect.
pub struct Lease {
    controller: Arc<Controller>,
    pub key: Key,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let c = self.controller.clone();
        let key = self.key.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { c.disconnected(key).await });
        }
    }
}

fn meta_str<'a>(p: &'a Proxy, k: &str) -> &'a str {
    p.metadata
        .get(k)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// `region/zone/subzone` of an Envoy node locality, empty when unset.
pub fn locality_string(region: &str, zone: &str, sub_zone: &str) -> String {
    if region.is_empty() && zone.is_empty() && sub_zone.is_empty() {
        return String::new();
    }
    format!("{region}/{zone}/{sub_zone}")
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Conflict(m) => Status::failed_precondition(m),
        StoreError::Io(m) => Status::unavailable(m),
    }
}

/// A store write the controller must not lose.
enum Write {
    Upsert(Box<Resource>),
    Status(Key, Option<serde_json::Value>),
    Delete(Key),
}

/// Performs `op`, retrying I/O failures with backoff until it lands (istio#29741); a conflict
/// (someone else owns the object) is logged and given up. True when written.
async fn write(store: &StoreHandle, what: &str, op: Write) -> bool {
    let mut delay = Duration::from_millis(50);
    loop {
        let result = match &op {
            Write::Upsert(r) => store.upsert_runtime((**r).clone()).await.map(|_| ()),
            Write::Status(k, s) => store.set_status(k.clone(), s.clone()).await.map(|_| ()),
            Write::Delete(k) => store.delete_runtime(k.clone()).await.map(|_| ()),
        };
        match result {
            Ok(()) => return true,
            Err(StoreError::Conflict(m)) => {
                tracing::warn!("{what}: {m}");
                return false;
            }
            Err(StoreError::Io(m)) => {
                tracing::warn!("{what} failed, retrying in {delay:?}: {m}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Controller {
    pub fn new(store: StoreHandle, grace: Duration) -> Arc<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Arc::new(Controller {
            store,
            instance: format!("weftd-{host}"),
            grace,
            started: Instant::now(),
            live: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            health_seq: Mutex::new(HashMap::new()),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A proxy's stream opened. For `AUTO_REGISTER_GROUP` proxies this creates (or reconnects)
    /// their WorkloadEntry; for `WORKLOAD_ENTRY` proxies it notes the connection. Errors refuse
    /// the stream.
    pub async fn connected(
        self: &Arc<Self>,
        proxy: &Proxy,
        locality: String,
        caller: Option<&Caller>,
    ) -> Result<Option<Lease>, Status> {
        let group = meta_str(proxy, "AUTO_REGISTER_GROUP");
        let manual = meta_str(proxy, "WORKLOAD_ENTRY");
        if group.is_empty() && manual.is_empty() {
            return Ok(None);
        }
        let _op = self.ops.lock().await;
        if !group.is_empty() {
            self.register(proxy, group, locality, caller)
                .await
                .map(Some)
        } else {
            let key = Key {
                kind: Kind::WorkloadEntry,
                namespace: proxy.namespace.clone(),
                name: manual.to_string(),
            };
            self.note(&key, false, proxy, caller);
            Ok(Some(self.lease(key)))
        }
    }

    fn lease(self: &Arc<Self>, key: Key) -> Lease {
        Lease {
            controller: self.clone(),
            key,
        }
    }

    fn note(&self, key: &Key, auto: bool, proxy: &Proxy, caller: Option<&Caller>) {
        let mut live = self.live();
        let l = live.entry(key.clone()).or_insert_with(|| Live {
            streams: 0,
            auto,
            address: proxy.ip.clone(),
            network: proxy.network.clone(),
            identity: caller.map(|c| c.identity.to_string()).unwrap_or_default(),
        });
        l.streams += 1;
    }

    async fn register(
        self: &Arc<Self>,
        proxy: &Proxy,
        group: &str,
        locality: String,
        caller: Option<&Caller>,
    ) -> Result<Lease, Status> {
        let refuse = |m: String| {
            format!(
                "auto-registration WorkloadEntry of {} failed: {m}",
                proxy.id
            )
        };
        let Some(caller) = caller else {
            return Err(Status::permission_denied(refuse(
                "auto-registration needs an authenticated caller (a certificate or token)".into(),
            )));
        };
        let Some(name) = entry::entry_name(group, &proxy.ip, &proxy.network) else {
            return Err(Status::invalid_argument(refuse(
                "the node has no IP address".into(),
            )));
        };
        let gkey = Key {
            kind: Kind::WorkloadGroup,
            namespace: proxy.namespace.clone(),
            name: group.to_string(),
        };
        let Some((wg, _)) = self.store.get(&gkey) else {
            return Err(Status::failed_precondition(refuse(format!(
                "cannot find WorkloadGroup {}/{group}",
                proxy.namespace
            ))));
        };
        let want_sa = match &wg.spec {
            Spec::WorkloadGroup(g) => g
                .template
                .as_ref()
                .map(|t| t.service_account.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            _ => "default".into(),
        };
        let id = &caller.identity;
        if id.namespace != wg.namespace() || id.service_account != want_sa {
            return Err(Status::permission_denied(refuse(format!(
                "caller {id} may not join WorkloadGroup {}/{group}, whose workloads run as service account {want_sa:?}",
                wg.namespace()
            ))));
        }
        let key = Key {
            kind: Kind::WorkloadEntry,
            namespace: proxy.namespace.clone(),
            name,
        };
        if let Some((other, l)) = self
            .live()
            .iter()
            .find(|(k, l)| **k != key && l.address == proxy.ip && l.network == proxy.network)
        {
            return Err(Status::already_exists(refuse(format!(
                "address {} (network {:?}) is held by connected WorkloadEntry {}/{} ({})",
                proxy.ip, proxy.network, other.namespace, other.name, l.identity
            ))));
        }
        let now = entry::rfc3339_nanos(SystemTime::now());
        let current = self.store.get(&key);
        let updated = match current {
            Some((r, _)) if !entry::is_auto_registered(&r) => {
                return Err(Status::failed_precondition(refuse(format!(
                    "WorkloadEntry {}/{} exists and was not auto-registered",
                    key.namespace, key.name
                ))));
            }
            Some((r, _)) => entry::mark_connected(&r, &self.instance, &now),
            None => {
                let joiner = Joiner {
                    ip: proxy.ip.clone(),
                    namespace: proxy.namespace.clone(),
                    network: proxy.network.clone(),
                    labels: proxy.labels.clone(),
                    locality,
                    readiness_probe: proxy
                        .metadata
                        .get("PROXY_CONFIG")
                        .and_then(|c| c.get("readinessProbe"))
                        .is_some_and(|p| !p.is_null()),
                };
                let r = entry::entry_from_group(&key.name, &wg, &joiner)
                    .map_err(|e| Status::internal(refuse(e)))?;
                entry::mark_connected(&r, &self.instance, &now)
            }
        };
        self.store
            .upsert_runtime(updated)
            .await
            .map_err(store_status)?;
        tracing::info!(
            proxy = %proxy.id,
            "WorkloadEntry {}/{} registered from WorkloadGroup {group}",
            key.namespace,
            key.name
        );
        self.note(&key, true, proxy, Some(caller));
        Ok(self.lease(key))
    }

    async fn disconnected(self: Arc<Self>, key: Key) {
        let _op = self.ops.lock().await;
        let auto = {
            let mut live = self.live();
            let Some(l) = live.get_mut(&key) else { return };
            l.streams -= 1;
            if l.streams > 0 {
                return;
            }
            live.remove(&key).is_some_and(|l| l.auto)
        };
        if auto {
            let Some((r, _)) = self.store.get(&key) else {
                return;
            };
            let now = entry::rfc3339_nanos(SystemTime::now());
            let marked = entry::mark_disconnected(&r, &now);
            write(
                &self.store,
                "marking a WorkloadEntry disconnected",
                Write::Upsert(Box::new(marked)),
            )
            .await;
            tracing::info!(
                "WorkloadEntry {}/{} disconnected; deleting it in {:?} unless it reconnects",
                key.namespace,
                key.name,
                self.grace
            );
            self.collect_after_grace(key);
        } else {
            let Some((r, _)) = self.store.get(&key) else {
                return;
            };
            let status = entry::without_health(r.status.as_ref());
            write(
                &self.store,
                "dropping the Healthy condition",
                Write::Status(key, status),
            )
            .await;
        }
    }

    fn collect_after_grace(self: &Arc<Self>, key: Key) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.grace).await;
            me.collect(&key).await;
        });
    }

    /// Deletes an auto-registered entry whose proxy has been away for the grace period.
    async fn collect(&self, key: &Key) {
        let _op = self.ops.lock().await;
        if self.live().contains_key(key) {
            return;
        }
        let Some((r, _)) = self.store.get(key) else {
            return;
        };
        if !entry::is_auto_registered(&r) || !self.expired(&r) {
            return;
        }
        if write(
            &self.store,
            "deleting a disconnected WorkloadEntry",
            Write::Delete(key.clone()),
        )
        .await
        {
            tracing::info!(
                "WorkloadEntry {}/{} deleted: its proxy stayed away for {:?}",
                key.namespace,
                key.name,
                self.grace
            );
        }
    }

    /// Disconnected for at least the grace period.
    fn expired(&self, r: &Resource) -> bool {
        r.metadata
            .annotations
            .get(entry::DISCONNECTED_AT)
            .and_then(|t| entry::parse_rfc3339(t))
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|away| away >= self.grace)
    }

    /// A health report from the proxy holding `lease`: `None` = healthy, `Some(message)` =
    /// unhealthy. Retried until written or superseded by a newer report.
    pub fn report_health(self: &Arc<Self>, lease: &Lease, error: Option<String>) {
        let key = lease.key.clone();
        let seq = {
            let mut seqs = self.health_seq.lock().unwrap_or_else(|e| e.into_inner());
            let s = seqs.entry(key.clone()).or_default();
            *s += 1;
            *s
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                let result = {
                    let _op = me.ops.lock().await;
                    let current = me
                        .health_seq
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&key)
                        == Some(&seq);
                    if !current {
                        return;
                    }
                    let Some((r, _)) = me.store.get(&key) else {
                        tracing::warn!(
                            "health report for WorkloadEntry {}/{}, which does not exist",
                            key.namespace,
                            key.name
                        );
                        return;
                    };
                    let now = entry::rfc3339_nanos(SystemTime::now());
                    let healthy = error.is_none();
                    let status = entry::with_health(
                        r.status.as_ref(),
                        healthy,
                        error.as_deref().unwrap_or_default(),
                        &now,
                    );
                    if entry::healthy(r.status.as_ref()) != Some(healthy) {
                        tracing::info!(
                            "WorkloadEntry {}/{} is {}{}",
                            key.namespace,
                            key.name,
                            if healthy { "healthy" } else { "unhealthy" },
                            error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        );
                    }
                    me.store.set_status(key.clone(), Some(status)).await
                };
                match result {
                    Ok(_) => return,
                    Err(StoreError::Conflict(m)) => {
                        tracing::warn!("health of {}/{}: {m}", key.namespace, key.name);
                        return;
                    }
                    Err(StoreError::Io(m)) => {
                        tracing::warn!("writing health failed, retrying in {delay:?}: {m}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }

    /// Periodic clean-up (every 10 × grace, as Istio): deletes auto-registered entries that have
    /// been disconnected for the grace period, and marks disconnected those that claim a
    /// connection nobody holds (left by a previous run) once proxies had time to come back.
    pub async fn sweep(self: &Arc<Self>) {
        let settle = self.grace.max(Duration::from_secs(30));
        let orphans_due = self.started.elapsed() >= settle;
        let entries: Vec<Resource> = self
            .store
            .list(Kind::WorkloadEntry, None)
            .into_iter()
            .map(|(r, _)| (*r).clone())
            .filter(entry::is_auto_registered)
            .collect();
        for r in entries {
            let key = Key::of(&r);
            if self.live().contains_key(&key) {
                continue;
            }
            if r.metadata.annotations.contains_key(entry::DISCONNECTED_AT) {
                self.collect(&key).await;
            } else if orphans_due {
                let _op = self.ops.lock().await;
                if self.live().contains_key(&key) {
                    continue;
                }
                let now = entry::rfc3339_nanos(SystemTime::now());
                let marked = entry::mark_disconnected(&r, &now);
                tracing::info!(
                    "WorkloadEntry {}/{} has no connected proxy; marking it disconnected",
                    key.namespace,
                    key.name
                );
                write(
                    &self.store,
                    "marking a WorkloadEntry disconnected",
                    Write::Upsert(Box::new(marked)),
                )
                .await;
                self.collect_after_grace(key);
            }
        }
    }

    /// Runs [`Controller::sweep`] forever: first once proxies could have reconnected after a
    /// restart, then every 10 × grace.
    pub async fn run_sweeps(self: Arc<Self>) {
        let settle = self.grace.max(Duration::from_secs(30));
        tokio::time::sleep(settle).await;
        loop {
            self.sweep().await;
            tokio::time::sleep(self.grace * 10).await;
        }
    }
}
