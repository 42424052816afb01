//! AuthorizationPolicy → Envoy's RBAC filters on a workload's inbound filter chains, as Istio
//! builds them: the policies that apply to a workload (mesh-wide in the root namespace, its
//! namespace's, and those whose selector matches its labels) become one RBAC filter per action,
//! DENY, then AUDIT (log), then ALLOW; once any ALLOW policy applies, requests that match none of
//! its rules are denied (Envoy answers `403 RBAC: access denied`; TCP connections are closed).
//! Policy names are Istio's `ns[<ns>]-policy[<name>]-rule[<i>]`. A policy annotated
//! `istio.io/dry-run: "true"` goes to the shadow rules (logged and counted, never enforced).
//! CUSTOM (external authorization) is not supported: such policies are ignored.

mod matchers;
mod model;

pub use model::Action;
use model::Model;
use std::collections::{BTreeMap, HashMap};
use weft_model::kind::Kind;
use weft_model::security::AuthorizationPolicy;
use weft_model::snapshot::Snapshot;
use weft_model::{Resource, Spec};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::Filter;
use weft_proto::envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac, permission, principal};
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use weft_proto::envoy_types::util::pack_any;

pub const HTTP_RBAC_FILTER: &str = "envoy.filters.http.rbac";
pub const NETWORK_RBAC_FILTER: &str = "envoy.filters.network.rbac";
const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

struct Entry {
    namespace: String,
    name: String,
    selector: BTreeMap<String, String>,
    action: Action,
    dry_run: bool,
    spec: AuthorizationPolicy,
}

/// All ALLOW/DENY/AUDIT AuthorizationPolicies of a snapshot.
pub struct AuthorizationPolicies {
    entries: Vec<Entry>,
    root_namespace: String,
}

/// The policies that apply to one workload.
#[derive(Default)]
pub struct Applicable<'a> {
    deny: Vec<&'a Entry>,
    audit: Vec<&'a Entry>,
    allow: Vec<&'a Entry>,
}

impl Applicable<'_> {
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.audit.is_empty() && self.allow.is_empty()
    }
}

fn entry(r: &Resource) -> Option<Entry> {
    let Spec::AuthorizationPolicy(ap) = &r.spec else {
        return None;
    };
    let action = match ap.action.as_str() {
        "" | "ALLOW" => Action::Allow,
        "DENY" => Action::Deny,
        "AUDIT" => Action::Audit,
        _ => return None, // CUSTOM
    };
    Some(Entry {
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        selector: ap
            .selector
            .as_ref()
            .map(|s| s.match_labels.clone())
            .unwrap_or_default(),
        action,
        dry_run: r
            .metadata
            .annotations
            .get(DRY_RUN_ANNOTATION)
            .map(String::as_str)
            == Some("true"),
        spec: ap.clone(),
    })
}

impl AuthorizationPolicies {
    pub fn new(snapshot: &Snapshot, root_namespace: &str) -> Self {
        let mut entries: Vec<Entry> = snapshot
            .of_kind(Kind::AuthorizationPolicy)
            .filter_map(|r| entry(r))
            .collect();
        entries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        AuthorizationPolicies {
            entries,
            root_namespace: root_namespace.to_string(),
        }
    }

    /// Policies for a workload in `namespace` with `labels`: the root namespace's (mesh-wide, or
    /// selecting it), and its namespace's (namespace-wide, or selecting it).
    pub fn applicable(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Applicable<'_> {
        let mut out = Applicable::default();
        for e in &self.entries {
            if e.namespace != namespace && e.namespace != self.root_namespace {
                continue;
            }
            if !e.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            match e.action {
                Action::Deny => out.deny.push(e),
                Action::Audit => out.audit.push(e),
                Action::Allow => out.allow.push(e),
            }
        }
        out
    }
}

