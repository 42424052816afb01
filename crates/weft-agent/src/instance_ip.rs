//! The default instance address (`ISTIO_SVC_IP`) when the bundle names none. Istio's VM start
//! script takes the first of `hostname --all-ip-addresses`; Weft does the same from the host's
//! interface addresses, leaving out what cannot be the workload's address: loopback, link-local,
//! interfaces that are down, and container or VM bridges (`docker0`, `cni0`, `podman*`, `virbr*`,
//! `br-*`, `veth*`), whose addresses other mesh members cannot reach.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Interface-name prefixes of container and virtual-machine bridges (and their veth ends).
const BRIDGE_PREFIXES: [&str; 8] = [
    "docker", "cni", "podman", "virbr", "br-", "veth", "lxcbr", "lxdbr",
];

/// One address of one interface, in the kernel's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub interface: String,
    pub addr: IpAddr,
}

impl InterfaceAddr {
    pub fn new(interface: &str, addr: IpAddr) -> Self {
        InterfaceAddr {
            interface: interface.to_string(),
            addr,
        }
    }
}

/// Whether `a` could be this workload's address in the mesh.
pub fn usable(a: &InterfaceAddr) -> bool {
    if a.interface == "lo" || BRIDGE_PREFIXES.iter().any(|p| a.interface.starts_with(p)) {
        return false;
    }
    match a.addr {
        IpAddr::V4(ip) => {
            !(ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_broadcast())
        }
        IpAddr::V6(ip) => {
            !(ip.is_loopback()
                || ip.is_unicast_link_local()
                || ip.is_unspecified()
                || ip.is_multicast())
        }
    }
}

/// The usable addresses, IPv4 before IPv6 and otherwise in the given (kernel) order; the first
/// is the default instance address.
pub fn candidates(addrs: &[InterfaceAddr]) -> Vec<InterfaceAddr> {
    let mut out: Vec<InterfaceAddr> = addrs.iter().filter(|a| usable(a)).cloned().collect();
    out.sort_by_key(|a| a.addr.is_ipv6());
    out
}

/// The default instance address from the host's interfaces: the first candidate, with a
/// warning when there were several to choose from, or `127.0.0.1` (with a warning) when there
/// is none.
pub fn default_instance_ip() -> String {
    let addrs = match host_addresses() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(
                "ISTIO_SVC_IP is not set and the host's addresses cannot be read ({e}): using 127.0.0.1"
            );
            return Ipv4Addr::LOCALHOST.to_string();
        }
    };
    let found = candidates(&addrs);
    match found.as_slice() {
        [] => {
            tracing::warn!(
                "ISTIO_SVC_IP is not set and the host has no usable address: using 127.0.0.1"
            );
            Ipv4Addr::LOCALHOST.to_string()
        }
        [only] => only.addr.to_string(),
        [first, ..] => {
            let all: Vec<String> = found
                .iter()
                .map(|a| format!("{} ({})", a.addr, a.interface))
                .collect();
            tracing::warn!(
                "ISTIO_SVC_IP is not set: using {} ({}), the first of the host's usable addresses {}; set ISTIO_SVC_IP in cluster.env to choose another",
                first.addr,
                first.interface,
                all.join(", ")
            );
            first.addr.to_string()
        }
    }
}

/// Every address of every interface that is up (`getifaddrs(3)`), in the kernel's order.
pub fn host_addresses() -> io::Result<Vec<InterfaceAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs only writes the list head through the valid pointer it is given.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs below.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
        if !up || ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points to a sockaddr whose family says its real
        // type; `ifa_name` is a NUL-terminated string; both live as long as the list.
        let (family, name) = unsafe {
            (
                i32::from((*ifa.ifa_addr).sa_family),
                CStr::from_ptr(ifa.ifa_name),
            )
        };
        let addr = match family {
            libc::AF_INET => {
                // SAFETY: AF_INET addresses are `sockaddr_in`.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 addresses are `sockaddr_in6`.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        out.push(InterfaceAddr::new(&name.to_string_lossy(), addr));
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once; no reference into the
    // list outlives this point.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(interface: &str, addr: &str) -> InterfaceAddr {
        InterfaceAddr::new(interface, addr.parse().unwrap())
    }

    fn first(addrs: &[InterfaceAddr]) -> Option<String> {
        candidates(addrs).first().map(|c| c.addr.to_string())
    }

    #[test]
    fn skips_loopback_link_local_and_bridges() {
        let addrs = [
            a("lo", "127.0.0.1"),
            a("lo", "::1"),
            a("docker0", "172.17.0.1"),
            a("cni0", "10.244.0.1"),
            a("podman0", "10.88.0.1"),
            a("virbr0", "192.168.122.1"),
            a("br-3f2a9c", "172.18.0.1"),
            a("veth12ab", "10.1.0.1"),
            a("eth0", "169.254.10.20"),
            a("eth0", "fe80::1"),
            a("ens5", "10.0.3.7"),
            a("ens5", "fe80::5054:ff:fe12:3456"),
        ];
        let c = candidates(&addrs);
        assert_eq!(c, [a("ens5", "10.0.3.7")]);
    }

    #[test]
    fn first_usable_in_kernel_order_ipv4_before_ipv6() {
        let addrs = [
            a("lo", "127.0.0.1"),
            a("eth0", "2001:db8::10"),
            a("eth0", "192.0.2.10"),
            a("eth1", "198.51.100.7"),
            a("eth1", "fd00:1::7"),
        ];
        assert_eq!(
            candidates(&addrs),
            [
                a("eth0", "192.0.2.10"),
                a("eth1", "198.51.100.7"),
                a("eth0", "2001:db8::10"),
                a("eth1", "fd00:1::7"),
            ]
        );
        assert_eq!(first(&addrs).as_deref(), Some("192.0.2.10"));
    }

    #[test]
    fn ipv6_only_and_nothing_usable() {
        assert_eq!(
            first(&[
                a("lo", "::1"),
                a("eth0", "fe80::2"),
                a("eth0", "2001:db8::2")
            ])
            .as_deref(),
            Some("2001:db8::2")
        );
        assert_eq!(
            first(&[
                a("lo", "127.0.0.1"),
                a("docker0", "172.17.0.1"),
                a("eth0", "0.0.0.0"),
                a("eth0", "224.0.0.1"),
            ]),
            None
        );
        // A non-loopback address on lo (an anycast VIP, say) is not the workload's address.
        assert_eq!(first(&[a("lo", "10.9.9.9")]), None);
    }

    #[test]
    fn reads_the_hosts_addresses() {
        // Every Linux network namespace has lo up with 127.0.0.1.
        let addrs = host_addresses().unwrap();
        assert!(
            addrs.contains(&a("lo", "127.0.0.1")),
            "lo missing from {addrs:?}"
        );
    }
}
