//! What one proxy sees differently from the shared cluster and endpoint lists: the services
//! whose DestinationRule differs in its namespace (or for its labels), and those whose
//! endpoints depend on its locality and labels.

use super::{DestinationRules, Rule, cluster_policy};
use crate::locality_lb::{self, Dependence};
use crate::names::parse_outbound_cluster;
use crate::proxy::Proxy;
use crate::registry::{Locality, Registry, Service, topology_labels};
use crate::resource::NamedResource;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The proxy clusters and endpoints are built for.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Client {
    pub namespace: String,
    /// Its labels with the topology labels of its locality and network.
    pub labels: BTreeMap<String, String>,
    pub locality: Locality,
}

impl Client {
    /// `proxy` as its WorkloadEntry describes it (locality, network) and its node labels.
    pub(crate) fn of(proxy: &Proxy, registry: &Registry) -> Client {
        let workload = registry.proxy_workload(proxy);
        let locality = workload
            .map(|w| Locality::parse(&w.spec.locality))
            .unwrap_or_default();
        let network = workload
            .map(|w| w.spec.network.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(&proxy.network);
        Client {
            namespace: proxy.namespace.clone(),
            labels: topology_labels(&registry.proxy_labels(proxy), &locality, network),
            locality,
        }
    }
}

/// What of the proxy `rule` makes `svc`'s endpoints (or DNS load assignments) depend on:
/// locality `distribute`, or outlier detection (locality failover, failover priorities).
pub(crate) fn client_dependence(rule: &Rule, svc: &Service) -> Dependence {
    let subsets = std::iter::once("").chain(rule.spec.subsets.iter().map(|s| s.name.as_str()));
    subsets
        .flat_map(|subset| {
            svc.ports.iter().map(move |p| {
                let policy = cluster_policy(rule, p.port, subset);
                locality_lb::effective(policy.load_balancer)
                    .map(|s| locality_lb::dependence(s, policy.outlier_detection.is_some()))
                    .unwrap_or(Dependence::Nothing)
            })
        })
        .max()
        .unwrap_or(Dependence::Nothing)
}

/// The services whose clusters and endpoints are built for one proxy, with the rule it uses
/// for each.
pub(crate) struct ProxySpecific<'a> {
    pub client: Client,
    pub services: Vec<(&'a Arc<Service>, Option<&'a Rule>)>,
}

impl ProxySpecific<'_> {
    /// `shared` with every `outbound|…|<host>` resource of the services built for this proxy
    /// replaced by `own`: outbound resources in name order, then the others as they were.
    pub(crate) fn overlay(
        &self,
        shared: &[Arc<NamedResource>],
        own: Vec<Arc<NamedResource>>,
    ) -> Vec<Arc<NamedResource>> {
        if self.services.is_empty() {
            return shared.to_vec();
        }
        let hosts: BTreeSet<&str> = self
            .services
            .iter()
            .map(|(s, _)| s.hostname.as_str())
            .collect();
        let mut outbound: Vec<Arc<NamedResource>> = Vec::new();
        let mut rest: Vec<Arc<NamedResource>> = Vec::new();
        for r in shared {
            match parse_outbound_cluster(&r.name) {
                Some((_, _, host)) if hosts.contains(host) => {}
                Some(_) => outbound.push(Arc::clone(r)),
                None => rest.push(Arc::clone(r)),
            }
        }
        outbound.extend(own);
        outbound.sort_by(|a, b| a.name.cmp(&b.name));
        outbound.extend(rest);
        outbound
    }
}

impl DestinationRules {
    /// What `proxy` needs built for itself. Empty (and cheap) for a proxy in a namespace
    /// without rules of its own when no rule depends on the proxy.
    pub(crate) fn proxy_specific<'a>(
        &'a self,
        registry: &'a Registry,
        proxy: &Proxy,
    ) -> ProxySpecific<'a> {
        let own_view = self.own_view(&proxy.namespace);
        if !own_view && self.shared_client_dependent.is_empty() {
            return ProxySpecific {
                client: Client::default(),
                services: Vec::new(),
            };
        }
        let client = Client::of(proxy, registry);
        let services = self
            .specific_services(registry, &client, own_view)
            .collect();
        ProxySpecific { client, services }
    }

    /// Whether [`DestinationRules::proxy_specific`] would build anything for `proxy` (stops at
    /// the first service that differs).
    pub(crate) fn has_proxy_specific(&self, registry: &Registry, proxy: &Proxy) -> bool {
        let own_view = self.own_view(&proxy.namespace);
        if !own_view && self.shared_client_dependent.is_empty() {
            return false;
        }
        let client = Client::of(proxy, registry);
        self.specific_services(registry, &client, own_view)
            .next()
            .is_some()
    }

    /// The services whose rule `client` sees differently from the shared one, or whose rule
    /// depends on the client (locality, labels).
    fn specific_services<'a, 'c>(
        &'a self,
        registry: &'a Registry,
        client: &'c Client,
        own_view: bool,
    ) -> impl Iterator<Item = (&'a Arc<Service>, Option<&'a Rule>)> + use<'a, 'c> {
        let affects = move |d: Dependence| d.affects(&client.locality, &client.labels);
        registry.services().iter().filter_map(move |svc| {
            if !own_view {
                return self
                    .shared_client_dependent
                    .get(&svc.hostname)
                    .is_some_and(|d| affects(*d))
                    .then(|| (svc, self.shared(svc)));
            }
            let mine = self
                .outbound(&client.namespace, &client.labels, svc)
                .map(|r| r.as_ref());
            let differs = mine.map(|r| &r.spec) != self.shared(svc).map(|r| &r.spec);
            let dependent = mine.is_some_and(|r| affects(client_dependence(r, svc)));
            (differs || dependent).then_some((svc, mine))
        })
    }
}
