//! The part of Istio's MeshConfig translation reads.

use crate::network::MeshNetworks;
use serde::Deserialize;

/// Istio `MeshConfig` (YAML/JSON, camelCase); fields translation does not use are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MeshConfig {
    pub trust_domain: String,
    pub root_namespace: String,
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// Istio's `MeshNetworks`: not part of the MeshConfig file; istiod reads it from its own file
    /// (`--networksConfig`), weftd from `--networks-config`.
    #[serde(skip)]
    pub networks: MeshNetworks,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            outbound_traffic_policy: OutboundTrafficPolicy::default(),
            networks: MeshNetworks::default(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OutboundTrafficPolicy {
    pub mode: OutboundTrafficPolicyMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum OutboundTrafficPolicyMode {
    /// Unknown destinations go to `PassthroughCluster` (Istio's default).
    #[default]
    #[serde(rename = "ALLOW_ANY")]
    AllowAny,
    /// Unknown destinations go to `BlackHoleCluster` (HTTP: 502).
    #[serde(rename = "REGISTRY_ONLY")]
    RegistryOnly,
}

impl MeshConfig {
    pub fn allow_any(&self) -> bool {
        self.outbound_traffic_policy.mode == OutboundTrafficPolicyMode::AllowAny
    }

    /// `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_uri(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "spiffe://{}/ns/{namespace}/sa/{service_account}",
            self.trust_domain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_yaml() {
        let m: MeshConfig = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(m, MeshConfig::default());
        let m: MeshConfig = serde_saphyr::from_str(
            "trustDomain: example.org\nrootNamespace: mesh-root\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\ndefaultConfig:\n  discoveryAddress: istiod:15012\n",
        )
        .unwrap();
        assert_eq!(m.trust_domain, "example.org");
        assert_eq!(m.root_namespace, "mesh-root");
        assert!(!m.allow_any());
        assert_eq!(
            m.spiffe_uri("a", "b"),
            "spiffe://example.org/ns/a/sa/b".to_string()
        );
    }
}
