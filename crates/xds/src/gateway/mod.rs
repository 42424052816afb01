//! Routers (gateways, `router~…` nodes): what a `weft-agent proxy router` Envoy is sent, from the
//! `Gateway` resources that select it (Istio's gateway translation, `gateway.go`).
//!
//! - LDS: one listener per merged server port (`0.0.0.0_<port>`, see [`merge`]), with the
//!   filter chains of [`chains`]; `tls_inspector` when a chain matches SNI or ALPN. No capture,
//!   no inbound listener: a router listens on its Gateway ports.
//! - CDS: the outbound clusters every proxy has and `BlackHoleCluster` (no passthrough clusters:
//!   a router has no original-destination listener), plus the SNI-DNAT clusters of
//!   [`sni_dnat`] when a server is `AUTO_PASSTHROUGH`.
//! - EDS: the outbound endpoints as the router's network view has them (split horizon), plus
//!   the SNI-DNAT clusters' endpoints.
//!
//! - HTTP listeners and terminated HTTPS servers: HTTP connection managers on RDS, the route
//!   configurations from the bound VirtualServices (see [`http`]).
//! - RDS: one route configuration per name the HTTP chains use.
//!
//! - TLS servers with `SIMPLE`/`MUTUAL`: TLS terminated with the certificate files, then the
//!   `tcp` routes as on a plaintext TCP server.
//! - HTTPS servers with `ISTIO_MUTUAL`: the router's own mesh certificate (SDS `default`),
//!   client certificates checked against `ROOTCA`.
//!
//! Not handled yet: `OPTIONAL_MUTUAL` servers, `ISTIO_MUTUAL` on TLS (non-HTTPS) servers, and
//! `credentialName`. Such servers are merged (so that they still
//! take their ports and hosts, as in Istio) but give no filter chains, and a listener without
//! chains is left out, as istiod leaves it out.

mod chains;
mod hosts;
mod http;
mod merge;
mod sni_dnat;
mod subsets;
#[cfg(test)]
mod tests;

use crate::context::PushContext;
use crate::names::{INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER};
use crate::network::NetworkView;
use crate::proxy::Proxy;
use crate::registry::Protocol;
use crate::resource::NamedResource;
use crate::util::socket_address;
use merge::{ListenerClass, MergedListener};
use std::collections::BTreeMap;
use std::sync::Arc;
use subsets::Subsets;
use weft_proto::envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use weft_proto::envoy_types::util::pack_any;
use weft_proto::type_url;

/// Resources of `type_url` for the router `proxy`.
pub(crate) fn generate(
    ctx: &PushContext,
    proxy: &Proxy,
    type_url: &str,
) -> Vec<Arc<NamedResource>> {
    let router = Router::new(ctx, proxy);
    match type_url {
        type_url::CLUSTER => router.clusters(),
        type_url::ENDPOINT => router.endpoints(),
        type_url::LISTENER => router.listeners(),
        type_url::ROUTE => router.routes(proxy),
        _ => Vec::new(),
    }
}

/// One router's view of a push context.
struct Router<'a> {
    ctx: &'a PushContext,
    listeners: Vec<MergedListener<'a>>,
    subsets: Subsets<'a>,
    view: NetworkView,
}

impl<'a> Router<'a> {
    fn new(ctx: &'a PushContext, proxy: &'a Proxy) -> Self {
        let registry = ctx.registry();
        let labels = registry.proxy_labels(proxy);
        // Server port → target port of the router's own Services (Istio's `resolvePorts`).
        let inbound = registry.inbound_ports(proxy);
        let target = |port: u32| {
            inbound
                .iter()
                .find(|p| p.service_port == port)
                .map_or(port, |p| p.port)
        };
        Router {
            ctx,
            listeners: merge::merge(ctx.snapshot(), &labels, target),
            subsets: Subsets::build(ctx.snapshot(), &proxy.namespace, &ctx.mesh().root_namespace),
            view: ctx.networks().view(proxy),
        }
    }

    fn auto_passthrough(&self) -> bool {
        self.listeners
            .iter()
            .flat_map(|l| &l.servers)
            .any(|s| s.tls_mode() == Some("AUTO_PASSTHROUGH"))
    }

    fn clusters(&self) -> Vec<Arc<NamedResource>> {
        let mut out: Vec<Arc<NamedResource>> = self
            .ctx
            .shared_clusters()
            .iter()
            .filter(|c| c.name != PASSTHROUGH_CLUSTER && c.name != INBOUND_PASSTHROUGH_CLUSTER)
            .cloned()
            .collect();
        if self.auto_passthrough() {
            let reg = self.ctx.registry();
            let nets = self.ctx.networks();
            out.extend(
                sni_dnat::clusters(reg, nets, &self.view, &self.subsets)
                    .into_iter()
                    .map(|c| resource(c.name.clone(), c)),
            );
        }
        out
    }

