//! The lookup table built from an NDS `NameTable`, with Istio's name variants (pure).
//!
//! For a Kubernetes host `short.ns.svc.cluster.local` in the proxy's cluster domain the names are
//! `fqdn.`, `short.ns.`, `short.` (only when `ns` is the proxy's namespace) and `short.ns.svc.`;
//! `short.ns.svc.cluster.` is not one (a query for it goes upstream, as in Istio). Other hosts
//! answer only to `host.`. Any of these names followed by the first search domain answers with a
//! CNAME to the name (unless the name already ends with that domain), so a resolver walking its
//! search list stops at the first try. `*.example.com` hosts answer for names under them.
//!
//! Where Istio leaves an outcome to Go's map order, this table decides: an exact host beats
//! another host's derived name, then the host that sorts first wins.

use std::collections::HashMap;
use std::net::IpAddr;
use weft_proto::nds::NameTable;
use weft_proto::nds::name_table::NameInfo;

/// Istio's TTL for every answer from the table.
pub const TTL: u32 = 30;

const KUBERNETES: &str = "Kubernetes";

#[derive(Debug, Default)]
pub struct LookupTable {
    /// Lower-cased, dot-terminated name → index into `entries`.
    names: HashMap<Box<str>, u32>,
    entries: Vec<Entry>,
    /// `.<first search domain>.`, lower-cased; empty when resolv.conf has no search domain.
    search_suffix: Box<str>,
    has_wildcards: bool,
}

#[derive(Debug)]
struct Entry {
    /// IPv4 addresses first, then IPv6.
    ips: Box<[IpAddr]>,
    v4: usize,
}

/// What the proxy knows about its own place in the mesh, which decides the name variants.
#[derive(Clone, Debug)]
pub struct ProxyScope {
    /// The proxy's namespace (`short.` names are generated for hosts in it).
    pub namespace: String,
    /// The proxy's DNS domain without the namespace, e.g. `svc.cluster.local`.
    pub domain: String,
    /// The first `search` domain of resolv.conf, if any.
    pub first_search: Option<String>,
}

/// The query types the table answers; anything else about a known name goes upstream (Istio).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Where the address records of an answer are owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'t> {
    /// The question's own name.
    Question,
    /// Another name (a CNAME target).
    Name(&'t str),
}

/// A name the table knows. Authoritative NOERROR even when `ips` is empty (the name exists, with
/// no address of the asked family: an NXDOMAIN would make clients asking A and AAAA in parallel
/// give up on the name, istio#31250).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<'t> {
    /// Answer with `question CNAME target` before the addresses.
    pub cname: Option<&'t str>,
    pub owner: Owner<'t>,
    pub ips: &'t [IpAddr],
}

