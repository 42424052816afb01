//! One simulated sidecar: a delta ADS client that behaves like Envoy (as pilot-load's `adsc` does).
//!
//! It subscribes to CDS (wildcard), then EDS for every EDS cluster it was given, then LDS
//! (wildcard) once endpoints arrived, then RDS for every route configuration its HTTP listeners
//! name. Every resource is decoded (`Cluster`, `ClusterLoadAssignment`, `Listener` + its
//! `HttpConnectionManager`s, `RouteConfiguration`) and every response is ACKed (a resource that
//! does not decode, or whose name differs from the one it was sent under, is NACKed). It holds
//! what it was sent (name → version) and, when the stream breaks, reconnects with Envoy's
//! jittered exponential backoff, sending `initial_resource_versions` for each type.
//!
//! Each client publishes what the benchmark needs in a [`ClientStats`]: when its current stream
//! became fully synced, and when it first ACKed a response of each type after the benchmark's
//! mark (the convergence measurement).

use prost::Message;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter};
use weft_proto::envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use weft_proto::envoy_types::pb::google::rpc::Status as RpcStatus;
use weft_proto::type_url;

/// The four types, in Envoy's (and weftd's push) order.
pub const TYPES: [&str; 4] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
];
pub const CDS: usize = 0;
pub const EDS: usize = 1;
pub const LDS: usize = 2;
pub const RDS: usize = 3;

/// Short names for reports.
pub const TYPE_NAMES: [&str; 4] = ["CDS", "EDS", "LDS", "RDS"];

fn type_index(url: &str) -> Option<usize> {
    TYPES.iter().position(|t| *t == url)
}

/// Envoy's ADS retry: a jittered exponential backoff (uniform in `[0, min(base·2ⁿ, max))`).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

/// Strings every client holds many copies of (resource names and versions), stored once.
#[derive(Default)]
pub struct Interner {
    shards: [Mutex<HashSet<Arc<str>>>; 16],
}

impl Interner {
    pub fn get(&self, s: &str) -> Arc<str> {
        let shard = s
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % self.shards.len();
        let mut set = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        set.insert(a.clone());
        a
    }
}

/// What all clients share: the clock, the measurement mark, the interner.
pub struct Shared {
    epoch: Instant,
    /// Nanoseconds since `epoch` (+1) of the current convergence mark; 0 = none.
    mark: AtomicU64,
    pub interner: Interner,
    pub backoff: Backoff,
}

impl Shared {
    pub fn new(backoff: Backoff) -> Self {
        Shared {
            epoch: Instant::now(),
            mark: AtomicU64::new(0),
            interner: Interner::default(),
            backoff,
        }
    }

    /// Now, as nanoseconds since the epoch, never 0.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Starts a measurement: ACKs sent from now on count. Returns the mark.
    pub fn set_mark(&self) -> u64 {
        let now = self.now();
        self.mark.store(now, Relaxed);
        now
    }

    pub fn clear_mark(&self) {
        self.mark.store(0, Relaxed);
    }
}

/// What one client reports.
#[derive(Default)]
pub struct ClientStats {
    /// When (Shared clock) the client started.
    pub started_at: AtomicU64,
    /// Streams opened (1 after the first connect).
    pub streams: AtomicU64,
    /// When (Shared clock) the current stream became fully synced; 0 = not (yet).
    pub synced_at: AtomicU64,
    /// Per type: when the first ACK of a non-empty response after the mark was sent; 0 = none.
    pub acked_after_mark: [AtomicU64; 4],
    /// Per type: responses, resources received, bytes of resources received.
    pub responses: [AtomicU64; 4],
    pub resources: [AtomicU64; 4],
    pub bytes: [AtomicU64; 4],
    pub removed: AtomicU64,
    /// NACKs this client sent (resources that did not decode).
    pub nacks: AtomicU64,
    /// Streams that failed or ended.
    pub stream_errors: AtomicU64,
    pub last_error: Mutex<String>,
}

impl ClientStats {
    pub fn clear_marks(&self) {
        for a in &self.acked_after_mark {
            a.store(0, Relaxed);
        }
    }

    pub fn resources_total(&self) -> u64 {
        self.resources.iter().map(|a| a.load(Relaxed)).sum()
    }
}

