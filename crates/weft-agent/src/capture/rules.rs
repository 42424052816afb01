//! Istio's VM capture rules as `iptables-restore` input. Pure and deterministic: the same
//! settings always give the same text. Chain names, rule text and rule order follow Istio's
//! `istio-iptables` (tools/istio-iptables/pkg/capture) in REDIRECT mode, so its golden files and
//! everything written about them apply.

use super::settings::{Cidr, DNS_CAPTURE_PORT, Dns, Inbound, Outbound, Settings};

pub const ISTIO_INBOUND: &str = "ISTIO_INBOUND";
pub const ISTIO_REDIRECT: &str = "ISTIO_REDIRECT";
pub const ISTIO_IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
pub const ISTIO_OUTPUT: &str = "ISTIO_OUTPUT";
pub const ISTIO_OUTPUT_DNS: &str = "ISTIO_OUTPUT_DNS";
/// Every chain this module (or Istio) creates starts with this.
pub const CHAIN_PREFIX: &str = "ISTIO_";

/// Chains and targets that are not created with `-N`.
const BUILT_IN: &[&str] = &[
    "INPUT",
    "OUTPUT",
    "FORWARD",
    "PREROUTING",
    "POSTROUTING",
    "ACCEPT",
    "RETURN",
    "DROP",
];

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Loopback address Envoy-aware apps use (`127.0.0.1/32`, `::1/128`).
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// Source address of Envoy's inbound passthrough connections.
    fn inbound_passthrough_source(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }

    fn holds(self, cidr: &Cidr) -> bool {
        cidr.is_ipv4() == (self == Family::V4)
    }
}

/// The netfilter tables the rules use, in the order they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    Nat,
    Raw,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Nat => "nat",
            Table::Raw => "raw",
        }
    }
}

/// One `-A chain spec` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: Table,
    pub chain: &'static str,
    pub spec: String,
}

impl Rule {
    /// The user chain this rule jumps to (`... -j ISTIO_X` at its end), if any.
    fn jump_target(&self) -> Option<&str> {
        let mut words = self.spec.rsplitn(3, ' ');
        let target = words.next()?;
        (words.next()? == "-j" && !BUILT_IN.contains(&target)).then_some(target)
    }
}

/// The rules for one address family, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub family: Family,
    pub rules: Vec<Rule>,
}

