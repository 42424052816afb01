//! The config directory on disk: which files are there and which changed, and a watcher that says
//! when to look again.
//!
//! Change detection is a rescan of the directory comparing each file's (inode, size, mtime, ctime)
//! with the last scan; only changed files are read again. The watcher (inotify through `notify`, on
//! the directory, recursively, so that editors that save by renaming and Kubernetes ConfigMap
//! symlink swaps are seen) only triggers rescans, after 50 ms without further events (at most 1 s
//! after the first). Rescanning instead of interpreting events makes lost or coalesced events
//! (queue overflow, rename pairs) harmless. A slow poll backs the watcher up (file systems such as
//! NFS deliver no inotify events); when the watcher cannot be set up at all, the poll runs every
//! 250 ms instead.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use weft_model::Entry;

/// Quiet time after the last event before rescanning.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// Longest a rescan waits while events keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// Backup poll while the watcher works.
pub const SAFETY_POLL: Duration = Duration::from_secs(5);
/// Poll when there is no watcher.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);

/// What tells whether a file changed without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

pub type Fingerprints = BTreeMap<PathBuf, Fingerprint>;

/// Config files under `dir` (as `weft_model::load::config_files` picks them) with their
/// fingerprints. Symlinks are followed.
pub fn scan(dir: &Path) -> std::io::Result<Fingerprints> {
    let mut out = BTreeMap::new();
    for path in weft_model::load::config_files(dir)? {
        // A file may vanish between listing and stat: it is then simply not there.
        if let Ok(m) = std::fs::metadata(&path) {
            out.insert(
                path,
                Fingerprint {
                    dev: m.dev(),
                    ino: m.ino(),
                    size: m.size(),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    ctime: (m.ctime(), m.ctime_nsec()),
                },
            );
        }
    }
    Ok(out)
}

/// Files added or changed, and files removed, between two scans.
pub fn diff(old: &Fingerprints, new: &Fingerprints) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let changed = new
        .iter()
        .filter(|(p, f)| old.get(*p) != Some(f))
        .map(|(p, _)| p.clone())
        .collect();
    let removed = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .cloned()
        .collect();
    (changed, removed)
}

/// Reads and loads one file (`Err` when it cannot be read).
pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(text).map_err(|_| "cannot read: not UTF-8 text".to_string())?;
    Ok(weft_model::load_str(&path.display().to_string(), &text))
}

/// Watches `dir` recursively; every relevant event sends `()` on `tx`. `None` (logged) when the
/// watcher cannot be set up (inotify limits, unsupported file system).
pub fn watcher(dir: &Path, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let handler = move |res: notify::Result<notify::Event>| {
        let relevant = match &res {
            Ok(ev) => !matches!(
                ev.kind,
                EventKind::Access(notify::event::AccessKind::Open(_))
                    | EventKind::Access(notify::event::AccessKind::Read)
                    | EventKind::Access(notify::event::AccessKind::Close(
                        notify::event::AccessMode::Read
                    ))
            ),
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch {}: {e}; polling every {FALLBACK_POLL:?} instead",
                dir.display()
            );
            return None;
        }
    };
    if let Err(e) = w.watch(dir, RecursiveMode::Recursive) {
        tracing::warn!(
            "cannot watch {}: {e}; polling every {FALLBACK_POLL:?} instead",
            dir.display()
        );
        return None;
    }
    Some(w)
}

/// Waits for the next reason to rescan: a burst of events settled, or the poll interval passed.
/// Returns false when the event channel closed.
pub async fn next_trigger(rx: &mut mpsc::UnboundedReceiver<()>, poll: Duration) -> bool {
    tokio::select! {
        ev = rx.recv() => {
            if ev.is_none() {
                return false;
            }
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let quiet = tokio::time::Instant::now() + DEBOUNCE;
                match tokio::time::timeout_at(quiet.min(deadline), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return false,
                    Err(_) => return true,
                }
            }
        }
        _ = tokio::time::sleep(poll) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_added_changed_removed() {
        let fp = |size| Fingerprint {
            dev: 1,
            ino: 2,
            size,
            mtime: (0, 0),
            ctime: (0, 0),
        };
        let old: Fingerprints = [("a".into(), fp(1)), ("b".into(), fp(1))].into();
        let new: Fingerprints = [
            ("a".into(), fp(1)),
            ("b".into(), fp(2)),
            ("c".into(), fp(1)),
        ]
        .into();
        let (changed, removed) = diff(&old, &new);
        assert_eq!(changed, [PathBuf::from("b"), PathBuf::from("c")]);
        assert!(removed.is_empty());
        let (changed, removed) = diff(&new, &old);
        assert_eq!(changed, [PathBuf::from("b")]);
        assert_eq!(removed, [PathBuf::from("c")]);
    }
}
