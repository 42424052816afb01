//! The upstream servers and search domains from `resolv.conf`, read as Istio's agent reads it:
//! every `nameserver` (port 53), the last `search` or `domain` line for the search list.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    /// Search domains, lower-cased, without a trailing dot.
    pub search: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text. Unparseable nameserver addresses are skipped (and reported).
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut out = ResolvConf::default();
        let mut problems = Vec::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => match words.next() {
                    Some(addr) => match parse_nameserver(addr) {
                        Some(a) => out.nameservers.push(a),
                        None => problems.push(format!("nameserver {addr:?} is not an IP address")),
                    },
                    None => problems.push("nameserver without an address".to_string()),
                },
                Some("search") => out.search = words.map(normalize_domain).collect(),
                Some("domain") => {
                    out.search = words.next().map(normalize_domain).into_iter().collect()
                }
                _ => {}
            }
        }
        out.search.retain(|d| !d.is_empty());
        (out, problems)
    }

    /// The first search domain, which the search-domain CNAMEs are built from.
    pub fn first_search(&self) -> Option<&str> {
        self.search.first().map(String::as_str)
    }
}

fn normalize_domain(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// `1.2.3.4`, `fd00::1`, or `fe80::1%2` (a link-local address with its numeric interface index;
/// interface names are not resolved).
fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    // std parses scoped IPv6 addresses only in socket-address form.
    format!("[{s}]:53").parse().ok()
}

/// `<root>/etc/resolv.conf`, or the system's `/etc/resolv.conf` when the root has none.
pub fn path_for(root: &Path) -> PathBuf {
    let under_root = root.join("etc/resolv.conf");
    if under_root.exists() {
        under_root
    } else {
        PathBuf::from("/etc/resolv.conf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_and_last_search_line() {
        let (rc, problems) = ResolvConf::parse(
            "# generated\n\
             search old.example\n\
             nameserver 10.0.0.2\n\
             nameserver fd00::53\n\
             nameserver fe80::1%1\n\
             nameserver fe80::1%lo\n\
             ; nameserver 10.9.9.9\n\
             options ndots:5\n\
             search Forum-Services.svc.cluster.local. svc.cluster.local cluster.local\n\
             nameserver dns.example\n",
        );
        assert_eq!(
            rc.nameservers,
            [
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap(),
                "[fe80::1%1]:53".parse().unwrap(),
            ]
        );
        assert_eq!(
            rc.search,
            [
                "forum-services.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(rc.first_search(), Some("forum-services.svc.cluster.local"));
        assert_eq!(
            problems,
            [
                "nameserver \"fe80::1%lo\" is not an IP address",
                "nameserver \"dns.example\" is not an IP address"
            ]
        );
    }

    #[test]
    fn domain_line_and_empty_file() {
        let (rc, _) = ResolvConf::parse("search a.example b.example\ndomain corp.example\n");
        assert_eq!(rc.search, ["corp.example"]);
        let (rc, problems) = ResolvConf::parse("");
        assert_eq!(rc, ResolvConf::default());
        assert!(problems.is_empty());
        assert_eq!(rc.first_search(), None);
    }

    #[test]
    fn root_resolv_conf_with_fallback() {
        let dir = std::env::temp_dir().join(format!("weft-resolv-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        assert_eq!(path_for(&dir), PathBuf::from("/etc/resolv.conf"));
        std::fs::write(dir.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        assert_eq!(path_for(&dir), dir.join("etc/resolv.conf"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
