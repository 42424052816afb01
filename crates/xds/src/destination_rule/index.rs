//! The DestinationRule indexes istiod keeps per push (`setDestinationRules`): rules visible in
//! their own namespace, rules exported to other namespaces, and the root namespace's private
//! rules, each merged per host as Istio's `mergeDestinationRule` merges them.

use crate::DOMAIN_SUFFIX;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use weft_model::Spec;
use weft_model::kind::Kind;
use weft_model::networking::DestinationRule;
use weft_model::snapshot::Snapshot;

/// exportTo `.`: the rule's own namespace.
pub(crate) const PRIVATE: &str = ".";
/// exportTo `*`: every namespace.
pub(crate) const PUBLIC: &str = "*";

/// One or more DestinationRules for the same host, merged (Istio's `ConsolidatedDestRule`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rule {
    /// The merged spec: the first rule's, with the subsets of later ones appended (by new
    /// name) and their top-level traffic policy adopted only when it had none. `host` is
    /// fully qualified.
    pub spec: DestinationRule,
    /// The namespace of the first rule.
    pub namespace: String,
    /// `namespace/name` of every merged rule, first first.
    pub from: Vec<String>,
    /// The rule's exportTo set (`.` alone for rules with a workload selector).
    pub export_to: BTreeSet<String>,
}

impl Rule {
    /// `matchLabels` of the workload selector, when the rule has one (possibly empty: then it
    /// selects every workload of its namespace).
    pub(crate) fn selector(&self) -> Option<&BTreeMap<String, String>> {
        self.spec
            .workload_selector
            .as_ref()
            .map(|s| &s.match_labels)
    }

    /// Whether a client in `namespace` may use this exported rule.
    pub(crate) fn exported_to(&self, namespace: &str) -> bool {
        self.export_to.is_empty()
            || self.export_to.contains(PUBLIC)
            || self.export_to.contains(namespace)
    }
}

/// Rules by host: exact hosts and wildcard (`*.example.com`, `*`) hosts apart, each host's
/// list in merge order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HostRules {
    pub specific: BTreeMap<String, Vec<Arc<Rule>>>,
    pub wildcard: BTreeMap<String, Vec<Arc<Rule>>>,
}

impl HostRules {
    pub(crate) fn is_empty(&self) -> bool {
        self.specific.is_empty() && self.wildcard.is_empty()
    }

    /// Istio's `mergeDestinationRule` (with `ENABLE_ENHANCED_DESTINATIONRULE_MERGE`, the
    /// default): a rule joins an existing rule for its host when their exportTo sets are equal
    /// (or the new one is a superset) and their workload selectors agree, otherwise it is
    /// kept apart.
    fn merge(&mut self, incoming: &Rule) {
        let host = incoming.spec.host.clone();
        let list = if host.starts_with('*') {
            self.wildcard.entry(host).or_default()
        } else {
            self.specific.entry(host).or_default()
        };
        if list.is_empty() {
            list.push(Arc::new(incoming.clone()));
            return;
        }
        let mut append_separately = true;
        for existing in list.iter_mut() {
            if incoming.export_to == existing.export_to {
                append_separately = false;
            } else if !existing.export_to.is_empty()
                && incoming.export_to.is_superset(&existing.export_to)
            {
                append_separately = true;
            } else {
                append_separately = true;
                continue;
            }
            let (new_sel, old_sel) = (incoming.selector(), existing.selector());
            let both_with = new_sel.is_some() && old_sel.is_some();
            if both_with && new_sel != old_sel {
                append_separately = true;
                continue;
            }
            if (new_sel.is_none() && old_sel.is_none()) || both_with {
                append_separately = false;
            }
            let merged = Arc::make_mut(existing);
            merged.from.extend(incoming.from.iter().cloned());
            let names: BTreeSet<String> =
                merged.spec.subsets.iter().map(|s| s.name.clone()).collect();
            merged.spec.subsets.extend(
                incoming
                    .spec
                    .subsets
                    .iter()
                    .filter(|s| !names.contains(&s.name))
                    .cloned(),
            );
            if merged.spec.traffic_policy.is_none() {
                merged.spec.traffic_policy = incoming.spec.traffic_policy.clone();
            }
        }
        if append_separately {
            list.push(Arc::new(incoming.clone()));
        }
    }
}

