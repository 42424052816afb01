//! DestinationRules as istiod applies them to a sidecar.
//!
//! - [`index`]: istiod's per-push indexes (namespace-local, exported, root-private), rules for the
//!   same host merged as Istio merges them (subsets appended, first top-level policy wins).
//! - [`lookup`]: the rule a proxy uses for a host: its own namespace, then the service's, then
//!   the root namespace (`istio-system`); exportTo; the most specific (wildcard) host; a rule
//!   selecting the proxy's workload before the catch-all.
//! - [`policy`]: the policy of one cluster: port-level settings, subset policies merged over it.
//! - [`hash`]: consistent hashing on the routes.
//! - [`view`]: what one proxy sees differently from the shared cluster and endpoint lists.
//!
//! The shared lists (built once per snapshot) use the rules a proxy in a namespace with no
//! rules of its own sees; proxies in namespaces with rules of their own (or named in some
//! rule's exportTo), and clusters whose endpoints depend on the proxy's locality, get their
//! clusters and endpoints rebuilt for them.

mod hash;
mod index;
mod lookup;
mod policy;
mod view;

pub(crate) use hash::add_hash_policies;
pub(crate) use index::Rule;
pub(crate) use policy::{Policy, cluster_policy, tls_mode};
pub(crate) use view::{Client, ProxySpecific};

use crate::locality_lb::Dependence;
use crate::registry::{Registry, Service};
use index::Indexes;
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_model::snapshot::Snapshot;

/// A snapshot's DestinationRules, ready for lookups.
pub(crate) struct DestinationRules {
    indexes: Indexes,
    root_namespace: String,
    /// The rule each service host gets in the shared lists.
    shared: BTreeMap<String, Arc<Rule>>,
    /// Hosts whose shared rule makes endpoints depend on the proxy (locality load balancing),
    /// and on what of it.
    shared_client_dependent: BTreeMap<String, Dependence>,
}

impl DestinationRules {
    pub(crate) fn new(snapshot: &Snapshot, root_namespace: &str, registry: &Registry) -> Self {
        let mut rules = DestinationRules {
            indexes: Indexes::build(snapshot, root_namespace),
            root_namespace: root_namespace.to_string(),
            shared: BTreeMap::new(),
            shared_client_dependent: BTreeMap::new(),
        };
        let no_labels = BTreeMap::new();
        for svc in registry.services() {
            if let Some(rule) = rules.outbound("", &no_labels, svc).cloned() {
                let dependence = view::client_dependence(&rule, svc);
                if dependence != Dependence::Nothing {
                    rules
                        .shared_client_dependent
                        .insert(svc.hostname.clone(), dependence);
                }
                rules.shared.insert(svc.hostname.clone(), rule);
            }
        }
        rules
    }

    /// The rule a proxy in `namespace` with `labels` uses for traffic to `svc`.
    pub(crate) fn outbound(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        svc: &Service,
    ) -> Option<&Arc<Rule>> {
        let candidates = self.indexes.candidates(
            namespace,
            &self.root_namespace,
            &svc.namespace,
            &svc.hostname,
        );
        lookup::select(&candidates, namespace, labels, true)
    }

    /// The rule whose connection pool a proxy in `namespace` applies to its inbound cluster
    /// for `svc` (workload selectors do not apply inbound).
    pub(crate) fn inbound(&self, namespace: &str, svc: &Service) -> Option<&Arc<Rule>> {
        let candidates = self.indexes.candidates(
            namespace,
            &self.root_namespace,
            &svc.namespace,
            &svc.hostname,
        );
        lookup::select(&candidates, namespace, &BTreeMap::new(), false)
    }

    /// The rule `svc` gets in the shared lists.
    pub(crate) fn shared(&self, svc: &Service) -> Option<&Rule> {
        self.shared.get(&svc.hostname).map(|r| r.as_ref())
    }

    /// Whether a proxy in `namespace` may see other rules than the shared lists use.
    fn own_view(&self, namespace: &str) -> bool {
        self.indexes.namespace_local.contains_key(namespace)
            || (namespace == self.root_namespace && !self.indexes.root_local.is_empty())
            || self.indexes.named_in_export_to.contains(namespace)
    }
}

#[cfg(test)]
mod tests;
