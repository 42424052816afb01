//! Who a proxy says it is: its Envoy node, turned into translation's [`Proxy`].

use serde_json::{Map, Value};
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::google::protobuf::{Value as PbValue, value::Kind};
pub use weft_xds::Proxy;

/// `name.namespace`, the key `proxy-status` and `/debug/*?proxyID=` use.
pub fn key(p: &Proxy) -> String {
    format!("{}.{}", p.name, p.namespace)
}

pub fn from_node(node: &Node) -> Result<Proxy, String> {
    let metadata = node
        .metadata
        .as_ref()
        .map(|s| struct_to_json(&s.fields))
        .unwrap_or_default();
    Proxy::from_node_parts(&node.id, metadata)
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
        let p = from_node(&node).unwrap();
        assert_eq!(p.ip, "198.18.1.10");
        assert_eq!(key(&p), "forum-vm.forum-services");
        assert!(
            from_node(&Node {
                id: "bad".into(),
                ..Default::default()
            })
            .is_err()
        );
    }
}