impl LookupTable {
    pub fn build(table: &NameTable, scope: &ProxyScope) -> Self {
        let mut hosts: Vec<(&String, &NameInfo)> = table.table.iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = LookupTable {
            search_suffix: scope
                .first_search
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| format!(".{}.", s.trim_end_matches('.').to_ascii_lowercase()))
                .unwrap_or_default()
                .into(),
            ..Default::default()
        };
        let mut derived: Vec<(String, u32)> = Vec::new();
        for (host, info) in hosts {
            let Some(entry) = Entry::new(&info.ips) else {
                continue; // no usable address
            };
            let index = out.entries.len() as u32;
            out.entries.push(entry);
            let names = alt_names(host, info, scope);
            let mut names = names.into_iter();
            if let Some(exact) = names.next() {
                out.names.entry(exact.into()).or_insert(index);
            }
            derived.extend(names.map(|n| (n, index)));
        }
        for (name, index) in derived {
            out.names.entry(name.into()).or_insert(index);
        }
        out.names.shrink_to_fit();
        out.has_wildcards = out.names.keys().any(|k| k.starts_with("*."));
        out
    }

    /// How many names the table answers to (not counting search-domain expansions).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Looks up a question name: lower-case, dot-terminated. `None`: not a mesh name (forward it).
    pub fn lookup(&self, name: &str, family: Family) -> Option<Found<'_>> {
        if let Some(found) = self.exact(name, family) {
            return Some(found);
        }
        if !self.has_wildcards {
            return None;
        }
        // `a.b.example.com.` → `*.b.example.com.`, `*.example.com.`, `*.com.`.
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if parent.is_empty() {
                break;
            }
            let candidate = format!("*.{parent}");
            // The addresses are owned by the question, or by the wildcard when a CNAME leads
            // there (Istio's chained answer).
            if let Some(found) = self.exact(&candidate, family) {
                return Some(found);
            }
            rest = parent;
        }
        None
    }

    fn exact(&self, name: &str, family: Family) -> Option<Found<'_>> {
        if let Some(found) = self.search_expansion(name, family) {
            return Some(found);
        }
        let index = *self.names.get(name)?;
        Some(Found {
            cname: None,
            owner: Owner::Question,
            ips: self.entries[index as usize].ips(family),
        })
    }

    /// `name` = `<known name><first search domain>.` with the known name not already in that
    /// domain → a CNAME to the known name.
    fn search_expansion(&self, name: &str, family: Family) -> Option<Found<'_>> {
        if self.search_suffix.is_empty() {
            return None;
        }
        // Keep the dot that ends the known name: `a.b.` + `ns.svc.cluster.local.`.
        let stem = name.strip_suffix(&self.search_suffix[1..])?;
        if !stem.ends_with('.') || stem.len() < 2 {
            return None;
        }
        let (target, &index) = self.names.get_key_value(stem)?;
        if target.ends_with(&self.search_suffix[1..]) {
            return None;
        }
        // The expansion is itself a variant of the same host: answer it directly.
        if self.names.get(name) == Some(&index) {
            return None;
        }
        let ips = self.entries[index as usize].ips(family);
        Some(Found {
            cname: (!ips.is_empty()).then_some(&**target),
            owner: Owner::Name(target),
            ips,
        })
    }
}

impl Entry {
    fn new(ips: &[String]) -> Option<Self> {
        let mut parsed: Vec<IpAddr> = ips.iter().filter_map(|s| s.parse().ok()).collect();
        if parsed.is_empty() {
            return None;
        }
        parsed.sort_by_key(|ip| ip.is_ipv6());
        parsed.dedup();
        let v4 = parsed.iter().filter(|ip| ip.is_ipv4()).count();
        Some(Entry {
            ips: parsed.into_boxed_slice(),
            v4,
        })
    }

    fn ips(&self, family: Family) -> &[IpAddr] {
        match family {
            Family::V4 => &self.ips[..self.v4],
            Family::V6 => &self.ips[self.v4..],
        }
    }
}

