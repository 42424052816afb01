//! istio.type.v1beta1 `WorkloadSelector` and `PolicyTargetReference`, shared by the security kinds.

use crate::meta::StringMap;
use crate::validate::Report;
use serde::{Deserialize, Serialize};

/// `selector:` of a policy: the pods/VMs it applies to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub match_labels: StringMap,
}

/// `targetRef:` / `targetRefs[]`: a Kubernetes resource a policy attaches to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Istio's `validateWorkloadSelector`, reporting at `path` (e.g. `spec.selector`).
pub fn validate_workload_selector(
    selector: Option<&WorkloadSelector>,
    path: &str,
    report: &mut Report,
) {
    let Some(selector) = selector else {
        return;
    };
    for (k, v) in &selector.match_labels {
        let at = format!("{path}.matchLabels[{k}]");
        let pair = format!("{k}={v}");
        if k.is_empty() {
            report.error(
                at.clone(),
                format!("empty key is not supported in selector: {pair:?}"),
            );
        }
        if k.contains('*') || v.contains('*') {
            report.error(
                at,
                format!("wildcard is not supported in selector: {pair:?}"),
            );
        }
    }
    if selector.match_labels.is_empty() {
        report.warning(path, "workload selector specified without labels");
    }
}

/// Kinds a policy may target, as `group/version/kind` (Istio's `allowedTargetRefs`).
const ALLOWED_TARGETS: &[(&str, &str, &str)] = &[
    ("core", "v1", "Service"),
    ("networking.istio.io", "v1", "ServiceEntry"),
    ("gateway.networking.k8s.io", "v1", "Gateway"),
    ("gateway.networking.k8s.io", "v1", "GatewayClass"),
];

/// Istio's `validatePolicyTargetReference`, reporting at `path` (e.g. `spec.targetRefs[0]`).
pub fn validate_target_ref(target: &PolicyTargetReference, path: &str, report: &mut Report) {
    if target.name.is_empty() {
        report.error(format!("{path}.name"), "targetRef name must be set");
    }
    if !target.namespace.is_empty() {
        report.error(
            format!("{path}.namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        );
    }
    let group = if target.group.is_empty() {
        "core"
    } else {
        target.group.as_str()
    };
    let allowed = ALLOWED_TARGETS
        .iter()
        .any(|(g, _, k)| *g == group && *k == target.kind);
    if !allowed {
        let list: Vec<String> = ALLOWED_TARGETS
            .iter()
            .map(|(g, v, k)| format!("{g}/{v}/{k}"))
            .collect();
        report.error(
            format!("{path}.kind"),
            format!(
                "targetRef must be to one of [{}] but was {}/{}",
                list.join(" "),
                target.group,
                target.kind
            ),
        );
    }
}

/// Istio's `validateOneOfSelectorType` plus the selector and target checks it is paired with.
pub fn validate_policy_scope(
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    report: &mut Report,
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        report.error(
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        );
    }
    validate_workload_selector(selector, "spec.selector", report);
    if let Some(t) = target_ref {
        validate_target_ref(t, "spec.targetRef", report);
    }
    for (i, t) in target_refs.iter().enumerate() {
        validate_target_ref(t, &format!("spec.targetRefs[{i}]"), report);
    }
}
