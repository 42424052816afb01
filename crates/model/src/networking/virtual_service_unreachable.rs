//! Istio's unreachable-rule analysis for VirtualServices (`analyzeUnreachable*Rules`): warnings for
//! rules after a catch-all, matches duplicated by earlier rules, and URI prefixes covered by
//! earlier prefixes.

use super::common::{at, idx};
use super::virtual_service::{HttpMatchRequest, StringMatch, VirtualService};
use crate::validate::Report;
use serde::Serialize;
use std::collections::BTreeMap;

fn unused(report: &mut Report, path: String, rule: &str, reason: &str) {
    report.warning(
        path,
        format!("virtualService rule {rule} not used ({reason})"),
    );
}

fn ineffective(report: &mut Report, path: String, rule: &str, m: &str, dup: &str) {
    report.warning(
        path,
        format!(
            "virtualService rule {rule} match {m} is not used (duplicate/overlapping match in rule {dup})"
        ),
    );
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The shared duplicate/after-catch-all walk. `rule_name(i)` names rule `i`, `match_name(i, j)`
/// names its match `j`; `matches[i]` holds each match's comparison key.
fn walk(
    base: &str,
    matches: &[Vec<String>],
    rule_name: &dyn Fn(usize) -> String,
    match_name: &dyn Fn(usize, usize) -> String,
    report: &mut Report,
    mut on_new: impl FnMut(usize, usize),
) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut empty_seen = false;
    for (i, keys) in matches.iter().enumerate() {
        let rp = idx(base, i);
        if keys.is_empty() {
            if empty_seen {
                unused(
                    report,
                    rp,
                    &rule_name(i),
                    "only the last rule can have no matches",
                );
            }
            empty_seen = true;
            continue;
        }
        let mut duplicates = 0;
        for (j, k) in keys.iter().enumerate() {
            if empty_seen {
                unused(
                    report,
                    rp.clone(),
                    &rule_name(i),
                    "route without matches defined before",
                );
                continue;
            }
            if let Some(&dup) = seen.get(k.as_str()) {
                ineffective(
                    report,
                    idx(&at(&rp, "match"), j),
                    &rule_name(i),
                    &match_name(i, j),
                    &rule_name(dup),
                );
                duplicates += 1;
                continue;
            }
            seen.insert(k, i);
            on_new(i, j);
        }
        if duplicates == keys.len() {
            unused(report, rp, &rule_name(i), "all matches used by prior rules");
        }
    }
}

/// One prefix-URI match, for the overlap check (`OverlappingMatchValidationForHTTPRoute`).
struct PrefixMatch {
    rule: usize,
    matchn: usize,
    route_str: String,
    match_str: String,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query_params: BTreeMap<String, String>,
    without_headers: BTreeMap<String, String>,
}

fn exact_or_prefix(sm: Option<&StringMatch>) -> String {
    match sm {
        Some(StringMatch { exact: Some(e), .. }) if !e.is_empty() => format!("exact:{e}"),
        Some(StringMatch {
            prefix: Some(p), ..
        }) if !p.is_empty() => format!("prefix:{p}"),
        _ => String::new(),
    }
}

fn flatten(map: &BTreeMap<String, StringMatch>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), exact_or_prefix(Some(v))))
        .collect()
}

/// `coveredValidation`: whether `a` (earlier) covers `b`.
fn covered(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    if !b.prefix.starts_with(&a.prefix) || a.port != b.port {
        return false;
    }
    if a.method != b.method && !a.method.starts_with(&b.method) {
        return false;
    }
    if a.authority != b.authority && !a.authority.starts_with(&b.authority) {
        return false;
    }
    let maps_cover = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| {
        x.len() == y.len()
            && x.iter().all(|(k, v)| match y.get(k) {
                None => false,
                Some(w) => v == w || v.starts_with(w.as_str()),
            })
    };
    maps_cover(&a.headers, &b.headers)
        && maps_cover(&a.query_params, &b.query_params)
        && maps_cover(&a.without_headers, &b.without_headers)
}

fn quoted_or_index(name: &str, n: usize) -> String {
    if name.is_empty() {
        format!("#{n}")
    } else {
        format!("{name:?}")
    }
}

fn prefix_match(vs: &VirtualService, i: usize, j: usize) -> Option<PrefixMatch> {
    let route = &vs.http[i];
    let m: &HttpMatchRequest = &route.match_[j];
    let prefix = m.uri.as_ref()?.prefix.clone().filter(|p| !p.is_empty())?;
    let mut method = exact_or_prefix(m.method.as_ref());
    if method.is_empty() {
        method = "exact:GET".into();
    }
    Some(PrefixMatch {
        rule: i,
        matchn: j,
        route_str: quoted_or_index(&route.name, i),
        match_str: quoted_or_index(&m.name, j),
        prefix,
        port: m.port,
        method,
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: flatten(&m.headers),
        query_params: flatten(&m.query_params),
        without_headers: flatten(&m.without_headers),
    })
}

/// Adds Istio's unreachable/ineffective-rule warnings for all route kinds.
pub(super) fn analyze(vs: &VirtualService, report: &mut Report) {
    let http_keys: Vec<Vec<String>> = vs
        .http
        .iter()
        .map(|r| {
            r.match_
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    m.name.clear();
                    json(&m)
                })
                .collect()
        })
        .collect();
    let http_rule = |i: usize| quoted_or_index(&vs.http[i].name, i);
    let http_match = |i: usize, j: usize| quoted_or_index(&vs.http[i].match_[j].name, j);
    let mut prefixes = Vec::new();
    walk(
        "spec.http",
        &http_keys,
        &http_rule,
        &http_match,
        report,
        |i, j| prefixes.extend(prefix_match(vs, i, j)),
    );
    for (n, a) in prefixes.iter().enumerate() {
        for b in &prefixes[n + 1..] {
            if a.prefix == b.prefix {
                continue;
            }
            if covered(a, b) {
                ineffective(
                    report,
                    idx(&at(&idx("spec.http", b.rule), "match"), b.matchn),
                    &b.route_str,
                    &format!("{} of prefix {}", b.match_str, b.prefix),
                    &format!("{} of prefix {} on {}", a.match_str, a.prefix, a.route_str),
                );
            }
        }
    }
    let plain = |i: usize| format!("#{i}");
    let plain_match = |_: usize, j: usize| format!("#{j}");
    let tcp_keys: Vec<Vec<String>> = vs
        .tcp
        .iter()
        .map(|r| r.match_.iter().map(json).collect())
        .collect();
    walk(
        "spec.tcp",
        &tcp_keys,
        &plain,
        &plain_match,
        report,
        |_, _| {},
    );
    let tls_keys: Vec<Vec<String>> = vs
        .tls
        .iter()
        .map(|r| r.match_.iter().map(json).collect())
        .collect();
    walk(
        "spec.tls",
        &tls_keys,
        &plain,
        &plain_match,
        report,
        |_, _| {},
    );
}
