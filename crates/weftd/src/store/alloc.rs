//! Service VIP allocation (pure): which Services get an address from the service CIDR, and which one;
//! and ServiceEntry host addresses from 240.240.0.0/16, as Istio's IP auto-allocation gives them.
//!
//! A Service written without `clusterIP` gets a VIP; `clusterIP: None` (headless) and
//! `type: ExternalName` get none; a written `clusterIP` is the Service's own and is never handed to
//! another. A VIP, once given, is kept for as long as its Service exists (also across restarts: the
//! caller persists the result). A new VIP starts at a hash of `namespace/name` and probes upwards, so
//! the same Service tends to get the same address even from an empty state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use weft_model::Spec;
use weft_model::resource::Resource;

/// `(namespace, name)` of a Service.
pub type ServiceName = (String, String);

/// An IPv4 or IPv6 prefix such as `10.96.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    base: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid CIDR {s:?}: want ADDRESS/PREFIX, e.g. 10.96.0.0/16");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(bad());
        }
        let cidr = Cidr { base: addr, prefix };
        if to_u128(addr) & cidr.host_mask() != 0 {
            return Err(format!(
                "invalid CIDR {s:?}: host bits are set (the network is {}/{prefix})",
                from_u128(addr.is_ipv4(), to_u128(addr) & !cidr.host_mask())
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

impl Cidr {
    fn bits(&self) -> u32 {
        if self.base.is_ipv4() { 32 } else { 128 }
    }

    fn host_mask(&self) -> u128 {
        let host_bits = self.bits() - self.prefix as u32;
        if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.base.is_ipv4() && to_u128(ip) & !self.host_mask() == to_u128(self.base)
    }

    /// Offsets of the addresses that may be handed out: all but the network address (and, for
    /// IPv4 prefixes up to /30, the broadcast address).
    fn usable(&self) -> (u128, u128) {
        let mask = self.host_mask();
        match (self.base.is_ipv4(), self.prefix) {
            (true, p) if p >= 31 => (0, mask),
            (true, _) => (1, mask - 1),
            (false, 128) => (0, 0),
            (false, _) => (1, mask),
        }
    }

    fn at(&self, offset: u128) -> IpAddr {
        from_u128(self.base.is_ipv4(), to_u128(self.base) + offset)
    }
}

/// What a Service needs from the allocator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// No address written: allocate one.
    Vip,
    /// Headless or ExternalName: nothing.
    Nothing,
    /// It brings its own address (which is then in use).
    Own(Option<IpAddr>),
}

pub fn need(r: &Resource) -> Need {
    let Spec::Service(s) = &r.spec else {
        return Need::Nothing;
    };
    let ip = if s.cluster_ip.is_empty() {
        s.cluster_ips
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    } else {
        s.cluster_ip.as_str()
    };
    if s.type_ == "ExternalName" || ip == "None" {
        Need::Nothing
    } else if ip.is_empty() {
        Need::Vip
    } else {
        Need::Own(ip.parse().ok())
    }
}

/// FNV-1a, stable across builds and platforms (unlike `std`'s hasher).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The result of one allocation round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub allocations: BTreeMap<ServiceName, IpAddr>,
    /// Problems worth a log line (CIDR exhausted, a kept VIP taken over by a written clusterIP).
    pub warnings: Vec<String>,
}

/// Decides the VIP of every Service in `wanting`, keeping `previous` allocations that are still
/// valid and never handing out an address in `taken` (written clusterIPs) or already given.
pub fn plan(
    cidr: &Cidr,
    wanting: &BTreeSet<ServiceName>,
    taken: &BTreeSet<IpAddr>,
    previous: &BTreeMap<ServiceName, IpAddr>,
) -> Plan {
    let mut out = Plan::default();
    let mut used: BTreeSet<IpAddr> = taken.clone();
    let mut fresh = Vec::new();
    for svc in wanting {
        match previous.get(svc) {
            Some(ip) if cidr.contains(*ip) && !used.contains(ip) => {
                used.insert(*ip);
                out.allocations.insert(svc.clone(), *ip);
            }
            Some(ip) => {
                out.warnings.push(format!(
                    "Service {}/{}: VIP {ip} is now {}; allocating a new one",
                    svc.0,
                    svc.1,
                    if cidr.contains(*ip) {
                        "written as another Service's clusterIP"
                    } else {
                        "outside the service CIDR"
                    }
                ));
                fresh.push(svc);
            }
            None => fresh.push(svc),
        }
    }
    let (lo, hi) = cidr.usable();
    let span = hi - lo + 1;
    for svc in fresh {
        let start = fnv(&format!("{}/{}", svc.0, svc.1)) as u128 % span;
        // Probe at most `span` addresses (bounded by how many are in use, so this is quick).
        let limit = span.min(used.len() as u128 + 1);
        let found = (0..limit)
            .map(|i| cidr.at(lo + (start + i) % span))
            .find(|ip| !used.contains(ip));
        match found {
            Some(ip) => {
                used.insert(ip);
                out.allocations.insert(svc.clone(), ip);
            }
            None => out.warnings.push(format!(
                "Service {}/{}: no free VIP left in the service CIDR {cidr}",
                svc.0, svc.1
            )),
        }
    }
    out
}

/// Istio's default `PILOT_IP_AUTOALLOCATE_IPV4_PREFIX`: where ServiceEntry hosts without
/// addresses get theirs.
pub const SERVICE_ENTRY_CIDR: &str = "240.240.0.0/16";

/// ServiceEntry label opting out of automatic addresses (`"false"`, any case).
pub const AUTOALLOCATE_LABEL: &str = "networking.istio.io/enable-autoallocate-ip";

/// The hosts of a ServiceEntry that get an automatic address (Istio's `ShouldV2AutoAllocateIP`
/// and `keepHost`): none when it has `addresses`, `resolution: NONE` or the opt-out label;
/// else every host but wildcards (kept with DYNAMIC_DNS).
pub fn service_entry_hosts(r: &Resource) -> Vec<String> {
    let Spec::ServiceEntry(se) = &r.spec else {
        return Vec::new();
    };
    let opted_out = r
        .metadata
        .labels
        .get(AUTOALLOCATE_LABEL)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let resolution = se.effective_resolution();
    if opted_out || resolution == "NONE" || !se.addresses.is_empty() {
        return Vec::new();
    }
    se.hosts
        .iter()
        .filter(|h| !h.starts_with('*') || resolution == "DYNAMIC_DNS")
        .cloned()
        .collect()
}

/// Like [`plan`], but new addresses are the lowest free ones from the prefix's first usable
/// address on (as Istio's ServiceEntry allocator hands them out), in `wanting`'s order.
pub fn plan_in_order(
    cidr: &Cidr,
    wanting: &BTreeSet<ServiceName>,
    taken: &BTreeSet<IpAddr>,
    previous: &BTreeMap<ServiceName, IpAddr>,
) -> Plan {
    let mut out = Plan::default();
    let mut used: BTreeSet<IpAddr> = taken.clone();
    let mut fresh = Vec::new();
    for name in wanting {
        match previous.get(name) {
            Some(ip) if cidr.contains(*ip) && !used.contains(ip) => {
                used.insert(*ip);
                out.allocations.insert(name.clone(), *ip);
            }
            _ => fresh.push(name),
        }
    }
    let (lo, hi) = cidr.usable();
    let mut next = lo;
    for name in fresh {
        while next <= hi && used.contains(&cidr.at(next)) {
            next += 1;
        }
        if next > hi {
            out.warnings.push(format!(
                "ServiceEntry {}: host {}: no free address left in {cidr}",
                name.0, name.1
            ));
            continue;
        }
        let ip = cidr.at(next);
        used.insert(ip);
        out.allocations.insert(name.clone(), ip);
    }
    out
}

/// One allocation round over every resource: Service VIPs from `service_cidr` ([`plan`]) and
/// ServiceEntry host addresses from [`SERVICE_ENTRY_CIDR`] ([`plan_in_order`]), keyed
/// `(namespace, host)` (a host equal to a Service's name in its namespace is the Service's).
/// Written clusterIPs and ServiceEntry addresses are never handed out.
pub fn plan_all<'a>(
    service_cidr: &Cidr,
    resources: impl IntoIterator<Item = &'a Resource>,
    previous: &BTreeMap<ServiceName, IpAddr>,
) -> Plan {
    let mut services = BTreeSet::new();
    let mut service_names = BTreeSet::new();
    let mut entries = BTreeSet::new();
    let mut taken = BTreeSet::new();
    for r in resources {
        let ns = r.namespace().to_string();
        match &r.spec {
            Spec::Service(_) => {
                service_names.insert((ns.clone(), r.name().to_string()));
                match need(r) {
                    Need::Vip => {
                        services.insert((ns, r.name().to_string()));
                    }
                    Need::Own(Some(ip)) => {
                        taken.insert(ip);
                    }
                    _ => {}
                }
            }
            Spec::ServiceEntry(se) => {
                taken.extend(
                    se.addresses
                        .iter()
                        .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok()),
                );
                for host in service_entry_hosts(r) {
                    entries.insert((ns.clone(), host));
                }
            }
            _ => {}
        }
    }
    entries.retain(|k| !service_names.contains(k));
    let split = |wanting: &BTreeSet<ServiceName>| -> BTreeMap<ServiceName, IpAddr> {
        previous
            .iter()
            .filter(|(k, _)| wanting.contains(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let mut out = plan(service_cidr, &services, &taken, &split(&services));
    let se_cidr: Cidr = SERVICE_ENTRY_CIDR.parse().expect("valid constant");
    let se_plan = plan_in_order(&se_cidr, &entries, &taken, &split(&entries));
    out.allocations.extend(se_plan.allocations);
    out.warnings.extend(se_plan.warnings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> ServiceName {
        (ns.to_string(), name.to_string())
    }

    #[test]
    fn parses_cidrs() {
        let c: Cidr = "10.96.0.0/16".parse().unwrap();
        assert!(c.contains("10.96.255.254".parse().unwrap()));
        assert!(!c.contains("10.97.0.1".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        assert!(
            "10.96.0.1/16"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("10.96.0.0/16")
        );
        assert!("10.96.0.0/33".parse::<Cidr>().is_err());
        let v6: Cidr = "fd00:10:96::/112".parse().unwrap();
        assert!(v6.contains("fd00:10:96::ffff".parse().unwrap()));
    }

    #[test]
    fn keeps_previous_and_avoids_taken() {
        let cidr: Cidr = "10.96.0.0/16".parse().unwrap();
        let wanting: BTreeSet<_> = [svc("a", "x"), svc("b", "y")].into();
        let first = plan(&cidr, &wanting, &BTreeSet::new(), &BTreeMap::new());
        assert_eq!(first.allocations.len(), 2);
        assert!(first.warnings.is_empty());
        let x = first.allocations[&svc("a", "x")];
        assert!(cidr.contains(x));
        assert_ne!(x, first.allocations[&svc("b", "y")]);
        // Stable: the same answer from the previous plan, and from an empty state too.
        let again = plan(&cidr, &wanting, &BTreeSet::new(), &first.allocations);
        assert_eq!(again.allocations, first.allocations);
        let scratch = plan(&cidr, &wanting, &BTreeSet::new(), &BTreeMap::new());
        assert_eq!(scratch.allocations, first.allocations);
        // A written clusterIP takes the address: the allocated Service moves, with a warning.
        let taken: BTreeSet<_> = [x].into();
        let moved = plan(&cidr, &wanting, &taken, &first.allocations);
        assert_ne!(moved.allocations[&svc("a", "x")], x);
        assert_eq!(moved.warnings.len(), 1, "{:?}", moved.warnings);
        // Released when gone.
        let one: BTreeSet<_> = [svc("b", "y")].into();
        let fewer = plan(&cidr, &one, &BTreeSet::new(), &first.allocations);
        assert_eq!(fewer.allocations.len(), 1);
    }

    #[test]
    fn never_reuses_and_reports_exhaustion() {
        let cidr: Cidr = "10.0.0.0/30".parse().unwrap(); // .1 and .2 usable
        let wanting: BTreeSet<_> = [svc("n", "a"), svc("n", "b"), svc("n", "c")].into();
        let p = plan(&cidr, &wanting, &BTreeSet::new(), &BTreeMap::new());
        let ips: BTreeSet<_> = p.allocations.values().copied().collect();
        assert_eq!(
            ips,
            ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()].into()
        );
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("no free VIP"), "{:?}", p.warnings);
    }

    fn load(yaml: &str) -> Vec<Resource> {
        weft_model::load_str("t.yaml", yaml)
            .into_iter()
            .map(|e| match e.outcome {
                weft_model::Outcome::Valid { resource, .. } => *resource,
                o => panic!("{o:?}"),
            })
            .collect()
    }

    fn se(name: &str, extra_meta: &str, spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: ns\n{extra_meta}spec:\n{spec}  ports:\n  - {{number: 443, name: tls, protocol: TLS}}\n---\n"
        )
    }

    #[test]
    fn service_entry_hosts_as_istio_allocates() {
        let yaml = [
            se(
                "static",
                "",
                "  hosts: [a.example.com, \"*.w.example.com\"]\n  resolution: STATIC\n  endpoints:\n  - address: 10.0.0.1\n",
            ),
            se("none", "", "  hosts: [n.example.com]\n  resolution: NONE\n"),
            se("unset", "", "  hosts: [u.example.com]\n"),
            se("own", "", "  hosts: [o.example.com]\n  addresses: [192.0.2.1]\n  resolution: DNS\n"),
            se(
                "out",
                "  labels:\n    networking.istio.io/enable-autoallocate-ip: \"FALSE\"\n",
                "  hosts: [x.example.com]\n  resolution: DNS\n",
            ),
            se("dyn", "", "  hosts: [\"*.d.example.com\"]\n  resolution: DYNAMIC_DNS\n"),
        ]
        .concat();
        let hosts: Vec<Vec<String>> = load(&yaml).iter().map(service_entry_hosts).collect();
        let expect: [&[&str]; 6] = [&["a.example.com"], &[], &[], &[], &[], &["*.d.example.com"]];
        for (got, want) in hosts.iter().zip(expect) {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn service_entry_addresses_in_order_kept_and_freed() {
        let yaml = [
            se("b", "", "  hosts: [b1.example.com, b2.example.com]\n  resolution: DNS\n"),
            se("a", "", "  hosts: [a.example.com]\n  resolution: STATIC\n  endpoints:\n  - address: 10.0.0.1\n"),
            // A written address inside the range is never handed out.
            se("c", "", "  hosts: [c.example.com]\n  addresses: [240.240.0.1]\n  resolution: DNS\n"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec:\n  ports:\n  - port: 80\n---\n".into(),
        ]
        .concat();
        let rs = load(&yaml);
        let cidr: Cidr = "10.96.0.0/16".parse().unwrap();
        let p = plan_all(&cidr, &rs, &BTreeMap::new());
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let ip = |p: &Plan, host: &str| p.allocations[&svc("ns", host)].to_string();
        // (namespace, host) order, from the prefix's first address, skipping the written one.
        assert_eq!(ip(&p, "a.example.com"), "240.240.0.2");
        assert_eq!(ip(&p, "b1.example.com"), "240.240.0.3");
        assert_eq!(ip(&p, "b2.example.com"), "240.240.0.4");
        assert!(cidr.contains(p.allocations[&svc("ns", "web")]));
        assert_eq!(p.allocations.len(), 4);
        // Kept as they were; a gone entry's address is freed and the lowest free one reused.
        let without_a: Vec<Resource> = rs.iter().filter(|r| r.name() != "a").cloned().collect();
        let p2 = plan_all(&cidr, &without_a, &p.allocations);
        assert!(!p2.allocations.contains_key(&svc("ns", "a.example.com")));
        assert_eq!(ip(&p2, "b1.example.com"), "240.240.0.3");
        let mut again = without_a.clone();
        again.extend(load(&se(
            "z",
            "",
            "  hosts: [z.example.com]\n  resolution: DNS\n",
        )));
        let p3 = plan_all(&cidr, &again, &p2.allocations);
        assert_eq!(ip(&p3, "z.example.com"), "240.240.0.2");
        assert_eq!(ip(&p3, "b2.example.com"), "240.240.0.4");
    }

    #[test]
    fn in_order_reports_exhaustion() {
        let cidr: Cidr = "240.240.0.0/30".parse().unwrap();
        let wanting: BTreeSet<_> = [svc("n", "a"), svc("n", "b"), svc("n", "c")].into();
        let p = plan_in_order(&cidr, &wanting, &BTreeSet::new(), &BTreeMap::new());
        assert_eq!(p.allocations.len(), 2);
        assert!(
            p.warnings[0].contains("no free address"),
            "{:?}",
            p.warnings
        );
    }
}
