//! Capture settings from Istio's environment variables (the names `istio-iptables` reads on a VM),
//! resolved against a few facts about the host. Pure: the facts are gathered by the caller.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Inbound ports excluded when `ISTIO_LOCAL_EXCLUDE_PORTS` is not set at all: what
/// `istioctl x workload entry configure` writes into cluster.env.
pub const DEFAULT_LOCAL_EXCLUDE_PORTS: &str = "22,15090,15021,15020";
/// SSH: never captured inbound, whatever the settings say (Weft's rule; Istio leaves it to the
/// exclude list).
pub const SSH_PORT: u16 = 22;
/// The agent's DNS proxy.
pub const DNS_CAPTURE_PORT: u16 = 15053;
/// Used for `PROXY_UID`/`PROXY_GID` when the proxy user does not exist.
pub const DEFAULT_PROXY_ID: u32 = 1337;
/// The user the agent and Envoy run as (Istio's `ENVOY_USER` default).
pub const DEFAULT_PROXY_USER: &str = "istio-proxy";

/// A destination port or port range (`8080`, `8000:8100`) as iptables' `--dport` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub first: u16,
    pub last: u16,
}

impl PortSpec {
    pub fn single(port: u16) -> Self {
        PortSpec {
            first: port,
            last: port,
        }
    }

    fn covers(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// An address range. Host bits are cleared, so `10.1.2.3/8` is `10.0.0.0/8` (as iptables shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0-{max}"))?,
            None => max,
        };
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Cidr { addr, len })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Which inbound TCP traffic goes to Envoy's inbound port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `ISTIO_INBOUND_PORTS` empty or unset: nothing.
    Off,
    /// `ISTIO_INBOUND_PORTS=*`: every port except these (SSH always among them).
    All { exclude: Vec<PortSpec> },
    /// Only these ports (never SSH).
    Ports(Vec<PortSpec>),
}

/// Which outbound TCP traffic goes to Envoy's outbound port (besides `ISTIO_OUTBOUND_PORTS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// `ISTIO_SERVICE_CIDR` empty or unset.
    Off,
    /// `ISTIO_SERVICE_CIDR=*`.
    All,
    /// Only traffic to these ranges.
    Cidrs(Vec<Cidr>),
}

/// DNS capture to the agent's DNS proxy (IPv4 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dns {
    Off,
    /// Queries to the nameservers of resolv.conf.
    Servers(Vec<Ipv4Addr>),
    /// Every query (`CAPTURE_ALL_DNS=true`).
    All,
}

/// Everything the rule generator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub inbound: Inbound,
    pub outbound: Outbound,
    pub outbound_exclude_cidrs: Vec<Cidr>,
    /// `ISTIO_OUTBOUND_PORTS`: always redirected, whatever the destination.
    pub outbound_ports: Vec<PortSpec>,
    /// `ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE`: never redirected (TCP and UDP).
    pub outbound_exclude_ports: Vec<PortSpec>,
    pub envoy_port: u16,
    pub inbound_capture_port: u16,
    pub tunnel_port: u16,
    pub proxy_uids: Vec<u32>,
    pub proxy_gids: Vec<u32>,
    pub dns: Dns,
    /// Also install IPv6 rules (same inbound/outbound structure, no DNS).
    pub ipv6: bool,
}

/// What the host contributes: looked up by [`Facts::gather`], given by hand in tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// UID and GID of the proxy user, if it exists.
    pub proxy_user: Option<(u32, u32)>,
    /// resolv.conf nameservers.
    pub nameservers: Vec<IpAddr>,
    /// Whether the host has an IPv6 address other than loopback and link-local ones.
    pub routable_ipv6: bool,
}

impl Facts {
    /// Reads `<root>/etc/passwd` (for the proxy user `ENVOY_USER`, default `istio-proxy`),
    /// `<root>/etc/resolv.conf` and `/proc/net/if_inet6`. Missing files count as empty.
    pub fn gather(root: &Path, env: &BTreeMap<String, String>) -> Facts {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let user = env
            .get("ENVOY_USER")
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_PROXY_USER);
        Facts {
            proxy_user: passwd_lookup(&read(&root.join("etc/passwd")), user),
            nameservers: resolv_nameservers(&read(&root.join("etc/resolv.conf"))),
            routable_ipv6: has_routable_ipv6(&read(Path::new("/proc/net/if_inet6"))),
        }
    }
}

