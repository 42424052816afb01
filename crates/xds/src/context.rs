//! The per-snapshot push context: the registry, PeerAuthentications, and the resources every
//! sidecar shares, built once on first use. A context built with [`PushContext::next`] also knows
//! what changed since its predecessor: per shared list (see [`SharedList`]) and which proxies' own
//! resources may differ (see `scope`).

use crate::authn::{MtlsPolicy, PeerAuthentications};
use crate::endpoints::load_assignment;
use crate::mesh::MeshConfig;
use crate::names::outbound_cluster;
use crate::proxy::{Proxy, ProxyKind};
use crate::registry::{Allocations, Registry, Resolution};
use crate::resource::NamedResource;
use crate::scope::ProxyScope;
use crate::shared::SharedList;
use crate::{DOMAIN_SUFFIX, clusters, listeners, routes};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use weft_model::snapshot::Snapshot;
use weft_proto::envoy_types::util::pack_any;
use weft_proto::type_url;

/// One shared list of a context: built on first use, as the successor of the predecessor's list
/// when the predecessor had built it.
#[derive(Default)]
struct Slot {
    built: OnceLock<Arc<SharedList>>,
    prev: Option<Arc<SharedList>>,
}

impl Slot {
    fn after(prev: &Slot) -> Slot {
        Slot {
            built: OnceLock::new(),
            prev: prev.built.get().cloned(),
        }
    }

    fn get(&self, build: impl FnOnce() -> Vec<Arc<NamedResource>>) -> &Arc<SharedList> {
        self.built.get_or_init(|| match &self.prev {
            Some(p) => SharedList::after(p, build()),
            None => SharedList::new(build()),
        })
    }
}

/// Identifies one context; held by connections to ask a later context whether it directly
/// follows the one they last generated from.
#[derive(Clone, Debug)]
pub struct Generation(Arc<()>);

/// Everything translation needs for one snapshot. Cheap to create; the shared resource lists
/// are built on the first request that needs them and then handed out as `Arc` clones.
pub struct PushContext {
    snapshot: Arc<Snapshot>,
    mesh: MeshConfig,
    allocations: Allocations,
    registry: Registry,
    peer_authentications: PeerAuthentications,
    clusters: Slot,
    endpoints: Slot,
    listeners: Slot,
    /// Route configurations per proxy DNS domain (`<ns>.svc.cluster.local`), one slot for each
    /// namespace the snapshot knows; other domains are built uncached (as own resources).
    routes: BTreeMap<String, Slot>,
    generation: Generation,
    /// The predecessor's generation (weak: contexts never keep older ones alive).
    follows: Option<Weak<()>>,
    /// Whose own resources may differ from the predecessor's.
    scope: ProxyScope,
}

impl PushContext {
    pub fn new(snapshot: Arc<Snapshot>, allocations: &Allocations, mesh: &MeshConfig) -> Self {
        Self::build(snapshot, allocations, mesh, None)
    }

    /// The context of the next configuration version: its shared lists record what changed
    /// against `prev`'s (those `prev` had built), and it knows whose own resources changed.
    pub fn next(
        prev: &PushContext,
        snapshot: Arc<Snapshot>,
        allocations: &Allocations,
        mesh: &MeshConfig,
    ) -> Self {
        Self::build(snapshot, allocations, mesh, Some(prev))
    }

