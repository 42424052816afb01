//! security.istio.io AuthorizationPolicy: access control on workloads.

use super::goparse;
use super::selector::{PolicyTargetReference, WorkloadSelector, validate_policy_scope};
use crate::validate::{Context, Report, Validate, common};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// `ALLOW` (default when empty), `DENY`, `AUDIT`, `CUSTOM`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// Only with `CUSTOM` (the proto's `action_detail` oneof has this single member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// One rule: all of `from`, `to` and `when` must match. `None` = not written;
/// `Some(empty)` = written as `[]`, which Istio rejects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<RuleFrom>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

pub const AUTHZ_ACTIONS: &[&str] = &["ALLOW", "DENY", "AUDIT", "CUSTOM"];

impl AuthorizationPolicy {
    /// The action, `ALLOW` when not written.
    pub fn action(&self) -> &str {
        if self.action.is_empty() {
            "ALLOW"
        } else {
            &self.action
        }
    }
}

impl Source {
    fn is_empty(&self) -> bool {
        *self == Source::default()
    }

    /// Fields that only a TCP-level (L4) match can use (Istio's `tcpRulesInFrom`).
    fn has_tcp_fields(&self) -> bool {
        [
            &self.principals,
            &self.not_principals,
            &self.ip_blocks,
            &self.not_ip_blocks,
            &self.namespaces,
            &self.not_namespaces,
            &self.remote_ip_blocks,
            &self.not_remote_ip_blocks,
            &self.service_accounts,
            &self.not_service_accounts,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }
}

impl Operation {
    fn is_empty(&self) -> bool {
        *self == Operation::default()
    }
}

/// An error about one list: at an item (`Some(index)`) or the whole list.
type ListError = (Option<usize>, String);

/// One of Istio's list checks (`CheckEmptyValues` and friends): field name for messages, values.
type ListCheck = fn(&str, &[String]) -> Option<ListError>;

fn report_list(report: &mut Report, path: &str, err: Option<ListError>) {
    if let Some((index, msg)) = err {
        match index {
            Some(i) => report.error(format!("{path}[{i}]"), msg),
            None => report.error(path, msg),
        }
    }
}

/// Istio's `CheckEmptyValues`.
fn check_empty_values(key: &str, values: &[String]) -> Option<ListError> {
    values
        .iter()
        .position(String::is_empty)
        .map(|i| (Some(i), format!("empty value not allowed, found in {key}")))
}

/// Istio's `CheckWildcardValues`.
fn check_wildcard_values(key: &str, values: &[String]) -> Option<ListError> {
    if let Some(e) = check_empty_values(key, values) {
        return Some(e);
    }
    values.iter().enumerate().find_map(|(i, v)| {
        let count = v.matches('*').count();
        if count > 1 {
            Some((
                Some(i),
                format!("at most one wildcard is allowed, found in {key}: {v:?}"),
            ))
        } else if count == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*') {
            Some((
                Some(i),
                format!("wildcard is only allowed at the start or end, found in {key}: {v:?}"),
            ))
        } else {
            None
        }
    })
}

/// Istio's `CheckTrustDomainValues`.
fn check_trust_domain_values(key: &str, values: &[String]) -> Option<ListError> {
    if let Some(e) = check_wildcard_values(key, values) {
        return Some(e);
    }
    values.iter().enumerate().find_map(|(i, v)| {
        v.contains('/').then(|| {
            (
                Some(i),
                format!("trust domain must not contain '/', found in {key}: {v:?}"),
            )
        })
    })
}

