//! security.istio.io PeerAuthentication: the mTLS mode workloads accept.

use super::selector::{WorkloadSelector, validate_workload_selector};
use crate::validate::{Context, Report, Validate, common};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthentication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Keyed by port number as written (`"8080"`); YAML integer keys arrive as strings.
    /// `None` when absent, `Some(empty)` for `portLevelMtls: {}` (which Istio rejects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_level_mtls: Option<BTreeMap<String, MutualTls>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MutualTls {
    /// `UNSET` (or empty: inherit), `DISABLE`, `PERMISSIVE`, `STRICT`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

pub const MTLS_MODES: &[&str] = &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];

impl PeerAuthentication {
    /// Port-level modes with their ports parsed; entries whose key is not a port are skipped.
    pub fn port_modes(&self) -> impl Iterator<Item = (u32, &MutualTls)> {
        self.port_level_mtls
            .iter()
            .flatten()
            .filter_map(|(k, v)| k.parse::<u32>().ok().map(|p| (p, v)))
    }
}

fn validate_mode(m: &MutualTls, path: &str, report: &mut Report) {
    if !m.mode.is_empty() {
        report.check(format!("{path}.mode"), common::one_of(&m.mode, MTLS_MODES));
    }
}

impl Validate for PeerAuthentication {
    fn validate(&self, _ctx: &Context<'_>, report: &mut Report) {
        let empty_selector = self
            .selector
            .as_ref()
            .is_none_or(|s| s.match_labels.is_empty());
        if let Some(m) = &self.mtls {
            validate_mode(m, "spec.mtls", report);
        }
        if let Some(ports) = &self.port_level_mtls {
            if empty_selector && !ports.is_empty() {
                // Istio's webhook says "mesh/namespace peer authentication cannot have port
                // level mTLS"; the CRD rule (what kubectl apply reports) says this.
                report.error("spec.portLevelMtls", "portLevelMtls requires selector");
            }
            if ports.is_empty() {
                report.error(
                    "spec.portLevelMtls",
                    "port level mTLS, if defined, must have at least one element",
                );
            }
            for (port, m) in ports {
                let path = format!("spec.portLevelMtls[{port}]");
                let in_range = port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
                if !in_range {
                    report.error(path.clone(), "port must be in range 1..65535");
                }
                validate_mode(m, &path, report);
            }
        }
        validate_workload_selector(self.selector.as_ref(), "spec.selector", report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Outcome, load_str};
    use crate::resource::Spec;

    fn load(doc: &str) -> Outcome {
        let out = load_str("pa.yaml", doc);
        assert_eq!(out.len(), 1);
        out.into_iter().next().unwrap().outcome
    }

    fn doc(spec: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: pa\n  namespace: shop\nspec:\n{spec}"
        )
    }