/// UID and GID of `user` in passwd-format `text`.
pub fn passwd_lookup(text: &str, user: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != user {
            return None;
        }
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// The `nameserver` addresses of a resolv.conf (a v6 zone suffix `%eth0` is dropped).
pub fn resolv_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let addr = words.next()?;
            addr.split('%').next()?.parse().ok()
        })
        .collect()
}

/// Whether `/proc/net/if_inet6` lists an address other than `::1` and `fe80::/10`.
pub fn has_routable_ipv6(if_inet6: &str) -> bool {
    if_inet6.lines().any(|line| {
        let Some(hex) = line.split_whitespace().next() else {
            return false;
        };
        let Ok(addr) = u128::from_str_radix(hex, 16) else {
            return false;
        };
        addr != 1 && addr >> 118 != 0x3fa // fe80::/10
    })
}

/// Go's `strconv.ParseBool`, which Istio's environment variables use.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{key}={value:?}: expected true or false")),
    }
}

fn parse_port(key: &str, text: &str) -> Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{key}: {text:?} is not a port (1-65535)"))
}

/// A comma-separated list of ports or `first:last` ranges; empty items are skipped,
/// duplicates dropped.
fn parse_port_list(key: &str, value: &str) -> Result<Vec<PortSpec>, String> {
    let mut out: Vec<PortSpec> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let spec = match item.split_once(':') {
            Some((a, b)) => {
                let (first, last) = (parse_port(key, a)?, parse_port(key, b)?);
                if first > last {
                    return Err(format!("{key}: range {item:?} ends before it starts"));
                }
                PortSpec { first, last }
            }
            None => PortSpec::single(parse_port(key, item)?),
        };
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    Ok(out)
}

fn parse_cidr_list(key: &str, value: &str) -> Result<Vec<Cidr>, String> {
    let mut out: Vec<Cidr> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "*" {
            return Err(format!(
                "{key}: \"*\" must be the whole value, not one item of a list"
            ));
        }
        let cidr = Cidr::parse(item).map_err(|e| format!("{key}: {e}"))?;
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    Ok(out)
}

