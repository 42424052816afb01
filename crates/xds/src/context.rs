//! The per-snapshot push context: the registry, PeerAuthentications, and the resources every
//! sidecar shares, built once on first use.

use crate::authn::{MtlsPolicy, PeerAuthentications};
use crate::authz::{self, AuthorizationPolicies};
use crate::destination_rule::{Client, DestinationRules, add_hash_policies};
use crate::mesh::MeshConfig;
use crate::network::{NetworkView, Networks};
use crate::proxy::{Proxy, ProxyKind};
use crate::registry::{Allocations, Registry, Resolution};
use crate::resource::NamedResource;
use crate::virtual_service::VirtualServices;
use crate::{DOMAIN_SUFFIX, clusters, endpoints, gateway, listeners, name_table, routes};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use weft_model::snapshot::Snapshot;
use weft_proto::envoy_types::util::pack_any;
use weft_proto::type_url;

type Shared = OnceLock<Vec<Arc<NamedResource>>>;

/// Everything translation needs for one snapshot. Cheap to create; the shared resource lists
/// are built on the first request that needs them and then handed out as `Arc` clones.
pub struct PushContext {
    snapshot: Arc<Snapshot>,
    mesh: MeshConfig,
    registry: Registry,
    peer_authentications: PeerAuthentications,
    authorization_policies: AuthorizationPolicies,
    networks: Networks,
    virtual_services: VirtualServices,
    destination_rules: DestinationRules,
    clusters: Shared,
    endpoints: Shared,
    /// With network gateways, endpoints differ per network (split horizon): one slot per network
    /// the configuration names; other views are built uncached.
    network_endpoints: BTreeMap<String, Shared>,
    listeners: Shared,
    /// Route configurations per proxy DNS domain (`<ns>.svc.cluster.local`), one slot for each
    /// namespace the snapshot knows; other domains are built uncached.
    routes: BTreeMap<String, Shared>,
    /// Outbound listeners per proxy namespace, used instead of `listeners` when VirtualServices
    /// bound to `mesh` have TCP or TLS routes (what a proxy sees depends on its namespace).
    namespace_listeners: BTreeMap<String, Shared>,
}

impl PushContext {
    pub fn new(snapshot: Arc<Snapshot>, allocations: &Allocations, mesh: &MeshConfig) -> Self {
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
        let routes = namespaces
            .into_iter()
            .map(|ns| (format!("{ns}.svc.{DOMAIN_SUFFIX}"), OnceLock::new()))
            .collect();
        PushContext {
            snapshot,
            mesh: mesh.clone(),
            registry,
            peer_authentications,
            authorization_policies,
            networks,
            virtual_services,
            destination_rules,
            clusters: OnceLock::new(),
            endpoints: OnceLock::new(),
            network_endpoints,
            listeners: OnceLock::new(),
            routes,
            namespace_listeners,
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
        let sidecar = proxy.kind == ProxyKind::Sidecar;
        match type_url {
            type_url::CLUSTER | type_url::ENDPOINT | type_url::LISTENER
                if proxy.kind == ProxyKind::Router =>
            {
                gateway::generate(self, proxy, type_url)
            }
            type_url::CLUSTER => {
                let specific = self.destination_rules.proxy_specific(&self.registry, proxy);
                let mut out = clusters::for_proxy(self.shared_clusters(), &specific);
                if sidecar {
                    out.extend(self.registry.inbound_ports(proxy).iter().map(|p| {
                        let rule = self
                            .registry
                            .service(&p.service_host)
                            .and_then(|svc| self.destination_rules.inbound(&proxy.namespace, svc));
                        let c = clusters::inbound(p, rule.map(|r| r.as_ref()));
                        resource(c.name.clone(), c)
                    }));
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
                let inbound = listeners::inbound::virtual_inbound(
                    &self.registry.inbound_ports(proxy),
                    &self.mtls_policy(proxy),
                    &self.inbound_authz(proxy),
                );
                out.push(resource(inbound.name.clone(), inbound));
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
                    Some(slot) => slot.get_or_init(|| self.build_routes(proxy)).clone(),
                    None => self.build_routes(proxy),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Outbound clusters (by name), then BlackHoleCluster, InboundPassthroughCluster,
    /// PassthroughCluster.
    pub fn shared_clusters(&self) -> &[Arc<NamedResource>] {
        self.clusters.get_or_init(|| {
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
        self.endpoints
            .get_or_init(|| self.build_endpoints(&NetworkView::default()))
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
        self.listeners.get_or_init(|| {
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