/// What the client holds, across streams (like Envoy's xDS state).
#[derive(Default)]
struct Held {
    /// Per type: name → version.
    versions: [HashMap<Arc<str>, Arc<str>>; 4],
    /// EDS clusters among the clusters held (their names are the EDS resource names).
    eds_clusters: BTreeSet<Arc<str>>,
    /// Route configuration names each listener references.
    rds_by_listener: HashMap<Arc<str>, Vec<Arc<str>>>,
}

impl Held {
    fn rds_names(&self) -> BTreeSet<Arc<str>> {
        self.rds_by_listener.values().flatten().cloned().collect()
    }

    fn initial_versions(&self, t: usize) -> HashMap<String, String> {
        self.versions[t]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Per-stream protocol state.
#[derive(Default)]
struct StreamState {
    requested: [bool; 4],
    received: [bool; 4],
    /// Names subscribed on this stream (EDS, RDS).
    subscribed: [BTreeSet<Arc<str>>; 4],
    synced: bool,
}

/// What decoding a resource tells the client.
enum Decoded {
    Cluster { eds: bool },
    Other,
    Listener { rds: Vec<String> },
}

fn decode(t: usize, name: &str, bytes: &[u8]) -> Result<Decoded, String> {
    let check = |got: &str| {
        if got == name {
            Ok(())
        } else {
            Err(format!("resource {name:?} decodes to one named {got:?}"))
        }
    };
    let err = |e: prost::DecodeError| format!("{} {name:?}: {e}", TYPE_NAMES[t]);
    match t {
        CDS => {
            let c = Cluster::decode(bytes).map_err(err)?;
            check(&c.name)?;
            let eds = c.cluster_discovery_type
                == Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Eds as i32,
                ));
            Ok(Decoded::Cluster { eds })
        }
        EDS => {
            let c = ClusterLoadAssignment::decode(bytes).map_err(err)?;
            check(&c.cluster_name)?;
            Ok(Decoded::Other)
        }
        LDS => {
            let l = Listener::decode(bytes).map_err(err)?;
            check(&l.name)?;
            let mut rds = Vec::new();
            for chain in l.filter_chains.iter().chain(&l.default_filter_chain) {
                rds.extend(route_names(chain)?);
            }
            Ok(Decoded::Listener { rds })
        }
        _ => {
            let r = RouteConfiguration::decode(bytes).map_err(err)?;
            check(&r.name)?;
            Ok(Decoded::Other)
        }
    }
}

/// Route configurations the chain's HTTP connection managers load over RDS.
fn route_names(chain: &FilterChain) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for f in &chain.filters {
        let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            continue;
        };
        if !any.type_url.ends_with(".HttpConnectionManager") {
            continue;
        }
        let hcm = HttpConnectionManager::decode(&any.value[..])
            .map_err(|e| format!("HttpConnectionManager in {:?}: {e}", f.name))?;
        if let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            out.push(rds.route_config_name);
        }
    }
    Ok(out)
}

/// A small deterministic PRNG for backoff jitter (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Runs client `index` forever (the benchmark ends the process).
pub async fn run(
    index: usize,
    node: Node,
    channel: Channel,
    stats: Arc<ClientStats>,
    shared: Arc<Shared>,
) {
    stats.started_at.store(shared.now(), Relaxed);
    let mut held = Held::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0x1234_5678_9abc));
    let mut attempt = 0u32;
    loop {
        let mut client = AdsClient {
            node: &node,
            held: &mut held,
            stats: &stats,
            shared: &shared,
        };
        let result = client.stream_once(channel.clone()).await;
        let was_synced = stats.synced_at.swap(0, Relaxed) != 0;
        stats.stream_errors.fetch_add(1, Relaxed);
        if let Err(e) = result {
            *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
        }
        if was_synced {
            attempt = 0;
        }
        let b = shared.backoff;
        let ceiling = b
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(b.max)
            .as_millis()
            .max(1) as u64;
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(rng.next() % ceiling)).await;
    }
}

struct AdsClient<'a> {
    node: &'a Node,
    held: &'a mut Held,
    stats: &'a ClientStats,
    shared: &'a Shared,
}

