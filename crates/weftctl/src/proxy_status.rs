//! `weftctl proxy-status [NAME]`: each connected proxy's sync state per xDS type, as
//! `istioctl proxy-status` shows it (SYNCED, STALE, NACK, NOT SENT), from weftd's `/debug/syncz`.

use crate::client::{Client, encode};
use crate::table::render;
use serde_json::Value;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Only this proxy (`name.namespace`).
    name: Option<String>,
}

/// Column → the short type name weftd's syncz uses.
const TYPES: &[(&str, &str)] = &[
    ("CDS", "Cluster"),
    ("LDS", "Listener"),
    ("EDS", "ClusterLoadAssignment"),
    ("RDS", "RouteConfiguration"),
    ("NDS", "NameTable"),
];

/// Table rows for the syncz JSON (pure).
pub fn rows(syncz: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "NDS", "ISTIOD", "VERSION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut conns: Vec<&Value> = syncz
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    conns.sort_by_key(|c| c["proxy"].as_str().unwrap_or_default().to_string());
    for c in conns {
        let mut row = vec![
            c["proxy"].as_str().unwrap_or_default().to_string(),
            c["cluster"].as_str().unwrap_or("Kubernetes").to_string(),
        ];
        for (_, key) in TYPES {
            row.push(
                c["types"][key]["state"]
                    .as_str()
                    .unwrap_or("NOT SENT")
                    .to_string(),
            );
        }
        row.push("weftd".to_string());
        row.push(c["version"].as_str().unwrap_or("unknown").to_string());
        rows.push(row);
    }
    rows
}

pub fn run(client: &Client, args: &Args) -> Result<ExitCode, String> {
    let path = match &args.name {
        Some(n) => format!("/debug/syncz?proxyID={}", encode(n)),
        None => "/debug/syncz".to_string(),
    };
    let resp = client.request("GET", &path, None, b"")?;
    if resp.status != 200 {
        return Err(resp.message());
    }
    let syncz = resp.json();
    if args.name.is_some() && syncz.as_array().is_some_and(Vec::is_empty) {
        return Err(format!(
            "proxy {:?} is not connected to weftd",
            args.name.as_deref().unwrap_or_default()
        ));
    }
    print!("{}", render(&rows(&syncz)));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_istioctl_like_rows() {
        let syncz = json!([{
            "proxy": "forum.forum-services",
            "version": "weft-0.1.0",
            "types": {
                "Cluster": {"state": "SYNCED"},
                "Listener": {"state": "STALE"},
                "ClusterLoadAssignment": {"state": "NACK"}
            }
        }]);
        let r = rows(&syncz);
        assert_eq!(
            r[1],
            [
                "forum.forum-services",
                "Kubernetes",
                "SYNCED",
                "STALE",
                "NACK",
                "NOT SENT",
                "NOT SENT",
                "weftd",
                "weft-0.1.0"
            ]
        );
    }
}
