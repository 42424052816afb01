//! Networks, as Istio's multi-network model has them: workloads and proxies carry a `network`;
//! a network is reached from the others through its gateways (east-west gateways listening on
//! 15443 in `AUTO_PASSTHROUGH`); a proxy is sent the endpoints of other networks as those
//! gateways ("split horizon", [`Networks::split_horizon`]).
//!
//! - An endpoint's network: its WorkloadEntry's `network`, else the entry's
//!   `topology.istio.io/network` label, else that label on the system namespace (the mesh root
//!   namespace, `istio-system`), else the mesh networks' network listing a `fromRegistry` source,
//!   else the first (by name) whose `fromCidr` holds the address (Istio's order).
//! - A proxy's network: node metadata `NETWORK`. `REQUESTED_NETWORK_VIEW` (comma-separated)
//!   limits the networks whose endpoints it is sent (endpoints without a network always are).
//! - Gateways: see [`discovery`].
//!
//! Beyond Istio, one rule: a router whose own address (node IP or `INSTANCE_IPS`) is a gateway
//! address of a network is treated as *on* that network. It is that network's way in, so it must
//! deliver to the network's endpoints directly; Istio would send it its own address instead and
//! the gateway would loop to itself. This is what lets one multi-homed gateway bridge both ways:
//! the lab's east-west gateway is the `cluster` network's gateway for VMs and, through mesh
//! networks, the `vm-network`'s gateway for the cluster.

mod config;
mod discovery;
mod split;
#[cfg(test)]
mod tests;

pub use config::{Cidr, IstioNetworkGateway, MeshNetwork, MeshNetworks, NetworkEndpoints};

use crate::proxy::{Proxy, ProxyKind};
use crate::registry::{Endpoint, Registry};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use weft_model::kind::Kind;
use weft_model::snapshot::Snapshot;

/// Label of Services (gateways), WorkloadEntries and namespaces naming their network.
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
/// Label of a gateway Service naming its mTLS port.
pub const GATEWAY_PORT_LABEL: &str = "networking.istio.io/gatewayPort";
/// The gateway port when the label does not say.
pub const DEFAULT_GATEWAY_PORT: u32 = 15443;
/// Node metadata: the networks whose endpoints the proxy wants (comma-separated).
pub const REQUESTED_NETWORK_VIEW: &str = "REQUESTED_NETWORK_VIEW";

/// One way into a network. Ordered by address, then port (Istio's `SortGateways`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetworkGateway {
    pub address: String,
    pub port: u32,
    pub network: String,
}

impl NetworkGateway {
    pub fn new(network: &str, address: &str, port: u32) -> Self {
        NetworkGateway {
            address: address.into(),
            port,
            network: network.into(),
        }
    }
}

/// The networks of one snapshot: gateways per network and how endpoints without a network
/// get one. Built once per push context.
#[derive(Clone, Debug, Default)]
pub struct Networks {
    /// Gateways per network, each list sorted.
    gateways: BTreeMap<String, Vec<NetworkGateway>>,
    /// Least common multiple of the gateway counts per network (1 without gateways).
    scale: u32,
    /// Networks of WorkloadEntries that name theirs only by label, by `namespace/name`.
    by_label: BTreeMap<String, String>,
    /// The system namespace's network label.
    system_network: String,
    /// The mesh networks' network with a `fromRegistry` source.
    registry_network: String,
    cidrs: Vec<(Cidr, String)>,
    /// Every network name the snapshot or the mesh networks mention, `""` included.
    known: BTreeSet<String>,
}

impl Networks {
    pub fn build(
        snapshot: &Snapshot,
        registry: &Registry,
        mesh_networks: &MeshNetworks,
        system_namespace: &str,
    ) -> Networks {
        let mut gateways: BTreeMap<String, Vec<NetworkGateway>> = BTreeMap::new();
        for gw in discovery::gateways(snapshot, mesh_networks) {
            gateways.entry(gw.network.clone()).or_default().push(gw);
        }
        for list in gateways.values_mut() {
            list.sort();
        }
        let scale = gateways
            .values()
            .fold(1u32, |acc, list| lcm(acc, list.len() as u32));
        let by_label: BTreeMap<String, String> = registry
            .workloads()
            .iter()
            .filter(|w| w.spec.network.is_empty())
            .filter_map(|w| {
                let net = w.spec.labels.get(NETWORK_LABEL).filter(|n| !n.is_empty())?;
                Some((format!("{}/{}", w.namespace, w.name), net.clone()))
            })
            .collect();
        let system_network = snapshot
            .get(Kind::Namespace, "", system_namespace)
            .and_then(|ns| ns.metadata.labels.get(NETWORK_LABEL).cloned())
            .unwrap_or_default();
        let registry_network = mesh_networks
            .networks
            .iter()
            .find(|(_, n)| n.endpoints.iter().any(|e| !e.from_registry.is_empty()))
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        let cidrs: Vec<(Cidr, String)> = mesh_networks
            .networks
            .iter()
            .flat_map(|(name, n)| {
                n.endpoints
                    .iter()
                    .filter_map(|e| Cidr::parse(&e.from_cidr))
                    .map(move |c| (c, name.clone()))
            })
            .collect();
        let mut known: BTreeSet<String> = gateways.keys().cloned().collect();
        known.extend(mesh_networks.networks.keys().cloned());
        known.extend(by_label.values().cloned());
        known.extend(registry.workloads().iter().map(|w| w.spec.network.clone()));
        known.insert(system_network.clone());
        known.insert(String::new());
        Networks {
            gateways,
            scale,
            by_label,
            system_network,
            registry_network,
            cidrs,
            known,
        }
    }