impl AdsClient<'_> {
    /// One ADS stream, until it fails.
    async fn stream_once(&mut self, channel: Channel) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(64);
        let mut st = StreamState::default();
        // Like Envoy after a reconnect: every type it holds, with what it holds of each.
        let resume = !self.held.versions[CDS].is_empty();
        self.request(&tx, &mut st, CDS, vec![], vec![], true)
            .await?;
        if resume {
            let eds: Vec<Arc<str>> = self.held.eds_clusters.iter().cloned().collect();
            self.request(&tx, &mut st, EDS, eds, vec![], false).await?;
            self.request(&tx, &mut st, LDS, vec![], vec![], false)
                .await?;
            let rds: Vec<Arc<str>> = self.held.rds_names().into_iter().collect();
            if !rds.is_empty() {
                self.request(&tx, &mut st, RDS, rds, vec![], false).await?;
            }
        }
        let mut ads = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut inbound = ads
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("open: {}: {}", s.code(), s.message()))?
            .into_inner();
        self.stats.streams.fetch_add(1, Relaxed);
        loop {
            let resp = inbound
                .message()
                .await
                .map_err(|s| format!("stream: {}: {}", s.code(), s.message()))?
                .ok_or("stream ended by the server")?;
            self.on_response(&tx, &mut st, resp).await?;
        }
    }

    /// Sends the first (or a subscription-changing) request of type `t`.
    async fn request(
        &mut self,
        tx: &mpsc::Sender<DeltaDiscoveryRequest>,
        st: &mut StreamState,
        t: usize,
        subscribe: Vec<Arc<str>>,
        unsubscribe: Vec<Arc<str>>,
        with_node: bool,
    ) -> Result<(), String> {
        let first = !st.requested[t];
        st.requested[t] = true;
        for n in &subscribe {
            st.subscribed[t].insert(n.clone());
        }
        for n in &unsubscribe {
            st.subscribed[t].remove(n);
        }
        let req = DeltaDiscoveryRequest {
            node: with_node.then(|| self.node.clone()),
            type_url: TYPES[t].to_string(),
            resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
            initial_resource_versions: if first {
                self.held.initial_versions(t)
            } else {
                HashMap::new()
            },
            ..Default::default()
        };
        tx.send(req)
            .await
            .map_err(|_| "request stream closed".into())
    }

    async fn on_response(
        &mut self,
        tx: &mpsc::Sender<DeltaDiscoveryRequest>,
        st: &mut StreamState,
        resp: DeltaDiscoveryResponse,
    ) -> Result<(), String> {
        let Some(t) = type_index(&resp.type_url) else {
            return Err(format!("unexpected type {}", resp.type_url));
        };
        let s = self.stats;
        s.responses[t].fetch_add(1, Relaxed);
        s.resources[t].fetch_add(resp.resources.len() as u64, Relaxed);
        s.removed
            .fetch_add(resp.removed_resources.len() as u64, Relaxed);
        let mut error = None;
        for r in &resp.resources {
            let Some(any) = &r.resource else {
                error = Some(format!("resource {:?} has no body", r.name));
                continue;
            };
            s.bytes[t].fetch_add(any.value.len() as u64, Relaxed);
            let name = self.shared.interner.get(&r.name);
            match decode(t, &r.name, &any.value) {
                Ok(Decoded::Cluster { eds }) => {
                    if eds {
                        self.held.eds_clusters.insert(name.clone());
                    } else {
                        self.held.eds_clusters.remove(&name);
                    }
                }
                Ok(Decoded::Listener { rds }) => {
                    let rds = rds.iter().map(|n| self.shared.interner.get(n)).collect();
                    self.held.rds_by_listener.insert(name.clone(), rds);
                }
                Ok(Decoded::Other) => {}
                Err(e) => {
                    error = Some(e);
                    continue;
                }
            }
            let version = self.shared.interner.get(&r.version);
            self.held.versions[t].insert(name, version);
        }
        for n in &resp.removed_resources {
            self.held.versions[t].remove(n.as_str());
            match t {
                CDS => {
                    self.held.eds_clusters.remove(n.as_str());
                }
                LDS => {
                    self.held.rds_by_listener.remove(n.as_str());
                }
                _ => {}
            }
        }
        st.received[t] = true;
        // ACK (or NACK) the response.
        if error.is_some() {
            s.nacks.fetch_add(1, Relaxed);
        }
        let ack = DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            error_detail: error.map(|message| RpcStatus {
                code: 3,
                message,
                ..Default::default()
            }),
            ..Default::default()
        };
        tx.send(ack)
            .await
            .map_err(|_| "request stream closed".to_string())?;
        let changed = !resp.resources.is_empty() || !resp.removed_resources.is_empty();
        let mark = self.shared.mark.load(Relaxed);
        if changed && mark != 0 {
            let now = self.shared.now();
            if now > mark {
                let _ = s.acked_after_mark[t].compare_exchange(0, now, Relaxed, Relaxed);
            }
        }
        // Follow-up subscriptions, as Envoy: EDS for the EDS clusters, LDS once clusters are
        // warm, RDS for the route configurations the listeners name.
        match t {
            CDS => {
                self.follow(tx, st, EDS, self.held.eds_clusters.clone())
                    .await?;
                if self.held.eds_clusters.is_empty() && !st.requested[LDS] {
                    self.request(tx, st, LDS, vec![], vec![], false).await?;
                }
            }
            EDS if !st.requested[LDS] => {
                self.request(tx, st, LDS, vec![], vec![], false).await?;
            }
            LDS => {
                let rds = self.held.rds_names();
                self.follow(tx, st, RDS, rds).await?;
            }
            _ => {}
        }
        if !st.synced && self.synced(st) {
            st.synced = true;
            s.synced_at.store(self.shared.now(), Relaxed);
        }
        Ok(())
    }

    /// Subscribes type `t` to exactly `want` (sending only the difference).
    async fn follow(
        &mut self,
        tx: &mpsc::Sender<DeltaDiscoveryRequest>,
        st: &mut StreamState,
        t: usize,
        want: BTreeSet<Arc<str>>,
    ) -> Result<(), String> {
        let subscribe: Vec<Arc<str>> = want.difference(&st.subscribed[t]).cloned().collect();
        let unsubscribe: Vec<Arc<str>> = st.subscribed[t].difference(&want).cloned().collect();
        if subscribe.is_empty() && unsubscribe.is_empty() {
            return Ok(());
        }
        for n in &unsubscribe {
            self.held.versions[t].remove(n);
        }
        self.request(tx, st, t, subscribe, unsubscribe, false).await
    }

    /// Fully configured: every type answered on this stream, and an assignment for every EDS
    /// cluster and a route configuration for every name the listeners use.
    fn synced(&self, st: &StreamState) -> bool {
        let have_all = |t: usize, names: &BTreeSet<Arc<str>>| {
            names.is_empty()
                || (st.received[t] && names.iter().all(|n| self.held.versions[t].contains_key(n)))
        };
        st.received[CDS]
            && st.received[LDS]
            && have_all(EDS, &self.held.eds_clusters)
            && have_all(RDS, &self.held.rds_names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::envoy_types::pb::envoy::config::listener::v3::Filter;
    use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds;
    use weft_proto::envoy_types::pb::google::protobuf::Any;

    #[test]
    fn listeners_name_their_route_configurations() {
        let hcm = HttpConnectionManager {
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                route_config_name: "80".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let l = Listener {
            name: "0.0.0.0_80".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(Any {
                        type_url: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager".into(),
                        value: hcm.encode_to_vec(),
                    })),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        match decode(LDS, "0.0.0.0_80", &l.encode_to_vec()).unwrap() {
            Decoded::Listener { rds } => assert_eq!(rds, ["80"]),
            _ => panic!("not a listener"),
        }
        assert!(decode(LDS, "other", &l.encode_to_vec()).is_err());
        let c = Cluster {
            name: "outbound|80||a".into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            ..Default::default()
        };
        assert!(matches!(
            decode(CDS, "outbound|80||a", &c.encode_to_vec()).unwrap(),
            Decoded::Cluster { eds: true }
        ));
    }

    #[test]
    fn interned_strings_are_shared() {
        let i = Interner::default();
        assert!(Arc::ptr_eq(&i.get("x"), &i.get("x")));
    }
}
