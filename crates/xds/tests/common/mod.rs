//! Test helpers: scenarios from YAML, Envoy-style JSON rendering of resources (through
//! descriptors compiled from the .proto files envoy-types ships), golden files, and a bootstrap
//! for `envoy --mode validate`.
#![allow(dead_code)]

pub mod envoy;
pub mod mesh;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind as FieldKind, MapKey, ReflectMessage, Value as RValue,
};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use weft_model::load::{Outcome, load_str};
use weft_model::snapshot::Snapshot;
use weft_proto::envoy_types::pb::google::protobuf::Any;
use weft_xds::NamedResource;

/// A snapshot of every valid document in `yaml` (panics on invalid ones).
pub fn snapshot(yaml: &str) -> Arc<Snapshot> {
    let mut resources = Vec::new();
    for entry in load_str("scenario.yaml", yaml) {
        match entry.outcome {
            Outcome::Valid { resource, .. } => resources.push(Arc::new(*resource)),
            Outcome::Skipped { .. } => {}
            Outcome::Invalid { errors, .. } => panic!(
                "{} {}/{} is invalid: {errors:?}",
                entry.kind, entry.namespace, entry.name
            ),
        }
    }
    Arc::new(Snapshot::new(1, resources))
}

fn envoy_types_protos() -> PathBuf {
    let mut homes: Vec<PathBuf> = Vec::new();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        homes.push(h.into());
    }
    if let Some(h) = std::env::var_os("HOME") {
        homes.push(Path::new(&h).join(".cargo"));
    }
    for home in homes {
        let Ok(dirs) = std::fs::read_dir(home.join("registry/src")) else {
            continue;
        };
        for d in dirs.flatten() {
            let p = d.path().join("envoy-types-0.7.7/proto");
            if p.is_dir() {
                return p;
            }
        }
    }
    panic!(
        "envoy-types-0.7.7/proto not found under $CARGO_HOME/registry/src (run a cargo build first)"
    );
}

/// Descriptors of every message translation emits.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let root = envoy_types_protos();
        let includes: Vec<PathBuf> = [
            "data-plane-api",
            "xds",
            "protoc-gen-validate",
            "googleapis",
            "cel-spec/proto",
            "opentelemetry-proto",
            "client_model",
        ]
        .iter()
        .map(|d| root.join(d))
        .collect();
        let files = [
            "envoy/config/bootstrap/v3/bootstrap.proto",
            "envoy/config/endpoint/v3/endpoint.proto",
            "envoy/config/route/v3/route.proto",
            "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
            "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
            "envoy/extensions/filters/http/router/v3/router.proto",
            "envoy/extensions/filters/http/fault/v3/fault.proto",
            "envoy/extensions/filters/http/cors/v3/cors.proto",
            "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
            "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
            "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
            "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
            "envoy/extensions/transport_sockets/tls/v3/tls.proto",
            "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
            "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
            "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
        ];
        let mut compiler = protox::Compiler::new(includes).expect("protox include paths");
        compiler.include_imports(true);
        compiler.open_files(files).expect("compile envoy protos");
        compiler.descriptor_pool()
    })
}

/// Envoy's JSON form of a packed resource (proto field names, as `config_dump` prints them).
pub fn any_json(any: &Any) -> Value {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let desc = pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("no descriptor for {name}"));
    let msg = DynamicMessage::decode(desc, any.value.as_slice()).expect("decode");
    let mut out = Map::new();
    out.insert("@type".into(), Value::String(any.type_url.clone()));
    if let Value::Object(fields) = message_json(&msg) {
        out.extend(fields);
    }
    Value::Object(out)
}