/// `(rules, shadow rules)` of one action's RBAC filter; `None` when no policy of that action
/// applies.
fn build(
    entries: &[&Entry],
    action: Action,
    for_tcp: bool,
) -> Option<(Option<Rbac>, Option<Rbac>)> {
    if entries.is_empty() {
        return None;
    }
    let envoy_action = match action {
        Action::Allow => 0,
        Action::Deny => 1,
        Action::Audit => 2,
    };
    let mut enforce: Option<HashMap<String, Policy>> = None;
    let mut shadow: Option<HashMap<String, Policy>> = None;
    for e in entries {
        let target = if e.dry_run { &mut shadow } else { &mut enforce };
        let policies = target.get_or_insert_with(HashMap::new);
        for (i, rule) in e.spec.rules.iter().enumerate() {
            let name = format!("ns[{}]-policy[{}]-rule[{i}]", e.namespace, e.name);
            match Model::new(&e.namespace, rule).and_then(|m| m.generate(for_tcp, action)) {
                Ok(p) => {
                    policies.insert(name, p);
                }
                Err(_) => continue, // skipped, as Istio does (an ALLOW rule never grants more)
            }
        }
        if e.spec.rules.is_empty() {
            let name = format!("ns[{}]-policy[{}]-rule[0]", e.namespace, e.name);
            policies.insert(name, match_never());
        }
    }
    let rbac = |policies: HashMap<String, Policy>| Rbac {
        action: envoy_action,
        policies,
        ..Default::default()
    };
    Some((enforce.map(rbac), shadow.map(rbac)))
}

/// A policy that matches nothing (a policy without rules).
fn match_never() -> Policy {
    Policy {
        permissions: vec![
            weft_proto::envoy_types::pb::envoy::config::rbac::v3::Permission {
                rule: Some(permission::Rule::NotRule(Box::new(
                    weft_proto::envoy_types::pb::envoy::config::rbac::v3::Permission {
                        rule: Some(permission::Rule::Any(true)),
                    },
                ))),
            },
        ],
        principals: vec![
            weft_proto::envoy_types::pb::envoy::config::rbac::v3::Principal {
                identifier: Some(principal::Identifier::NotId(Box::new(
                    weft_proto::envoy_types::pb::envoy::config::rbac::v3::Principal {
                        identifier: Some(principal::Identifier::Any(true)),
                    },
                ))),
            },
        ],
        ..Default::default()
    }
}

fn shadow_prefix(action: Action) -> String {
    match action {
        Action::Allow => "istio_dry_run_allow_".into(),
        Action::Deny => "istio_dry_run_deny_".into(),
        Action::Audit => String::new(),
    }
}

fn ordered<'a>(a: &'a Applicable<'a>) -> [(&'a [&'a Entry], Action); 3] {
    [
        (&a.deny, Action::Deny),
        (&a.audit, Action::Audit),
        (&a.allow, Action::Allow),
    ]
}

/// The HTTP RBAC filters for an inbound HTTP filter chain (before the router), DENY, AUDIT, ALLOW.
pub fn http_filters(a: &Applicable) -> Vec<HttpFilter> {
    ordered(a)
        .into_iter()
        .filter_map(|(entries, action)| {
            let (rules, shadow_rules) = build(entries, action, false)?;
            let shadow_rules_stat_prefix = if shadow_rules.is_some() {
                shadow_prefix(action)
            } else {
                String::new()
            };
            let cfg = HttpRbac {
                rules,
                shadow_rules,
                shadow_rules_stat_prefix,
                ..Default::default()
            };
            Some(HttpFilter {
                name: HTTP_RBAC_FILTER.into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(cfg))),
                ..Default::default()
            })
        })
        .collect()
}

/// The network RBAC filters for an inbound TCP filter chain (before tcp_proxy).
pub fn network_filters(a: &Applicable) -> Vec<Filter> {
    ordered(a)
        .into_iter()
        .filter_map(|(entries, action)| {
            let (rules, shadow_rules) = build(entries, action, true)?;
            let shadow_rules_stat_prefix = if shadow_rules.is_some() {
                shadow_prefix(action)
            } else {
                String::new()
            };
            let cfg = NetworkRbac {
                rules,
                shadow_rules,
                shadow_rules_stat_prefix,
                stat_prefix: "tcp.".into(),
                ..Default::default()
            };
            Some(crate::util::network_filter(
                NETWORK_RBAC_FILTER,
                pack_any(cfg),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
