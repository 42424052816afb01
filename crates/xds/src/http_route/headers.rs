//! Header operations (Istio's `TranslateHeadersOperations`): `set` overwrites, `add` appends,
//! `remove` removes; pseudo-headers and `host` are never touched, but a `:authority`/`host`
//! value becomes the route's authority rewrite.

use weft_model::meta::StringMap;
use weft_model::networking::Headers;
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option,
};

#[derive(Debug, Default, PartialEq)]
pub(crate) struct HeaderOps {
    pub request_add: Vec<HeaderValueOption>,
    pub response_add: Vec<HeaderValueOption>,
    pub request_remove: Vec<String>,
    pub response_remove: Vec<String>,
    /// `:authority` (or `host`) set, else added; empty when neither.
    pub authority: String,
}

fn is_internal(key: &str) -> bool {
    key.starts_with(':') || key.eq_ignore_ascii_case("host")
}

fn is_authority(key: &str) -> bool {
    key.eq_ignore_ascii_case(":authority") || key.eq_ignore_ascii_case("host")
}

/// `translateAppendHeaders`: options sorted by key, and the last authority value seen.
fn options(headers: &StringMap, append: bool) -> (Vec<HeaderValueOption>, String) {
    let action = if append {
        header_value_option::HeaderAppendAction::AppendIfExistsOrAdd
    } else {
        header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd
    };
    let mut authority = String::new();
    let mut out = Vec::new();
    for (key, value) in headers {
        if is_authority(key) {
            authority = value.clone();
        }
        if is_internal(key) {
            continue;
        }
        out.push(HeaderValueOption {
            header: Some(HeaderValue {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        });
    }
    (out, authority)
}

fn removals(keys: &[String]) -> Vec<String> {
    keys.iter().filter(|k| !is_internal(k)).cloned().collect()
}

pub(crate) fn operations(h: &Headers) -> HeaderOps {
    let empty = StringMap::default();
    let req = h.request.as_ref();
    let resp = h.response.as_ref();
    let (mut request_add, set_authority) = options(req.map_or(&empty, |r| &r.set), false);
    let (add, add_authority) = options(req.map_or(&empty, |r| &r.add), true);
    request_add.extend(add);
    let (mut response_add, _) = options(resp.map_or(&empty, |r| &r.set), false);
    response_add.extend(options(resp.map_or(&empty, |r| &r.add), true).0);
    HeaderOps {
        request_add,
        response_add,
        request_remove: req.map(|r| removals(&r.remove)).unwrap_or_default(),
        response_remove: resp.map(|r| removals(&r.remove)).unwrap_or_default(),
        authority: if set_authority.is_empty() {
            add_authority
        } else {
            set_authority
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::networking::HeaderOperations;

    #[test]
    fn set_add_remove_and_authority() {
        let h = Headers {
            request: Some(HeaderOperations {
                set: [
                    ("x-b".to_string(), "1".to_string()),
                    (":authority".into(), "set.example".into()),
                ]
                .into(),
                add: [
                    ("x-a".to_string(), "2".to_string()),
                    ("host".into(), "add.example".into()),
                ]
                .into(),
                remove: vec!["x-gone".into(), ":path".into()],
            }),
            response: Some(HeaderOperations {
                remove: vec!["server".into()],
                ..Default::default()
            }),
        };
        let ops = operations(&h);
        let keys: Vec<(&str, i32)> = ops
            .request_add
            .iter()
            .map(|o| (o.header.as_ref().unwrap().key.as_str(), o.append_action))
            .collect();
        assert_eq!(keys, vec![("x-b", 2), ("x-a", 0)]);
        assert_eq!(ops.request_remove, vec!["x-gone".to_string()]);
        assert_eq!(ops.response_remove, vec!["server".to_string()]);
        assert_eq!(ops.authority, "set.example");
    }
}