/// Istio's `CheckServiceAccount`: `serviceAccount` or `namespace/serviceAccount`.
fn check_service_account(key: &str, values: &[String]) -> Option<ListError> {
    if values.len() > 16 {
        return Some((None, "may not have more than 16 values".into()));
    }
    const FORMAT: &str = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
    values.iter().enumerate().find_map(|(i, v)| {
        let msg = if v.is_empty() {
            format!("empty value not allowed, found in {key}")
        } else if v.contains('*') {
            format!("wildcard not allowed, found in {key}")
        } else if v.matches('/').count() > 1 {
            format!("{FORMAT}, found {v:?} in {key}")
        } else if v.len() > 320 {
            format!("value cannot exceed 320 characters, found {v:?} in {key}")
        } else if v.starts_with('/') {
            format!("{FORMAT}, found empty namespace {v:?} in {key}")
        } else if v.ends_with('/') {
            format!("{FORMAT}, found empty serviceAccount {v:?} in {key}")
        } else {
            return None;
        };
        Some((Some(i), msg))
    })
}

/// Istio's `ValidateIPs`: every bad entry.
fn ip_errors(values: &[String]) -> Vec<(usize, String)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let msg = if v.contains('/') {
                goparse::parse_prefix(v)
                    .err()
                    .map(|e| format!("bad CIDR range ({v}): {e}"))
            } else {
                goparse::parse_addr(v)
                    .err()
                    .map(|_| format!("bad IP address ({v})"))
            };
            msg.map(|m| (i, m))
        })
        .collect()
}

/// Istio's `ValidatePorts`: every bad entry (its `<nil>` is Go's rendering of "no parse error").
fn port_errors(values: &[String]) -> Vec<(usize, String)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match goparse::parse_uint32(v) {
            Ok(p) if p <= 65535 => None,
            Ok(_) => Some((i, format!("bad port ({v}): <nil>"))),
            Err(e) => Some((i, format!("bad port ({v}): {e}"))),
        })
        .collect()
}

const MATCH_ONE: &str = "{*}";
const MATCH_ANY: &str = "{**}";

/// Envoy's valid pchar set (RFC 3986), Istio's `IsValidLiteral`.
fn is_valid_literal(glob: &str) -> bool {
    !glob.is_empty()
        && glob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@=".contains(c))
}

/// Istio's `CheckValidPathTemplate`.
fn check_path_templates(key: &str, paths: &[String]) -> Option<ListError> {
    paths.iter().enumerate().find_map(|(i, path)| {
        let has_template = path.contains(MATCH_ONE) || path.contains(MATCH_ANY);
        let trimmed = path.trim_matches('/');
        let mut found_any = false;
        for glob in trimmed.split('/') {
            if glob == MATCH_ONE && !found_any {
                continue;
            } else if glob == MATCH_ANY && !found_any {
                found_any = true;
                continue;
            } else if (glob == MATCH_ANY || glob == MATCH_ONE) && found_any {
                return Some((
                    Some(i),
                    format!(
                        "invalid or unsupported path {trimmed}, found in {key}. {{**}} is not the last operator"
                    ),
                ));
            }
            if glob.contains(['{', '}']) {
                return Some((
                    Some(i),
                    format!(
                        "invalid or unsupported path {trimmed}, found in {key}. Contains '{{' or '}}' beyond a supported path template"
                    ),
                ));
            }
            if has_template && !is_valid_literal(glob) {
                return Some((
                    Some(i),
                    format!(
                        "invalid or unsupported path {trimmed}, found in {key}. Contains segment {glob} with invalid string literal"
                    ),
                ));
            }
        }
        None
    })
}

/// Istio's `validateMapKey`: `a[b]`.
fn validate_map_key(key: &str) -> Result<(), String> {
    let ok = match key.find('[') {
        Some(open) => key.ends_with(']') && open > 0 && open + 2 < key.len(),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad key ({key}): should have format a[b]"))
    }
}

/// The part of Istio's `ValidateAttribute` that depends on the key alone.
pub fn validate_condition_key(key: &str) -> Result<(), String> {
    const PLAIN: &[&str] = &[
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.serviceAccount",
        "source.principal",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    ];
    if key.starts_with("request.headers")
        || key.starts_with("request.auth.claims")
        || key.starts_with("experimental.envoy.filters.")
    {
        return validate_map_key(key);
    }
    if PLAIN.contains(&key) {
        return Ok(());
    }
    if key == "destination.namespace" {
        return Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        ));
    }
    if key.starts_with("destination.labels") {
        return Err(format!(
            "attribute {key} is replaced by the workload selector"
        ));
    }
    if key == "destination.name" || key == "destination.user" {
        return Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        ));
    }
    Err(format!("unknown attribute: {key}"))
}

