//! The per-snapshot push context: the registry, PeerAuthentications, and the resources every
//! sidecar shares, built once on first use. A context built with [`PushContext::next`] also knows
//! what changed since its predecessor: per shared list (see [`SharedList`]) and which proxies' own
//! resources may differ (see `scope`).

use crate::authn::{MtlsPolicy, PeerAuthentications};
use crate::authz::{self, AuthorizationPolicies};
use crate::destination_rule::{Client, DestinationRules, add_hash_policies};
use crate::mesh::MeshConfig;
use crate::network::{NetworkView, Networks};
use crate::proxy::{Proxy, ProxyKind};
use crate::registry::{Allocations, Registry, Resolution};
use crate::resource::NamedResource;
use crate::scope::ProxyScope;
use crate::shared::SharedList;
use crate::virtual_service::VirtualServices;
use crate::{DOMAIN_SUFFIX, clusters, endpoints, gateway, listeners, name_table, routes};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use weft_model::snapshot::Snapshot;
use weft_proto::envoy_types::util::pack_any;
use weft_proto::type_url;

type Shared = OnceLock<Vec<Arc<NamedResource>>>;

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
    authorization_policies: AuthorizationPolicies,
    networks: Networks,
    virtual_services: VirtualServices,
    destination_rules: DestinationRules,
    clusters: Slot,
    endpoints: Slot,
    /// With network gateways, endpoints differ per network (split horizon): one slot per network
    /// the configuration names; other views are built uncached.
    network_endpoints: BTreeMap<String, Shared>,
    listeners: Slot,
    /// Route configurations per proxy DNS domain (`<ns>.svc.cluster.local`), one slot for each
    /// namespace the snapshot knows; other domains are built uncached.
    routes: BTreeMap<String, Slot>,
    /// Outbound listeners per proxy namespace, used instead of `listeners` when VirtualServices
    /// bound to `mesh` have TCP or TLS routes (what a proxy sees depends on its namespace).
    namespace_listeners: BTreeMap<String, Shared>,
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
        let authorization_policies = AuthorizationPolicies::new(&snapshot, &mesh.root_namespace);
        let networks = Networks::build(&snapshot, &registry, &mesh.networks, &mesh.root_namespace);
        let network_endpoints = if networks.multi_network() {
            let known = networks.known().iter();
            known.map(|n| (n.clone(), OnceLock::new())).collect()
        } else {
            BTreeMap::new()
        };
        let virtual_services = VirtualServices::new(&snapshot);
        let destination_rules = DestinationRules::new(&snapshot, &mesh.root_namespace, &registry);
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
        let namespace_listeners = namespaces
            .iter()
            .map(|ns| (ns.clone(), OnceLock::new()))
            .collect();
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
            snapshot,
            mesh: mesh.clone(),
            allocations: allocations.clone(),
            registry,
            peer_authentications,
            authorization_policies,
            networks,
            virtual_services,
            destination_rules,
            network_endpoints,
            routes,
            namespace_listeners,
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
    /// directly follows that one and its changes cannot touch them. A proxy that does not take a
    /// type's shared list (see [`PushContext::shared`]) has all of it as its own: then only the
    /// same context vouches for it.
    pub fn own_unchanged(&self, proxy: &Proxy, type_url: &str, since: &Generation) -> bool {
        if Arc::ptr_eq(&self.generation.0, &since.0) {
            return true;
        }
        if !self.follows(since) || !self.takes_shared(proxy, type_url) {
            return false;
        }
        match type_url {
            type_url::CLUSTER | type_url::LISTENER => !self.scope.touches(proxy),
            _ => matches!(self.scope, ProxyScope::Nothing),
        }
    }

    /// Whether `proxy`'s resources of `type_url` are a shared list plus its own additions: a
    /// sidecar without proxy-specific DestinationRule settings, on the mesh's single network,
    /// whose listeners and routes do not depend on its namespace or labels beyond the shared
    /// per-namespace route configurations.
    fn takes_shared(&self, proxy: &Proxy, type_url: &str) -> bool {
        if proxy.kind != ProxyKind::Sidecar {
            return false;
        }
        match type_url {
            type_url::CLUSTER => !self
                .destination_rules
                .has_proxy_specific(&self.registry, proxy),
            type_url::ENDPOINT => {
                !self.networks.multi_network()
                    && self.networks.view(proxy).plain().is_some()
                    && !self
                        .destination_rules
                        .has_proxy_specific(&self.registry, proxy)
            }
            type_url::LISTENER => !self.virtual_services.has_mesh_l4_routes(),
            type_url::ROUTE => {
                !self.virtual_services.http_routes_depend_on_labels()
                    && proxy.dns_domain == format!("{}.svc.{DOMAIN_SUFFIX}", proxy.namespace)
                    && self.routes.contains_key(&proxy.dns_domain)
            }
            _ => false,
        }
    }

    /// The part of [`PushContext::generate`] that every proxy of its kind (and, for routes, of its
    /// DNS domain) shares: the same list for all of them. `None` for proxies whose view differs
    /// (their [`PushContext::own`] is everything).
    pub fn shared(&self, proxy: &Proxy, type_url: &str) -> Option<&Arc<SharedList>> {
        if !self.takes_shared(proxy, type_url) {
            return None;
        }
        match type_url {
            type_url::CLUSTER => Some(self.shared_cluster_list()),
            type_url::ENDPOINT => Some(self.shared_endpoint_list()),
            type_url::LISTENER => Some(self.shared_listener_list()),
            type_url::ROUTE => self
                .routes
                .get(&proxy.dns_domain)
                .map(|slot| slot.get(|| self.build_routes(proxy))),
            _ => None,
        }
    }

    /// The rest of [`PushContext::generate`]: built for this proxy alone (`inbound|<port>||`
    /// clusters and `virtualInbound` beside the shared lists; everything for proxies that do not
    /// take the shared list of a type, routers, and per-proxy types such as the name table).
    pub fn own(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>> {
        if !self.takes_shared(proxy, type_url) {
            return self.full(proxy, type_url);
        }
        match type_url {
            type_url::CLUSTER => self.inbound_clusters(proxy),
            type_url::LISTENER => vec![self.virtual_inbound(proxy)],
            _ => Vec::new(),
        }
    }

    fn inbound_clusters(&self, proxy: &Proxy) -> Vec<Arc<NamedResource>> {
        self.registry
            .inbound_ports(proxy)
            .iter()
            .map(|p| {
                let rule = self
                    .registry
                    .service(&p.service_host)
                    .and_then(|svc| self.destination_rules.inbound(&proxy.namespace, svc));
                let c = clusters::inbound(p, rule.map(|r| r.as_ref()));
                resource(c.name.clone(), c)
            })
            .collect()
    }

    fn virtual_inbound(&self, proxy: &Proxy) -> Arc<NamedResource> {
        let inbound = listeners::inbound::virtual_inbound(
            &self.registry.inbound_ports(proxy),
            &self.mtls_policy(proxy),
            &self.inbound_authz(proxy),
        );
        resource(inbound.name.clone(), inbound)
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

    pub(crate) fn virtual_services(&self) -> &VirtualServices {
        &self.virtual_services
    }

    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    /// The mTLS modes the proxy's inbound ports accept.
    pub fn mtls_policy(&self, proxy: &Proxy) -> MtlsPolicy {
        self.peer_authentications
            .resolve(&proxy.namespace, &self.registry.proxy_labels(proxy))
    }

    /// The RBAC filters of the AuthorizationPolicies that apply to `proxy`'s workload.
    fn inbound_authz(&self, proxy: &Proxy) -> listeners::inbound::InboundAuthz {
        let labels = self.registry.proxy_labels(proxy);
        let applicable = self
            .authorization_policies
            .applicable(&proxy.namespace, &labels);
        listeners::inbound::InboundAuthz {
            http: authz::http_filters(&applicable),
            tcp: authz::network_filters(&applicable),
        }
    }

    /// Resources of `type_url` for `proxy`, ordered (deterministically) as Envoy should apply
    /// them. Shared ones are the same `Arc` for every proxy. Routers (gateways) are configured
    /// from their Gateways (see [`gateway`]). Unknown type URLs give nothing.
    pub fn generate(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>> {
        let mut out = self
            .shared(proxy, type_url)
            .map(|l| l.items().to_vec())
            .unwrap_or_default();
        out.extend(self.own(proxy, type_url));
        out
    }

    /// Everything of `type_url` for `proxy`, built for it.
    fn full(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>> {
        let sidecar = proxy.kind == ProxyKind::Sidecar;
        match type_url {
            type_url::CLUSTER | type_url::ENDPOINT | type_url::LISTENER | type_url::ROUTE
                if proxy.kind == ProxyKind::Router =>
            {
                gateway::generate(self, proxy, type_url)
            }
            type_url::CLUSTER => {
                let specific = self.destination_rules.proxy_specific(&self.registry, proxy);
                let mut out = clusters::for_proxy(self.shared_clusters(), &specific);
                if sidecar {
                    out.extend(self.inbound_clusters(proxy));
                }
                out
            }
            type_url::ENDPOINT => {
                let view = self.networks.view(proxy);
                let specific = self.destination_rules.proxy_specific(&self.registry, proxy);
                let base = self.endpoints_for(&view);
                endpoints::for_proxy(&base, &specific, (&self.networks, &view))
            }
            type_url::LISTENER if sidecar => {
                let mut out = self.outbound_listeners(proxy);
                out.push(self.virtual_inbound(proxy));
                out
            }
            type_url::NAME_TABLE => vec![resource(
                String::new(),
                name_table::name_table(&self.registry, proxy),
            )],
            type_url::ROUTE if sidecar => {
                // Shared by namespace unless routes depend on labels, or the proxy's DNS domain
                // is not its namespace's.
                let shared = !self.virtual_services.http_routes_depend_on_labels()
                    && proxy.dns_domain == format!("{}.svc.{DOMAIN_SUFFIX}", proxy.namespace);
                match self.routes.get(&proxy.dns_domain).filter(|_| shared) {
                    Some(slot) => slot.get(|| self.build_routes(proxy)).items().to_vec(),
                    None => self.build_routes(proxy),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Outbound clusters (by name), then BlackHoleCluster, InboundPassthroughCluster,
    /// PassthroughCluster.
    pub fn shared_clusters(&self) -> &[Arc<NamedResource>] {
        self.shared_cluster_list().items()
    }

    fn shared_cluster_list(&self) -> &Arc<SharedList> {
        self.clusters.get(|| {
            let mut out: Vec<Arc<NamedResource>> = Vec::new();
            for svc in self.registry.services() {
                let rule = self.destination_rules.shared(svc);
                for p in &svc.ports {
                    for c in clusters::outbound(svc, p, rule, &Client::default()) {
                        out.push(resource(c.name.clone(), c));
                    }
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
        })
    }

    /// One ClusterLoadAssignment per EDS cluster (resource name = cluster name), by name. Every
    /// EDS cluster has one, possibly empty: Envoy waits for it (initial fetch timeout 0). These
    /// are every proxy's while the mesh has a single network (no network gateways).
    pub fn shared_endpoints(&self) -> &[Arc<NamedResource>] {
        self.shared_endpoint_list().items()
    }

    fn shared_endpoint_list(&self) -> &Arc<SharedList> {
        self.endpoints
            .get(|| self.build_endpoints(&NetworkView::default()))
    }

    /// The endpoints a proxy with `view` gets: shared by all proxies while the mesh has one
    /// network, by all proxies of a network otherwise (split horizon).
    pub fn endpoints_for(&self, view: &NetworkView) -> Vec<Arc<NamedResource>> {
        match view.plain() {
            Some(_) if !self.networks.multi_network() => self.shared_endpoints().to_vec(),
            Some(net) => match self.network_endpoints.get(net) {
                Some(slot) => slot.get_or_init(|| self.build_endpoints(view)).clone(),
                None => self.build_endpoints(view),
            },
            None => self.build_endpoints(view),
        }
    }

    /// Every EDS cluster's assignment (default and subset clusters) as proxies with `view` see
    /// them, for clients without proxy-specific DestinationRule settings.
    fn build_endpoints(&self, view: &NetworkView) -> Vec<Arc<NamedResource>> {
        let mut out: Vec<Arc<NamedResource>> = Vec::new();
        for svc in self.registry.services() {
            if svc.resolution != Resolution::ClientSideLb {
                continue;
            }
            let rule = self.destination_rules.shared(svc);
            for p in &svc.ports {
                let net = (&self.networks, view);
                for (name, cla) in endpoints::outbound(svc, p.port, rule, &Client::default(), net) {
                    out.push(resource(name, cla));
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `virtualOutbound`, then the per-port outbound listeners by name.
    pub fn shared_listeners(&self) -> &[Arc<NamedResource>] {
        self.shared_listener_list().items()
    }

    fn shared_listener_list(&self) -> &Arc<SharedList> {
        self.listeners.get(|| {
            listeners::outbound::listeners(&self.registry, &self.mesh, None)
                .into_iter()
                .map(|l| resource(l.name.clone(), l))
                .collect()
        })
    }

    /// The outbound listeners `proxy` gets: the shared ones, unless VirtualServices bound to
    /// `mesh` have TCP or TLS routes; then per namespace (per proxy when those routes match
    /// source labels).
    fn outbound_listeners(&self, proxy: &Proxy) -> Vec<Arc<NamedResource>> {
        let vs = &self.virtual_services;
        if !vs.has_mesh_l4_routes() {
            return self.shared_listeners().to_vec();
        }
        let slot = self
            .namespace_listeners
            .get(&proxy.namespace)
            .filter(|_| !vs.l4_routes_depend_on_labels());
        match slot {
            Some(slot) => slot.get_or_init(|| self.build_listeners(proxy)).clone(),
            None => self.build_listeners(proxy),
        }
    }

    fn build_listeners(&self, proxy: &Proxy) -> Vec<Arc<NamedResource>> {
        let labels = self.registry.proxy_labels(proxy);
        let scope = listeners::tcp_routes::L4Scope {
            registry: &self.registry,
            vss: self.virtual_services.for_mesh(&proxy.namespace),
            labels: &labels,
            namespace: &proxy.namespace,
        };
        listeners::outbound::listeners(&self.registry, &self.mesh, Some(&scope))
            .into_iter()
            .map(|l| resource(l.name.clone(), l))
            .collect()
    }

    fn build_routes(&self, proxy: &Proxy) -> Vec<Arc<NamedResource>> {
        let labels = self.registry.proxy_labels(proxy);
        let scope = routes::RouteScope {
            namespace: &proxy.namespace,
            dns_domain: &proxy.dns_domain,
            labels: &labels,
        };
        let mut configs =
            routes::route_configs(&self.registry, &self.virtual_services, &self.mesh, &scope);
        add_hash_policies(
            &mut configs,
            &self.destination_rules,
            &self.registry,
            &proxy.namespace,
        );
        configs
            .into_iter()
            .map(|rc| resource(rc.name.clone(), rc))
            .collect()
    }
}

fn resource<M: prost::Message + prost::Name>(name: String, msg: M) -> Arc<NamedResource> {
    Arc::new(NamedResource::new(name, pack_any(msg)))
}
