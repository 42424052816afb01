//! Which proxies' own (per-proxy) resources a configuration change can touch.
//!
//! A proxy's own resources (its `inbound|<port>||` clusters and `virtualInbound`) are built from
//! `Registry::inbound_ports` and `PushContext::mtls_policy`: the Services of its namespace, its
//! WorkloadEntry (by `WORKLOAD_ENTRY` metadata or by address), PeerAuthentications and the mesh
//! config. A change of WorkloadEntries only can therefore touch only the proxies at those entries'
//! addresses (old and new) or running as them; any other change may touch every proxy. Translation
//! that makes own resources depend on anything else must widen this rule.

use std::collections::{HashMap, HashSet};
use weft_model::Kind;
use weft_model::resource::Spec;
use weft_model::snapshot::Snapshot;

use crate::proxy::Proxy;

#[derive(Debug)]
pub(crate) enum ProxyScope {
    /// No input of own resources changed.
    Nothing,
    /// Possibly every proxy.
    All,
    /// Proxies whose namespace has one of these WorkloadEntry addresses or names.
    Workloads(HashMap<String, Touched>),
}

#[derive(Debug, Default)]
pub(crate) struct Touched {
    addresses: HashSet<String>,
    names: HashSet<String>,
}

impl ProxyScope {
    /// The scope of going from `old` to `new`; `same_inputs`: allocations and mesh config equal.
    pub(crate) fn between(old: &Snapshot, new: &Snapshot, same_inputs: bool) -> ProxyScope {
        if !same_inputs {
            return ProxyScope::All;
        }
        let mut touched: HashMap<String, Touched> = HashMap::new();
        for key in new.changed_keys(old) {
            if key.kind != Kind::WorkloadEntry {
                return ProxyScope::All;
            }
            let t = touched.entry(key.namespace.clone()).or_default();
            for snap in [old, new] {
                if let Some(r) = snap.get(key.kind, &key.namespace, &key.name)
                    && let Spec::WorkloadEntry(we) = &r.spec
                {
                    t.addresses.insert(we.address.clone());
                }
            }
            t.names.insert(key.name);
        }
        if touched.is_empty() {
            ProxyScope::Nothing
        } else {
            ProxyScope::Workloads(touched)
        }
    }

    pub(crate) fn touches(&self, proxy: &Proxy) -> bool {
        match self {
            ProxyScope::Nothing => false,
            ProxyScope::All => true,
            ProxyScope::Workloads(by_ns) => by_ns.get(&proxy.namespace).is_some_and(|t| {
                t.addresses.contains(&proxy.ip)
                    || proxy.workload_entry().is_some_and(|n| t.names.contains(n))
            }),
        }
    }
}
