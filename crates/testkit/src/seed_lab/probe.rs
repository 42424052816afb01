//! Looking at the seed lab: HTTP calls with curl, Envoy admin pages and counters, TCP connects,
//! and weftd's WorkloadEntries as `weftctl get` prints them.

use crate::host::Host;
use crate::mesh::ControlPlane;
use crate::vm_bundle::weftctl;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Envoy's admin address in every host of the lab.
pub const ENVOY_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);

/// One `curl` run: the command line, the HTTP status (0 when there was no answer) and what
/// curl printed (status line, headers and body; or its error).
#[derive(Debug, Clone)]
pub struct Call {
    pub argv: Vec<String>,
    pub status: u16,
    pub output: String,
}

impl Call {
    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

/// `curl -sS -i --max-time 3 ARGS...` from `host` (as root: captured where capture is
/// installed); `args` ends with the URL.
pub fn call(host: &Host, args: &[&str]) -> Call {
    let mut argv: Vec<String> = ["curl", "-sS", "-i", "--max-time", "3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(args.iter().map(|s| s.to_string()));
    let (status, output) = match host.run(&argv, Duration::from_secs(8)) {
        Ok(out) => {
            let status = out
                .stdout
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("HTTP/1.1 "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (
                status,
                format!("{}{}", out.stdout.replace('\r', ""), out.stderr),
            )
        }
        Err(e) => (0, e.to_string()),
    };
    Call {
        argv,
        status,
        output,
    }
}

/// An Envoy admin page in `host` (empty when Envoy does not answer).
pub fn admin(host: &Host, path: &str) -> String {
    host.http_get(ENVOY_ADMIN, path, Duration::from_secs(2))
        .map(|r| r.body)
        .unwrap_or_default()
}

/// The `/stats` lines of `host`'s Envoy that start with `prefix`.
pub fn stats(host: &Host, prefix: &str) -> Vec<String> {
    admin(host, "/stats")
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// A counter from `host`'s Envoy (0 when absent).
pub fn stat(host: &Host, name: &str) -> u64 {
    stats(host, name)
        .iter()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The lines of `host`'s Envoy `/clusters` that start with `prefix`.
pub fn clusters(host: &Host, prefix: &str) -> Vec<String> {
    admin(host, "/clusters")
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// `curl -sS --connect-timeout 2 --max-time 3 -o /dev/null -w ... http://TARGET/` from
/// `host`: whether a TCP connection to `target` (`ip:port`) opens (`status` 1) or not (0), and
/// what curl said.
pub fn connect(host: &Host, target: &str) -> Call {
    let argv: Vec<String> = [
        "curl",
        "-sS",
        "--connect-timeout",
        "2",
        "--max-time",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "time_connect=%{time_connect}\\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("http://{target}/")])
    .collect();
    let (connected, output) = match host.run(&argv, Duration::from_secs(6)) {
        Ok(out) => {
            // curl reports no connect time when no TCP connection was made.
            let connected = !out.stdout.contains("time_connect=0.000000");
            (connected, format!("{}{}", out.stdout, out.stderr))
        }
        Err(e) => (false, e.to_string()),
    };
    Call {
        argv,
        status: u16::from(connected),
        output,
    }
}

/// `dig ARGS...` in `host`: `status` 1 when it exited 0, and what it printed.
pub fn dig(host: &Host, args: &[&str]) -> Call {
    let argv: Vec<String> = std::iter::once("dig")
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    let (ok, output) = match host.run(&argv, Duration::from_secs(20)) {
        Ok(out) => (out.success(), format!("{}{}", out.stdout, out.stderr)),
        Err(e) => (false, e.to_string()),
    };
    Call {
        argv,
        status: u16::from(ok),
        output,
    }
}

/// `weftctl get workloadentries -n forum-services` (empty if weftd does not answer).
pub fn workload_entries(cp: &ControlPlane) -> String {
    weftctl(cp, &["get", "workloadentries", "-n", "forum-services"]).unwrap_or_default()
}

/// The last column (HEALTHY) of entry `name` in a `weftctl get workloadentries` table.
pub fn health_of(table: &str, name: &str) -> Option<String> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_the_entrys_last_column() {
        let table = "NAME                         AGE   ADDRESS       HEALTHY\n\
                     forum-198.18.1.11-vm-network 5s    198.18.1.11   True\n";
        assert_eq!(
            health_of(table, "forum-198.18.1.11-vm-network").as_deref(),
            Some("True")
        );
        assert_eq!(health_of(table, "forum"), None);
    }
}
