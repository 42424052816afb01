//! An immutable, versioned view of all accepted configuration: what translation reads.
//! Built by weftd's store from its sources (config directory, API objects, runtime objects) and
//! shared read-only (behind `Arc`) by every push.

use crate::kind::Kind;
use crate::resource::Resource;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `(kind, namespace, name)`; namespace is empty for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn of(r: &Resource) -> Key {
        Key {
            kind: r.kind,
            namespace: r.namespace().to_string(),
            name: r.name().to_string(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Increases with every change.
    pub version: u64,
    resources: BTreeMap<Key, Arc<Resource>>,
}

impl Snapshot {
    pub fn new(version: u64, resources: impl IntoIterator<Item = Arc<Resource>>) -> Self {
        Snapshot {
            version,
            resources: resources.into_iter().map(|r| (Key::of(&r), r)).collect(),
        }
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(&Key {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// All resources of `kind`, ordered by namespace then name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources
            .range(
                Key {
                    kind,
                    namespace: String::new(),
                    name: String::new(),
                }..,
            )
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, r)| r)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Arc<Resource>)> {
        self.resources.iter()
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Keys whose resource differs between `self` and `other` (added, removed or changed).
    pub fn changed_keys(&self, other: &Snapshot) -> Vec<Key> {
        let mut out = Vec::new();
        for (k, r) in &self.resources {
            match other.resources.get(k) {
                Some(o) if Arc::ptr_eq(o, r) || **o == **r => {}
                _ => out.push(k.clone()),
            }
        }
        for k in other.resources.keys() {
            if !self.resources.contains_key(k) {
                out.push(k.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Outcome, load_str};

    fn res(yaml: &str) -> Arc<Resource> {
        match load_str("t.yaml", yaml).remove(0).outcome {
            Outcome::Valid { resource, .. } => Arc::new(*resource),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lookup_by_kind_and_changes() {
        let a = res(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec:\n  ports: [{port: 80}]\n",
        );
        let b = res("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n");
        let s1 = Snapshot::new(1, [a.clone(), b.clone()]);
        assert_eq!(s1.of_kind(Kind::Service).count(), 1);
        assert_eq!(s1.of_kind(Kind::Namespace).count(), 1);
        assert!(s1.get(Kind::Service, "x", "a").is_some());
        let a2 = res(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec:\n  ports: [{port: 81}]\n",
        );
        let s2 = Snapshot::new(2, [a2, b]);
        let changed = s2.changed_keys(&s1);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].to_string(), "Service x/a");
    }
}