    fn errors(spec: &str) -> Vec<String> {
        match load(&doc(spec)) {
            Outcome::Invalid { errors, .. } => errors.iter().map(|e| e.to_string()).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn valid(spec: &str) -> (PeerAuthentication, Vec<String>) {
        match load(&doc(spec)) {
            Outcome::Valid { resource, warnings } => match resource.spec {
                Spec::PeerAuthentication(pa) => {
                    (pa, warnings.iter().map(|w| w.to_string()).collect())
                }
                other => panic!("unexpected spec {other:?}"),
            },
            other => panic!("expected valid, got {other:?}"),
        }
    }

    #[test]
    fn mesh_wide_strict_is_valid() {
        let out = load(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n",
        );
        let Outcome::Valid { resource, warnings } = out else {
            panic!("expected valid: {out:?}");
        };
        assert!(warnings.is_empty());
        let Spec::PeerAuthentication(pa) = resource.spec else {
            panic!()
        };
        assert_eq!(pa.mtls.unwrap().mode, "STRICT");
    }

    #[test]
    fn port_level_with_selector_is_valid() {
        let (pa, warnings) = valid(
            "  selector:\n    matchLabels:\n      app: reviews\n  mtls:\n    mode: STRICT\n  portLevelMtls:\n    8080:\n      mode: STRICT\n    8081:\n      mode: PERMISSIVE\n",
        );
        assert!(warnings.is_empty());
        let ports: Vec<(u32, &str)> = pa.port_modes().map(|(p, m)| (p, m.mode.as_str())).collect();
        assert_eq!(ports, vec![(8080, "STRICT"), (8081, "PERMISSIVE")]);
        let json = serde_json::to_value(&pa).unwrap();
        assert_eq!(json["portLevelMtls"]["8081"]["mode"], "PERMISSIVE");
        assert_eq!(json["selector"]["matchLabels"]["app"], "reviews");
    }

    #[test]
    fn empty_spec_is_valid_and_serializes_empty() {
        let (pa, _) = valid("  {}\n");
        assert_eq!(serde_json::to_string(&pa).unwrap(), "{}");
        valid("  mtls:\n    mode: UNSET\n");
        valid("  mtls: {}\n");
    }

    #[test]
    fn port_level_requires_selector() {
        assert_eq!(
            errors("  portLevelMtls:\n    8080:\n      mode: DISABLE\n"),
            vec!["spec.portLevelMtls: portLevelMtls requires selector"]
        );
        assert_eq!(
            errors(
                "  selector:\n    matchLabels: {}\n  portLevelMtls:\n    8080:\n      mode: DISABLE\n"
            ),
            vec!["spec.portLevelMtls: portLevelMtls requires selector"]
        );
    }

    #[test]
    fn port_level_rules() {
        assert_eq!(
            errors(
                "  selector:\n    matchLabels:\n      app: a\n  portLevelMtls:\n    0:\n      mode: STRICT\n    70000:\n      mode: STRICT\n    http:\n      mode: STRICT\n"
            ),
            vec![
                "spec.portLevelMtls[0]: port must be in range 1..65535",
                "spec.portLevelMtls[70000]: port must be in range 1..65535",
                "spec.portLevelMtls[http]: port must be in range 1..65535"
            ]
        );
        assert_eq!(
            errors("  selector:\n    matchLabels:\n      app: a\n  portLevelMtls: {}\n"),
            vec!["spec.portLevelMtls: port level mTLS, if defined, must have at least one element"]
        );
    }

    #[test]
    fn modes_are_checked() {
        assert_eq!(
            errors("  mtls:\n    mode: strict\n"),
            vec![
                "spec.mtls.mode: Unsupported value: \"strict\": supported values: \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\""
            ]
        );
        assert_eq!(
            errors(
                "  selector:\n    matchLabels:\n      app: a\n  portLevelMtls:\n    9000:\n      mode: MUTUAL\n"
            ),
            vec![
                "spec.portLevelMtls[9000].mode: Unsupported value: \"MUTUAL\": supported values: \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\""
            ]
        );
    }

    #[test]
    fn selector_rules() {
        assert_eq!(
            errors("  selector:\n    matchLabels:\n      app: \"web*\"\n"),
            vec![
                "spec.selector.matchLabels[app]: wildcard is not supported in selector: \"app=web*\""
            ]
        );
        assert_eq!(
            errors("  selector:\n    matchLabels:\n      \"\": web\n"),
            vec!["spec.selector.matchLabels[]: empty key is not supported in selector: \"=web\""]
        );
        let (_, warnings) = valid("  selector: {}\n  mtls:\n    mode: PERMISSIVE\n");
        assert_eq!(
            warnings,
            vec!["spec.selector: workload selector specified without labels"]
        );
    }

    #[test]
    fn unknown_fields_are_reported() {
        assert_eq!(
            errors("  mtls:\n    mode: STRICT\n    strict: true\n"),
            vec!["spec.mtls: unknown field \"strict\""]
        );
    }
}
