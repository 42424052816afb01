//! Host names as Istio compares them (`host.Name`): exact names, `*.suffix` wildcards and `*`.

/// `host.Name.IsWildCarded`.
pub(crate) fn is_wildcard(h: &str) -> bool {
    h.starts_with('*')
}

/// `host.Name.Matches`: the two names overlap (either covers the other).
pub(crate) fn matches(n: &str, o: &str) -> bool {
    match (is_wildcard(n), is_wildcard(o)) {
        (true, true) if n.len() < o.len() => o[1..].ends_with(&n[1..]),
        (true, true) => n[1..].ends_with(&o[1..]),
        (true, false) => o.ends_with(&n[1..]),
        (false, true) => n.ends_with(&o[1..]),
        (false, false) => n == o,
    }
}

/// `host.MoreSpecific`: exact names before wildcards, then longer first, then alphabetical.
pub(crate) fn more_specific(a: &str, b: &str) -> bool {
    match (is_wildcard(a), is_wildcard(b)) {
        (true, false) => false,
        (false, true) => true,
        _ if a.len() == b.len() => a < b,
        _ => a.len() > b.len(),
    }
}

/// `model.MostSpecificHostMatch`: the entry for `needle` itself, else the most specific wildcard
/// covering it. `exact` holds non-wildcard keys, `wildcards` the `*...` ones.
pub(crate) fn most_specific_match<'a, V>(
    needle: &str,
    exact: &'a [(String, V)],
    wildcards: &'a [(String, V)],
) -> Option<&'a V> {
    let find = |list: &'a [(String, V)], h: &str| list.iter().find(|(k, _)| k == h);
    let own = if is_wildcard(needle) {
        find(wildcards, needle)
    } else {
        find(exact, needle)
    };
    if let Some((_, v)) = own {
        return Some(v);
    }
    let tail = if is_wildcard(needle) {
        &needle[1..]
    } else {
        needle
    };
    let mut best: Option<&'a (String, V)> = None;
    for entry in wildcards.iter().filter(|(h, _)| tail.ends_with(&h[1..])) {
        if best.is_none_or(|(b, _)| more_specific(&entry.0, b)) {
            best = Some(entry);
        }
    }
    best.map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_istio() {
        assert!(matches("foo.com", "foo.com"));
        assert!(!matches("foo.com", "bar.com"));
        assert!(matches("*.com", "foo.com"));
        assert!(matches("bar.com", "*.com"));
        assert!(!matches("*.foo.com", "foo.com"));
        assert!(matches("*", "foo.com"));
        assert!(matches("*", "*.com"));
        assert!(matches("*.a.com", "*.com"));
    }

    #[test]
    fn most_specific_wildcard_wins() {
        let exact = vec![("a.b.com".to_string(), 1)];
        let wild = vec![
            ("*".to_string(), 2),
            ("*.com".to_string(), 3),
            ("*.b.com".to_string(), 4),
        ];
        assert_eq!(most_specific_match("a.b.com", &exact, &wild), Some(&1));
        assert_eq!(most_specific_match("c.b.com", &exact, &wild), Some(&4));
        assert_eq!(most_specific_match("c.org", &exact, &wild), Some(&2));
        assert_eq!(most_specific_match("*.b.com", &exact, &wild), Some(&4));
        assert_eq!(most_specific_match("*.x.b.com", &exact, &wild), Some(&4));
        assert_eq!(most_specific_match("x.org", &exact, &wild[1..]), None);
        assert!(more_specific("a.com", "*.a.com"));
        assert!(more_specific("*.a.com", "*.com"));
        assert!(more_specific("ab.com", "ac.com"));
    }
}