/// The value checks of Istio's `ValidateAttribute` for a known key.
fn condition_value_errors(key: &str, values: &[String]) -> Vec<ListError> {
    if let Some(e) = check_empty_values(key, values) {
        return vec![e];
    }
    let indexed = |v: Vec<(usize, String)>| v.into_iter().map(|(i, m)| (Some(i), m)).collect();
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => indexed(ip_errors(values)),
        "destination.port" => indexed(port_errors(values)),
        "source.serviceAccount" => check_service_account(key, values).into_iter().collect(),
        "source.trustDomain" => check_wildcard_values(key, values).into_iter().collect(),
        _ => vec![],
    }
}

const FOUND_AT_RULE: &str = "found at rule";

fn validate_source(src: &Source, path: &str, rule: usize, report: &mut Report) {
    let at = |f: &str| format!("{path}.{f}");
    if src.principals.len()
        + src.not_principals.len()
        + src.namespaces.len()
        + src.not_namespaces.len()
        > 0
        && src.service_accounts.len() + src.not_service_accounts.len() > 0
    {
        report.error(
            path,
            format!(
                "cannot set serviceAccounts with namespaces or principals, {FOUND_AT_RULE} {rule}"
            ),
        );
    }
    if src.is_empty() {
        report.error(
            path,
            format!("`from.source` must not be empty, {FOUND_AT_RULE} {rule}"),
        );
    }
    for (field, list) in [
        ("ipBlocks", &src.ip_blocks),
        ("notIpBlocks", &src.not_ip_blocks),
        ("remoteIpBlocks", &src.remote_ip_blocks),
        ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
    ] {
        for (i, msg) in ip_errors(list) {
            report.error(format!("{}[{i}]", at(field)), msg);
        }
    }
    let checks: [(&str, &str, &Vec<String>, ListCheck); 14] = [
        (
            "principals",
            "Principals",
            &src.principals,
            check_empty_values,
        ),
        (
            "requestPrincipals",
            "RequestPrincipals",
            &src.request_principals,
            check_empty_values,
        ),
        (
            "namespaces",
            "Namespaces",
            &src.namespaces,
            check_empty_values,
        ),
        (
            "serviceAccounts",
            "ServiceAccounts",
            &src.service_accounts,
            check_service_account,
        ),
        (
            "trustDomains",
            "TrustDomains",
            &src.trust_domains,
            check_trust_domain_values,
        ),
        ("ipBlocks", "IpBlocks", &src.ip_blocks, check_empty_values),
        (
            "remoteIpBlocks",
            "RemoteIpBlocks",
            &src.remote_ip_blocks,
            check_empty_values,
        ),
        (
            "notPrincipals",
            "NotPrincipals",
            &src.not_principals,
            check_empty_values,
        ),
        (
            "notRequestPrincipals",
            "NotRequestPrincipals",
            &src.not_request_principals,
            check_empty_values,
        ),
        (
            "notNamespaces",
            "NotNamespaces",
            &src.not_namespaces,
            check_empty_values,
        ),
        (
            "notServiceAccounts",
            "NotServiceAccounts",
            &src.not_service_accounts,
            check_service_account,
        ),
        (
            "notTrustDomains",
            "NotTrustDomains",
            &src.not_trust_domains,
            check_trust_domain_values,
        ),
        (
            "notIpBlocks",
            "NotIpBlocks",
            &src.not_ip_blocks,
            check_empty_values,
        ),
        (
            "notRemoteIpBlocks",
            "NotRemoteIpBlocks",
            &src.not_remote_ip_blocks,
            check_empty_values,
        ),
    ];
    for (field, name, list, check) in checks {
        report_list(report, &at(field), check(name, list));
    }
}

