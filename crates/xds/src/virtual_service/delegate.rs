//! Delegation (Istio's `MergeHTTPRoutes`): a root route with `delegate` is replaced by the
//! delegate VirtualService's routes, each narrowed to the root's matches and inheriting what it
//! leaves unset. A delegate route whose matches conflict with every root match is dropped.

use std::collections::BTreeMap;
use weft_model::networking::{HttpMatchRequest, HttpRoute, StringMatch};

/// The routes replacing `root` (whose `delegate` is dropped) given the delegate's routes.
pub(crate) fn merge_http_routes(root: &HttpRoute, delegate: &[HttpRoute]) -> Vec<HttpRoute> {
    let mut root = root.clone();
    root.delegate = None;
    delegate
        .iter()
        .filter_map(|d| merge_route(&root, d.clone()))
        .collect()
}

fn joined(root: &str, leaf: &str) -> String {
    match (root.is_empty(), leaf.is_empty()) {
        (_, true) => root.to_string(),
        (true, false) => leaf.to_string(),
        (false, false) => format!("{root}-{leaf}"),
    }
}

fn merge_route(root: &HttpRoute, mut d: HttpRoute) -> Option<HttpRoute> {
    d.match_ = merge_matches(&root.match_, &d.match_)?;
    d.name = joined(&root.name, &d.name);
    macro_rules! inherit {
        ($($f:ident),*) => {$(
            if d.$f.is_none() {
                d.$f = root.$f.clone();
            }
        )*};
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percentage,
        cors_policy,
        headers
    );
    if d.mirrors.is_empty() {
        d.mirrors = root.mirrors.clone();
    }
    Some(d)
}

/// `mergeHTTPMatchRequests`: every delegate match must fit at least one root match; the result
/// has one match per fitting (root, delegate) pair. `None`: conflict.
fn merge_matches(
    root: &[HttpMatchRequest],
    delegate: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(delegate.to_vec());
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for leaf in delegate {
        let before = out.len();
        for r in root.iter().filter(|r| !conflicts(r, leaf)) {
            out.push(merge_match(r, leaf));
        }
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

fn merged_map<V: Clone>(
    root: &BTreeMap<String, V>,
    leaf: &BTreeMap<String, V>,
) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(leaf.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = joined(&root.name, &leaf.name);
    for (o, r) in [
        (&mut out.uri, &root.uri),
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        if o.is_none() {
            *o = r.clone();
        }
    }
    out.headers = merged_map(&root.headers, &leaf.headers);
    out.without_headers = merged_map(&root.without_headers, &leaf.without_headers);
    out.query_params = merged_map(&root.query_params, &leaf.query_params);
    if out.port == 0 {
        out.port = root.port;
    }
    out.source_labels = merged_map(&root.source_labels, &leaf.source_labels);
    if out.source_namespace.is_empty() {
        out.source_namespace = root.source_namespace.clone();
    }
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    if out.stat_prefix.is_empty() {
        out.stat_prefix = root.stat_prefix.clone();
    }
    out
}

/// `hasConflict`: the leaf match is not narrower than the root match.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(r, l)| string_match_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let map_conflict = |r: &BTreeMap<String, StringMatch>, l: &BTreeMap<String, StringMatch>| {
        l.iter()
            .any(|(k, lv)| string_match_conflict(r.get(k), Some(lv)))
    };
    if map_conflict(&root.headers, &leaf.headers)
        || map_conflict(&root.without_headers, &leaf.without_headers)
        || map_conflict(&root.query_params, &leaf.query_params)
    {
        return true;
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    if root.port > 0 && leaf.port > 0 && root.port != leaf.port {
        return true;
    }
    if !root.source_namespace.is_empty() && leaf.source_namespace != root.source_namespace {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    if !root.gateways.is_empty() && !leaf.gateways.is_empty() {
        if root.gateways.len() < leaf.gateways.len() {
            return true;
        }
        if leaf.gateways.iter().any(|g| !root.gateways.contains(g)) {
            return true;
        }
    }
    false
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

/// `stringMatchConflict`.
fn string_match_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let any = |m: &StringMatch| {
        non_empty(&m.regex).is_some()
            || non_empty(&m.prefix).is_some()
            || non_empty(&m.exact).is_some()
    };
    if non_empty(&root.regex).is_some() && any(leaf) {
        return true;
    }
    if non_empty(&leaf.regex).is_some() && any(root) {
        return true;
    }
    if let Some(exact) = non_empty(&root.exact) {
        return non_empty(&leaf.prefix).is_some() || non_empty(&leaf.exact) != Some(exact);
    }
    if let Some(prefix) = non_empty(&root.prefix) {
        if let Some(p) = non_empty(&leaf.prefix) {
            return !p.starts_with(prefix);
        }
        if let Some(e) = non_empty(&leaf.exact) {
            return !e.starts_with(prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Option<StringMatch> {
        Some(StringMatch {
            prefix: Some(p.into()),
            ..Default::default()
        })
    }

    fn exact(p: &str) -> Option<StringMatch> {
        Some(StringMatch {
            exact: Some(p.into()),
            ..Default::default()
        })
    }

    fn uri_match(m: Option<StringMatch>) -> HttpMatchRequest {
        HttpMatchRequest {
            uri: m,
            ..Default::default()
        }
    }

    #[test]
    fn delegate_routes_narrow_the_root_match_and_inherit_unset_fields() {
        let root = HttpRoute {
            name: "root".into(),
            match_: vec![uri_match(prefix("/productpage"))],
            timeout: Some(weft_model::Duration::parse("5s").unwrap()),
            ..Default::default()
        };
        let delegate = vec![
            HttpRoute {
                name: "v2".into(),
                match_: vec![uri_match(exact("/productpage/v2"))],
                ..Default::default()
            },
            // Outside the root's prefix: dropped.
            HttpRoute {
                match_: vec![uri_match(prefix("/reviews"))],
                ..Default::default()
            },
            // No match: takes the root's.
            HttpRoute::default(),
        ];
        let out = merge_http_routes(&root, &delegate);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "root-v2");
        assert_eq!(out[0].match_[0].uri, exact("/productpage/v2"));
        assert_eq!(out[0].timeout, root.timeout);
        assert_eq!(out[1].name, "root");
        assert_eq!(out[1].match_[0].uri, prefix("/productpage"));
    }

    #[test]
    fn conflicts_follow_istio() {
        assert!(!string_match_conflict(None, exact("/a").as_ref()));
        assert!(string_match_conflict(
            exact("/a").as_ref(),
            exact("/b").as_ref()
        ));
        assert!(string_match_conflict(
            exact("/a").as_ref(),
            prefix("/a").as_ref()
        ));
        assert!(!string_match_conflict(
            prefix("/a").as_ref(),
            exact("/a/b").as_ref()
        ));
        assert!(string_match_conflict(
            prefix("/a/b").as_ref(),
            prefix("/a").as_ref()
        ));
        let regex = Some(StringMatch {
            regex: Some("/a.*".into()),
            ..Default::default()
        });
        assert!(string_match_conflict(regex.as_ref(), prefix("/a").as_ref()));
        let mut r = uri_match(None);
        r.port = 80;
        let mut l = uri_match(None);
        l.port = 81;
        assert!(conflicts(&r, &l));
        l.port = 80;
        assert!(!conflicts(&r, &l));
    }
}
