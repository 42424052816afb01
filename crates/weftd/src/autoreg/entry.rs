//! Pure WorkloadEntry bookkeeping for auto-registration and health, as Istio's
//! `pilot/pkg/autoregistration` does it: the entry's name, the entry built from its
//! WorkloadGroup, the connect/disconnect annotations and the `Healthy` condition.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use weft_model::meta::OwnerReference;
use weft_model::{Kind, Resource, Spec};

pub use weft_xds::registry::HEALTH_CHECKS_ANNOTATION;

/// The WorkloadGroup an entry was registered from.
pub const AUTO_REGISTRATION_GROUP: &str = "istio.io/autoRegistrationGroup";
/// The control-plane instance that handles the entry's connection.
pub const WORKLOAD_CONTROLLER: &str = "istio.io/workloadController";
pub const CONNECTED_AT: &str = "istio.io/connectedAt";
pub const DISCONNECTED_AT: &str = "istio.io/disconnectedAt";

/// What a connecting proxy tells about itself (node id, metadata and locality).
#[derive(Clone, Debug, Default)]
pub struct Joiner {
    pub ip: String,
    pub namespace: String,
    pub network: String,
    /// Node metadata `LABELS`.
    pub labels: BTreeMap<String, String>,
    /// `region/zone/subzone` from the node's locality; empty when unset.
    pub locality: String,
    /// The node's `PROXY_CONFIG` has a `readinessProbe`.
    pub readiness_probe: bool,
}

/// `<group>-<ip with ':' → '-'>[-<network>]`, at most 253 characters (the tail is kept, as
/// Istio does). `None` when the proxy has no address.
pub fn entry_name(group: &str, ip: &str, network: &str) -> Option<String> {
    if ip.is_empty() || group.is_empty() {
        return None;
    }
    let mut name = format!("{group}-{}", ip.replace(':', "-"));
    if !network.is_empty() {
        name.push('-');
        name.push_str(network);
    }
    if name.len() > 253 {
        name = name[name.len() - 253..].to_string();
    }
    Some(name)
}

/// The WorkloadEntry Istio creates for a proxy joining `group`: the group's template with the
/// proxy's address; labels template < group metadata < node labels; network and locality from the
/// node; annotations: the group's name and the group's annotations, plus the health-checks
/// annotation when the proxy runs a readiness probe; owned by the group.
pub fn entry_from_group(name: &str, group: &Resource, j: &Joiner) -> Result<Resource, String> {
    let Spec::WorkloadGroup(wg) = &group.spec else {
        return Err(format!("{} is not a WorkloadGroup", group.name()));
    };
    let mut entry = wg.template.clone().unwrap_or_default();
    entry.address = j.ip.clone();
    entry.labels.extend(wg.metadata.labels.clone());
    entry.labels.extend(j.labels.clone());
    if !j.network.is_empty() {
        entry.network = j.network.clone();
    }
    if !j.locality.is_empty() {
        entry.locality = j.locality.clone();
    }
    let mut annotations = BTreeMap::from([(
        AUTO_REGISTRATION_GROUP.to_string(),
        group.name().to_string(),
    )]);
    annotations.extend(wg.metadata.annotations.clone());
    if j.readiness_probe {
        annotations.insert(HEALTH_CHECKS_ANNOTATION.into(), "true".into());
    }
    let mut r = Resource {
        api_version: "networking.istio.io/v1".into(),
        kind: Kind::WorkloadEntry,
        metadata: Default::default(),
        spec: Spec::WorkloadEntry(entry.clone()),
        status: None,
    };
    r.metadata.name = name.to_string();
    r.metadata.namespace = j.namespace.clone();
    r.metadata.labels = entry.labels;
    r.metadata.annotations = annotations;
    r.metadata.owner_references = vec![OwnerReference {
        api_version: "networking.istio.io/v1".into(),
        kind: "WorkloadGroup".into(),
        name: group.name().to_string(),
        uid: group.metadata.uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    }];
    Ok(r)
}

pub fn is_auto_registered(r: &Resource) -> bool {
    r.metadata.annotations.contains_key(AUTO_REGISTRATION_GROUP)
}

/// The entry marked as connected to `controller` at `at` (RFC 3339 with nanoseconds).
pub fn mark_connected(r: &Resource, controller: &str, at: &str) -> Resource {
    let mut r = r.clone();
    let a = &mut r.metadata.annotations;
    a.insert(WORKLOAD_CONTROLLER.into(), controller.into());
    a.insert(CONNECTED_AT.into(), at.into());
    a.remove(DISCONNECTED_AT);
    r
}

