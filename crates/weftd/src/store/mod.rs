//! weftd's config store: combines the config directory, API objects and runtime objects into one
//! immutable, versioned [`StoreSnapshot`], published on a `watch` channel.
//!
//! - Config directory (`--config-dir`, optional): YAML/JSON files, watched (see [`config_dir`]);
//!   changes apply without a restart. An invalid resource is rejected on its own and reported in
//!   `errors`; one that was valid before keeps its last valid version until the file is fixed.
//!   Removing a file removes its resources. Two definitions of one object: the first by path wins.
//! - API and runtime objects: durable JSON files in `<state-dir>/objects/` (see [`objects`]),
//!   loaded at start. `apply` is all-or-nothing. Config files take precedence over both.
//! - Service VIPs and ServiceEntry host addresses (see [`alloc`]): persisted in
//!   `<state-dir>/allocations.json`.
//!
//! Pure logic lives in [`merge`] and [`alloc`]; [`config_dir`] and [`objects`] do the I/O.

pub mod alloc;
pub mod config_dir;
pub mod merge;
pub mod objects;
pub mod status_overlay;

pub use alloc::Cidr;
pub use merge::{ApplyResult, Origin};

use config_dir::Fingerprints;
use merge::{FileView, Stored};
use objects::ObjectFiles;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use weft_model::snapshot::{Key, Snapshot};
use weft_model::{Entry, Kind, Resource};

/// Everything the store serves at one version.
#[derive(Debug, Default)]
pub struct StoreSnapshot {
    pub config: Arc<Snapshot>,
    /// VIP of every Service written without a clusterIP, by `(namespace, name)`, and the address
    /// of every ServiceEntry host that gets one automatically, by `(namespace, host)`.
    pub allocations: BTreeMap<(String, String), IpAddr>,
    /// Invalid config entries (file, document, kind, namespace/name, field and message).
    pub errors: Vec<Entry>,
    /// Where each served object comes from.
    pub origins: BTreeMap<Key, Origin>,
    /// Objects served from their last valid version because their file now has them invalid.
    pub stale: BTreeSet<Key>,
}

impl StoreSnapshot {
    pub fn version(&self) -> u64 {
        self.config.version
    }

    /// Objects of `kind` (in `namespace`, or all), with their origins, ordered by namespace and name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<(Arc<Resource>, Origin)> {
        self.config
            .of_kind(kind)
            .filter(|r| namespace.is_none_or(|ns| !kind.namespaced() || r.namespace() == ns))
            .map(|r| (r.clone(), self.origin_of(r)))
            .collect()
    }

    pub fn get(&self, key: &Key) -> Option<(Arc<Resource>, Origin)> {
        self.config
            .get(key.kind, &key.namespace, &key.name)
            .map(|r| (r.clone(), self.origin_of(r)))
    }

    fn origin_of(&self, r: &Resource) -> Origin {
        self.origins
            .get(&Key::of(r))
            .cloned()
            .unwrap_or(Origin::Api)
    }
}

/// Why a delete or runtime write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else owns the object (a config file, or the API for runtime writes).
    Conflict(String),
    /// The state directory could not be written.
    Io(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict(m) | StoreError::Io(m) => f.write_str(m),
        }
    }
}

struct State {
    config_dir: Option<PathBuf>,
    fingerprints: Fingerprints,
    /// By path as displayed (the order in which definitions win).
    files: BTreeMap<String, FileView>,
    objects: BTreeMap<Key, Stored>,
    object_errors: Vec<Entry>,
    object_files: ObjectFiles,
    allocations_path: PathBuf,
    allocations: BTreeMap<alloc::ServiceName, IpAddr>,
    cidr: Cidr,
    alloc_warnings: Vec<String>,
    /// Statuses weftd wrote for objects owned by config files.
    status_path: PathBuf,
    status_overlay: status_overlay::Overlay,
    scan_error: Option<String>,
    tx: watch::Sender<Arc<StoreSnapshot>>,
}

/// Files read by one rescan (done without holding the store's lock).
struct Changes {
    fingerprints: Fingerprints,
    changed: Vec<(PathBuf, Result<Vec<Entry>, String>)>,
    removed: Vec<PathBuf>,
}