    fn endpoints(&self) -> Vec<Arc<NamedResource>> {
        let mut out = self.ctx.endpoints_for(&self.view);
        if self.auto_passthrough() {
            let reg = self.ctx.registry();
            let nets = self.ctx.networks();
            out.extend(
                sni_dnat::load_assignments(reg, nets, &self.view, &self.subsets)
                    .into_iter()
                    .map(|c| resource(c.cluster_name.clone(), c)),
            );
        }
        out
    }

    fn listeners(&self) -> Vec<Arc<NamedResource>> {
        self.listeners
            .iter()
            .filter_map(|l| {
                let chains = self.chains(l);
                (!chains.is_empty()).then(|| {
                    let listener = listener(l, chains);
                    resource(listener.name.clone(), listener)
                })
            })
            .collect()
    }

    fn chains(&self, l: &MergedListener<'_>) -> Vec<FilterChain> {
        let (snapshot, registry) = (self.ctx.snapshot(), self.ctx.registry());
        match l.class {
            ListenerClass::Http => l
                .servers
                .first()
                .and_then(|s| http::plaintext_chain(s, &l.name(), l.port))
                .into_iter()
                .collect(),
            ListenerClass::Tcp => l
                .servers
                .iter()
                .filter(|s| s.server.tls.is_none())
                .find_map(|s| chains::tcp(snapshot, registry, s))
                .into_iter()
                .collect(),
            ListenerClass::Tls => {
                let mut taken = BTreeMap::new();
                let mut out: Vec<FilterChain> = Vec::new();
                for s in &l.servers {
                    let more = match s.tls_mode() {
                        Some("AUTO_PASSTHROUGH") => {
                            chains::auto_passthrough(registry, &self.subsets, s)
                        }
                        Some("PASSTHROUGH") => {
                            chains::tls_passthrough(snapshot, registry, s, &mut taken)
                        }
                        Some("SIMPLE" | "MUTUAL" | "ISTIO_MUTUAL")
                            if s.protocol() == Protocol::Https =>
                        {
                            http::https_chain(s, &l.name(), l.port)
                                .into_iter()
                                .collect()
                        }
                        Some("SIMPLE" | "MUTUAL") => chains::tcp(snapshot, registry, s)
                            .and_then(|c| http::terminated(s, c))
                            .into_iter()
                            .collect(),
                        _ => Vec::new(),
                    };
                    // Envoy refuses two chains with the same match: the first server wins.
                    for c in more {
                        if !out
                            .iter()
                            .any(|o| o.filter_chain_match == c.filter_chain_match)
                        {
                            out.push(c);
                        }
                    }
                }
                out
            }
        }
    }
}

impl Router<'_> {
    /// The route configurations the router's HTTP chains use, by name; the servers of each in
    /// merge order.
    fn routes(&self, proxy: &Proxy) -> Vec<Arc<NamedResource>> {
        let mut by_name: BTreeMap<String, Vec<&merge::BoundServer<'_>>> = BTreeMap::new();
        for l in &self.listeners {
            for s in &l.servers {
                let served = match l.class {
                    ListenerClass::Http => true,
                    ListenerClass::Tls => {
                        matches!(s.tls_mode(), Some("SIMPLE" | "MUTUAL" | "ISTIO_MUTUAL"))
                    }
                    ListenerClass::Tcp => false,
                };
                if served && let Some(name) = http::route_name(s, l.port) {
                    by_name.entry(name).or_default().push(s);
                }
            }
        }
        let labels = self.ctx.registry().proxy_labels(proxy);
        let inputs = http::RouteInputs {
            registry: self.ctx.registry(),
            virtual_services: self.ctx.virtual_services(),
            proxy_namespace: &proxy.namespace,
            proxy_labels: &labels,
        };
        by_name
            .iter()
            .map(|(name, servers)| {
                let rc = http::route_config(&inputs, name, servers);
                resource(rc.name.clone(), rc)
            })
            .collect()
    }
}

fn listener(l: &MergedListener<'_>, filter_chains: Vec<FilterChain>) -> Listener {
    let inspect = filter_chains.iter().any(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.server_names.is_empty() || !m.application_protocols.is_empty())
    });
    Listener {
        name: l.name(),
        address: socket_address(l.address(), l.port),
        traffic_direction: TrafficDirection::Outbound as i32,
        listener_filters: if inspect {
            vec![crate::listeners::tls_inspector_filter()]
        } else {
            Vec::new()
        },
        filter_chains,
        ..Default::default()
    }
}

fn resource<M: prost::Message + prost::Name>(name: String, msg: M) -> Arc<NamedResource> {
    Arc::new(NamedResource::new(name, pack_any(msg)))
}
