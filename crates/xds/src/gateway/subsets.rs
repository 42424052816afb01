//! DestinationRule subsets a router sees, for its SNI-DNAT clusters
//! (`outbound_.<port>_.<subset>_.<host>`).
//!
//! Integration point: this is the lookup AUTO_PASSTHROUGH needs (which rule applies to a service
//! for this router, and its subsets' labels), following istiod's precedence — rules in the
//! router's namespace, else those the service's namespace exports to it, else the root
//! namespace's; within one namespace, the most specific host, rules merged oldest first (first
//! subset of a name wins). Rules with a `workloadSelector` apply to sidecars only and are skipped.
//! When the DestinationRule index of sidecar translation lands, this module should defer to it.

use super::hosts::{resolve_short, subset_of};
use std::collections::BTreeMap;
use weft_model::Spec;
use weft_model::kind::Kind;
use weft_model::networking::{DestinationRule, Subset};
use weft_model::resource::Resource;
use weft_model::snapshot::Snapshot;

/// The rules visible to one router, by namespace, oldest first, with resolved hosts.
pub(crate) struct Subsets<'a> {
    by_namespace: BTreeMap<&'a str, Vec<(String, &'a DestinationRule)>>,
    proxy_namespace: String,
    root_namespace: String,
}

fn exported_to(r: &Resource, dr: &DestinationRule, namespace: &str) -> bool {
    dr.export_to.is_empty()
        || dr
            .export_to
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && r.namespace() == namespace))
}

impl<'a> Subsets<'a> {
    pub fn build(snapshot: &'a Snapshot, proxy_namespace: &str, root_namespace: &str) -> Self {
        let mut rules: Vec<(&str, &str, &'a Resource, &'a DestinationRule)> = snapshot
            .of_kind(Kind::DestinationRule)
            .filter_map(|r| match &r.spec {
                Spec::DestinationRule(dr) if dr.workload_selector.is_none() => Some((r, dr)),
                _ => None,
            })
            .map(|(r, dr)| (r.metadata.creation_timestamp.as_str(), r.name(), &**r, dr))
            .collect();
        rules.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut by_namespace: BTreeMap<&'a str, Vec<(String, &'a DestinationRule)>> =
            BTreeMap::new();
        for (_, _, r, dr) in rules {
            let local = r.namespace() == proxy_namespace;
            if local || exported_to(r, dr, proxy_namespace) {
                by_namespace
                    .entry(r.namespace())
                    .or_default()
                    .push((resolve_short(&dr.host, r.namespace()), dr));
            }
        }
        Subsets {
            by_namespace,
            proxy_namespace: proxy_namespace.to_string(),
            root_namespace: root_namespace.to_string(),
        }
    }

    /// The subsets of the rule that applies to `host` (a service in `namespace`), if any.
    pub fn of(&self, host: &str, namespace: &str) -> Vec<&'a Subset> {
        for ns in [
            self.proxy_namespace.as_str(),
            namespace,
            self.root_namespace.as_str(),
        ] {
            let Some(rules) = self.by_namespace.get(ns) else {
                continue;
            };
            // The most specific host: exact, else the longest wildcard that covers it.
            let best = rules
                .iter()
                .filter(|(h, _)| subset_of(host, h))
                .map(|(h, _)| h)
                .max_by_key(|h| (!h.starts_with('*'), h.len()));
            let Some(best) = best else { continue };
            let mut out: Vec<&'a Subset> = Vec::new();
            for (_, dr) in rules.iter().filter(|(h, _)| h == best) {
                for s in &dr.subsets {
                    if !out.iter().any(|o| o.name == s.name) {
                        out.push(s);
                    }
                }
            }
            return out;
        }
        Vec::new()
    }
}
