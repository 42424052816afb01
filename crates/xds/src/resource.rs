//! A resource ready to send: name, a version derived from its bytes, the packed message, and (on
//! first use) its delta-xDS wire form.

use prost::Message;
use prost::bytes::Bytes;
use std::sync::OnceLock;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::Resource;
use weft_proto::envoy_types::pb::google::protobuf::Any;

/// One named Envoy resource. `version` is a hash of the encoded bytes: equal content, equal
/// version, in any process (translation never encodes maps with more than one entry, whose
/// order prost would take from a randomly seeded `HashMap`).
#[derive(Clone, Debug)]
pub struct NamedResource {
    pub name: String,
    pub version: String,
    pub resource: Any,
    /// The delta `Resource { name, version, resource }`, encoded once when first asked for and
    /// then shared by every response that carries this resource ("marshal once").
    wire: OnceLock<Bytes>,
}

impl PartialEq for NamedResource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.version == other.version && self.resource == other.resource
    }
}

impl NamedResource {
    pub fn new(name: impl Into<String>, resource: Any) -> Self {
        let version = format!("{:016x}", fnv1a(&resource.value));
        NamedResource {
            name: name.into(),
            version,
            resource,
            wire: OnceLock::new(),
        }
    }

    /// The encoded `envoy.service.discovery.v3.Resource` (name, version, resource) that a
    /// `DeltaDiscoveryResponse` carries: built on the first call, then the same bytes.
    pub fn wire(&self) -> &Bytes {
        self.wire.get_or_init(|| {
            Resource {
                name: self.name.clone(),
                version: self.version.clone(),
                resource: Some(self.resource.clone()),
                ..Default::default()
            }
            .encode_to_vec()
            .into()
        })
    }
}

/// FNV-1a 64: stable across builds and platforms.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_is_the_delta_resource_and_is_encoded_once() {
        let r = NamedResource::new(
            "outbound|80||a.ns.svc.cluster.local",
            Any {
                type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                value: vec![10, 3, b'a', b'b', b'c'],
            },
        );
        let decoded = Resource::decode(r.wire().clone()).unwrap();
        assert_eq!(decoded.name, r.name);
        assert_eq!(decoded.version, r.version);
        assert_eq!(decoded.resource.as_ref(), Some(&r.resource));
        assert_eq!(
            r.wire().as_ptr(),
            r.wire().as_ptr(),
            "the second call returns the same bytes"
        );
        // Equality ignores whether the wire form was built.
        let fresh = NamedResource::new(r.name.clone(), r.resource.clone());
        assert_eq!(fresh, r);
        let other = NamedResource::new(
            r.name.clone(),
            Any {
                value: vec![1],
                ..r.resource.clone()
            },
        );
        assert_ne!(other.version, r.version);
        assert_ne!(other, r);
    }
}
