//! Store tests against real directories: the watcher, durable objects, allocations, restarts.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use weft_model::{Outcome, Spec};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "weftd-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CIDR: &str = "10.96.0.0/16";

fn vs(name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination:\n        host: {host}\n"
    )
}

fn svc(name: &str, cluster_ip: Option<&str>) -> String {
    let ip = cluster_ip
        .map(|ip| format!("  clusterIP: {ip}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n{ip}  ports:\n  - port: 80\n"
    )
}

fn resources(yaml: &str) -> Vec<Resource> {
    weft_model::load_str("t.yaml", yaml)
        .into_iter()
        .map(|e| match e.outcome {
            Outcome::Valid { resource, .. } => *resource,
            o => panic!("{o:?}"),
        })
        .collect()
}

fn key(kind: Kind, ns: &str, name: &str) -> Key {
    Key {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

fn vs_hosts(s: &StoreSnapshot, name: &str) -> Option<String> {
    let r = s.config.get(Kind::VirtualService, "default", name)?;
    let Spec::VirtualService(v) = &r.spec else {
        panic!()
    };
    Some(v.hosts.join(","))
}

/// Waits (at most 4 s) until `pred` holds for the published snapshot.
async fn until(
    rx: &mut watch::Receiver<Arc<StoreSnapshot>>,
    what: &str,
    pred: impl Fn(&StoreSnapshot) -> bool,
) -> Arc<StoreSnapshot> {
    let wait = async {
        loop {
            let s = rx.borrow_and_update().clone();
            if pred(&s) {
                return s;
            }
            rx.changed().await.unwrap();
        }
    };
    // Shorter than the backup poll (config_dir::SAFETY_POLL): changes must be seen by the watcher.
    match tokio::time::timeout(Duration::from_secs(4), wait).await {
        Ok(s) => s,
        Err(_) => panic!("timed out waiting for {what}: {:#?}", rx.borrow()),
    }
}

fn write_via_rename(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.swp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test]
async fn config_dir_changes_apply_without_restart() {
    let conf = TempDir::new("conf");
    let state = TempDir::new("state");
    std::fs::write(conf.0.join("a.yaml"), vs("a", "r1")).unwrap();
    let (store, mut rx) = start(Some(conf.0.clone()), state.0.clone(), CIDR.parse().unwrap())
        .await
        .unwrap();
    let s1 = rx.borrow_and_update().clone();
    assert_eq!(s1.version(), 1);
    assert_eq!(vs_hosts(&s1, "a").as_deref(), Some("r1"));
    let file_a = conf.0.join("a.yaml").display().to_string();
    assert_eq!(
        s1.origins[&key(Kind::VirtualService, "default", "a")],
        Origin::File(file_a.clone())
    );

    // New file, in a subdirectory.
    std::fs::create_dir(conf.0.join("sub")).unwrap();
    std::fs::write(conf.0.join("sub/b.yaml"), vs("b", "r1")).unwrap();
    until(&mut rx, "b added", |s| vs_hosts(s, "b").is_some()).await;

    // Edit by rename, as editors do.
    write_via_rename(&conf.0, "a.yaml", &vs("a", "r2"));
    let s = until(&mut rx, "a edited", |s| {
        vs_hosts(s, "a").as_deref() == Some("r2")
    })
    .await;
    assert!(s.version() > s1.version());
    assert!(s.errors.is_empty());

    // An invalid edit keeps the last valid version and reports the error.
    let bad = vs("a", "r3").replace("host: r3", "host: r3\n      weight: -5");
    write_via_rename(&conf.0, "a.yaml", &bad);
    let s = until(&mut rx, "a rejected", |s| !s.errors.is_empty()).await;
    assert_eq!(vs_hosts(&s, "a").as_deref(), Some("r2"));
    assert!(s.stale.contains(&key(Kind::VirtualService, "default", "a")));
    assert!(
        s.errors[0].to_string().starts_with(&format!(
            "{file_a} doc 0: VirtualService default/a: ERROR spec.http[0].route[0].weight"
        )),
        "{}",
        s.errors[0]
    );
    assert_eq!(store.snapshot().errors.len(), 1);

    // Fixing it clears the error.
    std::fs::write(conf.0.join("a.yaml"), vs("a", "r4")).unwrap();
    let s = until(&mut rx, "a fixed", |s| {
        vs_hosts(s, "a").as_deref() == Some("r4")
    })
    .await;
    assert!(s.errors.is_empty() && s.stale.is_empty());

    // A second definition in a later file is an error; the first by path wins.
    std::fs::write(conf.0.join("z.yaml"), vs("a", "other")).unwrap();
    let s = until(&mut rx, "duplicate reported", |s| !s.errors.is_empty()).await;
    assert_eq!(vs_hosts(&s, "a").as_deref(), Some("r4"));
    assert!(
        s.errors[0].to_string().contains("already defined in"),
        "{}",
        s.errors[0]
    );
    std::fs::remove_file(conf.0.join("z.yaml")).unwrap();

    // Removing a file removes its resources.
    std::fs::remove_file(conf.0.join("sub/b.yaml")).unwrap();
    let s = until(&mut rx, "b removed", |s| {
        vs_hosts(s, "b").is_none() && s.errors.is_empty()
    })
    .await;
    assert_eq!(s.config.len(), 1);

    // Objects from files cannot be changed or deleted through the API.
    let err = store.apply(resources(&vs("a", "api"))).await.unwrap_err();
    assert_eq!(
        err,
        [format!(
            "VirtualService default/a is owned by config file {file_a}: edit the file instead"
        )]
    );
    match store
        .delete(key(Kind::VirtualService, "default", "a"))
        .await
    {
        Err(StoreError::Conflict(m)) => assert!(m.contains(&file_a), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn api_objects_and_allocations_survive_restart() {
    let state = TempDir::new("state");
    let cidr: Cidr = CIDR.parse().unwrap();
    let (store, rx) = start(None, state.0.clone(), cidr).await.unwrap();
    let batch = format!(
        "{}---\n{}---\n{}---\n{}",
        vs("a", "r1"),
        svc("web", None),
        svc("db", Some("None")),
        svc("fixed", Some("10.96.7.7"))
    );
    let results = store.apply(resources(&batch)).await.unwrap();
    assert_eq!(results, [ApplyResult::Created; 4]);
    let s = rx.borrow().clone();
    assert_eq!(s.config.len(), 4);
    let vip = s.allocations[&("shop".to_string(), "web".to_string())];
    assert!(cidr.contains(vip));
    assert_eq!(s.allocations.len(), 1, "headless and fixed get no VIP");
    let (a, origin) = store
        .get(&key(Kind::VirtualService, "default", "a"))
        .unwrap();
    assert_eq!(origin, Origin::Api);
    let created = a.metadata.creation_timestamp.clone();
    assert_eq!(created.len(), 20, "{created}");

    // Re-apply: unchanged; a change: configured (timestamp kept).
    let results = store.apply(resources(&vs("a", "r1"))).await.unwrap();
    assert_eq!(results, [ApplyResult::Unchanged]);
    let version = rx.borrow().version();
    let results = store.apply(resources(&vs("a", "r2"))).await.unwrap();
    assert_eq!(results, [ApplyResult::Configured]);
    assert!(rx.borrow().version() > version);
    let (a, _) = store
        .get(&key(Kind::VirtualService, "default", "a"))
        .unwrap();
    assert_eq!(a.metadata.creation_timestamp, created);

    // One bad object in a batch: nothing is applied, every error is returned.
    let mut bad = resources(&format!("{}---\n{}", vs("c", "r1"), vs("d", "r1")));
    bad[0].metadata.name.clear();
    bad[1].metadata.name.clear();
    assert_eq!(store.apply(bad).await.unwrap_err().len(), 2);
    assert!(
        store
            .get(&key(Kind::VirtualService, "default", "c"))
            .is_none()
    );

    // Runtime objects: flagged in their file, refused over API objects.
    let we = resources(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm-1, namespace: shop}\nspec: {address: 10.0.0.5}\n",
    );
    assert_eq!(
        store.upsert_runtime(we[0].clone()).await.unwrap(),
        ApplyResult::Created
    );
    let we_file = state.0.join("objects/workloadentries/shop/vm-1.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&we_file).unwrap()).unwrap();
    assert_eq!(doc["source"], "runtime");
    assert_eq!(doc["object"]["spec"]["address"], "10.0.0.5");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&we_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(matches!(
        store
            .upsert_runtime(resources(&vs("a", "x")).remove(0))
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Delete: found, then not found.
    assert_eq!(
        store.delete(key(Kind::Service, "shop", "db")).await,
        Ok(true)
    );
    assert_eq!(
        store.delete(key(Kind::Service, "shop", "db")).await,
        Ok(false)
    );
    drop((store, rx));

    // Restart: objects, sources and the VIP are all still there.
    let (store, rx) = start(None, state.0.clone(), cidr).await.unwrap();
    let s = rx.borrow().clone();
    assert_eq!(s.config.len(), 4, "{:?}", s.origins);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.allocations[&("shop".to_string(), "web".to_string())], vip);
    assert_eq!(vs_hosts(&s, "a").as_deref(), Some("r2"));
    assert_eq!(
        s.origins[&key(Kind::WorkloadEntry, "shop", "vm-1")],
        Origin::Runtime
    );
    assert_eq!(
        store.apply(resources(&vs("a", "r2"))).await.unwrap(),
        [ApplyResult::Unchanged]
    );

    // The Service goes: its VIP is released (and persisted as released).
    assert_eq!(
        store.delete(key(Kind::Service, "shop", "web")).await,
        Ok(true)
    );
    assert!(rx.borrow().allocations.is_empty());
    let saved = objects::load_allocations(&state.0.join("allocations.json")).unwrap();
    assert!(saved.is_empty());
    assert_eq!(
        store
            .delete_runtime(key(Kind::WorkloadEntry, "shop", "vm-1"))
            .await,
        Ok(true)
    );
    assert!(!we_file.exists());
}

#[tokio::test]
async fn file_shadows_api_object_and_unreadable_objects_are_reported() {
    let conf = TempDir::new("conf");
    let state = TempDir::new("state");
    let (store, _rx) = start(None, state.0.clone(), CIDR.parse().unwrap())
        .await
        .unwrap();
    store.apply(resources(&vs("a", "api"))).await.unwrap();
    drop(store);
    std::fs::write(conf.0.join("a.yaml"), vs("a", "file")).unwrap();
    let broken = state.0.join("objects/virtualservices/default/broken.json");
    std::fs::write(&broken, "{not json").unwrap();
    let (store, rx) = start(Some(conf.0.clone()), state.0.clone(), CIDR.parse().unwrap())
        .await
        .unwrap();
    let s = rx.borrow().clone();
    assert_eq!(vs_hosts(&s, "a").as_deref(), Some("file"));
    let errors: Vec<String> = s.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("(api) is shadowed by config file"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with(&broken.display().to_string()),
        "{errors:?}"
    );
    // The API copy can still be deleted.
    assert_eq!(
        store
            .delete(key(Kind::VirtualService, "default", "a"))
            .await,
        Ok(true)
    );
    assert_eq!(store.snapshot().errors.len(), 1);
}

#[test]
fn resources_round_trip_through_kubernetes_json() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/corpus/istio-samples");
    let mut n = 0;
    for e in weft_model::load_path(&dir).unwrap() {
        let Outcome::Valid { resource, .. } = e.outcome else {
            continue;
        };
        let json = serde_json::to_string(&resource.to_json()).unwrap();
        let back = resources(&json).remove(0);
        assert_eq!(back, *resource, "{json}");
        n += 1;
    }
    assert!(n > 50, "{n}");
}

#[test]
fn formats_rfc3339() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
        "2024-02-29T23:59:59Z"
    );
}

#[tokio::test]
async fn service_entry_addresses_survive_restart_and_are_freed() {
    let state = TempDir::new("se-alloc");
    let cidr: Cidr = CIDR.parse().unwrap();
    let se = |name: &str, host: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  hosts: [{host}]\n  resolution: DNS\n  ports:\n  - {{number: 443, name: tls, protocol: TLS}}\n"
        )
    };
    let host = |h: &str| ("shop".to_string(), h.to_string());
    let (store, rx) = start(None, state.0.clone(), cidr).await.unwrap();
    let batch = format!(
        "{}---\n{}",
        se("a", "a.example.com"),
        se("b", "b.example.com")
    );
    store.apply(resources(&batch)).await.unwrap();
    let first = rx.borrow().allocations.clone();
    assert_eq!(first[&host("a.example.com")].to_string(), "240.240.0.1");
    assert_eq!(first[&host("b.example.com")].to_string(), "240.240.0.2");
    drop((store, rx));

    // Restart: the same addresses, from allocations.json.
    let saved = objects::load_allocations(&state.0.join("allocations.json")).unwrap();
    assert_eq!(saved, first);
    let (store, rx) = start(None, state.0.clone(), cidr).await.unwrap();
    assert_eq!(rx.borrow().allocations, first);

    // The entry goes: its address is freed, in memory and on disk; the other keeps its own.
    assert_eq!(
        store.delete(key(Kind::ServiceEntry, "shop", "a")).await,
        Ok(true)
    );
    let now = rx.borrow().allocations.clone();
    assert!(!now.contains_key(&host("a.example.com")));
    assert_eq!(now[&host("b.example.com")].to_string(), "240.240.0.2");
    let saved = objects::load_allocations(&state.0.join("allocations.json")).unwrap();
    assert_eq!(saved, now);
}
