//! NDS in the agent: the `NameTable` responses the xDS proxy intercepts on the upstream stream
//! (requested after Envoy's first LDS request, never forwarded to Envoy).

use crate::xds_proxy::Intercepted;
use weft_proto::nds::NameTable;
use weft_proto::type_url;

/// The table an intercepted response carries, with its encoding (what is persisted). `Ok(None)`:
/// an empty response, nothing to apply (Istio). `Err`: the reason to NACK it.
pub fn decode(got: &Intercepted) -> Result<Option<(NameTable, Vec<u8>)>, String> {
    // The name table is one resource per proxy.
    let Some(first) = got.resources.first() else {
        return Ok(None);
    };
    let any = first
        .resource
        .as_ref()
        .ok_or("NameTable resource without a value")?;
    if any.type_url != type_url::NAME_TABLE {
        return Err(format!(
            "expected a {} resource, got {:?}",
            type_url::NAME_TABLE,
            any.type_url
        ));
    }
    let table: NameTable = prost::Message::decode(any.value.as_slice())
        .map_err(|e| format!("failed to unmarshal name table: {e}"))?;
    Ok(Some((table, any.value.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::envoy_types::pb::envoy::service::discovery::v3::Resource;
    use weft_proto::envoy_types::pb::google::protobuf::Any;
    use weft_proto::nds::name_table::NameInfo;

    fn intercepted(resources: Vec<Resource>) -> Intercepted {
        Intercepted {
            node_id: "n".into(),
            type_url: type_url::NAME_TABLE.into(),
            version_info: "v1".into(),
            resources,
            removed_resources: Vec::new(),
            delta: false,
        }
    }

    fn resource(type_url: &str, value: Vec<u8>) -> Resource {
        Resource {
            resource: Some(Any {
                type_url: type_url.into(),
                value,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_the_table_and_rejects_bad_ones() {
        let table = NameTable {
            table: [(
                "a.example".to_string(),
                NameInfo {
                    ips: vec!["240.240.0.1".into()],
                    registry: "External".into(),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
        };
        let bytes = prost::Message::encode_to_vec(&table);
        let got = decode(&intercepted(vec![resource(
            type_url::NAME_TABLE,
            bytes.clone(),
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(got, (table, bytes));
        assert_eq!(decode(&intercepted(vec![])), Ok(None));
        let err = decode(&intercepted(vec![resource(
            type_url::NAME_TABLE,
            vec![0xff, 0xff],
        )]))
        .unwrap_err();
        assert!(err.starts_with("failed to unmarshal name table: "), "{err}");
        let err = decode(&intercepted(vec![resource(type_url::CLUSTER, vec![])])).unwrap_err();
        assert!(
            err.contains("got \"type.googleapis.com/envoy.config.cluster.v3.Cluster\""),
            "{err}"
        );
        assert!(decode(&intercepted(vec![Resource::default()])).is_err());
    }
}
