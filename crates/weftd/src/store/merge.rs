//! Pure store logic: what one config file serves, how the sources combine into one view, and what
//! applying an object over an existing one does. No I/O, no clocks (callers pass the time).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use weft_model::snapshot::Key;
use weft_model::validate::FieldError;
use weft_model::{Entry, Kind, Outcome, Resource, Source};

/// Where a served object comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file in the config directory (its path).
    File(String),
    /// Applied through the admin API.
    Api,
    /// Written by weftd's own controllers (auto-registered WorkloadEntries, ...).
    Runtime,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "file:{p}"),
            Origin::Api => f.write_str("api"),
            Origin::Runtime => f.write_str("runtime"),
        }
    }
}

/// A durable API or runtime object.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// `Api` or `Runtime`.
    pub origin: Origin,
    pub resource: Arc<Resource>,
}

/// One resource a config file serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    pub resource: Arc<Resource>,
    pub source: Source,
    /// The file's current text has this resource invalid (or unreadable): this is its last valid
    /// version, kept so that a bad edit never takes down what was working.
    pub stale: bool,
}

/// What one config file contributes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileView {
    pub served: BTreeMap<Key, Served>,
    /// Invalid documents and in-file duplicates.
    pub errors: Vec<Entry>,
}

impl FileView {
    /// Keys served from a last valid version.
    pub fn stale_keys(&self) -> impl Iterator<Item = &Key> {
        self.served.iter().filter(|(_, s)| s.stale).map(|(k, _)| k)
    }
}

/// The key an entry names, when it names one (a mesh kind and a name).
pub fn entry_key(e: &Entry) -> Option<Key> {
    let kind = Kind::ALL.into_iter().find(|k| k.name() == e.kind)?;
    if e.name.is_empty() {
        return None;
    }
    let namespace = match (kind.namespaced(), e.namespace.as_str()) {
        (false, _) => "",
        (true, "") => "default",
        (true, ns) => ns,
    };
    Some(Key {
        kind,
        namespace: namespace.to_string(),
        name: e.name.clone(),
    })
}

fn invalid_entry(source: Source, r: &Resource, message: String) -> Entry {
    Entry {
        source,
        api_version: r.api_version.clone(),
        kind: r.kind.name().to_string(),
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        outcome: Outcome::Invalid {
            errors: vec![FieldError {
                path: "metadata.name".into(),
                message,
            }],
            warnings: vec![],
        },
    }
}

/// What a config file serves now, from its freshly loaded entries (`Err` when the file cannot be
/// read) and what it served before.
///
/// Valid resources are served. An invalid resource whose kind and name can still be read keeps its
/// last valid version (marked stale); when a document (or the whole file) cannot be parsed far
/// enough to tell which resource it was, every resource the file served before and no longer
/// serves validly is kept. Resources that simply are no longer in a readable file are dropped.
pub fn file_view(file: &str, loaded: Result<Vec<Entry>, String>, previous: &FileView) -> FileView {
    let mut view = FileView::default();
    let entries = match loaded {
        Ok(entries) => entries,
        Err(message) => {
            view.errors.push(Entry {
                source: Source {
                    file: file.to_string(),
                    doc: 0,
                    item: None,
                    line: 1,
                },
                api_version: String::new(),
                kind: String::new(),
                namespace: String::new(),
                name: String::new(),
                outcome: Outcome::Invalid {
                    errors: vec![FieldError {
                        path: String::new(),
                        message,
                    }],
                    warnings: vec![],
                },
            });
            for (k, s) in &previous.served {
                view.served.insert(
                    k.clone(),
                    Served {
                        stale: true,
                        ..s.clone()
                    },
                );
            }
            return view;
        }
    };
    let mut keep_all = false;
    let mut keep = BTreeSet::new();
    for e in entries {
        match &e.outcome {
            Outcome::Valid { resource, .. } => {
                if resource.name().is_empty() {
                    view.errors.push(invalid_entry(
                        e.source.clone(),
                        resource,
                        "Required value: name is required (generateName is not supported here)"
                            .into(),
                    ));
                    continue;
                }
                let key = Key::of(resource);
                if let Some(first) = view.served.get(&key) {
                    view.errors.push(invalid_entry(
                        e.source.clone(),
                        resource,
                        format!(
                            "Duplicate value: {key} is already defined in {}; ignoring this definition",
                            first.source
                        ),
                    ));
                    continue;
                }
                // Share the previous allocation when nothing changed (cheap snapshot diffs).
                let resource = match previous.served.get(&key) {
                    Some(p) if *p.resource == **resource => p.resource.clone(),
                    _ => Arc::new((**resource).clone()),
                };
                view.served.insert(
                    key,
                    Served {
                        resource,
                        source: e.source.clone(),
                        stale: false,
                    },
                );
            }
            Outcome::Invalid { .. } => {
                match entry_key(&e) {
                    Some(k) => {
                        keep.insert(k);
                    }
                    None => keep_all = true,
                }
                view.errors.push(e);
            }
            Outcome::Skipped { .. } => {}
        }
    }
    for (k, s) in &previous.served {
        if !view.served.contains_key(k) && (keep_all || keep.contains(k)) {
            view.served.insert(
                k.clone(),
                Served {
                    stale: true,
                    ..s.clone()
                },
            );
        }
    }
    view
}