/// Istio's name variants of one table host, lower-cased and dot-terminated, the host itself first.
pub fn alt_names(host: &str, info: &NameInfo, scope: &ProxyScope) -> Vec<String> {
    let host = host.to_ascii_lowercase();
    if info.registry != KUBERNETES {
        let name = if host.ends_with('.') {
            host
        } else {
            format!("{host}.")
        };
        return vec![name];
    }
    // Istio generates nothing for a dot-terminated Kubernetes host.
    if host.ends_with('.') {
        return Vec::new();
    }
    let mut out = vec![format!("{host}.")];
    let short = info.shortname.to_ascii_lowercase();
    let ns = info.namespace.to_ascii_lowercase();
    // Only in the proxy's own cluster domain, and only with a short name to build from.
    if scope.domain.is_empty()
        || !host.ends_with(&scope.domain)
        || short.is_empty()
        || ns.is_empty()
    {
        return out;
    }
    let mut push = |n: String| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    push(format!("{short}.{ns}."));
    if ns == scope.namespace.to_ascii_lowercase() {
        push(format!("{short}."));
    }
    let first_label = scope.domain.split('.').next().unwrap_or_default();
    push(format!("{short}.{ns}.{first_label}."));
    for alt in &info.alt_hosts {
        push(format!("{}.", alt.to_ascii_lowercase()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ips: &[&str], registry: &str, short: &str, ns: &str) -> NameInfo {
        NameInfo {
            ips: ips.iter().map(|s| s.to_string()).collect(),
            registry: registry.into(),
            shortname: short.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    fn scope(search: Option<&str>) -> ProxyScope {
        ProxyScope {
            namespace: "forum-services".into(),
            domain: "svc.cluster.local".into(),
            first_search: search.map(str::to_string),
        }
    }

    fn table(hosts: &[(&str, NameInfo)], search: Option<&str>) -> LookupTable {
        let nt = NameTable {
            table: hosts
                .iter()
                .map(|(h, i)| (h.to_string(), i.clone()))
                .collect(),
        };
        LookupTable::build(&nt, &scope(search))
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn direct(t: &LookupTable, name: &str, f: Family) -> Option<Vec<IpAddr>> {
        let found = t.lookup(name, f)?;
        assert_eq!(found.cname, None, "{name}: no CNAME");
        assert_eq!(found.owner, Owner::Question);
        Some(found.ips.to_vec())
    }

    fn mesh() -> LookupTable {
        table(
            &[
                (
                    "webapp.istioinaction.svc.cluster.local",
                    info(&["10.96.0.10"], "Kubernetes", "webapp", "istioinaction"),
                ),
                (
                    "forum.forum-services.svc.cluster.local",
                    info(
                        &["10.96.0.20", "fd00::20", "not-an-ip"],
                        "Kubernetes",
                        "forum",
                        "forum-services",
                    ),
                ),
                (
                    "api.example.com",
                    info(&["240.240.0.1"], "External", "", ""),
                ),
                ("*.wild.example", info(&["240.240.0.2"], "External", "", "")),
            ],
            Some("forum-services.svc.cluster.local"),
        )
    }

    #[test]
    fn istio_alt_names() {
        let s = scope(None);
        assert_eq!(
            alt_names(
                "webapp.istioinaction.svc.cluster.local",
                &info(&[], "Kubernetes", "webapp", "istioinaction"),
                &s
            ),
            [
                "webapp.istioinaction.svc.cluster.local.",
                "webapp.istioinaction.",
                "webapp.istioinaction.svc."
            ]
        );
        assert_eq!(
            alt_names(
                "Forum.forum-services.svc.cluster.local",
                &info(&[], "Kubernetes", "forum", "forum-services"),
                &s
            ),
            [
                "forum.forum-services.svc.cluster.local.",
                "forum.forum-services.",
                "forum.",
                "forum.forum-services.svc."
            ]
        );
        // Another cluster domain, a dot-terminated host, non-Kubernetes hosts.
        assert_eq!(
            alt_names(
                "a.b.svc.other.domain",
                &info(&[], "Kubernetes", "a", "b"),
                &s
            ),
            ["a.b.svc.other.domain."]
        );
        assert!(
            alt_names(
                "a.b.svc.cluster.local.",
                &info(&[], "Kubernetes", "a", "b"),
                &s
            )
            .is_empty()
        );
        assert_eq!(
            alt_names("api.example.com", &info(&[], "External", "", ""), &s),
            ["api.example.com."]
        );
        let with_alt = NameInfo {
            alt_hosts: vec!["legacy.name".into()],
            ..info(&[], "Kubernetes", "x", "y")
        };
        assert_eq!(
            alt_names("x.y.svc.cluster.local", &with_alt, &s)
                .last()
                .unwrap(),
            "legacy.name."
        );
    }

    #[test]
    fn variants_answer_and_svc_cluster_does_not() {
        let t = mesh();
        let webapp = ips(&["10.96.0.10"]);
        for name in [
            "webapp.istioinaction.svc.cluster.local.",
            "webapp.istioinaction.",
            "webapp.istioinaction.svc.",
        ] {
            assert_eq!(direct(&t, name, Family::V4), Some(webapp.clone()), "{name}");
        }
        // Not the proxy's namespace: no short name; and never `.svc.cluster.`.
        assert_eq!(t.lookup("webapp.", Family::V4), None);
        assert_eq!(
            t.lookup("webapp.istioinaction.svc.cluster.", Family::V4),
            None
        );
        assert_eq!(
            direct(&t, "forum.", Family::V4),
            Some(ips(&["10.96.0.20"])),
            "own namespace"
        );
        assert_eq!(direct(&t, "forum.", Family::V6), Some(ips(&["fd00::20"])));
        assert_eq!(
            direct(&t, "api.example.com.", Family::V4),
            Some(ips(&["240.240.0.1"]))
        );
        // Known name, no address of that family: found, empty.
        assert_eq!(direct(&t, "api.example.com.", Family::V6), Some(vec![]));
        assert_eq!(
            t.lookup("api.example.com", Family::V4),
            None,
            "lookups are dot-terminated"
        );
        assert_eq!(t.lookup("unknown.example.", Family::V4), None);
    }

    #[test]
    fn search_domain_cnames() {
        let t = mesh();
        let found = t
            .lookup(
                "webapp.istioinaction.forum-services.svc.cluster.local.",
                Family::V4,
            )
            .unwrap();
        assert_eq!(found.cname, Some("webapp.istioinaction."));
        assert_eq!(found.owner, Owner::Name("webapp.istioinaction."));
        assert_eq!(found.ips, ips(&["10.96.0.10"]));
        let found = t
            .lookup(
                "api.example.com.forum-services.svc.cluster.local.",
                Family::V4,
            )
            .unwrap();
        assert_eq!(found.cname, Some("api.example.com."));
        // No address of the family: found, but nothing at all in the answer (Istio).
        let found = t
            .lookup(
                "api.example.com.forum-services.svc.cluster.local.",
                Family::V6,
            )
            .unwrap();
        assert_eq!((found.cname, found.ips), (None, &[][..]));
        // `forum.` + the search domain is the host itself: a direct answer, no CNAME.
        assert_eq!(
            direct(&t, "forum.forum-services.svc.cluster.local.", Family::V4),
            Some(ips(&["10.96.0.20"]))
        );
        // A name already in the search domain gets no expansion.
        assert_eq!(
            t.lookup(
                "forum.forum-services.svc.cluster.local.forum-services.svc.cluster.local.",
                Family::V4
            ),
            None
        );
        // Only the first search domain.
        let other = table(
            &[(
                "api.example.com",
                info(&["240.240.0.1"], "External", "", ""),
            )],
            None,
        );
        assert_eq!(
            other.lookup(
                "api.example.com.forum-services.svc.cluster.local.",
                Family::V4
            ),
            None
        );
    }

    #[test]
    fn wildcards() {
        let t = mesh();
        assert_eq!(
            direct(&t, "a.wild.example.", Family::V4),
            Some(ips(&["240.240.0.2"]))
        );
        assert_eq!(
            direct(&t, "a.b.wild.example.", Family::V4),
            Some(ips(&["240.240.0.2"]))
        );
        assert_eq!(t.lookup("wild.example.", Family::V4), None);
        // A search expansion of a wildcard name: CNAME to the wildcard, addresses owned by it.
        let found = t
            .lookup(
                "x.wild.example.forum-services.svc.cluster.local.",
                Family::V4,
            )
            .unwrap();
        assert_eq!(found.cname, Some("*.wild.example."));
        assert_eq!(found.owner, Owner::Name("*.wild.example."));
    }

    #[test]
    fn collisions_are_decided_not_random() {
        // `api.ns.` is both an External host and the short form of a Kubernetes service.
        let t = table(
            &[
                (
                    "api.ns.svc.cluster.local",
                    info(&["10.0.0.1"], "Kubernetes", "api", "ns"),
                ),
                ("api.ns", info(&["10.0.0.2"], "External", "", "")),
                (
                    "zz.forum-services.svc.cluster.local",
                    info(&["10.0.0.3"], "Kubernetes", "a", "forum-services"),
                ),
                (
                    "aa.forum-services.svc.cluster.local",
                    info(&["10.0.0.4"], "Kubernetes", "a", "forum-services"),
                ),
            ],
            None,
        );
        assert_eq!(
            direct(&t, "api.ns.", Family::V4),
            Some(ips(&["10.0.0.2"])),
            "exact wins"
        );
        assert_eq!(
            direct(&t, "a.", Family::V4),
            Some(ips(&["10.0.0.4"])),
            "first host wins"
        );
    }

    #[test]
    fn hosts_without_addresses_are_skipped() {
        let t = table(
            &[(
                "bad.example",
                info(&["nope", "10.0.0.0/8"], "External", "", ""),
            )],
            None,
        );
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup("bad.example.", Family::V4), None);
    }
}