impl Ruleset {
    /// Istio's VM rules for `settings` and `family` (IPv6: the same structure without DNS).
    pub fn generate(s: &Settings, family: Family) -> Ruleset {
        let mut b = Builder {
            rules: Vec::new(),
            family,
        };
        let dns = match family {
            Family::V4 => &s.dns,
            Family::V6 => &Dns::Off,
        };
        let capture_dns = *dns != Dns::Off;
        let lo = family.loopback();
        let tunnel = s.tunnel_port;

        // Envoy's HBONE tunnel port is never redirected.
        b.nat(ISTIO_INBOUND, format!("-p tcp --dport {tunnel} -j RETURN"));
        b.nat(
            ISTIO_REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {}", s.envoy_port),
        );
        b.nat(
            ISTIO_IN_REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {}", s.inbound_capture_port),
        );

        // Inbound.
        match &s.inbound {
            Inbound::Off => {}
            Inbound::All { exclude } => {
                b.nat("PREROUTING", format!("-p tcp -j {ISTIO_INBOUND}"));
                for port in exclude {
                    b.nat(ISTIO_INBOUND, format!("-p tcp --dport {port} -j RETURN"));
                }
                b.nat(ISTIO_INBOUND, format!("-p tcp -j {ISTIO_IN_REDIRECT}"));
            }
            Inbound::Ports(ports) => {
                b.nat("PREROUTING", format!("-p tcp -j {ISTIO_INBOUND}"));
                for port in ports {
                    b.nat(
                        ISTIO_INBOUND,
                        format!("-p tcp --dport {port} -j {ISTIO_IN_REDIRECT}"),
                    );
                }
            }
        }

        // Outbound: everything local processes send goes through ISTIO_OUTPUT.
        b.nat("OUTPUT", format!("-j {ISTIO_OUTPUT}"));
        for port in &s.outbound_exclude_ports {
            b.nat(ISTIO_OUTPUT, format!("-p tcp --dport {port} -j RETURN"));
            b.nat(ISTIO_OUTPUT, format!("-p udp --dport {port} -j RETURN"));
        }
        // Envoy's inbound passthrough connects from 127.0.0.6: leave it alone.
        b.nat(
            ISTIO_OUTPUT,
            format!("-o lo -s {} -j RETURN", family.inbound_passthrough_source()),
        );

        // If the user asked to capture loopback destinations, app-to-self traffic is not exempt.
        let captures_loopback = match &s.outbound {
            Outbound::Cidrs(c) => c.iter().any(|c| c.addr.is_loopback()),
            _ => false,
        };
        let owners = s
            .proxy_uids
            .iter()
            .map(|id| ("--uid-owner", id))
            .chain(s.proxy_gids.iter().map(|id| ("--gid-owner", id)));
        for (owner, id) in owners {
            // Envoy calling its own workload through a service address: back to Envoy inbound
            // (app -> Envoy outbound -> Envoy inbound -> app). With DNS capture, the UID rule
            // also spares TCP DNS (app -> agent -> DNS server must not loop through Envoy).
            let ports = if capture_dns && owner == "--uid-owner" {
                format!("-m multiport ! --dports 53,{tunnel}")
            } else {
                format!("! --dport {tunnel}")
            };
            b.nat(
                ISTIO_OUTPUT,
                format!(
                    "-o lo ! -d {lo} -p tcp {ports} -m owner {owner} {id} -j {ISTIO_IN_REDIRECT}"
                ),
            );
            // Other local processes talking to each other over loopback stay direct (but TCP DNS
            // to a local resolver is still captured when DNS capture is on).
            if !captures_loopback {
                let spec = if capture_dns {
                    format!("-o lo -p tcp ! --dport 53 -m owner ! {owner} {id} -j RETURN")
                } else {
                    format!("-o lo -m owner ! {owner} {id} -j RETURN")
                };
                b.nat(ISTIO_OUTPUT, spec);
            }
            // Nothing the proxy sends is captured (no loops), whatever the protocol.
            b.nat(ISTIO_OUTPUT, format!("-m owner {owner} {id} -j RETURN"));
        }

        if capture_dns {
            b.dns(s, dns);
        }

        // Envoy-aware apps talking to localhost are not captured.
        b.nat(ISTIO_OUTPUT, format!("-d {lo} -j RETURN"));
        for cidr in s.outbound_exclude_cidrs.iter().filter(|c| family.holds(c)) {
            b.nat(ISTIO_OUTPUT, format!("-d {cidr} -j RETURN"));
        }
        for port in &s.outbound_ports {
            b.nat(
                ISTIO_OUTPUT,
                format!("-p tcp --dport {port} -j {ISTIO_REDIRECT}"),
            );
        }
        match &s.outbound {
            Outbound::Off => {}
            Outbound::All => b.nat(ISTIO_OUTPUT, format!("-j {ISTIO_REDIRECT}")),
            Outbound::Cidrs(cidrs) => {
                for cidr in cidrs.iter().filter(|c| family.holds(c)) {
                    b.nat(ISTIO_OUTPUT, format!("-d {cidr} -j {ISTIO_REDIRECT}"));
                }
            }
        }

        Ruleset {
            family: b.family,
            rules: b.rules,
        }
    }

    /// The tables that have rules, in output order.
    pub fn tables(&self) -> Vec<Table> {
        let mut t: Vec<Table> = self.rules.iter().map(|r| r.table).collect();
        t.sort();
        t.dedup();
        t
    }

    /// The chains (`-N`) and rules (`-A`) of `table`, as `iptables-restore` lines. Chains are
    /// declared in order of first use, then chains only jumped to.
    pub fn table_lines(&self, table: Table) -> Vec<String> {
        let rules: Vec<&Rule> = self.rules.iter().filter(|r| r.table == table).collect();
        let mut chains: Vec<&str> = Vec::new();
        let declared = rules
            .iter()
            .map(|r| r.chain)
            .filter(|c| !BUILT_IN.contains(c));
        let jumped = rules.iter().filter_map(|r| r.jump_target());
        for chain in declared.chain(jumped) {
            if !chains.contains(&chain) {
                chains.push(chain);
            }
        }
        chains
            .iter()
            .map(|c| format!("-N {c}"))
            .chain(rules.iter().map(|r| format!("-A {} {}", r.chain, r.spec)))
            .collect()
    }