fn message_json(msg: &DynamicMessage) -> Value {
    let desc = msg.descriptor();
    match desc.full_name() {
        "google.protobuf.Any" => {
            let url = msg
                .get_field_by_number(1)
                .and_then(|v| v.as_str().map(str::to_string));
            let bytes = msg
                .get_field_by_number(2)
                .and_then(|v| v.as_bytes().cloned());
            return any_json(&Any {
                type_url: url.unwrap_or_default(),
                value: bytes.map(|b| b.to_vec()).unwrap_or_default(),
            });
        }
        "google.protobuf.Duration" => {
            let s = msg
                .get_field_by_number(1)
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let n = msg
                .get_field_by_number(2)
                .and_then(|v| v.as_i32())
                .unwrap_or(0);
            return if n == 0 {
                json!(format!("{s}s"))
            } else {
                json!(format!("{}s", s as f64 + n as f64 / 1e9))
            };
        }
        "google.protobuf.BoolValue"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int64Value"
        | "google.protobuf.StringValue"
        | "google.protobuf.DoubleValue" => {
            let f = desc.get_field(1).expect("wrapper value");
            return scalar_json(&f.kind(), &msg.get_field(&f));
        }
        "google.protobuf.Struct" => {
            let f = desc.get_field(1).expect("fields");
            return value_json(&f.kind(), &msg.get_field(&f));
        }
        "google.protobuf.Value" => {
            return match msg.fields().next() {
                Some((f, _)) if f.name() == "null_value" => Value::Null,
                Some((f, v)) => value_json(&f.kind(), v),
                None => Value::Null,
            };
        }
        "google.protobuf.ListValue" => {
            let f = desc.get_field(1).expect("values");
            return value_json(&f.kind(), &msg.get_field(&f));
        }
        _ => {}
    }
    let mut fields: Vec<_> = msg.fields().collect();
    fields.sort_by_key(|(f, _)| f.number());
    let mut out = Map::new();
    for (f, v) in fields {
        out.insert(f.name().to_string(), value_json(&f.kind(), v));
    }
    Value::Object(out)
}

fn value_json(kind: &FieldKind, v: &RValue) -> Value {
    match v {
        RValue::List(items) => Value::Array(items.iter().map(|i| scalar_json(kind, i)).collect()),
        RValue::Map(m) => {
            let value_kind = match kind {
                FieldKind::Message(entry) => entry.map_entry_value_field().kind(),
                _ => unreachable!("map field without entry message"),
            };
            let mut entries: Vec<(String, &RValue)> = m
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        MapKey::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (key, v)
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, scalar_json(&value_kind, v)))
                    .collect(),
            )
        }
        other => scalar_json(kind, other),
    }
}

fn scalar_json(kind: &FieldKind, v: &RValue) -> Value {
    match v {
        RValue::Bool(b) => json!(b),
        RValue::I32(n) => json!(n),
        RValue::U32(n) => json!(n),
        RValue::I64(n) => json!(n.to_string()),
        RValue::U64(n) => json!(n.to_string()),
        RValue::F32(n) => json!(n),
        RValue::F64(n) => json!(n),
        RValue::String(s) => json!(s),
        RValue::Bytes(b) => json!(format!("{b:?}")),
        RValue::EnumNumber(n) => match kind {
            FieldKind::Enum(e) => e
                .get_value(*n)
                .map(|v| json!(v.name()))
                .unwrap_or_else(|| json!(n)),
            _ => json!(n),
        },
        RValue::Message(m) => message_json(m),
        RValue::List(_) | RValue::Map(_) => value_json(kind, v),
    }
}

/// `[{"name", "version"?, "resource"}...]` as pretty JSON.
pub fn render(resources: &[Arc<NamedResource>]) -> String {
    let items: Vec<Value> = resources
        .iter()
        .map(|r| json!({"name": r.name, "resource": any_json(&r.resource)}))
        .collect();
    let mut s = serde_json::to_string_pretty(&Value::Array(items)).unwrap();
    s.push('\n');
    s
}

/// Compares with `testdata/<name>`; `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, actual: &str) {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("testdata")
    .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n- {a}\n+ {b}", i + 1))
            .collect();
        panic!(
            "{} differs from the generated output (UPDATE_GOLDEN=1 to accept):\n{}\n(expected {} lines, got {})",
            path.display(),
            diff.join("\n"),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

pub fn decode<M: Message + Default>(any: &Any) -> M {
    M::decode(any.value.as_slice()).expect("decode")
}
