//! The DNS proxy's settings from the agent's merged environment (pure), named and defaulted as
//! pilot-agent names them: `ISTIO_META_DNS_CAPTURE`, `ISTIO_META_ENABLE_DNS_SERVER`,
//! `DNS_PROXY_ADDR`, `DNS_FORWARD_TIMEOUT`, and the `dns` scope of `--log_output_level` in
//! `ISTIO_AGENT_FLAGS`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// pilot-agent's `DNS_PROXY_ADDR` default.
pub const DEFAULT_ADDR: &str = "localhost:15053";
/// pilot-agent's `DNS_FORWARD_TIMEOUT` default.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq)]
pub struct DnsSettings {
    /// `host:port` to listen on (UDP and TCP).
    pub addr: String,
    /// Per-upstream timeout for forwarded queries.
    pub forward_timeout: Duration,
    /// Log every query, its answer and upstream exchanges (`dns:debug`).
    pub query_log: bool,
}

/// Whether the agent runs the DNS proxy, and with what. Istio: `(ISTIO_META_DNS_CAPTURE && sidecar)
/// || ISTIO_META_ENABLE_DNS_SERVER`. `ISTIO_META_DNS_AUTO_ALLOCATE` only changes what weftd puts
/// in the table, never whether the agent serves it.
pub fn from_env(
    env: &BTreeMap<String, String>,
    sidecar: bool,
) -> Result<Option<DnsSettings>, String> {
    let capture = go_bool(env, "ISTIO_META_DNS_CAPTURE");
    let at_gateway = go_bool(env, "ISTIO_META_ENABLE_DNS_SERVER");
    if !((capture && sidecar) || at_gateway) {
        return Ok(None);
    }
    let addr = env
        .get("DNS_PROXY_ADDR")
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let forward_timeout = match env.get("DNS_FORWARD_TIMEOUT").filter(|v| !v.is_empty()) {
        Some(v) => weft_model::Duration::parse(v)
            .map(|d| d.as_std())
            .map_err(|e| format!("DNS_FORWARD_TIMEOUT={v:?}: {e}"))?,
        None => DEFAULT_FORWARD_TIMEOUT,
    };
    let query_log = env
        .get("ISTIO_AGENT_FLAGS")
        .is_some_and(|flags| dns_scope_is_debug(flags));
    Ok(Some(DnsSettings {
        addr,
        forward_timeout,
        query_log,
    }))
}

/// Go's `strconv.ParseBool` as Istio's `env.Register(..., false)` reads it: anything else is the
/// default, false.
fn go_bool(env: &BTreeMap<String, String>, key: &str) -> bool {
    matches!(
        env.get(key).map(String::as_str),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True")
    )
}

/// Whether pilot-agent command-line flags leave the `dns` scope at `debug`: the last
/// `--log_output_level` wins, its comma-separated `scope:level` items apply in order, `all:` sets
/// every scope, and a bare level sets only the `default` scope.
pub fn dns_scope_is_debug(flags: &str) -> bool {
    let words: Vec<&str> = flags.split_whitespace().collect();
    let mut value = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].trim_start_matches('-');
        if words[i].starts_with('-') {
            if let Some(v) = w.strip_prefix("log_output_level=") {
                value = Some(v);
            } else if w == "log_output_level" && i + 1 < words.len() {
                value = Some(words[i + 1]);
                i += 1;
            }
        }
        i += 1;
    }
    let mut debug = false;
    for item in value.unwrap_or_default().split(',') {
        if let Some((scope, level)) = item.split_once(':')
            && (scope == "dns" || scope == "all")
        {
            debug = level == "debug";
        }
    }
    debug
}

