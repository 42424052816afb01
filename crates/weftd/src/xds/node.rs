//! Who a proxy says it is (its Envoy node) and whether its credentials allow that.

use serde_json::{Map, Value};
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::google::protobuf::{Value as PbValue, value::Kind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Sidecar,
    Router,
}

/// A connected proxy, from its node id `sidecar~<ip>~<name>.<ns>~<ns>.svc.cluster.local` and metadata.
#[derive(Clone, Debug)]
pub struct Proxy {
    pub id: String,
    pub kind: ProxyKind,
    pub ip: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub metadata: Map<String, Value>,
}

impl Proxy {
    /// `name.namespace`, the key `proxy-status` and `/debug/*?proxyID=` use.
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    pub fn from_node(node: &Node) -> Result<Proxy, String> {
        let parts: Vec<&str> = node.id.split('~').collect();
        let [kind, ip, id, domain] = parts.as_slice() else {
            return Err(format!(
                "node id {:?} is not of the form <type>~<ip>~<name>.<namespace>~<namespace>.svc.<domain>",
                node.id
            ));
        };
        let kind = match *kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            other => {
                return Err(format!(
                    "node id {:?}: unknown proxy type {other:?}",
                    node.id
                ));
            }
        };
        let metadata = node
            .metadata
            .as_ref()
            .map(|s| struct_to_json(&s.fields))
            .unwrap_or_default();
        let meta_str = |k: &str| {
            metadata
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (name, ns_from_id) = id.split_once('.').unwrap_or((id, ""));
        let namespace = [
            meta_str("NAMESPACE"),
            ns_from_id.to_string(),
            domain.split('.').next().unwrap_or_default().to_string(),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
        Ok(Proxy {
            id: node.id.clone(),
            kind,
            ip: ip.to_string(),
            name: name.to_string(),
            namespace,
            service_account: meta_str("SERVICE_ACCOUNT"),
            metadata,
        })
    }
}

/// Converts a protobuf Struct (as Envoy sends node metadata) to JSON.
pub fn struct_to_json(fields: &std::collections::HashMap<String, PbValue>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &PbValue) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(&s.fields)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_node_ids() {
        let node = Node {
            id: "sidecar~198.18.1.10~forum-vm.forum-services~forum-services.svc.cluster.local"
                .into(),
            ..Default::default()
        };
        let p = Proxy::from_node(&node).unwrap();
        assert_eq!(p.kind, ProxyKind::Sidecar);
        assert_eq!(p.ip, "198.18.1.10");
        assert_eq!(p.key(), "forum-vm.forum-services");
        assert!(
            Proxy::from_node(&Node {
                id: "bad".into(),
                ..Default::default()
            })
            .is_err()
        );
    }
}
