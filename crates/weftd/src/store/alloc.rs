//! Service VIP allocation (pure): which Services get an address from the service CIDR, and which one.
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
}
