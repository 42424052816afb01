//! A resource ready to send: name, a version derived from its bytes, and the packed message.

use weft_proto::envoy_types::pb::google::protobuf::Any;

/// One named Envoy resource. `version` is a hash of the encoded bytes: equal content, equal
/// version, in any process (translation never encodes maps with more than one entry, whose
/// order prost would take from a randomly seeded `HashMap`).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedResource {
    pub name: String,
    pub version: String,
    pub resource: Any,
}

impl NamedResource {
    pub fn new(name: impl Into<String>, resource: Any) -> Self {
        let version = format!("{:016x}", fnv1a(&resource.value));
        NamedResource {
            name: name.into(),
            version,
            resource,
        }
    }
}

/// FNV-1a 64: stable across builds and platforms.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
