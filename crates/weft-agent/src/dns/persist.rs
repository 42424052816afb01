//! The last name table weftd sent, kept on disk so the proxy answers mesh names from its first
//! query after a restart, even while weftd is unreachable (istio#43276).
//!
//! The file is the `NameTable` message as weftd encoded it (`<root>/var/lib/istio/dns/
//! name-table.pb`, mode 0644: service names and addresses, no secret), replaced atomically (temp
//! file, fsync, rename) and only when it changed.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use weft_proto::nds::NameTable;

pub fn path(root: &Path) -> PathBuf {
    root.join("var/lib/istio/dns/name-table.pb")
}

/// The persisted table and its encoding, if there is a readable one.
pub fn load(path: &Path) -> Option<(NameTable, Vec<u8>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(target: "dns", "{}: {e}; starting without a name table", path.display());
            return None;
        }
    };
    match prost::Message::decode(bytes.as_slice()) {
        Ok(t) => Some((t, bytes)),
        Err(e) => {
            tracing::warn!(target: "dns", "{}: not a name table ({e}); starting without one", path.display());
            None
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn save(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("name-table.pb")
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Hands tables to a background writer; only the latest is written when they come fast, and
/// none is kept in memory once written.
#[derive(Clone)]
pub struct Persister {
    latest: Arc<Latest>,
}

#[derive(Default)]
struct Latest {
    bytes: Mutex<Option<Vec<u8>>>,
    ready: Notify,
}

impl Persister {
    /// Starts the writer for `path`. `current` is what the file already holds, if known.
    pub fn start(path: PathBuf, current: Option<&[u8]>) -> Self {
        let latest = Arc::new(Latest::default());
        let mut written = current.map(digest);
        let slot = latest.clone();
        tokio::spawn(async move {
            loop {
                slot.ready.notified().await;
                let Some(bytes) = slot.bytes.lock().unwrap_or_else(|e| e.into_inner()).take()
                else {
                    continue;
                };
                let d = digest(&bytes);
                if written == Some(d) {
                    continue;
                }
                let p = path.clone();
                match tokio::task::spawn_blocking(move || save(&p, &bytes)).await {
                    Ok(Ok(())) => {
                        written = Some(d);
                        tracing::debug!(target: "dns", file = %path.display(), "name table saved");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(target: "dns", "saving the name table to {}: {e}", path.display())
                    }
                    Err(e) => tracing::warn!(target: "dns", "saving the name table: {e}"),
                }
            }
        });
        Persister { latest }
    }

    pub fn save(&self, bytes: Vec<u8>) {
        *self.latest.bytes.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
        self.latest.ready.notify_one();
    }
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weft_proto::nds::name_table::NameInfo;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-dns-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_and_load_round_trip() {
        let root = temp("persist");
        let p = path(&root);
        assert_eq!(load(&p), None, "nothing yet");
        let table = NameTable {
            table: [(
                "api.example.com".to_string(),
                NameInfo {
                    ips: vec!["240.240.0.1".into()],
                    registry: "External".into(),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
        };
        let bytes = prost::Message::encode_to_vec(&table);
        save(&p, &bytes).unwrap();
        assert_eq!(load(&p), Some((table, bytes)));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["name-table.pb"], "no temp file left");
        // A damaged file is ignored, not fatal.
        std::fs::write(&p, b"\xff\xff\xff").unwrap();
        assert_eq!(load(&p), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn persister_writes_the_latest_and_skips_unchanged() {
        let root = temp("persister");
        let p = path(&root);
        let persister = Persister::start(p.clone(), Some(b"same"));
        persister.save(b"same".to_vec());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!p.exists(), "what the file holds is not written again");
        persister.save(b"one".to_vec());
        persister.save(b"two".to_vec());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read(&p).ok().as_deref() != Some(b"two") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "latest table written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