/// The entry marked as disconnected at `at`.
pub fn mark_disconnected(r: &Resource, at: &str) -> Resource {
    let mut r = r.clone();
    let a = &mut r.metadata.annotations;
    a.remove(CONNECTED_AT);
    a.insert(DISCONNECTED_AT.into(), at.into());
    r
}

fn conditions(status: Option<&Value>) -> Vec<Value> {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn is_healthy_condition(c: &Value) -> bool {
    c.get("type").and_then(Value::as_str) == Some("Healthy")
}

fn with_conditions(status: Option<&Value>, conds: Vec<Value>) -> Option<Value> {
    let mut obj = status
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(Map::new);
    if conds.is_empty() {
        obj.remove("conditions");
    } else {
        obj.insert("conditions".into(), Value::Array(conds));
    }
    (!obj.is_empty()).then_some(Value::Object(obj))
}

/// `status` with its `Healthy` condition set (the only condition replaced). The transition time
/// moves only when the state changes.
pub fn with_health(status: Option<&Value>, healthy: bool, message: &str, now: &str) -> Value {
    let mut conds = conditions(status);
    let state = if healthy { "True" } else { "False" };
    let old = conds.iter().position(is_healthy_condition);
    let transition = old
        .map(|i| &conds[i])
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(state))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| Value::String(now.into()));
    let mut cond = json!({
        "type": "Healthy",
        "status": state,
        "lastProbeTime": now,
        "lastTransitionTime": transition,
    });
    if !healthy && !message.is_empty() {
        cond["message"] = Value::String(message.into());
    }
    match old {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
    with_conditions(status, conds).unwrap_or_else(|| json!({}))
}

/// `status` without its `Healthy` condition (a manual entry whose proxy went away).
pub fn without_health(status: Option<&Value>) -> Option<Value> {
    let conds: Vec<Value> = conditions(status)
        .into_iter()
        .filter(|c| !is_healthy_condition(c))
        .collect();
    with_conditions(status, conds)
}

/// `Some(true|false)` from the `Healthy` condition, `None` without one.
pub fn healthy(status: Option<&Value>) -> Option<bool> {
    conditions(status)
        .iter()
        .find(|c| is_healthy_condition(c))
        .and_then(|c| c.get("status").and_then(Value::as_str).map(|s| s == "True"))
}

/// RFC 3339 in UTC with nanoseconds, trailing zeros trimmed (Go's `time.RFC3339Nano`).
pub fn rfc3339_nanos(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs =
        crate::store::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()));
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return secs;
    }
    let frac = format!("{nanos:09}");
    format!(
        "{}.{}Z",
        &secs[..secs.len() - 1],
        frac.trim_end_matches('0')
    )
}

