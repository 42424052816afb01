//! Typed decoding of a parsed document, reporting unknown fields and type errors with their paths.

use crate::validate::Report;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes `value` (found at `prefix`, e.g. `spec`) into `T`.
/// Unknown fields become errors at their full path; a type error ends decoding and is reported
/// at the path where it happened. Returns `None` only when decoding failed.
pub fn decode<T: DeserializeOwned>(value: &Value, prefix: &str, report: &mut Report) -> Option<T> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(render(&path));
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    for path in unknown {
        let (parent, field) = split_last(&path);
        report.error(join(prefix, parent), format!("unknown field {field:?}"));
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            report.error(join(prefix, &path), e.into_inner().to_string());
            None
        }
    }
}

/// Renders a serde_ignored path as `a.b[1].c`.
fn render(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
        Path::Map { parent, key } => join(&render(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render(parent),
    }
}

fn split_last(path: &str) -> (&str, &str) {
    match path.rfind('.') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Joins a prefix and a serde path (`a.b[0].c`) into one field path.
pub fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (_, true) => prefix.to_string(),
        (true, false) => path.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        _ => format!("{prefix}.{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        #[serde(default)]
        #[allow(dead_code)]
        max_connections: u32,
    }

    #[derive(Deserialize, Debug)]
    struct Outer {
        #[serde(default)]
        #[allow(dead_code)]
        items: Vec<Inner>,
    }

    #[test]
    fn reports_unknown_fields_with_paths() {
        let v: Value =
            serde_json::json!({"items": [{"maxConnections": 1}, {"maxConections": 2}], "extra": 1});
        let mut r = Report::default();
        let out: Option<Outer> = decode(&v, "spec", &mut r);
        assert!(out.is_some());
        let msgs: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "spec.items[1]: unknown field \"maxConections\"",
                "spec: unknown field \"extra\""
            ]
        );
    }

    #[test]
    fn reports_type_errors_with_paths() {
        let v: Value = serde_json::json!({"items": [{"maxConnections": "many"}]});
        let mut r = Report::default();
        let out: Option<Outer> = decode(&v, "spec", &mut r);
        assert!(out.is_none());
        assert_eq!(
            r.errors[0].to_string(),
            "spec.items[0].maxConnections: invalid type: string \"many\", expected u32"
        );
    }
}
