//! NDS: the DNS name table a proxy's agent answers from (Istio's `BuildNameTable`,
//! `istio.networking.nds.v1.NameTable`).
//!
//! One entry per service host the proxy sees:
//! - with VIPs (clusterIPs of the proxy's IP family, ServiceEntry `addresses`, allocated
//!   addresses): those, in order;
//! - without (headless Services, ServiceEntries with `resolution: NONE` and no addresses): the
//!   addresses of their endpoints on the proxy's network, each once, when there are any; other
//!   address-less services (DNS ServiceEntries that got no address, wildcard hosts) are left out;
//! - addresses that are not IPs (CIDRs) are skipped.
//!
//! `registry` is `Kubernetes` for Services (with `namespace` and `shortname`, from which the
//! agent answers `name`, `name.ns`, `name.ns.svc`) and `External` for ServiceEntries.

use crate::proxy::Proxy;
use crate::registry::{Registry, Resolution, Service, ServiceSource};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use weft_proto::nds::NameTable;
use weft_proto::nds::name_table::NameInfo;

pub const REGISTRY_KUBERNETES: &str = "Kubernetes";
pub const REGISTRY_EXTERNAL: &str = "External";

/// Istio's `InNetwork`: either side unset, or the same network.
fn same_network(proxy: &Proxy, network: &str) -> bool {
    proxy.network.is_empty() || network.is_empty() || proxy.network == network
}

/// The endpoint addresses DNS gives for an address-less service (each once, by port then
/// endpoint order), or nothing when it is not resolved that way.
fn endpoint_ips(svc: &Service, proxy: &Proxy) -> Vec<String> {
    if !(svc.headless || svc.resolution == Resolution::Passthrough) || svc.ports.is_empty() {
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for ep in svc.endpoints.values().flatten() {
        if ep.address.parse::<IpAddr>().is_err() || !same_network(proxy, &ep.network) {
            continue;
        }
        if seen.insert(ep.address.clone()) {
            out.push(ep.address.clone());
        }
    }
    out
}

/// A Service's clusterIPs of the proxy's IP family (both when the proxy's is unknown); a
/// ServiceEntry's addresses all.
fn vips(svc: &Service, proxy: &Proxy) -> Vec<String> {
    let family = match (&svc.source, proxy.ip.parse::<IpAddr>()) {
        (ServiceSource::Kubernetes, Ok(ip)) => Some(ip.is_ipv4()),
        _ => None,
    };
    svc.addresses
        .iter()
        .filter(|a| family.is_none_or(|v4| a.is_ipv4() == v4))
        .map(IpAddr::to_string)
        .collect()
}

fn info(svc: &Service, ips: Vec<String>) -> NameInfo {
    match svc.source {
        ServiceSource::Kubernetes => NameInfo {
            ips,
            registry: REGISTRY_KUBERNETES.into(),
            shortname: svc.name.clone(),
            namespace: svc.namespace.clone(),
            ..Default::default()
        },
        ServiceSource::ServiceEntry(_) => NameInfo {
            ips,
            registry: REGISTRY_EXTERNAL.into(),
            ..Default::default()
        },
    }
}

/// The name table for `proxy`: every service of the registry (Weft has no Sidecar egress
/// scoping yet), keyed by host.
pub(crate) fn name_table(registry: &Registry, proxy: &Proxy) -> NameTable {
    let mut table: BTreeMap<String, NameInfo> = BTreeMap::new();
    for svc in registry.services() {
        let ips: Vec<String> = if svc.addresses.is_empty() {
            endpoint_ips(svc, proxy)
        } else {
            vips(svc, proxy)
        };
        if ips.is_empty() {
            continue;
        }
        match table.get_mut(&svc.hostname) {
            None => {
                table.insert(svc.hostname.clone(), info(svc, ips));
            }
            // A Kubernetes Service takes precedence over a ServiceEntry for the same host;
            // ServiceEntries for one host add up.
            Some(existing) if existing.registry != REGISTRY_KUBERNETES => {
                if svc.source == ServiceSource::Kubernetes {
                    *existing = info(svc, ips);
                } else {
                    existing.ips.extend(ips);
                }
            }
            Some(_) => {}
        }
    }
    NameTable { table }
}