/// Parses what [`rfc3339_nanos`] and Kubernetes write (`YYYY-MM-DDTHH:MM:SS[.frac]Z`).
pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        digits.parse::<u32>().ok()?
    };
    Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    use weft_model::{Outcome, load_str};

    fn group(yaml: &str) -> Resource {
        match load_str("wg.yaml", yaml).remove(0).outcome {
            Outcome::Valid { resource, .. } => *resource,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn names_follow_istio() {
        assert_eq!(
            entry_name("forum", "198.18.2.10", "vm-network").as_deref(),
            Some("forum-198.18.2.10-vm-network")
        );
        assert_eq!(
            entry_name("vm", "fd00:10:96::1", "net1").as_deref(),
            Some("vm-fd00-10-96--1-net1")
        );
        assert_eq!(
            entry_name("vm", "10.0.0.1", "").as_deref(),
            Some("vm-10.0.0.1")
        );
        assert_eq!(entry_name("vm", "", "n"), None);
        let long = entry_name(&"g".repeat(300), "10.0.0.1", "").unwrap();
        assert_eq!(long.len(), 253);
        assert!(long.ends_with("g-10.0.0.1"));
    }

    #[test]
    fn entry_from_group_merges_like_istio() {
        let wg = group(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: forum, namespace: forum-services, uid: u-1}\n\
             spec:\n  metadata:\n    labels: {app: forum, tier: group}\n    annotations: {team: web}\n\
             \x20 template:\n    serviceAccount: forum-sa\n    network: tmpl-net\n    ports: {http: 8080}\n    labels: {tier: template, keep: kept}\n\
             \x20 probe:\n    httpGet: {port: 8080}\n",
        );
        let j = Joiner {
            ip: "198.18.2.10".into(),
            namespace: "forum-services".into(),
            network: "vm-network".into(),
            labels: BTreeMap::from([("tier".into(), "node".into())]),
            locality: "r1/z1/".into(),
            readiness_probe: true,
        };
        let r = entry_from_group("forum-198.18.2.10-vm-network", &wg, &j).unwrap();
        let Spec::WorkloadEntry(we) = &r.spec else {
            panic!()
        };
        assert_eq!(we.address, "198.18.2.10");
        assert_eq!(we.network, "vm-network");
        assert_eq!(we.locality, "r1/z1/");
        assert_eq!(we.service_account, "forum-sa");
        assert_eq!(we.ports["http"], 8080);
        assert_eq!(we.labels["tier"], "node");
        assert_eq!(we.labels["keep"], "kept");
        assert_eq!(we.labels["app"], "forum");
        assert_eq!(r.metadata.labels, we.labels);
        assert_eq!(r.metadata.annotations[AUTO_REGISTRATION_GROUP], "forum");
        assert_eq!(r.metadata.annotations["team"], "web");
        assert_eq!(r.metadata.annotations[HEALTH_CHECKS_ANNOTATION], "true");
        let owner = &r.metadata.owner_references[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("WorkloadGroup", "forum", "u-1")
        );
        assert_eq!(owner.controller, Some(true));
        // Without a probe: no health-checks annotation; the template's network stays.
        let j2 = Joiner {
            network: String::new(),
            readiness_probe: false,
            ..j
        };
        let r2 = entry_from_group("x", &wg, &j2).unwrap();
        assert!(
            !r2.metadata
                .annotations
                .contains_key(HEALTH_CHECKS_ANNOTATION)
        );
        let Spec::WorkloadEntry(we2) = &r2.spec else {
            panic!()
        };
        assert_eq!(we2.network, "tmpl-net");
        assert!(is_auto_registered(&r2));
    }

    #[test]
    fn connect_and_disconnect_annotations() {
        let wg = group(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: g, namespace: ns}\nspec:\n  template: {}\n",
        );
        let r = entry_from_group(
            "g-1",
            &wg,
            &Joiner {
                ip: "1.1.1.1".into(),
                namespace: "n".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let c = mark_connected(&r, "weftd-a", "2026-01-01T00:00:00.5Z");
        assert_eq!(
            c.metadata.annotations[CONNECTED_AT],
            "2026-01-01T00:00:00.5Z"
        );
        assert_eq!(c.metadata.annotations[WORKLOAD_CONTROLLER], "weftd-a");
        let d = mark_disconnected(&c, "2026-01-01T00:00:09Z");
        assert!(!d.metadata.annotations.contains_key(CONNECTED_AT));
        assert_eq!(
            d.metadata.annotations[DISCONNECTED_AT],
            "2026-01-01T00:00:09Z"
        );
        let again = mark_connected(&d, "weftd-a", "2026-01-01T00:00:10Z");
        assert!(!again.metadata.annotations.contains_key(DISCONNECTED_AT));
    }

    #[test]
    fn health_condition_replaces_only_healthy() {
        let other = json!({"conditions": [{"type": "Other", "status": "True"}], "addresses": []});
        let s1 = with_health(Some(&other), true, "", "t1");
        assert_eq!(healthy(Some(&s1)), Some(true));
        assert_eq!(s1["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(s1["addresses"], json!([]));
        let s2 = with_health(Some(&s1), true, "", "t2");
        let h = |s: &Value| s["conditions"][1].clone();
        assert_eq!(h(&s2)["lastTransitionTime"], "t1");
        assert_eq!(h(&s2)["lastProbeTime"], "t2");
        let msg = "status code was not from [200,400), bad code 503";
        let s3 = with_health(Some(&s2), false, msg, "t3");
        assert_eq!(healthy(Some(&s3)), Some(false));
        assert_eq!(h(&s3)["lastTransitionTime"], "t3");
        assert_eq!(h(&s3)["message"], msg);
        let s4 = without_health(Some(&s3)).unwrap();
        assert_eq!(healthy(Some(&s4)), None);
        assert_eq!(s4["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(
            without_health(Some(&with_health(None, true, "", "t"))),
            None
        );
    }

    #[test]
    fn timestamps_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_790_000_000, 120_000_000);
        let s = rfc3339_nanos(t);
        assert!(s.ends_with(".12Z"), "{s}");
        assert_eq!(parse_rfc3339(&s), Some(t));
        let whole = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        assert_eq!(parse_rfc3339(&rfc3339_nanos(whole)), Some(whole));
        assert_eq!(parse_rfc3339(&crate::store::rfc3339(whole)), Some(whole));
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("nonsense"), None);
    }
}