/// Every source combined.
#[derive(Debug, Default)]
pub struct Merged {
    pub resources: BTreeMap<Key, (Arc<Resource>, Origin)>,
    pub stale: BTreeSet<Key>,
    /// Conflicts: the same object defined twice.
    pub errors: Vec<Entry>,
}

/// Combines config files (in path order: the first definition of an object wins) with API and
/// runtime objects (config files take precedence; a shadowed object is reported).
pub fn merge<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a FileView)>,
    objects: &BTreeMap<Key, Stored>,
    object_file: impl Fn(&Key) -> String,
) -> Merged {
    let mut out = Merged::default();
    let mut defined_in: BTreeMap<Key, Source> = BTreeMap::new();
    for (path, view) in files {
        for (key, s) in &view.served {
            if let Some(first) = defined_in.get(key) {
                out.errors.push(invalid_entry(
                    s.source.clone(),
                    &s.resource,
                    format!(
                        "Duplicate value: {key} is already defined in {first}; ignoring this definition"
                    ),
                ));
                continue;
            }
            defined_in.insert(key.clone(), s.source.clone());
            if s.stale {
                out.stale.insert(key.clone());
            }
            out.resources.insert(
                key.clone(),
                (s.resource.clone(), Origin::File(path.to_string())),
            );
        }
    }
    for (key, o) in objects {
        if let Some(first) = defined_in.get(key) {
            out.errors.push(invalid_entry(
                Source {
                    file: object_file(key),
                    doc: 0,
                    item: None,
                    line: 1,
                },
                &o.resource,
                format!(
                    "{key} ({}) is shadowed by config file {}: config files take precedence; delete one of them",
                    o.origin, first.file
                ),
            ));
            continue;
        }
        out.resources
            .insert(key.clone(), (o.resource.clone(), o.origin.clone()));
    }
    out
}

/// What applying an object did, in kubectl's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    Created,
    Configured,
    Unchanged,
}

impl fmt::Display for ApplyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyResult::Created => "created",
            ApplyResult::Configured => "configured",
            ApplyResult::Unchanged => "unchanged",
        })
    }
}