fn read_changes(dir: &Path, old: &Fingerprints) -> Result<Changes, String> {
    let fingerprints = config_dir::scan(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (changed, removed) = config_dir::diff(old, &fingerprints);
    let changed = changed
        .into_iter()
        .map(|p| {
            let loaded = config_dir::read(&p);
            (p, loaded)
        })
        .collect();
    Ok(Changes {
        fingerprints,
        changed,
        removed,
    })
}

/// RFC 3339 UTC with seconds, as Kubernetes writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl State {
    fn apply_changes(&mut self, changes: Changes) {
        for path in changes.removed {
            let name = path.display().to_string();
            if let Some(view) = self.files.remove(&name) {
                tracing::info!(
                    "config file {name} removed: {} resources dropped",
                    view.served.len()
                );
            }
        }
        for (path, loaded) in changes.changed {
            let name = path.display().to_string();
            let empty = FileView::default();
            let previous = self.files.get(&name).unwrap_or(&empty);
            let view = merge::file_view(&name, loaded, previous);
            for e in &view.errors {
                tracing::warn!("rejected {e}");
            }
            for key in view.stale_keys() {
                tracing::warn!(
                    "{name}: still serving the last valid version of {key} until the file is fixed"
                );
            }
            tracing::info!(
                "loaded config file {name}: {} resources, {} rejected",
                view.served.len(),
                view.errors.len()
            );
            self.files.insert(name, view);
        }
        self.fingerprints = changes.fingerprints;
    }

    /// Recomputes the snapshot; publishes (with the next version) only when something changed.
    fn rebuild(&mut self) {
        let mut merged = merge::merge(
            self.files.iter().map(|(p, v)| (p.as_str(), v)),
            &self.objects,
            |k| self.object_files.path(k).display().to_string(),
        );
        self.lay_statuses(&mut merged.resources);
        let plan = alloc::plan_all(
            &self.cidr,
            merged.resources.values().map(|(r, _)| r.as_ref()),
            &self.allocations,
        );
        if plan.warnings != self.alloc_warnings {
            for w in &plan.warnings {
                tracing::warn!("{w}");
            }
            self.alloc_warnings = plan.warnings;
        }
        if plan.allocations != self.allocations {
            if let Err(e) = objects::save_allocations(&self.allocations_path, &plan.allocations) {
                tracing::error!(
                    "cannot save VIP allocations to {}: {e}",
                    self.allocations_path.display()
                );
            }
            self.allocations = plan.allocations;
        }
        let mut errors: Vec<Entry> = self
            .files
            .values()
            .flat_map(|v| v.errors.iter().cloned())
            .collect();
        errors.extend(merged.errors);
        errors.extend(self.object_errors.iter().cloned());
        let current = self.tx.borrow().clone();
        let origins: BTreeMap<Key, Origin> = merged
            .resources
            .iter()
            .map(|(k, (_, o))| (k.clone(), o.clone()))
            .collect();
        let config = Snapshot::new(
            current.version() + 1,
            merged.resources.into_values().map(|(r, _)| r),
        );
        let unchanged = current.version() > 0
            && config.changed_keys(&current.config).is_empty()
            && current.allocations == self.allocations
            && current.errors == errors
            && current.origins == origins
            && current.stale == merged.stale;
        if unchanged {
            return;
        }
        tracing::debug!(version = config.version, "config snapshot updated");
        self.tx.send_replace(Arc::new(StoreSnapshot {
            config: Arc::new(config),
            allocations: self.allocations.clone(),
            errors,
            origins,
            stale: merged.stale,
        }));
    }

    /// Puts the overlay's statuses on file-owned objects; forgets those of objects that are gone.
    fn lay_statuses(&mut self, resources: &mut BTreeMap<Key, (Arc<Resource>, Origin)>) {
        let before = self.status_overlay.len();
        self.status_overlay
            .retain(|k, _| matches!(resources.get(k), Some((_, Origin::File(_)))));
        if self.status_overlay.len() != before {
            self.save_statuses();
        }
        for (key, status) in &self.status_overlay {
            if let Some((r, _)) = resources.get_mut(key) {
                let mut with = (**r).clone();
                with.status = Some(status.clone());
                *r = Arc::new(with);
            }
        }
    }

    fn save_statuses(&self) {
        if let Err(e) = status_overlay::save(&self.status_path, &self.status_overlay) {
            tracing::error!(
                "cannot save statuses to {}: {e}",
                self.status_path.display()
            );
        }
    }

    /// Replaces an object's status (`None` removes it), whoever owns the object: the status of a
    /// file-owned object is kept beside it. `Ok(false)` when there is no such object.
    fn set_status(&mut self, key: &Key, status: Option<Value>) -> Result<bool, StoreError> {
        if let Some(stored) = self.objects.get(key) {
            if stored.resource.status == status {
                return Ok(true);
            }
            let mut r = (*stored.resource).clone();
            r.status = status;
            let new = Stored {
                origin: stored.origin.clone(),
                resource: Arc::new(r),
            };
            self.commit(vec![(key.clone(), Some(new))])
                .map_err(StoreError::Io)?;
        } else if self.owner_file(key).is_some() {
            let old = self.status_overlay.get(key);
            if old == status.as_ref() {
                return Ok(true);
            }
            let previous = old.cloned();
            match &status {
                Some(s) => self.status_overlay.insert(key.clone(), s.clone()),
                None => self.status_overlay.remove(key),
            };
            if let Err(e) = status_overlay::save(&self.status_path, &self.status_overlay) {
                match previous {
                    Some(p) => self.status_overlay.insert(key.clone(), p),
                    None => self.status_overlay.remove(key),
                };
                return Err(StoreError::Io(format!(
                    "cannot write {}: {e}",
                    self.status_path.display()
                )));
            }
        } else {
            return Ok(false);
        }
        self.rebuild();
        Ok(true)
    }

    fn owner_file(&self, key: &Key) -> Option<String> {
        match self.tx.borrow().origins.get(key) {
            Some(Origin::File(p)) => Some(p.clone()),
            _ => None,
        }
    }

    /// Writes (`Some`) or removes (`None`) object files, all or none, then updates the map.
    fn commit(&mut self, changes: Vec<(Key, Option<Stored>)>) -> Result<(), String> {
        for (i, (key, new)) in changes.iter().enumerate() {
            let result = match new {
                Some(s) => self.object_files.write(s),
                None => self.object_files.remove(key),
            };
            if let Err(e) = result {
                for (done, _) in &changes[..i] {
                    let _ = match self.objects.get(done) {
                        Some(old) => self.object_files.write(old),
                        None => self.object_files.remove(done),
                    };
                }
                return Err(format!(
                    "cannot write {}: {e}",
                    self.object_files.path(key).display()
                ));
            }
        }
        for (key, new) in changes {
            match new {
                Some(s) => self.objects.insert(key, s),
                None => self.objects.remove(&key),
            };
        }
        Ok(())
    }

    fn apply(
        &mut self,
        resources: Vec<Resource>,
        now: &str,
    ) -> Result<Vec<ApplyResult>, Vec<String>> {
        let mut errors = Vec::new();
        let mut staged: BTreeMap<Key, Stored> = BTreeMap::new();
        let mut dirty = BTreeSet::new();
        let mut results = Vec::new();
        for r in resources {
            if r.name().is_empty() {
                errors.push(format!(
                    "{} {}: metadata.name: Required value: name is required (apply does not support generateName)",
                    r.kind,
                    r.metadata.generate_name
                ));
                continue;
            }
            let key = Key::of(&r);
            if let Some(file) = self.owner_file(&key) {
                errors.push(format!(
                    "{key} is owned by config file {file}: edit the file instead"
                ));
                continue;
            }
            let existing = staged.get(&key).or_else(|| self.objects.get(&key));
            let (stored, result) = merge::stage(r, existing, Origin::Api, now);
            if result != ApplyResult::Unchanged {
                dirty.insert(key.clone());
            }
            staged.insert(key, stored);
            results.push(result);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let changes = staged
            .into_iter()
            .filter(|(k, _)| dirty.contains(k))
            .map(|(k, s)| (k, Some(s)))
            .collect();
        self.commit(changes).map_err(|e| vec![e])?;
        self.rebuild();
        Ok(results)
    }

    fn upsert_runtime(&mut self, r: Resource, now: &str) -> Result<ApplyResult, StoreError> {
        if r.name().is_empty() {
            return Err(StoreError::Conflict(format!(
                "{}: metadata.name is required",
                r.kind
            )));
        }
        let key = Key::of(&r);
        if let Some(file) = self.owner_file(&key) {
            return Err(StoreError::Conflict(format!(
                "{key} is owned by config file {file}"
            )));
        }
        let existing = self.objects.get(&key);
        if existing.is_some_and(|s| s.origin == Origin::Api) {
            return Err(StoreError::Conflict(format!("{key} is owned by the API")));
        }
        let (stored, result) = merge::stage(r, existing, Origin::Runtime, now);
        if result != ApplyResult::Unchanged {
            self.commit(vec![(key, Some(stored))])
                .map_err(StoreError::Io)?;
            self.rebuild();
        }
        Ok(result)
    }

    fn delete(&mut self, key: &Key, runtime_only: bool) -> Result<bool, StoreError> {
        match self.objects.get(key) {
            Some(s) if runtime_only && s.origin != Origin::Runtime => {
                Err(StoreError::Conflict(format!("{key} is owned by the API")))
            }
            Some(_) => {
                self.commit(vec![(key.clone(), None)])
                    .map_err(StoreError::Io)?;
                self.rebuild();
                Ok(true)
            }
            None => match self.owner_file(key) {
                Some(file) => Err(StoreError::Conflict(format!(
                    "{key} is owned by config file {file}: remove it from the file instead"
                ))),
                None => Ok(false),
            },
        }
    }
}

struct Inner {
    state: Mutex<State>,
    rx: watch::Receiver<Arc<StoreSnapshot>>,
}

/// A handle on the store (cheap to clone).
#[derive(Clone)]
pub struct StoreHandle {
    inner: Arc<Inner>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StoreHandle {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> T {
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || f(&mut inner.lock()));
        match task.await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<StoreSnapshot>> {
        self.inner.rx.clone()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<StoreSnapshot> {
        self.inner.rx.borrow().clone()
    }

    pub fn get(&self, key: &Key) -> Option<(Arc<Resource>, Origin)> {
        self.snapshot().get(key)
    }

    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<(Arc<Resource>, Origin)> {
        self.snapshot().list(kind, namespace)
    }

    /// Applies API objects, all or nothing: every problem is returned and nothing is written, or
    /// every object is written. One result per input, in order.
    pub async fn apply(&self, resources: Vec<Resource>) -> Result<Vec<ApplyResult>, Vec<String>> {
        let now = rfc3339(SystemTime::now());
        self.blocking(move |s| s.apply(resources, &now)).await
    }

    /// Deletes an API or runtime object: `Ok(false)` when there is none; a conflict when the
    /// object comes from a config file.
    pub async fn delete(&self, key: Key) -> Result<bool, StoreError> {
        self.blocking(move |s| s.delete(&key, false)).await
    }

    /// Creates or updates an object owned by weftd's controllers.
    pub async fn upsert_runtime(&self, r: Resource) -> Result<ApplyResult, StoreError> {
        let now = rfc3339(SystemTime::now());
        self.blocking(move |s| s.upsert_runtime(r, &now)).await
    }

    /// Deletes a runtime object (a conflict when the API owns it).
    pub async fn delete_runtime(&self, key: Key) -> Result<bool, StoreError> {
        self.blocking(move |s| s.delete(&key, true)).await
    }

    /// Replaces an object's status (see [`State::set_status`]).
    pub async fn set_status(&self, key: Key, status: Option<Value>) -> Result<bool, StoreError> {
        self.blocking(move |s| s.set_status(&key, status)).await
    }

    /// Looks at the config directory now (the watcher does this by itself).
    pub async fn rescan(&self) {
        let Some((dir, old)) = ({
            let s = self.inner.lock();
            s.config_dir.clone().map(|d| (d, s.fingerprints.clone()))
        }) else {
            return;
        };
        let read = tokio::task::spawn_blocking(move || read_changes(&dir, &old)).await;
        let result = read.unwrap_or_else(|e| Err(format!("rescan failed: {e}")));
        self.blocking(move |s| {
            // The 5 s safety poll usually finds nothing: then the snapshot cannot have changed,
            // and rebuilding it (a merge of everything) is skipped.
            let changed = match result {
                Ok(changes) => {
                    let recovered = s.scan_error.take().is_some();
                    if recovered {
                        tracing::info!("config directory readable again");
                    }
                    let found = !changes.changed.is_empty() || !changes.removed.is_empty();
                    s.apply_changes(changes);
                    found || recovered
                }
                Err(e) => {
                    // Keep serving what was loaded; say so once.
                    let new_error = s.scan_error.as_deref() != Some(e.as_str());
                    if new_error {
                        tracing::error!(
                            "cannot scan the config directory, keeping the current config: {e}"
                        );
                        s.scan_error = Some(e);
                    }
                    new_error
                }
            };
            if changed {
                s.rebuild();
            }
        })
        .await
    }
}

/// Opens the store: loads the config directory and the durable objects and allocations, publishes
/// the first snapshot (version 1) and starts watching the config directory.
pub async fn start(
    config_dir: Option<PathBuf>,
    state_dir: PathBuf,
    service_cidr: Cidr,
) -> Result<(StoreHandle, watch::Receiver<Arc<StoreSnapshot>>), String> {
    if let Some(dir) = &config_dir {
        let meta =
            std::fs::metadata(dir).map_err(|e| format!("--config-dir {}: {e}", dir.display()))?;
        if meta.is_dir()
            && let (Ok(c), Ok(s)) = (dir.canonicalize(), state_dir.canonicalize())
            && s.starts_with(&c)
        {
            return Err(format!(
                "--config-dir {} must not contain --state-dir {}",
                dir.display(),
                state_dir.display()
            ));
        }
    }
    // Watch before the first scan, so that nothing changed in between is missed.
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = config_dir
        .as_deref()
        .map(|dir| (dir.to_path_buf(), config_dir::watcher(dir, tx.clone())));
    let handle = tokio::task::spawn_blocking(move || open(config_dir, &state_dir, service_cidr))
        .await
        .map_err(|e| format!("opening the store: {e}"))??;
    if let Some((dir, watcher)) = watcher {
        tokio::spawn(watch_dir(
            Arc::downgrade(&handle.inner),
            dir,
            watcher,
            (tx, rx),
        ));
    }
    let rx = handle.subscribe();
    Ok((handle, rx))
}

pub(crate) fn open(
    config_dir: Option<PathBuf>,
    state_dir: &Path,
    cidr: Cidr,
) -> Result<StoreHandle, String> {
    let allocations_path = state_dir.join("allocations.json");
    let allocations = objects::load_allocations(&allocations_path)?;
    let object_files = ObjectFiles::new(state_dir);
    let (objects, object_errors) = object_files.load();
    let status_path = state_dir.join("status.json");
    let status_overlay = status_overlay::load(&status_path)?;
    for e in &object_errors {
        tracing::error!("cannot load stored object: {e}");
    }
    let (tx, rx) = watch::channel(Arc::new(StoreSnapshot::default()));
    let mut state = State {
        config_dir: config_dir.clone(),
        fingerprints: Fingerprints::new(),
        files: BTreeMap::new(),
        objects,
        object_errors,
        object_files,
        allocations_path,
        allocations,
        cidr,
        alloc_warnings: Vec::new(),
        status_path,
        status_overlay,
        scan_error: None,
        tx,
    };
    if let Some(dir) = &config_dir {
        let changes = read_changes(dir, &Fingerprints::new())?;
        state.apply_changes(changes);
    }
    state.rebuild();
    let snap = rx.borrow().clone();
    tracing::info!(
        "config store ready: {} resources ({} API/runtime objects), {} rejected, {} VIPs allocated from {cidr}",
        snap.config.len(),
        state.objects.len(),
        snap.errors.len(),
        snap.allocations.len()
    );
    Ok(StoreHandle {
        inner: Arc::new(Inner {
            state: Mutex::new(state),
            rx,
        }),
    })
}

fn dir_inode(dir: &Path) -> Option<u64> {
    Some(std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(dir).ok()?,
    ))
}

/// Rescans the config directory whenever the watcher (or the backup poll) says so, until the
/// store is dropped. Re-arms the watcher when the directory is replaced.
async fn watch_dir(
    inner: Weak<Inner>,
    dir: PathBuf,
    mut watcher: Option<notify::RecommendedWatcher>,
    (tx, mut rx): (mpsc::UnboundedSender<()>, mpsc::UnboundedReceiver<()>),
) {
    let mut watched = dir_inode(&dir);
    loop {
        let poll = if watcher.is_some() {
            config_dir::SAFETY_POLL
        } else {
            config_dir::FALLBACK_POLL
        };
        if !config_dir::next_trigger(&mut rx, poll).await {
            return;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        StoreHandle { inner }.rescan().await;
        let now = dir_inode(&dir);
        if now.is_some() && now != watched {
            tracing::info!(
                "config directory {} was replaced; watching it again",
                dir.display()
            );
            watched = now;
            watcher = config_dir::watcher(&dir, tx.clone());
        }
    }
}

#[cfg(test)]
mod tests;