fn validate_operation(op: &Operation, path: &str, rule: usize, report: &mut Report) {
    let at = |f: &str| format!("{path}.{f}");
    if op.is_empty() {
        report.error(
            path,
            format!("`to.operation` must not be empty, {FOUND_AT_RULE} {rule}"),
        );
    }
    for (field, list) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
        for (i, msg) in port_errors(list) {
            report.error(format!("{}[{i}]", at(field)), msg);
        }
    }
    for (field, name, list) in [
        ("ports", "Ports", &op.ports),
        ("methods", "Methods", &op.methods),
        ("paths", "Paths", &op.paths),
        ("hosts", "Hosts", &op.hosts),
        ("notPorts", "NotPorts", &op.not_ports),
        ("notMethods", "NotMethods", &op.not_methods),
        ("notPaths", "NotPaths", &op.not_paths),
        ("notHosts", "NotHosts", &op.not_hosts),
    ] {
        report_list(report, &at(field), check_empty_values(name, list));
    }
    report_list(
        report,
        &at("paths"),
        check_path_templates("Paths", &op.paths),
    );
    report_list(
        report,
        &at("notPaths"),
        check_path_templates("NotPaths", &op.not_paths),
    );
}

fn validate_condition(c: &Condition, path: &str, report: &mut Report) {
    if c.key.is_empty() {
        report.error(format!("{path}.key"), "`key` must not be empty");
        return;
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        report.error(
            path,
            format!(
                "at least one of `values` or `notValues` must be set for key {}",
                c.key
            ),
        );
        return;
    }
    if let Err(msg) = validate_condition_key(&c.key) {
        report.error(format!("{path}.key"), msg);
        return;
    }
    for (field, label, list) in [
        ("values", "value", &c.values),
        ("notValues", "notValue", &c.not_values),
    ] {
        for (index, msg) in condition_value_errors(&c.key, list) {
            let msg = format!("invalid `{label}` for `key` {}: {msg}", c.key);
            match index {
                Some(i) => report.error(format!("{path}.{field}[{i}]"), msg),
                None => report.error(format!("{path}.{field}"), msg),
            }
        }
    }
}

/// Istio's extra restrictions when the action is CUSTOM.
fn validate_custom_rule(rule: &Rule, path: &str, report: &mut Report) {
    for (k, from) in rule.from.iter().flatten().enumerate() {
        let Some(src) = &from.source else { continue };
        for (field, name, set) in [
            ("namespaces", "From.Namespaces", &src.namespaces),
            ("notNamespaces", "From.NotNamespaces", &src.not_namespaces),
            (
                "serviceAccounts",
                "From.ServiceAccounts",
                &src.service_accounts,
            ),
            (
                "notServiceAccounts",
                "From.NotServiceAccounts",
                &src.not_service_accounts,
            ),
            ("trustDomains", "From.TrustDomains", &src.trust_domains),
            (
                "notTrustDomains",
                "From.NotTrustDomains",
                &src.not_trust_domains,
            ),
            ("principals", "From.Principals", &src.principals),
            ("notPrincipals", "From.NotPrincipals", &src.not_principals),
            (
                "requestPrincipals",
                "From.RequestPrincipals",
                &src.request_principals,
            ),
            (
                "notRequestPrincipals",
                "From.NotRequestPrincipals",
                &src.not_request_principals,
            ),
        ] {
            if !set.is_empty() {
                report.error(
                    format!("{path}.from[{k}].source.{field}"),
                    format!("{name} is currently not supported with CUSTOM action"),
                );
            }
        }
    }
    for (j, when) in rule.when.iter().enumerate() {
        let key = when.key.as_str();
        let unsupported = matches!(
            key,
            "source.namespace"
                | "source.serviceAccount"
                | "source.trustDomain"
                | "source.principal"
        ) || key.starts_with("request.auth.");
        if unsupported {
            report.error(
                format!("{path}.when[{j}].key"),
                format!("{key} is currently not supported with CUSTOM action"),
            );
        }
    }
}

const MEANINGLESS: &str = "action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request";