/// Every DestinationRule of a snapshot, indexed as istiod indexes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Indexes {
    /// Per namespace: its rules visible to its own proxies (public and private).
    pub namespace_local: BTreeMap<String, HostRules>,
    /// Per namespace: its rules exported beyond it.
    pub exported: BTreeMap<String, HostRules>,
    /// The root namespace's rules that are private to it.
    pub root_local: HostRules,
    /// Namespaces some exported rule names in its exportTo (they may see rules others do not).
    pub named_in_export_to: BTreeSet<String>,
}

/// Istio's `ResolveShortnameToFQDN` for a rule in `namespace`: a name without dots becomes
/// `<name>.<namespace>.svc.cluster.local`; `*`, IPs and dotted names stay.
pub(crate) fn resolve_host(host: &str, namespace: &str) -> String {
    if host == "*" || host.contains('.') || host.parse::<IpAddr>().is_ok() || host.is_empty() {
        return host.to_string();
    }
    format!("{host}.{namespace}.svc.{DOMAIN_SUFFIX}")
}

struct Config {
    namespace: String,
    name: String,
    creation: String,
    spec: DestinationRule,
}

impl Indexes {
    /// Istio's `setDestinationRules`: rules ordered with workload-selecting ones first, then by
    /// creation time, name and namespace (so the oldest top-level policy wins a merge).
    pub(crate) fn build(snapshot: &Snapshot, root_namespace: &str) -> Indexes {
        let mut configs: Vec<Config> = snapshot
            .of_kind(Kind::DestinationRule)
            .filter_map(|r| match &r.spec {
                Spec::DestinationRule(dr) => Some(Config {
                    namespace: r.namespace().to_string(),
                    name: r.name().to_string(),
                    creation: r.metadata.creation_timestamp.clone(),
                    spec: dr.clone(),
                }),
                _ => None,
            })
            .collect();
        configs.sort_by(|a, b| {
            let unselected = |c: &Config| c.spec.workload_selector.is_none();
            (unselected(a), &a.creation, &a.name, &a.namespace).cmp(&(
                unselected(b),
                &b.creation,
                &b.name,
                &b.namespace,
            ))
        });
        let mut out = Indexes::default();
        for c in configs {
            let mut spec = c.spec;
            spec.host = resolve_host(&spec.host, &c.namespace);
            let export_to: BTreeSet<String> = if spec.workload_selector.is_none() {
                spec.export_to.iter().cloned().collect()
            } else {
                BTreeSet::from([PRIVATE.to_string()])
            };
            let rule = Rule {
                spec,
                namespace: c.namespace.clone(),
                from: vec![format!("{}/{}", c.namespace, c.name)],
                export_to,
            };
            let e = &rule.export_to;
            if e.is_empty() || e.contains(PUBLIC) || e.contains(PRIVATE) || e.contains(&c.namespace)
            {
                out.namespace_local
                    .entry(c.namespace.clone())
                    .or_default()
                    .merge(&rule);
            }
            // The mesh default exportTo is `*`, so only an explicit single `.` (or the own
            // namespace) keeps a rule private.
            let private_only = e.len() == 1 && (e.contains(PRIVATE) || e.contains(&c.namespace));
            if !private_only {
                out.named_in_export_to.extend(
                    e.iter()
                        .filter(|n| !matches!(n.as_str(), PRIVATE | PUBLIC | "~"))
                        .cloned(),
                );
                out.exported
                    .entry(c.namespace.clone())
                    .or_default()
                    .merge(&rule);
            } else if c.namespace == root_namespace {
                out.root_local.merge(&rule);
            }
        }
        out
    }
}