    fn build(
        snapshot: Arc<Snapshot>,
        allocations: &Allocations,
        mesh: &MeshConfig,
        prev: Option<&PushContext>,
    ) -> Self {
        let registry = Registry::build(&snapshot, allocations, mesh);
        let peer_authentications = PeerAuthentications::new(&snapshot, &mesh.root_namespace);
        let mut namespaces: Vec<String> = snapshot
            .iter()
            .map(|(k, _)| {
                if k.kind == weft_model::Kind::Namespace {
                    k.name.clone()
                } else {
                    k.namespace.clone()
                }
            })
            .filter(|ns| !ns.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        let slot =
            |f: fn(&PushContext) -> &Slot| prev.map(|p| Slot::after(f(p))).unwrap_or_default();
        let routes = namespaces
            .into_iter()
            .map(|ns| {
                let domain = format!("{ns}.svc.{DOMAIN_SUFFIX}");
                let s = prev
                    .and_then(|p| p.routes.get(&domain))
                    .map(Slot::after)
                    .unwrap_or_default();
                (domain, s)
            })
            .collect();
        let scope = match prev {
            Some(p) => ProxyScope::between(
                &p.snapshot,
                &snapshot,
                p.allocations == *allocations && p.mesh == *mesh,
            ),
            None => ProxyScope::All,
        };
        PushContext {
            clusters: slot(|p| &p.clusters),
            endpoints: slot(|p| &p.endpoints),
            listeners: slot(|p| &p.listeners),
            routes,
            snapshot,
            mesh: mesh.clone(),
            allocations: allocations.clone(),
            registry,
            peer_authentications,
            generation: Generation(Arc::new(())),
            follows: prev.map(|p| Arc::downgrade(&p.generation.0)),
            scope,
        }
    }

    pub fn generation(&self) -> Generation {
        self.generation.clone()
    }

    /// Whether this context was built (by [`PushContext::next`]) from the one of `generation`.
    pub fn follows(&self, generation: &Generation) -> bool {
        self.follows
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&generation.0)))
    }

    /// Whether `proxy`'s own resources of `type_url` ([`PushContext::own`]) are the same as in
    /// the context of `since`, known without building them: it is this context, or this context
    /// directly follows that one and its changes cannot touch them.
    pub fn own_unchanged(&self, proxy: &Proxy, type_url: &str, since: &Generation) -> bool {
        if Arc::ptr_eq(&self.generation.0, &since.0) {
            return true;
        }
        if !self.follows(since) {
            return false;
        }
        match type_url {
            type_url::CLUSTER | type_url::LISTENER => !self.scope.touches(proxy),
            _ => matches!(self.scope, ProxyScope::Nothing),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn mesh(&self) -> &MeshConfig {
        &self.mesh
    }

    /// The mTLS modes the proxy's inbound ports accept.
    pub fn mtls_policy(&self, proxy: &Proxy) -> MtlsPolicy {
        self.peer_authentications
            .resolve(&proxy.namespace, &self.registry.proxy_labels(proxy))
    }

    /// Resources of `type_url` for `proxy`, ordered (deterministically) as Envoy should apply
    /// them: the shared list, then the proxy's own. Shared ones are the same `Arc` for every proxy.
    /// Routers (gateways) get clusters and endpoints only, for now. Unknown type URLs give nothing.
    pub fn generate(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>> {
        let mut out = self
            .shared(proxy, type_url)
            .map(|l| l.items().to_vec())
            .unwrap_or_default();
        out.extend(self.own(proxy, type_url));
        out
    }

    /// The part of [`PushContext::generate`] that every proxy of its kind (and, for routes, of its
    /// DNS domain) shares: the same list for all of them.
    pub fn shared(&self, proxy: &Proxy, type_url: &str) -> Option<&Arc<SharedList>> {
        let sidecar = proxy.kind == ProxyKind::Sidecar;
        match type_url {
            type_url::CLUSTER => Some(self.clusters.get(|| self.build_clusters())),
            type_url::ENDPOINT => Some(self.endpoints.get(|| self.build_endpoints())),
            type_url::LISTENER if sidecar => Some(self.listeners.get(|| self.build_listeners())),
            type_url::ROUTE if sidecar => self
                .routes
                .get(&proxy.dns_domain)
                .map(|slot| slot.get(|| self.build_routes(&proxy.dns_domain))),
            _ => None,
        }
    }

    /// The rest of [`PushContext::generate`]: built for this proxy alone (`inbound|<port>||`
    /// clusters, `virtualInbound`, routes of a DNS domain no namespace has). These may depend only
    /// on what `scope` says they do.
    pub fn own(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>> {
        if proxy.kind != ProxyKind::Sidecar {
            return Vec::new();
        }
        match type_url {
            type_url::CLUSTER => self
                .registry
                .inbound_ports(proxy)
                .iter()
                .map(|p| {
                    let c = clusters::inbound(p);
                    resource(c.name.clone(), c)
                })
                .collect(),
            type_url::LISTENER => {
                let inbound = listeners::inbound::virtual_inbound(
                    &self.registry.inbound_ports(proxy),
                    &self.mtls_policy(proxy),
                );
                vec![resource(inbound.name.clone(), inbound)]
            }
            type_url::ROUTE if !self.routes.contains_key(&proxy.dns_domain) => {
                self.build_routes(&proxy.dns_domain)
            }
            _ => Vec::new(),
        }
    }

    /// Outbound clusters (by name), then BlackHoleCluster, InboundPassthroughCluster,
    /// PassthroughCluster.
    pub fn shared_clusters(&self) -> &[Arc<NamedResource>] {
        self.clusters.get(|| self.build_clusters()).items()
    }

    fn build_clusters(&self) -> Vec<Arc<NamedResource>> {
        let mut out: Vec<Arc<NamedResource>> = Vec::new();
        for svc in self.registry.services() {
            for p in &svc.ports {
                let c = clusters::outbound(svc, p);
                out.push(resource(c.name.clone(), c));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        for c in [
            clusters::blackhole(),
            clusters::inbound_passthrough(),
            clusters::passthrough(),
        ] {
            out.push(resource(c.name.clone(), c));
        }
        out
    }

    /// One ClusterLoadAssignment per EDS cluster (resource name = cluster name), by name. Every
    /// EDS cluster has one, possibly empty: Envoy waits for it (initial fetch timeout 0).
    pub fn shared_endpoints(&self) -> &[Arc<NamedResource>] {
        self.endpoints.get(|| self.build_endpoints()).items()
    }

    fn build_endpoints(&self) -> Vec<Arc<NamedResource>> {
        let mut out: Vec<Arc<NamedResource>> = Vec::new();
        for svc in self.registry.services() {
            if svc.resolution != Resolution::ClientSideLb {
                continue;
            }
            for p in &svc.ports {
                let name = outbound_cluster(p.port, &svc.hostname);
                let cla = load_assignment(&name, svc.endpoints(p.port));
                out.push(resource(name, cla));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `virtualOutbound`, then the per-port outbound listeners by name.
    pub fn shared_listeners(&self) -> &[Arc<NamedResource>] {
        self.listeners.get(|| self.build_listeners()).items()
    }

    fn build_listeners(&self) -> Vec<Arc<NamedResource>> {
        listeners::outbound::listeners(&self.registry, &self.mesh)
            .into_iter()
            .map(|l| resource(l.name.clone(), l))
            .collect()
    }

    fn build_routes(&self, dns_domain: &str) -> Vec<Arc<NamedResource>> {
        routes::route_configs(&self.registry, &self.mesh, dns_domain)
            .into_iter()
            .map(|rc| resource(rc.name.clone(), rc))
            .collect()
    }
}

fn resource<M: prost::Message + prost::Name>(name: String, msg: M) -> Arc<NamedResource> {
    Arc::new(NamedResource::new(name, pack_any(msg)))
}
