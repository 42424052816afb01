//! The proxy asking for configuration, as translation sees it (pure; the lead converts Envoy's
//! `Node` with [`Proxy::from_node_parts`]).

use crate::DOMAIN_SUFFIX;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    Sidecar,
    Router,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Proxy {
    /// Envoy node id, `sidecar~<ip>~<name>.<ns>~<ns>.svc.cluster.local`.
    pub id: String,
    pub kind: ProxyKind,
    /// The IP in the node id (the workload's address).
    pub ip: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    /// Node metadata `LABELS`.
    pub labels: BTreeMap<String, String>,
    /// Node metadata `NETWORK`.
    pub network: String,
    /// The DNS domain in the node id (`<ns>.svc.cluster.local`): decides which short host names
    /// the proxy's routes accept.
    pub dns_domain: String,
    /// All node metadata, as sent.
    pub metadata: Map<String, Value>,
}

impl Proxy {
    /// Builds a proxy from its node id and metadata (Envoy's `Node.metadata` as JSON).
    /// The namespace is metadata `NAMESPACE`, else the id's `<name>.<ns>`, else the domain's first
    /// label, else `default`.
    pub fn from_node_parts(id: &str, metadata: Map<String, Value>) -> Result<Proxy, String> {
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod, domain] = parts.as_slice() else {
            return Err(format!(
                "node id {id:?} is not of the form <type>~<ip>~<name>.<namespace>~<namespace>.svc.<domain>"
            ));
        };
        let kind = match *kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            other => return Err(format!("node id {id:?}: unknown proxy type {other:?}")),
        };
        let meta_str = |k: &str| {
            metadata
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (name, ns_from_id) = pod.split_once('.').unwrap_or((pod, ""));
        let namespace = [
            meta_str("NAMESPACE"),
            ns_from_id.to_string(),
            domain.split('.').next().unwrap_or_default().to_string(),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
        let labels = metadata
            .get("LABELS")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let dns_domain = if domain.contains(".svc.") {
            domain.to_string()
        } else {
            format!("{namespace}.svc.{DOMAIN_SUFFIX}")
        };
        Ok(Proxy {
            id: id.to_string(),
            kind,
            ip: ip.to_string(),
            name: name.to_string(),
            service_account: meta_str("SERVICE_ACCOUNT"),
            network: meta_str("NETWORK"),
            namespace,
            labels,
            dns_domain,
            metadata,
        })
    }

    /// A sidecar in `namespace` at `ip` with `labels` (tests and tools).
    pub fn sidecar(name: &str, namespace: &str, ip: &str, labels: &[(&str, &str)]) -> Proxy {
        let id = format!("sidecar~{ip}~{name}.{namespace}~{namespace}.svc.{DOMAIN_SUFFIX}");
        let mut meta = Map::new();
        meta.insert(
            "LABELS".into(),
            Value::Object(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect(),
            ),
        );
        Proxy::from_node_parts(&id, meta).expect("well-formed id")
    }

    /// Node metadata `WORKLOAD_ENTRY`, when the agent says which WorkloadEntry it is.
    pub fn workload_entry(&self) -> Option<&str> {
        self.metadata
            .get("WORKLOAD_ENTRY")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_id_and_metadata() {
        let meta: Map<String, Value> = serde_json::from_str(
            r#"{"LABELS": {"app": "forum", "n": 1}, "NETWORK": "vm-net", "SERVICE_ACCOUNT": "forum-sa"}"#,
        )
        .unwrap();
        let p = Proxy::from_node_parts(
            "sidecar~10.0.0.5~forum-vm.forum-services~forum-services.svc.cluster.local",
            meta,
        )
        .unwrap();
        assert_eq!(p.kind, ProxyKind::Sidecar);
        assert_eq!(p.ip, "10.0.0.5");
        assert_eq!(p.name, "forum-vm");
        assert_eq!(p.namespace, "forum-services");
        assert_eq!(p.service_account, "forum-sa");
        assert_eq!(p.network, "vm-net");
        assert_eq!(p.labels.len(), 1);
        assert_eq!(p.dns_domain, "forum-services.svc.cluster.local");
        assert!(Proxy::from_node_parts("bad", Map::new()).is_err());
        assert!(Proxy::from_node_parts("waypoint~1~a.b~b.svc.cluster.local", Map::new()).is_err());
    }
}
