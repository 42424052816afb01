//! Resource lists that every proxy of a kind shares, and what changed in them from one push
//! context to the next.
//!
//! A context builds each shared list once. When it has a predecessor, it compares the new list
//! with the predecessor's (once per push, not once per proxy): if nothing changed it hands out the
//! predecessor's list itself, otherwise a new list that records the names updated (changed or
//! added) and removed. A connection that holds exactly the predecessor's list then applies that
//! record instead of comparing every resource: a one-endpoint change costs it O(1), not O(M).

use crate::resource::NamedResource;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, Weak};

/// One shared list (outbound clusters, endpoints, outbound listeners, one namespace's routes).
#[derive(Debug)]
pub struct SharedList {
    items: Vec<Arc<NamedResource>>,
    /// name → position, built on first lookup; its keys are the list's shared copies of the names.
    index: OnceLock<HashMap<Arc<str>, usize>>,
    delta: Option<ListDelta>,
}

/// What changed between a predecessor list and this one.
#[derive(Debug)]
pub struct ListDelta {
    /// The predecessor. Weak: lists never keep older generations alive. Compared by address
    /// only, and only against a list the caller holds (so the address cannot have been reused).
    from: Weak<SharedList>,
    /// Changed or new resources, in list order.
    pub updated: Vec<Change>,
    /// Names the predecessor had and this list does not.
    pub removed: Vec<Arc<str>>,
}

#[derive(Debug)]
pub struct Change {
    pub resource: Arc<NamedResource>,
    /// The predecessor had no resource of this name.
    pub added: bool,
}

impl SharedList {
    /// A list without a predecessor.
    pub fn new(items: Vec<Arc<NamedResource>>) -> Arc<SharedList> {
        Arc::new(SharedList {
            items,
            index: OnceLock::new(),
            delta: None,
        })
    }

    /// `items` as the successor of `prev`: `prev` itself when the two are the same resources in
    /// the same order; otherwise a new list in which unchanged resources are `prev`'s (so their
    /// wire form is not encoded again) and which records what changed.
    pub fn after(prev: &Arc<SharedList>, items: Vec<Arc<NamedResource>>) -> Arc<SharedList> {
        let old: HashMap<&str, &Arc<NamedResource>> =
            prev.items.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut same_order = prev.items.len() == items.len();
        let mut updated = Vec::new();
        let items: Vec<Arc<NamedResource>> = items
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                same_order = same_order && prev.items[i].name == r.name;
                match old.get(r.name.as_str()) {
                    Some(o) if o.version == r.version => Arc::clone(o),
                    found => {
                        updated.push(Change {
                            resource: r.clone(),
                            added: found.is_none(),
                        });
                        r
                    }
                }
            })
            .collect();
        let now: HashSet<&str> = items.iter().map(|r| r.name.as_str()).collect();
        let removed: Vec<Arc<str>> = prev
            .items
            .iter()
            .filter(|r| !now.contains(r.name.as_str()))
            .map(|r| Arc::from(r.name.as_str()))
            .collect();
        if same_order && updated.is_empty() && removed.is_empty() {
            return prev.clone();
        }
        Arc::new(SharedList {
            items,
            index: OnceLock::new(),
            delta: Some(ListDelta {
                from: Arc::downgrade(prev),
                updated,
                removed,
            }),
        })
    }

    pub fn items(&self) -> &[Arc<NamedResource>] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn index(&self) -> &HashMap<Arc<str>, usize> {
        self.index.get_or_init(|| {
            self.items
                .iter()
                .enumerate()
                .map(|(i, r)| (Arc::from(r.name.as_str()), i))
                .collect()
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NamedResource>> {
        self.index().get(name).map(|i| &self.items[*i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index().contains_key(name)
    }

    /// The list's shared copy of `name`, if the list has a resource of that name (so that many
    /// connections subscribing to the same names hold one copy).
    pub fn intern(&self, name: &str) -> Option<Arc<str>> {
        self.index().get_key_value(name).map(|(k, _)| k.clone())
    }

    /// What changed since `prev`, when this list was built as `prev`'s successor.
    pub fn delta_from(&self, prev: &Arc<SharedList>) -> Option<&ListDelta> {
        self.delta
            .as_ref()
            .filter(|d| std::ptr::eq(d.from.as_ptr(), Arc::as_ptr(prev)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::envoy_types::pb::google::protobuf::Any;

    fn r(name: &str, content: u8) -> Arc<NamedResource> {
        Arc::new(NamedResource::new(
            name,
            Any {
                type_url: "t".into(),
                value: vec![content],
            },
        ))
    }

    fn names(v: &[Change]) -> Vec<(&str, bool)> {
        v.iter()
            .map(|c| (c.resource.name.as_str(), c.added))
            .collect()
    }

    #[test]
    fn an_unchanged_list_is_the_predecessor_itself() {
        let a = SharedList::new(vec![r("a", 1), r("b", 2)]);
        let b = SharedList::after(&a, vec![r("a", 1), r("b", 2)]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(b.delta_from(&a).is_none(), "no delta to itself");
    }

    #[test]
    fn records_changed_added_and_removed_and_reuses_unchanged_resources() {
        let a = SharedList::new(vec![r("a", 1), r("b", 2), r("c", 3)]);
        a.items()[0].wire(); // encoded once, kept by the successor
        let b = SharedList::after(&a, vec![r("a", 1), r("b", 9), r("d", 4)]);
        let d = b.delta_from(&a).expect("a delta from a");
        assert_eq!(names(&d.updated), [("b", false), ("d", true)]);
        assert_eq!(d.removed, [Arc::from("c")]);
        assert!(Arc::ptr_eq(&a.items()[0], &b.items()[0]), "same `a`");
        assert_eq!(b.get("b").unwrap().resource.value, [9]);
        assert!(b.contains("d") && !b.contains("c"));
        assert_eq!(&*b.intern("d").unwrap(), "d");
        assert!(b.intern("c").is_none());
        // Only against its own predecessor.
        let other = SharedList::new(vec![r("a", 1)]);
        assert!(b.delta_from(&other).is_none());
        assert!(b.delta_from(&b).is_none());
    }

    #[test]
    fn a_reordered_list_is_new_with_an_empty_delta() {
        let a = SharedList::new(vec![r("a", 1), r("b", 2)]);
        let b = SharedList::after(&a, vec![r("b", 2), r("a", 1)]);
        assert!(!Arc::ptr_eq(&a, &b));
        let d = b.delta_from(&a).unwrap();
        assert!(d.updated.is_empty() && d.removed.is_empty());
        assert_eq!(b.items()[0].name, "b");
    }

    #[test]
    fn the_predecessor_is_not_kept_alive() {
        let a = SharedList::new(vec![r("a", 1)]);
        let b = SharedList::after(&a, vec![r("a", 2)]);
        let weak = Arc::downgrade(&a);
        drop(a);
        assert!(weak.upgrade().is_none());
        assert_eq!(b.len(), 1);
    }
}