/// Applies `incoming` over `existing`: fills the namespace, keeps server-set metadata
/// (`creationTimestamp`, set to `now` on creation; `generation`, bumped when the spec changes) and
/// the status when none is given. Returns the object to store and what happened.
pub fn stage(
    mut incoming: Resource,
    existing: Option<&Stored>,
    origin: Origin,
    now: &str,
) -> (Stored, ApplyResult) {
    if incoming.kind.namespaced() && incoming.metadata.namespace.is_empty() {
        incoming.metadata.namespace = "default".into();
    }
    let meta = &mut incoming.metadata;
    let Some(old) = existing else {
        meta.creation_timestamp = now.to_string();
        meta.generation = Some(1);
        meta.resource_version.clear();
        return (
            Stored {
                origin,
                resource: Arc::new(incoming),
            },
            ApplyResult::Created,
        );
    };
    let old_meta = &old.resource.metadata;
    meta.creation_timestamp = if old_meta.creation_timestamp.is_empty() {
        now.to_string()
    } else {
        old_meta.creation_timestamp.clone()
    };
    meta.generation = old_meta.generation;
    meta.uid = old_meta.uid.clone();
    meta.resource_version = old_meta.resource_version.clone();
    if incoming.status.is_none() {
        incoming.status = old.resource.status.clone();
    }
    if incoming == *old.resource && origin == old.origin {
        return (old.clone(), ApplyResult::Unchanged);
    }
    if incoming.spec != old.resource.spec {
        incoming.metadata.generation = Some(old_meta.generation.unwrap_or(1) + 1);
    }
    (
        Stored {
            origin,
            resource: Arc::new(incoming),
        },
        ApplyResult::Configured,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::load_str;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: NAME\nspec:\n  hosts: [HOST]\n  http:\n  - route:\n    - destination:\n        host: HOST\n";

    fn vs(name: &str, host: &str) -> String {
        VS.replace("NAME", name).replace("HOST", host)
    }

    fn view(text: &str, prev: &FileView) -> FileView {
        file_view("f.yaml", Ok(load_str("f.yaml", text)), prev)
    }

    fn hosts(v: &FileView) -> Vec<(String, String, bool)> {
        v.served
            .iter()
            .map(|(k, s)| {
                let weft_model::Spec::VirtualService(vs) = &s.resource.spec else {
                    panic!()
                };
                (k.name.clone(), vs.hosts.join(","), s.stale)
            })
            .collect()
    }

    fn key(name: &str) -> Key {
        Key {
            kind: Kind::VirtualService,
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn invalid_edit_keeps_last_valid_version() {
        let v1 = view(
            &format!("{}---\n{}", vs("a", "r1"), vs("b", "r1")),
            &FileView::default(),
        );
        assert_eq!(
            hosts(&v1),
            [
                ("a".into(), "r1".into(), false),
                ("b".into(), "r1".into(), false)
            ]
        );
        // b becomes invalid: a changes, b keeps its last valid version.
        let bad_b = vs("b", "r1").replace("host: r1", "host: r1\n      weight: -5");
        let v2 = view(&format!("{}---\n{bad_b}", vs("a", "r2")), &v1);
        assert_eq!(
            hosts(&v2),
            [
                ("a".into(), "r2".into(), false),
                ("b".into(), "r1".into(), true)
            ]
        );
        assert_eq!(v2.errors.len(), 1);
        assert!(v2.errors[0].to_string().contains("weight -5 < 0"));
        // Unchanged resources share their allocation.
        let v3 = view(&format!("{}---\n{}", vs("a", "r2"), vs("b", "r3")), &v2);
        assert!(Arc::ptr_eq(
            &v3.served[&key("a")].resource,
            &v2.served[&key("a")].resource
        ));
        assert!(v3.errors.is_empty());
        // A removed document drops its resource.
        let v4 = view(&vs("a", "r2"), &v3);
        assert_eq!(hosts(&v4), [("a".into(), "r2".into(), false)]);
    }

    #[test]
    fn unparseable_file_keeps_everything_it_served() {
        let v1 = view(
            &format!("{}---\n{}", vs("a", "r1"), vs("b", "r1")),
            &FileView::default(),
        );
        let v2 = view("a: [\n", &v1);
        assert_eq!(v2.served.len(), 2);
        assert!(v2.served.values().all(|s| s.stale));
        assert_eq!(v2.errors.len(), 1);
        let v3 = file_view("f.yaml", Err("permission denied".into()), &v1);
        assert_eq!(v3.served.len(), 2);
        assert_eq!(
            v3.errors[0].to_string(),
            "f.yaml doc 0: <unknown kind> <unnamed>: ERROR permission denied"
        );
        // A new invalid resource has nothing to keep.
        let v4 = view(&vs("c", "*"), &FileView::default());
        assert!(v4.served.is_empty());
        assert_eq!(v4.errors.len(), 1);
    }

    #[test]
    fn duplicates_first_wins() {
        let v = view(
            &format!("{}---\n{}", vs("a", "r1"), vs("a", "r2")),
            &FileView::default(),
        );
        assert_eq!(hosts(&v), [("a".into(), "r1".into(), false)]);
        assert_eq!(
            v.errors[0].to_string(),
            "f.yaml doc 1: VirtualService default/a: ERROR metadata.name: Duplicate value: VirtualService default/a is already defined in f.yaml doc 0; ignoring this definition"
        );
        let other = file_view(
            "g.yaml",
            Ok(load_str("g.yaml", &vs("a", "r9"))),
            &FileView::default(),
        );
        let api = Stored {
            origin: Origin::Api,
            resource: other.served[&key("a")].resource.clone(),
        };
        let objects: BTreeMap<Key, Stored> = [(key("a"), api)].into();
        let m = merge([("f.yaml", &v), ("g.yaml", &other)], &objects, |k| {
            format!("objects/{}", k.name)
        });
        assert_eq!(m.resources.len(), 1);
        assert_eq!(m.resources[&key("a")].1, Origin::File("f.yaml".into()));
        assert_eq!(m.errors.len(), 2);
        assert!(
            m.errors[0].to_string().starts_with(
                "g.yaml doc 0: VirtualService default/a: ERROR metadata.name: Duplicate value"
            ),
            "{}",
            m.errors[0]
        );
        assert!(
            m.errors[1]
                .to_string()
                .contains("(api) is shadowed by config file f.yaml"),
            "{}",
            m.errors[1]
        );
    }

    #[test]
    fn stage_reports_kubectl_results() {
        let r = |host: &str| match load_str("x", &vs("a", host)).remove(0).outcome {
            Outcome::Valid { resource, .. } => *resource,
            o => panic!("{o:?}"),
        };
        let (s1, res) = stage(r("r1"), None, Origin::Api, "2024-01-01T00:00:00Z");
        assert_eq!(res, ApplyResult::Created);
        assert_eq!(s1.resource.metadata.namespace, "default");
        assert_eq!(s1.resource.metadata.generation, Some(1));
        let (s2, res) = stage(r("r1"), Some(&s1), Origin::Api, "2025-01-01T00:00:00Z");
        assert_eq!(res, ApplyResult::Unchanged);
        assert!(Arc::ptr_eq(&s1.resource, &s2.resource));
        let (s3, res) = stage(r("r2"), Some(&s2), Origin::Api, "2025-01-01T00:00:00Z");
        assert_eq!(res, ApplyResult::Configured);
        assert_eq!(
            s3.resource.metadata.creation_timestamp,
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(s3.resource.metadata.generation, Some(2));
        // A runtime object taken over by the API is configured even when equal.
        let rt = Stored {
            origin: Origin::Runtime,
            ..s3.clone()
        };
        let (_, res) = stage(r("r2"), Some(&rt), Origin::Api, "x");
        assert_eq!(res, ApplyResult::Configured);
    }
}
