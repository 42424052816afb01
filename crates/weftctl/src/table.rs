//! kubectl-style tables (pure): the columns of each kind (Istio's CRD printer columns, Kubernetes'
//! for core kinds), ages as kubectl prints them, and Go-tabwriter alignment.

use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_model::Kind;

/// The `Healthy` condition's status (`True`/`False`), `<none>` without one.
fn healthy(status: &Value) -> String {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Healthy"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("<none>")
        .to_string()
}

/// Column headers for `kind` (without NAMESPACE, which `-A` adds in front).
pub fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let mut c = match kind {
        Kind::VirtualService => vec!["NAME", "GATEWAYS", "HOSTS", "AGE"],
        Kind::DestinationRule => vec!["NAME", "HOST", "AGE"],
        Kind::ServiceEntry => vec!["NAME", "HOSTS", "LOCATION", "RESOLUTION", "AGE"],
        // Istio's printer columns, and the Healthy condition weftd keeps for health-checked VMs.
        Kind::WorkloadEntry => vec!["NAME", "AGE", "ADDRESS", "HEALTHY"],
        Kind::PeerAuthentication => vec!["NAME", "MODE", "AGE"],
        Kind::AuthorizationPolicy => vec!["NAME", "ACTION", "AGE"],
        Kind::Service => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        Kind::Namespace => vec!["NAME", "STATUS", "AGE"],
        Kind::ServiceAccount => vec!["NAME", "SECRETS", "AGE"],
        Kind::Gateway | Kind::Sidecar | Kind::WorkloadGroup => vec!["NAME", "AGE"],
    };
    if wide {
        if kind == Kind::Service {
            c.push("SELECTOR");
        }
        c.push("SOURCE");
    }
    c
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |cur, p| cur.get(p))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// An array column as kubectl prints it: JSON (`["a","b"]`), empty when absent.
fn json_list(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(a)) if !a.is_empty() => serde_json::to_string(a).unwrap_or_default(),
        _ => String::new(),
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// One row for an item of the admin API's list (`{"source", "object", "vip"?}`).
pub fn row(kind: Kind, item: &Value, wide: bool, now: SystemTime) -> Vec<String> {
    let obj = &item["object"];
    let spec = &obj["spec"];
    let name = str_at(obj, &["metadata", "name"]).to_string();
    let age = age(str_at(obj, &["metadata", "creationTimestamp"]), now);
    let mut r = match kind {
        Kind::VirtualService => vec![
            name,
            json_list(spec.get("gateways")),
            json_list(spec.get("hosts")),
            age,
        ],
        Kind::DestinationRule => vec![name, str_at(spec, &["host"]).into(), age],
        Kind::ServiceEntry => vec![
            name,
            json_list(spec.get("hosts")),
            str_at(spec, &["location"]).into(),
            str_at(spec, &["resolution"]).into(),
            age,
        ],
        Kind::WorkloadEntry => vec![
            name,
            age,
            str_at(spec, &["address"]).into(),
            healthy(&obj["status"]),
        ],
        Kind::PeerAuthentication => vec![name, str_at(spec, &["mtls", "mode"]).into(), age],
        Kind::AuthorizationPolicy => vec![name, str_at(spec, &["action"]).into(), age],
        Kind::Service => {
            let ty = match str_at(spec, &["type"]) {
                "" => "ClusterIP",
                t => t,
            };
            let cluster_ip = match (str_at(spec, &["clusterIP"]), item["vip"].as_str()) {
                ("", Some(vip)) => vip.to_string(),
                (ip, _) => or_none(ip.to_string()),
            };
            let external: Vec<&str> = spec["externalIPs"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let external = match str_at(spec, &["externalName"]) {
                "" => or_none(external.join(",")),
                n => n.to_string(),
            };
            vec![name, ty.into(), cluster_ip, external, ports(spec), age]
        }
        Kind::Namespace => vec![name, "Active".into(), age],
        Kind::ServiceAccount => vec![
            name,
            obj["secrets"].as_array().map_or(0, Vec::len).to_string(),
            age,
        ],
        Kind::Gateway | Kind::Sidecar | Kind::WorkloadGroup => vec![name, age],
    };
    if wide {
        if kind == Kind::Service {
            let selector: Vec<String> = spec["selector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            r.push(or_none(selector.join(",")));
        }
        r.push(item["source"].as_str().unwrap_or_default().to_string());
    }
    r
}

/// `80/TCP,443:30443/TCP`, `<none>` when there are no ports.
fn ports(spec: &Value) -> String {
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(n) => format!("{}:{n}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(ports.join(","))
}

/// Aligns cells as kubectl does (Go tabwriter, min width 6, padding 3); the last column is not padded.
pub fn render(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|c| {
            let w = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            (w + 3).max(6)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// Age since an RFC 3339 timestamp, `<unknown>` without one.
pub fn age(timestamp: &str, now: SystemTime) -> String {
    match parse_rfc3339(timestamp) {
        Some(t) => match now.duration_since(t) {
            Ok(d) => human_duration(d),
            Err(_) => "0s".into(),
        },
        None => "<unknown>".into(),
    }
}

/// kubectl's `duration.HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
    Some(if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> SystemTime {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(at("1970-01-01T00:00:00Z"), UNIX_EPOCH);
        assert_eq!(
            at("2024-02-29T23:59:59Z"),
            UNIX_EPOCH + Duration::from_secs(1_709_251_199)
        );
        assert_eq!(
            at("2024-03-01T01:59:59.123+02:00"),
            at("2024-02-29T23:59:59Z")
        );
        assert_eq!(parse_rfc3339(""), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn ages_like_kubectl() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 7, "3h7m"),
            (47 * 3600, "47h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
        }
        assert_eq!(age("", UNIX_EPOCH), "<unknown>");
    }

    #[test]
    fn renders_virtual_services() {
        let now = at("2024-01-01T00:05:00Z");
        let items = [
            json!({"source": "api", "object": {"metadata": {"name": "reviews", "creationTimestamp": "2024-01-01T00:00:00Z"},
                   "spec": {"hosts": ["reviews"], "gateways": ["mesh", "bookinfo-gateway"]}}}),
            json!({"source": "file:/etc/weft/a.yaml", "object": {"metadata": {"name": "a"}, "spec": {"hosts": ["a.b.svc"]}}}),
        ];
        let mut rows = vec![
            columns(Kind::VirtualService, false)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ];
        rows.extend(
            items
                .iter()
                .map(|i| row(Kind::VirtualService, i, false, now)),
        );
        assert_eq!(
            render(&rows),
            "NAME      GATEWAYS                      HOSTS         AGE\n\
             reviews   [\"mesh\",\"bookinfo-gateway\"]   [\"reviews\"]   5m\n\
             a                                       [\"a.b.svc\"]   <unknown>\n"
        );
    }

    #[test]
    fn renders_services_and_workload_entries() {
        let now = at("2024-01-01T00:00:30Z");
        let svc = json!({"source": "api", "vip": "10.96.3.4", "object": {
            "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}}});
        let headless = json!({"source": "api", "object": {"metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}});
        let mut rows = vec![
            columns(Kind::Service, true)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ];
        rows.push(row(Kind::Service, &svc, true, now));
        rows.push(row(Kind::Service, &headless, true, now));
        assert_eq!(
            render(&rows),
            "NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)         AGE         SELECTOR   SOURCE\n\
             web    ClusterIP   10.96.3.4    <none>        80/TCP,53/UDP   30s         app=web    api\n\
             db     ClusterIP   None         <none>        5432/TCP        <unknown>   <none>     api\n"
        );
        let we = json!({"source": "runtime", "object": {"metadata": {"name": "vm-1"}, "spec": {"address": "10.0.0.5"}}});
        assert_eq!(
            row(Kind::WorkloadEntry, &we, false, now),
            ["vm-1", "<unknown>", "10.0.0.5", "<none>"]
        );
        let checked = json!({"source": "runtime", "object": {"metadata": {"name": "vm-2"}, "spec": {"address": "10.0.0.6"},
            "status": {"conditions": [{"type": "Other", "status": "True"}, {"type": "Healthy", "status": "False"}]}}});
        assert_eq!(
            row(Kind::WorkloadEntry, &checked, false, now),
            ["vm-2", "<unknown>", "10.0.0.6", "False"]
        );
        assert_eq!(
            columns(Kind::WorkloadEntry, false),
            ["NAME", "AGE", "ADDRESS", "HEALTHY"]
        );
    }
}