/// Istio's `checkDryRunAnnotation` for AuthorizationPolicy (other kinds are refused the
/// annotation where metadata is validated).
fn validate_dry_run(ap: &AuthorizationPolicy, ctx: &Context<'_>, report: &mut Report) {
    const DRY_RUN: &str = "istio.io/dry-run";
    let Some(value) = ctx.meta.annotations.get(DRY_RUN) else {
        return;
    };
    let (ns, name) = (ctx.namespace, ctx.meta.name.as_str());
    match ap.action() {
        "ALLOW" | "DENY" => {
            const BOOLS: &[&str] = &[
                "1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False",
            ];
            if !BOOLS.contains(&value.as_str()) {
                report.error(
                    "metadata.annotations",
                    format!(
                        "{ns}/{name} has annotation {DRY_RUN} with invalid value ({value}): strconv.ParseBool: parsing {value:?}: invalid syntax"
                    ),
                );
            }
        }
        action => report.error(
            "metadata.annotations",
            format!(
                "the annotation {DRY_RUN} currently only supports action ALLOW/DENY, found action {action} in {ns}/{name}"
            ),
        ),
    }
}

impl Validate for AuthorizationPolicy {
    fn validate(&self, ctx: &Context<'_>, report: &mut Report) {
        validate_dry_run(self, ctx, report);
        validate_policy_scope(
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            report,
        );
        if !self.action.is_empty() {
            report.check("spec.action", common::one_of(&self.action, AUTHZ_ACTIONS));
        }
        let action = self.action();
        // Istio tests `rules == nil`; an empty list decodes to nil there too.
        let no_rules = self.rules.is_empty();
        if action == "CUSTOM" {
            if no_rules {
                report.error("spec.rules", format!("CUSTOM {MEANINGLESS}"));
            } else if self.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                report.error("spec.provider.name", "`provider.name` must not be empty");
            }
            for (i, rule) in self.rules.iter().enumerate() {
                validate_custom_rule(rule, &format!("spec.rules[{i}]"), report);
            }
        } else if self.provider.is_some() {
            report.error(
                "spec.provider",
                format!("`provider` must not be with non CUSTOM action, found {action}"),
            );
        }
        if action == "DENY" && no_rules {
            report.error("spec.rules", format!("DENY {MEANINGLESS}"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let path = format!("spec.rules[{i}]");
            let mut tcp_in_from = false;
            let mut tcp_in_to = false;
            let mut from_exists = false;
            let mut to_exists = false;
            if let Some(from) = &rule.from {
                if from.is_empty() {
                    report.error(
                        format!("{path}.from"),
                        format!("`from` must not be empty, {FOUND_AT_RULE} {i}"),
                    );
                }
                for (k, f) in from.iter().enumerate() {
                    let src_path = format!("{path}.from[{k}].source");
                    match &f.source {
                        None => report.error(
                            src_path,
                            format!("`from.source` must not be nil, {FOUND_AT_RULE} {i}"),
                        ),
                        Some(src) => {
                            from_exists = true;
                            validate_source(src, &src_path, i, report);
                            tcp_in_from |= src.has_tcp_fields();
                        }
                    }
                }
            }
            if let Some(to) = &rule.to {
                if to.is_empty() {
                    report.error(
                        format!("{path}.to"),
                        format!("`to` must not be empty, {FOUND_AT_RULE} {i}"),
                    );
                }
                for (k, t) in to.iter().enumerate() {
                    let op_path = format!("{path}.to[{k}].operation");
                    match &t.operation {
                        None => report.error(
                            op_path,
                            format!("`to.operation` must not be nil, {FOUND_AT_RULE} {i}"),
                        ),
                        Some(op) => {
                            to_exists = true;
                            validate_operation(op, &op_path, i, report);
                            tcp_in_to |= !op.ports.is_empty() || !op.not_ports.is_empty();
                        }
                    }
                }
            }
            for (j, c) in rule.when.iter().enumerate() {
                validate_condition(c, &format!("{path}.when[{j}]"), report);
            }
            let http_only =
                (from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to);
            if http_only && action == "DENY" {
                report.warning(
                    path,
                    "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