    /// Whether any network has a gateway (Istio's `IsMultiNetworkEnabled`).
    pub fn multi_network(&self) -> bool {
        !self.gateways.is_empty()
    }

    /// Every network name known from configuration (and `""`).
    pub fn known(&self) -> &BTreeSet<String> {
        &self.known
    }

    /// All gateways, by network.
    pub fn gateways(&self) -> impl Iterator<Item = &NetworkGateway> {
        self.gateways.values().flatten()
    }

    pub fn gateways_for(&self, network: &str) -> &[NetworkGateway] {
        self.gateways
            .get(network)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The network `ep` is on (see the module documentation for the order of sources).
    pub fn network_of<'a>(&'a self, ep: &'a Endpoint) -> &'a str {
        if !ep.network.is_empty() {
            return &ep.network;
        }
        if let Some(net) = self.by_label.get(&ep.workload) {
            return net;
        }
        if !self.system_network.is_empty() {
            return &self.system_network;
        }
        if !self.registry_network.is_empty() {
            return &self.registry_network;
        }
        let Ok(ip) = ep.address.parse::<IpAddr>() else {
            return "";
        };
        self.cidrs
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, n)| n.as_str())
            .unwrap_or_default()
    }

    /// How `proxy` sees the networks.
    pub fn view(&self, proxy: &Proxy) -> NetworkView {
        let visible = proxy
            .metadata
            .get(REQUESTED_NETWORK_VIEW)
            .map(string_list)
            .filter(|v| !v.is_empty());
        let mut also_local = BTreeSet::new();
        if proxy.kind == ProxyKind::Router {
            let own = proxy_ips(proxy);
            also_local = self
                .gateways()
                .filter(|gw| own.contains(&gw.address))
                .map(|gw| gw.network.clone())
                .collect();
            also_local.remove(&proxy.network);
        }
        NetworkView {
            network: proxy.network.clone(),
            also_local,
            visible,
        }
    }
}

/// Which endpoints a proxy sees directly and which it is sent at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkView {
    /// The proxy's network (node metadata `NETWORK`).
    pub network: String,
    /// Other networks the proxy is on (a router that is their gateway).
    pub also_local: BTreeSet<String>,
    /// `REQUESTED_NETWORK_VIEW`, when given.
    pub visible: Option<BTreeSet<String>>,
}

impl NetworkView {
    /// A plain view of `network`: what sidecars on it share.
    pub fn of(network: &str) -> NetworkView {
        NetworkView {
            network: network.into(),
            ..Default::default()
        }
    }

    /// Istio's `InNetwork`: the same network, or either side without one; plus `also_local`.
    pub fn is_local(&self, network: &str) -> bool {
        network.is_empty()
            || self.network.is_empty()
            || network == self.network
            || self.also_local.contains(network)
    }

    /// Istio's `ProxyView.IsVisible`: endpoints without a network are always visible.
    pub fn sees(&self, network: &str) -> bool {
        self.visible
            .as_ref()
            .is_none_or(|v| network.is_empty() || v.contains(network))
    }

    /// The network whose shared endpoints this view may use, when it is a plain view.
    pub fn plain(&self) -> Option<&str> {
        (self.also_local.is_empty() && self.visible.is_none()).then_some(self.network.as_str())
    }
}

/// Istio's `StringList`: a comma-separated string (or, leniently, a JSON array).
fn string_list(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// The node IP and metadata `INSTANCE_IPS` (comma-separated).
fn proxy_ips(proxy: &Proxy) -> BTreeSet<String> {
    let mut ips = proxy
        .metadata
        .get("INSTANCE_IPS")
        .map(string_list)
        .unwrap_or_default();
    if !proxy.ip.is_empty() {
        ips.insert(proxy.ip.clone());
    }
    ips
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: u32, b: u32) -> u32 {
    if a == 0 || b == 0 {
        return a.max(b);
    }
    (a / gcd(a, b)).saturating_mul(b)
}
