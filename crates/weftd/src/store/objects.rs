//! Durable API and runtime objects, one JSON file each under `<state-dir>/objects/`:
//! `objects/<plural>/<namespace>/<name>.json` (`_cluster` for cluster-scoped kinds), holding
//! `{"source": "api"|"runtime", "object": <Kubernetes JSON>}`; and the VIP allocations in
//! `<state-dir>/allocations.json`. Every write is atomic (temp file + fsync + rename), mode 0600.

use super::alloc::ServiceName;
use super::merge::{Origin, Stored};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_identity::store::write_atomic;
use weft_model::snapshot::Key;
use weft_model::validate::FieldError;
use weft_model::{Entry, Outcome, Source};

const CLUSTER_SCOPED_DIR: &str = "_cluster";

pub struct ObjectFiles {
    root: PathBuf,
}

fn error_entry(file: &Path, message: String) -> Entry {
    Entry {
        source: Source {
            file: file.display().to_string(),
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
    }
}

impl ObjectFiles {
    pub fn new(state_dir: &Path) -> Self {
        ObjectFiles {
            root: state_dir.join("objects"),
        }
    }

    pub fn path(&self, key: &Key) -> PathBuf {
        let ns = if key.namespace.is_empty() {
            CLUSTER_SCOPED_DIR
        } else {
            &key.namespace
        };
        self.root
            .join(key.kind.plural())
            .join(ns)
            .join(format!("{}.json", key.name))
    }

    pub fn write(&self, stored: &Stored) -> io::Result<()> {
        let source = match stored.origin {
            Origin::Runtime => "runtime",
            _ => "api",
        };
        let doc = json!({"source": source, "object": stored.resource.to_json()});
        let mut text = serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?;
        text.push(b'\n');
        write_atomic(&self.path(&Key::of(&stored.resource)), &text, 0o600)
    }

    pub fn remove(&self, key: &Key) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Loads every stored object. A file that cannot be read or no longer validates is reported
    /// (and left on disk untouched); the others load.
    pub fn load(&self) -> (BTreeMap<Key, Stored>, Vec<Entry>) {
        let mut objects = BTreeMap::new();
        let mut errors = Vec::new();
        let files = if self.root.is_dir() {
            match weft_model::load::config_files(&self.root) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(error_entry(&self.root, format!("cannot list: {e}")));
                    return (objects, errors);
                }
            }
        } else {
            vec![]
        };
        for file in files {
            match load_one(&file) {
                Ok(stored) => {
                    let key = Key::of(&stored.resource);
                    if self.path(&key) != file {
                        tracing::warn!(
                            "{}: holds {key}, expected at {}",
                            file.display(),
                            self.path(&key).display()
                        );
                    }
                    if objects.contains_key(&key) {
                        errors.push(error_entry(
                            &file,
                            format!("{key} is stored twice; ignoring this copy"),
                        ));
                        continue;
                    }
                    objects.insert(key, stored);
                }
                Err(entry) => errors.push(*entry),
            }
        }
        (objects, errors)
    }
}

fn load_one(file: &Path) -> Result<Stored, Box<Entry>> {
    let fail = |m: String| Box::new(error_entry(file, m));
    let text = std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut doc: Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| fail(format!("invalid JSON: {e}")))?;
    let origin = match doc.get("source").and_then(Value::as_str) {
        Some("api") => Origin::Api,
        Some("runtime") => Origin::Runtime,
        other => {
            return Err(fail(format!(
                "source: want \"api\" or \"runtime\", got {other:?}"
            )));
        }
    };
    let object = doc.remove("object").unwrap_or(Value::Null);
    let object_text = serde_json::to_string(&object).unwrap_or_default();
    let mut entries = weft_model::load_str(&file.display().to_string(), &object_text);
    if entries.len() != 1 {
        return Err(fail("object: want exactly one Kubernetes object".into()));
    }
    let entry = entries.remove(0);
    match entry.outcome {
        Outcome::Valid { resource, .. } => Ok(Stored {
            origin,
            resource: Arc::new(*resource),
        }),
        _ => Err(Box::new(entry)),
    }
}

/// Reads `allocations.json` (`{"ns/name": "10.96.0.12", ...}`); a missing file is empty, an
/// unreadable one is an error (allocations are never silently regenerated).
pub fn load_allocations(path: &Path) -> Result<BTreeMap<ServiceName, IpAddr>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let raw: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: {e} (want {{\"namespace/name\": \"IP\"}}; fix or remove the file)",
            path.display()
        )
    })?;
    raw.into_iter()
        .map(|(k, v)| {
            let (ns, name) = k
                .split_once('/')
                .ok_or_else(|| format!("{}: key {k:?} is not namespace/name", path.display()))?;
            let ip = v
                .parse()
                .map_err(|_| format!("{}: {k}: {v:?} is not an IP address", path.display()))?;
            Ok(((ns.to_string(), name.to_string()), ip))
        })
        .collect()
}

pub fn save_allocations(path: &Path, map: &BTreeMap<ServiceName, IpAddr>) -> io::Result<()> {
    let raw: BTreeMap<String, String> = map
        .iter()
        .map(|((ns, name), ip)| (format!("{ns}/{name}"), ip.to_string()))
        .collect();
    let mut text = serde_json::to_vec_pretty(&raw).map_err(io::Error::other)?;
    text.push(b'\n');
    write_atomic(path, &text, 0o600)
}
