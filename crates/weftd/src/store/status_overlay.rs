//! Statuses weftd writes for objects it does not own the files of (a WorkloadEntry in a config
//! file gets its `Healthy` condition here): kept in `<state-dir>/status.json` and laid over the
//! object when the snapshot is built, so that editing the file never loses them and a restart
//! keeps them.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use weft_identity::store::write_atomic;
use weft_model::Kind;
use weft_model::snapshot::Key;

pub type Overlay = BTreeMap<Key, Value>;

fn encode(key: &Key) -> String {
    format!("{}/{}/{}", key.kind.name(), key.namespace, key.name)
}

fn decode(s: &str) -> Option<Key> {
    let mut parts = s.splitn(3, '/');
    let kind = Kind::lookup(parts.next()?)?;
    Some(Key {
        kind,
        namespace: parts.next()?.to_string(),
        name: parts.next()?.to_string(),
    })
}

/// Reads the overlay; a missing file is empty, a damaged one an error naming the file.
pub fn load(path: &Path) -> Result<Overlay, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Overlay::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let raw: BTreeMap<String, Value> = serde_json::from_str(&text)
        .map_err(|e| format!("{}: {e} (fix or remove the file)", path.display()))?;
    raw.into_iter()
        .map(|(k, v)| {
            decode(&k)
                .map(|key| (key, v))
                .ok_or_else(|| format!("{}: key {k:?} is not Kind/namespace/name", path.display()))
        })
        .collect()
}

pub fn save(path: &Path, overlay: &Overlay) -> io::Result<()> {
    let raw: BTreeMap<String, &Value> = overlay.iter().map(|(k, v)| (encode(k), v)).collect();
    let mut text = serde_json::to_vec_pretty(&raw).map_err(io::Error::other)?;
    text.push(b'\n');
    write_atomic(path, &text, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_names_the_file_when_damaged() {
        let dir = std::env::temp_dir().join(format!("weft-overlay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status.json");
        assert!(load(&path).unwrap().is_empty());
        let key = Key {
            kind: Kind::WorkloadEntry,
            namespace: "ns".into(),
            name: "we/1".into(),
        };
        let overlay = Overlay::from([(key.clone(), json!({"conditions": []}))]);
        save(&path, &overlay).unwrap();
        assert_eq!(load(&path).unwrap(), overlay);
        std::fs::write(&path, "{\"Nope/a/b\": 1}").unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            err.contains("status.json") && err.contains("Nope/a/b"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