fn parse_id_list(key: &str, value: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let id = item
            .parse::<u32>()
            .map_err(|_| format!("{key}: {item:?} is not a numeric id"))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// `specs` without SSH: a range that covers it is split around it.
fn without_ssh(specs: Vec<PortSpec>) -> Vec<PortSpec> {
    let mut out = Vec::new();
    for s in specs {
        if !s.covers(SSH_PORT) {
            out.push(s);
            continue;
        }
        if s.first < SSH_PORT {
            out.push(PortSpec {
                first: s.first,
                last: SSH_PORT - 1,
            });
        }
        if s.last > SSH_PORT {
            out.push(PortSpec {
                first: SSH_PORT + 1,
                last: s.last,
            });
        }
    }
    out
}

impl Settings {
    /// Resolves the settings from the merged agent environment (cluster.env, sidecar.env, mesh
    /// proxyMetadata, process environment). Returns them with notes worth logging (settings that
    /// were adjusted or ignored).
    pub fn resolve(
        env: &BTreeMap<String, String>,
        facts: &Facts,
    ) -> Result<(Settings, Vec<String>), String> {
        let mut notes = Vec::new();
        // Set and non-empty.
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let port_or = |k: &str, default: u16| match get(k) {
            Some(v) => parse_port(k, v),
            None => Ok(default),
        };
        let bool_of = |k: &str| get(k).map(|v| parse_bool(k, v)).transpose();

        for key in [
            "ISTIO_INBOUND_INTERCEPTION_MODE",
            "INBOUND_INTERCEPTION_MODE",
        ] {
            match get(key) {
                None | Some("REDIRECT") => {}
                Some("TPROXY") => {
                    return Err(format!(
                        "{key}=TPROXY is not supported: Weft captures inbound traffic with REDIRECT only \
                         (unset {key} or set it to REDIRECT)"
                    ));
                }
                Some(other) => {
                    return Err(format!("{key}={other:?}: expected REDIRECT"));
                }
            }
        }

        let envoy_port = port_or("ENVOY_PORT", 15001)?;
        let inbound_capture_port = port_or("INBOUND_CAPTURE_PORT", 15006)?;
        let tunnel_port = port_or("INBOUND_TUNNEL_PORT", 15008)?;

        // Inbound.
        let mut exclude = match env.get("ISTIO_LOCAL_EXCLUDE_PORTS") {
            Some(v) => parse_port_list("ISTIO_LOCAL_EXCLUDE_PORTS", v)?,
            None => parse_port_list("ISTIO_LOCAL_EXCLUDE_PORTS", DEFAULT_LOCAL_EXCLUDE_PORTS)?,
        };
        let inbound = match get("ISTIO_INBOUND_PORTS") {
            None => Inbound::Off,
            Some("*") => {
                if !exclude.iter().any(|p| p.covers(SSH_PORT)) {
                    exclude.insert(0, PortSpec::single(SSH_PORT));
                    notes.push(format!(
                        "SSH (port {SSH_PORT}) is never captured: excluded although ISTIO_LOCAL_EXCLUDE_PORTS does not list it"
                    ));
                }
                Inbound::All { exclude }
            }
            Some(list) => {
                let ports = parse_port_list("ISTIO_INBOUND_PORTS", list)?;
                let kept = without_ssh(ports.clone());
                if kept != ports {
                    notes.push(format!(
                        "SSH (port {SSH_PORT}) is never captured: left out of ISTIO_INBOUND_PORTS"
                    ));
                }
                if kept.is_empty() {
                    Inbound::Off
                } else {
                    Inbound::Ports(kept)
                }
            }
        };

        // Outbound.
        let outbound = match get("ISTIO_SERVICE_CIDR") {
            None => Outbound::Off,
            Some("*") => Outbound::All,
            Some(list) => Outbound::Cidrs(parse_cidr_list("ISTIO_SERVICE_CIDR", list)?),
        };
        let outbound_exclude_cidrs = match get("ISTIO_SERVICE_EXCLUDE_CIDR") {
            Some("*") => {
                return Err(
                    "ISTIO_SERVICE_EXCLUDE_CIDR=\"*\" is not allowed (it would exclude everything; unset ISTIO_SERVICE_CIDR instead)"
                        .into(),
                );
            }
            Some(list) => parse_cidr_list("ISTIO_SERVICE_EXCLUDE_CIDR", list)?,
            None => Vec::new(),
        };
        let outbound_ports = match get("ISTIO_OUTBOUND_PORTS") {
            Some(v) => parse_port_list("ISTIO_OUTBOUND_PORTS", v)?,
            None => Vec::new(),
        };
        let outbound_exclude_ports = match get("ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE") {
            Some(v) => parse_port_list("ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE", v)?,
            None => Vec::new(),
        };

        // The proxy's identity: its traffic is never captured.
        let explicit_uids = match get("PROXY_UID") {
            Some(v) => Some(parse_id_list("PROXY_UID", v)?).filter(|l| !l.is_empty()),
            None => None,
        };
        let explicit_gids = match get("PROXY_GID") {
            Some(v) => Some(parse_id_list("PROXY_GID", v)?).filter(|l| !l.is_empty()),
            None => None,
        };
        let (user_uid, user_gid) = facts
            .proxy_user
            .unwrap_or((DEFAULT_PROXY_ID, DEFAULT_PROXY_ID));
        let proxy_gids = match (&explicit_gids, &explicit_uids) {
            (Some(g), _) => g.clone(),
            // Istio: the GID defaults to the UID when only the UID is given.
            (None, Some(u)) => u.clone(),
            (None, None) => vec![user_gid],
        };
        let proxy_uids = explicit_uids.unwrap_or_else(|| vec![user_uid]);

        // DNS.
        let dns = if bool_of("ISTIO_META_DNS_CAPTURE")?.unwrap_or(false) {
            if bool_of("CAPTURE_ALL_DNS")?.unwrap_or(false) {
                Dns::All
            } else {
                let servers: Vec<Ipv4Addr> = facts
                    .nameservers
                    .iter()
                    .filter_map(|a| match a {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    })
                    .fold(Vec::new(), |mut acc, a| {
                        if !acc.contains(&a) {
                            acc.push(a);
                        }
                        acc
                    });
                if servers.is_empty() {
                    notes.push(
                        "ISTIO_META_DNS_CAPTURE is set, but resolv.conf has no IPv4 nameserver and CAPTURE_ALL_DNS is false: DNS is not captured"
                            .into(),
                    );
                    Dns::Off
                } else {
                    Dns::Servers(servers)
                }
            }
        } else {
            Dns::Off
        };

        let ipv6 = bool_of("ISTIO_DUAL_STACK")?.unwrap_or(facts.routable_ipv6);

        Ok((
            Settings {
                inbound,
                outbound,
                outbound_exclude_cidrs,
                outbound_ports,
                outbound_exclude_ports,
                envoy_port,
                inbound_capture_port,
                tunnel_port,
                proxy_uids,
                proxy_gids,
                dns,
                ipv6,
            },
            notes,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn resolve(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::resolve(&env(pairs), &Facts::default()).map(|(s, _)| s)
    }

    #[test]
    fn ssh_is_always_excluded_inbound() {
        let s = resolve(&[
            ("ISTIO_INBOUND_PORTS", "*"),
            ("ISTIO_LOCAL_EXCLUDE_PORTS", "15090"),
        ])
        .unwrap();
        assert_eq!(
            s.inbound,
            Inbound::All {
                exclude: vec![PortSpec::single(22), PortSpec::single(15090)]
            }
        );
        // Explicitly empty: only SSH.
        let s = resolve(&[
            ("ISTIO_INBOUND_PORTS", "*"),
            ("ISTIO_LOCAL_EXCLUDE_PORTS", ""),
        ])
        .unwrap();
        assert_eq!(
            s.inbound,
            Inbound::All {
                exclude: vec![PortSpec::single(22)]
            }
        );
        // Unset: the entry-configure default.
        let s = resolve(&[("ISTIO_INBOUND_PORTS", "*")]).unwrap();
        assert_eq!(
            s.inbound,
            Inbound::All {
                exclude: [22, 15090, 15021, 15020]
                    .into_iter()
                    .map(PortSpec::single)
                    .collect()
            }
        );
        // A range covering SSH already excludes it.
        let s = resolve(&[
            ("ISTIO_INBOUND_PORTS", "*"),
            ("ISTIO_LOCAL_EXCLUDE_PORTS", "1:1024"),
        ])
        .unwrap();
        assert_eq!(
            s.inbound,
            Inbound::All {
                exclude: vec![PortSpec {
                    first: 1,
                    last: 1024
                }]
            }
        );
        // Listed explicitly: left out; a range is split around it.
        let s = resolve(&[("ISTIO_INBOUND_PORTS", "8080,22,20:30")]).unwrap();
        assert_eq!(
            s.inbound,
            Inbound::Ports(vec![
                PortSpec::single(8080),
                PortSpec {
                    first: 20,
                    last: 21
                },
                PortSpec {
                    first: 23,
                    last: 30
                },
            ])
        );
        assert_eq!(
            resolve(&[("ISTIO_INBOUND_PORTS", "22")]).unwrap().inbound,
            Inbound::Off
        );
    }

    #[test]
    fn tproxy_is_refused_clearly() {
        let e = resolve(&[("ISTIO_INBOUND_INTERCEPTION_MODE", "TPROXY")]).unwrap_err();
        assert!(e.contains("TPROXY is not supported"), "{e}");
        assert!(resolve(&[("ISTIO_INBOUND_INTERCEPTION_MODE", "REDIRECT")]).is_ok());
        assert!(resolve(&[("ISTIO_INBOUND_INTERCEPTION_MODE", "NONE")]).is_err());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("ISTIO_INBOUND_PORTS", "80,http"),
            ("ISTIO_LOCAL_EXCLUDE_PORTS", "70000"),
            ("ISTIO_SERVICE_CIDR", "10.0.0.0/33"),
            ("ISTIO_SERVICE_CIDR", "10.0.0.0/8,*"),
            ("ISTIO_SERVICE_EXCLUDE_CIDR", "*"),
            ("ISTIO_OUTBOUND_PORTS", "90:80"),
            ("ENVOY_PORT", "0"),
            ("PROXY_UID", "istio-proxy"),
            ("ISTIO_META_DNS_CAPTURE", "yes"),
        ] {
            let e = resolve(&[(k, v)]).unwrap_err();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn proxy_ids_default_to_the_proxy_user_then_1337() {
        let s = resolve(&[]).unwrap();
        assert_eq!((s.proxy_uids, s.proxy_gids), (vec![1337], vec![1337]));
        let facts = Facts {
            proxy_user: Some((998, 997)),
            ..Facts::default()
        };
        let (s, _) = Settings::resolve(&env(&[]), &facts).unwrap();
        assert_eq!((s.proxy_uids, s.proxy_gids), (vec![998], vec![997]));
        let (s, _) = Settings::resolve(&env(&[("PROXY_UID", "3,4")]), &facts).unwrap();
        assert_eq!((s.proxy_uids, s.proxy_gids), (vec![3, 4], vec![3, 4]));
        let (s, _) =
            Settings::resolve(&env(&[("PROXY_UID", "3"), ("PROXY_GID", "5")]), &facts).unwrap();
        assert_eq!((s.proxy_uids, s.proxy_gids), (vec![3], vec![5]));
    }

    #[test]
    fn dns_capture_needs_a_nameserver_or_capture_all() {
        let facts = Facts {
            nameservers: vec![
                "10.0.0.2".parse().unwrap(),
                "fd00::53".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
            ],
            ..Facts::default()
        };
        let on = env(&[("ISTIO_META_DNS_CAPTURE", "true")]);
        let (s, _) = Settings::resolve(&on, &facts).unwrap();
        assert_eq!(s.dns, Dns::Servers(vec!["10.0.0.2".parse().unwrap()]));
        let (s, notes) = Settings::resolve(&on, &Facts::default()).unwrap();
        assert_eq!(s.dns, Dns::Off);
        assert!(notes[0].contains("DNS is not captured"), "{notes:?}");
        let all = env(&[
            ("ISTIO_META_DNS_CAPTURE", "true"),
            ("CAPTURE_ALL_DNS", "true"),
        ]);
        assert_eq!(
            Settings::resolve(&all, &Facts::default()).unwrap().0.dns,
            Dns::All
        );
        assert_eq!(resolve(&[]).unwrap().dns, Dns::Off);
    }

    #[test]
    fn cidrs_are_normalized() {
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(
            Cidr::parse("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(Cidr::parse("::/0").unwrap().to_string(), "::/0");
        assert!(Cidr::parse("10.0.0.0/x").is_err());
    }

    #[test]
    fn host_facts_parse() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nistio-proxy:x:1337:1338::/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(passwd_lookup(passwd, "istio-proxy"), Some((1337, 1338)));
        assert_eq!(passwd_lookup(passwd, "istio"), None);
        let resolv = "# comment\nsearch example.com\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions edns0\n";
        assert_eq!(
            resolv_nameservers(resolv),
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        let lo_and_link_local = "00000000000000000000000000000001 01 80 10 80       lo\n\
                                 fe80000000000000b0c1e2fffe3d4a5b 02 40 20 80     eth0\n";
        assert!(!has_routable_ipv6(lo_and_link_local));
        let ula = "fd000000000000000000000000000010 02 40 00 80     eth0\n";
        assert!(has_routable_ipv6(&format!("{lo_and_link_local}{ula}")));
        assert!(!has_routable_ipv6(""));
    }

    #[test]
    fn dual_stack_follows_the_host_unless_set() {
        let facts = Facts {
            routable_ipv6: true,
            ..Facts::default()
        };
        assert!(Settings::resolve(&env(&[]), &facts).unwrap().0.ipv6);
        assert!(
            !Settings::resolve(&env(&[("ISTIO_DUAL_STACK", "false")]), &facts)
                .unwrap()
                .0
                .ipv6
        );
        assert!(resolve(&[("ISTIO_DUAL_STACK", "true")]).unwrap().ipv6);
    }
}
