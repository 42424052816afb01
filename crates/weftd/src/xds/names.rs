//! The resource names one watch subscribes to, kept small: Envoy subscribes every sidecar to the
//! endpoints of every EDS cluster (1,000 names at 1,000 services), so a subscription that covers
//! most of a shared list is kept as "that list, except ..., plus ..." instead of a set of names.
//! Stored names are the shared list's own copies where it has them (interned).

use std::collections::HashSet;
use std::sync::Arc;
use weft_xds::SharedList;

pub enum Names {
    /// Exactly these names.
    Set(HashSet<Arc<str>>),
    /// Every name of `base` except `except` (all in `base`), plus `extra` (none in `base`).
    Covering {
        base: Arc<SharedList>,
        except: HashSet<Arc<str>>,
        extra: HashSet<Arc<str>>,
    },
}

impl Default for Names {
    fn default() -> Self {
        Names::Set(HashSet::new())
    }
}

fn intern(name: &str, list: Option<&SharedList>) -> Arc<str> {
    list.and_then(|l| l.intern(name))
        .unwrap_or_else(|| Arc::from(name))
}

impl Names {
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Names::Set(s) => s.contains(name),
            Names::Covering {
                base,
                except,
                extra,
            } => {
                if base.contains(name) {
                    !except.contains(name)
                } else {
                    extra.contains(name)
                }
            }
        }
    }

    /// Adds `name`; `list` (the shared list the watch holds, if any) supplies its interned copy.
    pub fn insert(&mut self, name: &str, list: Option<&SharedList>) {
        match self {
            Names::Set(s) => {
                if !s.contains(name) {
                    s.insert(intern(name, list));
                }
            }
            Names::Covering {
                base,
                except,
                extra,
            } => {
                if base.contains(name) {
                    except.remove(name);
                } else if !extra.contains(name) {
                    extra.insert(Arc::from(name));
                }
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        match self {
            Names::Set(s) => {
                s.remove(name);
            }
            Names::Covering {
                base,
                except,
                extra,
            } => match base.intern(name) {
                Some(n) => {
                    except.insert(n);
                }
                None => {
                    extra.remove(name);
                }
            },
        }
    }

    /// Every subscribed name (O(size of the base list)).
    pub fn to_set(&self) -> HashSet<Arc<str>> {
        match self {
            Names::Set(s) => s.clone(),
            Names::Covering {
                base,
                except,
                extra,
            } => base
                .items()
                .iter()
                .filter(|r| !except.contains(r.name.as_str()))
                .filter_map(|r| base.intern(&r.name))
                .chain(extra.iter().cloned())
                .collect(),
        }
    }

    /// Whether the subscription is exactly `names`.
    pub fn equals(&self, names: &HashSet<&str>) -> bool {
        match self {
            Names::Set(s) => s.len() == names.len() && names.iter().all(|n| s.contains(*n)),
            Names::Covering { .. } => {
                let mine = self.to_set();
                mine.len() == names.len() && names.iter().all(|n| mine.contains(*n))
            }
        }
    }

    /// Re-expresses a covering subscription against `list`, the successor of its base (the same
    /// names stay subscribed: new names of `list` are not, removed ones still are). O(changes)
    /// when `list` records its delta from the base, O(list) otherwise. Sets are left alone.
    pub fn rebase(&mut self, list: &Arc<SharedList>) {
        let Names::Covering {
            base,
            except,
            extra,
        } = self
        else {
            return;
        };
        if Arc::ptr_eq(base, list) {
            return;
        }
        let Some(delta) = list.delta_from(base) else {
            let all = self.to_set();
            *self = Names::Set(all);
            self.compact(list);
            return;
        };
        for n in &delta.removed {
            if !except.remove(n) {
                extra.insert(n.clone());
            }
        }
        for c in delta.updated.iter().filter(|c| c.added) {
            if !extra.remove(c.resource.name.as_str()) {
                except.insert(intern(&c.resource.name, Some(list)));
            }
        }
        *base = list.clone();
    }

    /// Picks the smaller form relative to `list` (the shared list the watch holds): covering
    /// when at least half of `list` is subscribed, a set when less than half is. O(list); called
    /// when the subscription changed, not on every push.
    pub fn compact(&mut self, list: &Arc<SharedList>) {
        match self {
            Names::Set(s) => {
                if list.is_empty() || s.len() * 2 < list.len() {
                    return;
                }
                let inside = list
                    .items()
                    .iter()
                    .filter(|r| s.contains(r.name.as_str()))
                    .count();
                if inside * 2 < list.len() {
                    return;
                }
                let except = list
                    .items()
                    .iter()
                    .filter(|r| !s.contains(r.name.as_str()))
                    .filter_map(|r| list.intern(&r.name))
                    .collect();
                let extra = s.iter().filter(|n| !list.contains(n)).cloned().collect();
                *self = Names::Covering {
                    base: list.clone(),
                    except,
                    extra,
                };
            }
            Names::Covering { base, except, .. } => {
                if !Arc::ptr_eq(base, list) {
                    self.rebase(list);
                    return;
                }
                if except.len() * 2 > base.len() {
                    *self = Names::Set(self.to_set());
                }
            }
        }
    }

    #[cfg(test)]
    pub fn is_covering(&self) -> bool {
        matches!(self, Names::Covering { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::envoy_types::pb::google::protobuf::Any;
    use weft_xds::NamedResource;

    fn list(names: &[&str]) -> Arc<SharedList> {
        SharedList::new(names.iter().map(|n| res(n, 0)).collect())
    }

    fn res(n: &str, v: u8) -> Arc<NamedResource> {
        Arc::new(NamedResource::new(
            n,
            Any {
                type_url: "t".into(),
                value: vec![v],
            },
        ))
    }

    fn sorted(n: &Names) -> Vec<String> {
        let mut v: Vec<String> = n.to_set().iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn covering_behaves_like_the_set_it_stands_for() {
        let l = list(&["a", "b", "c", "d"]);
        let mut n = Names::default();
        for x in ["a", "b", "c", "zz"] {
            n.insert(x, Some(&l));
        }
        n.compact(&l);
        assert!(n.is_covering(), "3 of 4 names: covering");
        assert_eq!(sorted(&n), ["a", "b", "c", "zz"]);
        assert!(n.contains("a") && n.contains("zz") && !n.contains("d") && !n.contains("q"));
        n.insert("d", None);
        n.remove("a");
        n.remove("zz");
        n.insert("yy", None);
        assert_eq!(sorted(&n), ["b", "c", "d", "yy"]);
        let want: HashSet<&str> = ["b", "c", "d", "yy"].into();
        assert!(n.equals(&want));
        assert!(!n.equals(&["b", "c", "d"].into()));
        // Fewer than half left: back to a set.
        n.remove("b");
        n.remove("c");
        n.remove("d");
        n.compact(&l);
        assert!(!n.is_covering());
        assert_eq!(sorted(&n), ["yy"]);
    }

    #[test]
    fn interned_names_are_the_lists_copies() {
        let l = list(&["a", "b"]);
        let mut n = Names::default();
        n.insert("a", Some(&l));
        let Names::Set(s) = &n else { panic!() };
        let stored = s.get("a").unwrap();
        assert!(Arc::ptr_eq(stored, &l.intern("a").unwrap()));
    }

    #[test]
    fn rebase_keeps_the_same_names_across_a_delta() {
        let a = list(&["a", "b", "c"]);
        let mut n = Names::default();
        for x in ["a", "b", "c", "later"] {
            n.insert(x, Some(&a));
        }
        n.compact(&a);
        assert!(n.is_covering());
        // b changes, c goes, d and later appear.
        let b = SharedList::after(
            &a,
            vec![res("a", 0), res("b", 1), res("d", 0), res("later", 0)],
        );
        assert!(b.delta_from(&a).is_some());
        n.rebase(&b);
        assert!(n.is_covering());
        assert_eq!(
            sorted(&n),
            ["a", "b", "c", "later"],
            "d is new and not subscribed; c is gone but still subscribed"
        );
        assert!(!n.contains("d") && n.contains("c") && n.contains("later"));
        // Without a delta (a list that is not the successor): the same names, the slow way.
        let other = list(&["a", "x", "y", "z", "w"]);
        n.rebase(&other);
        assert_eq!(sorted(&n), ["a", "b", "c", "later"]);
        assert!(!n.is_covering(), "1 of 5: a set");
    }
}