    /// The whole ruleset as `iptables-restore --noflush` input.
    pub fn restore_text(&self) -> String {
        let mut out = String::new();
        for table in self.tables() {
            out.push_str(&format!("* {}\n", table.name()));
            for line in self.table_lines(table) {
                out.push_str(&line);
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

struct Builder {
    rules: Vec<Rule>,
    family: Family,
}

impl Builder {
    fn push(&mut self, table: Table, chain: &'static str, spec: String) {
        self.rules.push(Rule { table, chain, spec });
    }

    fn nat(&mut self, chain: &'static str, spec: String) {
        self.push(Table::Nat, chain, spec);
    }

    fn raw(&mut self, chain: &'static str, spec: String) {
        self.push(Table::Raw, chain, spec);
    }

    /// DNS to the agent's DNS proxy, and conntrack zones that keep the two legs of a redirected
    /// UDP query (app <-> agent, agent <-> upstream) from being confused by conntrack.
    fn dns(&mut self, s: &Settings, dns: &Dns) {
        let p = DNS_CAPTURE_PORT;
        self.raw("OUTPUT", format!("-j {ISTIO_OUTPUT_DNS}"));
        self.nat(ISTIO_OUTPUT, format!("-j {ISTIO_OUTPUT_DNS}"));
        let servers: Vec<String> = match dns {
            Dns::Servers(list) => list.iter().map(|a| format!("{a}/32")).collect(),
            _ => Vec::new(),
        };
        match dns {
            Dns::All => {
                self.nat(
                    ISTIO_OUTPUT_DNS,
                    format!("-p tcp --dport 53 -j REDIRECT --to-ports {p}"),
                );
                self.nat(
                    ISTIO_OUTPUT_DNS,
                    format!("-p udp --dport 53 -j REDIRECT --to-port {p}"),
                );
            }
            _ => {
                for server in &servers {
                    self.nat(
                        ISTIO_OUTPUT_DNS,
                        format!("-p tcp --dport 53 -d {server} -j REDIRECT --to-ports {p}"),
                    );
                }
                for server in &servers {
                    self.nat(
                        ISTIO_OUTPUT_DNS,
                        format!("-p udp --dport 53 -d {server} -j REDIRECT --to-port {p}"),
                    );
                }
            }
        }
        // Zone 1: the agent and upstream resolvers; zone 2: applications and the agent.
        let owners = s
            .proxy_uids
            .iter()
            .map(|id| ("--uid-owner", id))
            .chain(s.proxy_gids.iter().map(|id| ("--gid-owner", id)));
        for (owner, id) in owners {
            self.raw(
                ISTIO_OUTPUT_DNS,
                format!("-p udp --dport 53 -m owner {owner} {id} -j CT --zone 1"),
            );
            self.raw(
                ISTIO_OUTPUT_DNS,
                format!("-p udp --sport {p} -m owner {owner} {id} -j CT --zone 2"),
            );
        }
        self.raw("PREROUTING", format!("-j {ISTIO_INBOUND}"));
        match dns {
            Dns::All => {
                self.raw(
                    ISTIO_OUTPUT_DNS,
                    "-p udp --dport 53 -j CT --zone 2".to_string(),
                );
                self.raw(
                    ISTIO_INBOUND,
                    "-p udp --sport 53 -j CT --zone 1".to_string(),
                );
            }
            _ => {
                for server in &servers {
                    self.raw(
                        ISTIO_OUTPUT_DNS,
                        format!("-p udp --dport 53 -d {server} -j CT --zone 2"),
                    );
                    self.raw(
                        ISTIO_INBOUND,
                        format!("-p udp --sport 53 -s {server} -j CT --zone 1"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::settings::{Facts, Settings};
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)], facts: &Facts) -> Settings {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(&env, facts).unwrap().0
    }

    /// Istio's own golden `dns-uid-gid` (IPv4 part), from the same inputs.
    #[test]
    fn matches_istio_dns_uid_gid_golden() {
        let facts = Facts {
            nameservers: vec!["127.0.0.53".parse().unwrap()],
            ..Facts::default()
        };
        let s = settings(
            &[
                ("ISTIO_META_DNS_CAPTURE", "true"),
                ("PROXY_UID", "3,4"),
                ("PROXY_GID", "1,2"),
            ],
            &facts,
        );
        let want = "\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-N ISTIO_OUTPUT_DNS
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m multiport ! --dports 53,15008 -m owner --uid-owner 3 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 3 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 3 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m multiport ! --dports 53,15008 -m owner --uid-owner 4 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 4 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 4 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --gid-owner 1 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 2 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --gid-owner 2 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 2 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_OUTPUT_DNS
-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -d 127.0.0.53/32 -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -d 127.0.0.53/32 -j REDIRECT --to-port 15053
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
COMMIT
* raw
-N ISTIO_OUTPUT_DNS
-N ISTIO_INBOUND
-A OUTPUT -j ISTIO_OUTPUT_DNS
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 3 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --uid-owner 3 -j CT --zone 2
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 4 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --uid-owner 4 -j CT --zone 2
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 1 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --gid-owner 1 -j CT --zone 2
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 2 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --gid-owner 2 -j CT --zone 2
-A PREROUTING -j ISTIO_INBOUND
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -d 127.0.0.53/32 -j CT --zone 2
-A ISTIO_INBOUND -p udp --sport 53 -s 127.0.0.53/32 -j CT --zone 1
COMMIT
";
        assert_eq!(Ruleset::generate(&s, Family::V4).restore_text(), want);
    }

    /// Istio's golden `loopback-outbound-iprange`: capturing a loopback range drops the
    /// "other local processes over lo stay direct" exemptions.
    #[test]
    fn loopback_service_cidr_drops_the_lo_exemption() {
        let s = settings(
            &[("ISTIO_SERVICE_CIDR", "127.1.2.3/32"), ("PROXY_UID", "3")],
            &Facts::default(),
        );
        let text = Ruleset::generate(&s, Family::V4).restore_text();
        assert!(!text.contains("! --uid-owner"), "{text}");
        assert!(
            text.contains("-A ISTIO_OUTPUT -d 127.1.2.3/32 -j ISTIO_REDIRECT\n"),
            "{text}"
        );
    }

    #[test]
    fn ipv6_has_the_same_structure_without_dns() {
        let s = settings(
            &[
                ("ISTIO_INBOUND_PORTS", "*"),
                ("ISTIO_SERVICE_CIDR", "10.96.0.0/12,fd00:10:96::/112"),
                ("ISTIO_SERVICE_EXCLUDE_CIDR", "10.96.0.10,fd00:10:96::a"),
                ("ISTIO_META_DNS_CAPTURE", "true"),
                ("CAPTURE_ALL_DNS", "true"),
            ],
            &Facts::default(),
        );
        let v6 = Ruleset::generate(&s, Family::V6);
        let text = v6.restore_text();
        assert_eq!(v6.tables(), vec![Table::Nat], "{text}");
        assert!(!text.contains("DNS") && !text.contains("53"), "{text}");
        assert!(text.contains("-o lo -s ::6/128 -j RETURN"), "{text}");
        assert!(
            text.contains("-o lo ! -d ::1/128 -p tcp ! --dport 15008"),
            "{text}"
        );
        assert!(text.contains("-d fd00:10:96::a/128 -j RETURN"), "{text}");
        assert!(
            text.contains("-d fd00:10:96::/112 -j ISTIO_REDIRECT"),
            "{text}"
        );
        assert!(!text.contains("10.96."), "{text}");
        let v4 = Ruleset::generate(&s, Family::V4).restore_text();
        assert!(!v4.contains("fd00"), "{v4}");
        assert!(v4.contains("* raw"), "{v4}");
    }

    fn chains(r: &Ruleset, table: Table) -> Vec<String> {
        r.table_lines(table)
            .iter()
            .filter_map(|l| l.strip_prefix("-N ").map(str::to_string))
            .collect()
    }

    #[test]
    fn chains_are_listed_per_table() {
        let s = settings(
            &[
                ("ISTIO_META_DNS_CAPTURE", "true"),
                ("CAPTURE_ALL_DNS", "true"),
            ],
            &Facts::default(),
        );
        let r = Ruleset::generate(&s, Family::V4);
        assert_eq!(
            chains(&r, Table::Nat),
            [
                ISTIO_INBOUND,
                ISTIO_REDIRECT,
                ISTIO_IN_REDIRECT,
                ISTIO_OUTPUT,
                ISTIO_OUTPUT_DNS
            ]
        );
        assert_eq!(chains(&r, Table::Raw), [ISTIO_OUTPUT_DNS, ISTIO_INBOUND]);
    }
}