/// The sockets `addr` names. `localhost` is 127.0.0.1, plus ::1 when the upstream servers include
/// IPv6 ones (Istio listens on the loopback of each family it forwards to).
pub fn listen_addrs(addr: &str, upstream_has_v6: bool) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("DNS_PROXY_ADDR={addr:?}: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("DNS_PROXY_ADDR={addr:?}: invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        let mut out = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)];
        if upstream_has_v6 {
            out.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port));
        }
        return Ok(out);
    }
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("DNS_PROXY_ADDR={addr:?}: host must be an IP address or localhost"))?;
    Ok(vec![SocketAddr::new(ip, port)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn enabled_as_pilot_agent_decides() {
        assert_eq!(from_env(&env(&[]), true).unwrap(), None);
        assert_eq!(
            from_env(&env(&[("ISTIO_META_DNS_CAPTURE", "yes")]), true).unwrap(),
            None,
            "not a Go bool: the default, false"
        );
        assert_eq!(
            from_env(&env(&[("ISTIO_META_DNS_AUTO_ALLOCATE", "true")]), true).unwrap(),
            None,
            "auto-allocation alone does not start the server"
        );
        let s = from_env(&env(&[("ISTIO_META_DNS_CAPTURE", "True")]), true)
            .unwrap()
            .unwrap();
        assert_eq!(s.addr, "localhost:15053");
        assert_eq!(s.forward_timeout, Duration::from_secs(5));
        assert!(!s.query_log);
        // A gateway needs ISTIO_META_ENABLE_DNS_SERVER.
        assert_eq!(
            from_env(&env(&[("ISTIO_META_DNS_CAPTURE", "true")]), false).unwrap(),
            None
        );
        assert!(
            from_env(&env(&[("ISTIO_META_ENABLE_DNS_SERVER", "1")]), false)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn address_timeout_and_query_log() {
        let s = from_env(
            &env(&[
                ("ISTIO_META_DNS_CAPTURE", "true"),
                ("DNS_PROXY_ADDR", "127.0.0.1:5353"),
                ("DNS_FORWARD_TIMEOUT", "250ms"),
                (
                    "ISTIO_AGENT_FLAGS",
                    "--log_output_level=default:info,dns:debug",
                ),
            ]),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.addr, "127.0.0.1:5353");
        assert_eq!(s.forward_timeout, Duration::from_millis(250));
        assert!(s.query_log);
        let bad = from_env(
            &env(&[
                ("ISTIO_META_DNS_CAPTURE", "true"),
                ("DNS_FORWARD_TIMEOUT", "soon"),
            ]),
            true,
        );
        assert!(bad.unwrap_err().starts_with("DNS_FORWARD_TIMEOUT=\"soon\""));
    }

    #[test]
    fn log_output_level_scopes() {
        assert!(dns_scope_is_debug("--log_output_level=dns:debug"));
        assert!(dns_scope_is_debug("--log_output_level dns:debug"));
        assert!(dns_scope_is_debug("--log_output_level=all:debug"));
        assert!(dns_scope_is_debug(
            "--proxyLogLevel=info --log_output_level=default:warn,dns:debug"
        ));
        assert!(
            !dns_scope_is_debug("--log_output_level=debug"),
            "default scope only"
        );
        assert!(!dns_scope_is_debug("--log_output_level=dns:info"));
        assert!(!dns_scope_is_debug("--log_output_level=dns:debug,all:info"));
        assert!(!dns_scope_is_debug(
            "--log_output_level=dns:debug --log_output_level=dns:info"
        ));
        assert!(
            !dns_scope_is_debug("log_output_level=dns:debug"),
            "not a flag"
        );
        assert!(!dns_scope_is_debug(""));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            listen_addrs("localhost:15053", false).unwrap(),
            ["127.0.0.1:15053".parse().unwrap()]
        );
        assert_eq!(
            listen_addrs("localhost:15053", true).unwrap(),
            [
                "127.0.0.1:15053".parse::<SocketAddr>().unwrap(),
                "[::1]:15053".parse().unwrap()
            ]
        );
        assert_eq!(
            listen_addrs("[::1]:53", false).unwrap(),
            ["[::1]:53".parse().unwrap()]
        );
        assert!(listen_addrs("localhost", false).is_err());
        assert!(listen_addrs("dns.example:53", false).is_err());
    }
}
