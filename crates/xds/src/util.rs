//! Small builders shared by the generators.

use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ConfigSource, Metadata, SocketAddress, TransportSocket,
    address, config_source, socket_address, transport_socket,
};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use weft_proto::envoy_types::pb::google::protobuf::{
    Any, BoolValue, Duration, Struct, UInt32Value, Value, value,
};

pub(crate) fn secs(s: i64) -> Option<Duration> {
    Some(Duration {
        seconds: s,
        nanos: 0,
    })
}

pub(crate) fn bool_value(v: bool) -> Option<BoolValue> {
    Some(BoolValue { value: v })
}

pub(crate) fn u32_value(v: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: v })
}

pub(crate) fn socket_address(ip: &str, port: u32) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    })
}

/// `{ads: {}, initialFetchTimeout: 0s, resourceApiVersion: V3}` (as istiod).
pub(crate) fn ads_config_source() -> Option<ConfigSource> {
    Some(ConfigSource {
        resource_api_version: 2, // V3
        initial_fetch_timeout: secs(0),
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    })
}

/// A struct with exactly one string field (single-entry maps keep the encoding deterministic).
pub(crate) fn one_field_struct(key: &str, val: &str) -> Struct {
    Struct {
        fields: [(
            key.to_string(),
            Value {
                kind: Some(value::Kind::StringValue(val.to_string())),
            },
        )]
        .into(),
    }
}

/// `filter_metadata: {<filter>: {<key>: <val>}}`.
pub(crate) fn metadata(filter: &str, key: &str, val: &str) -> Option<Metadata> {
    Some(Metadata {
        filter_metadata: [(filter.to_string(), one_field_struct(key, val))].into(),
        ..Default::default()
    })
}

pub(crate) fn transport_socket(name: &str, config: Any) -> TransportSocket {
    TransportSocket {
        name: name.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

pub(crate) fn network_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}

/// A model duration (Go syntax, e.g. `1.5s`) as a protobuf Duration.
pub(crate) fn duration(d: &weft_model::Duration) -> Duration {
    let d = d.as_std();
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}
