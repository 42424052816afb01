//! A context built from its predecessor (`PushContext::next`): shared lists that did not change
//! are the predecessor's, changed ones record what changed, and `own_unchanged` is only ever true
//! when the proxy's own resources are in fact the same.

mod common;

use common::snapshot;
use serde_json::{Map, Value};
use std::sync::Arc;
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, NamedResource, Proxy, PushContext};

const URLS: [&str; 4] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
];

fn service(name: &str, ns: &str, app: &str, port: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    app: {app}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: 8080\n---\n"
    )
}

fn entry(name: &str, ns: &str, ip: &str, app: &str, weight: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  address: {ip}\n  labels:\n    app: {app}\n  weight: {weight}\n  serviceAccount: {app}\n---\n"
    )
}

fn base() -> String {
    [
        service("web", "shop", "web", 80),
        service("db", "shop", "db", 5432),
        service("x", "other", "x", 80),
        entry("web-1", "shop", "10.0.0.1", "web", 1),
        entry("db-1", "shop", "10.0.0.2", "db", 1),
        entry("x-1", "other", "10.0.1.1", "x", 1),
    ]
    .concat()
}

fn ctx(yaml: &str) -> PushContext {
    PushContext::new(snapshot(yaml), &Allocations::new(), &MeshConfig::default())
}

fn next(prev: &PushContext, yaml: &str) -> PushContext {
    PushContext::next(
        prev,
        snapshot(yaml),
        &Allocations::new(),
        &MeshConfig::default(),
    )
}

fn proxies() -> Vec<Proxy> {
    let mut named = Map::new();
    named.insert("WORKLOAD_ENTRY".into(), Value::String("web-1".into()));
    vec![
        Proxy::sidecar("web-1", "shop", "10.0.0.1", &[]),
        Proxy::sidecar("db-1", "shop", "10.0.0.2", &[]),
        Proxy::sidecar("x-1", "other", "10.0.1.1", &[]),
        // Runs as web-1 by metadata, at another address.
        Proxy::from_node_parts("sidecar~10.9.9.9~web-b.shop~shop.svc.cluster.local", named)
            .unwrap(),
        // A DNS domain no namespace has: its routes are its own.
        Proxy::from_node_parts("sidecar~10.0.0.7~lost.nowhere~nowhere.svc.cluster.local", {
            let mut m = Map::new();
            m.insert("NAMESPACE".into(), Value::String("nowhere".into()));
            m
        })
        .unwrap(),
    ]
}

fn versions(rs: &[Arc<NamedResource>]) -> Vec<(String, String)> {
    rs.iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

/// Builds every list of `c` (as connections would, before the next context exists).
fn warm(c: &PushContext) {
    for p in proxies() {
        for url in URLS {
            c.generate(&p, url);
        }
    }
}

/// For every proxy and type: `own_unchanged` implies equal own resources; returns, per proxy
/// index, whether its own clusters were reported unchanged.
fn check_own(old: &PushContext, new: &PushContext) -> Vec<bool> {
    let g = old.generation();
    proxies()
        .iter()
        .map(|p| {
            for url in URLS {
                if new.own_unchanged(p, url, &g) {
                    assert_eq!(
                        versions(&old.own(p, url)),
                        versions(&new.own(p, url)),
                        "{} {url}: reported unchanged",
                        p.id
                    );
                }
            }
            new.own_unchanged(p, type_url::CLUSTER, &g)
        })
        .collect()
}

#[test]
fn a_weight_change_updates_one_endpoint_resource_and_touches_one_proxy() {
    let a = ctx(&base());
    warm(&a);
    let b = next(
        &a,
        &base().replace(
            "weight: 1\n  serviceAccount: web",
            "weight: 7\n  serviceAccount: web",
        ),
    );
    let p = &proxies()[1];
    for url in [type_url::CLUSTER, type_url::LISTENER, type_url::ROUTE] {
        assert!(
            Arc::ptr_eq(a.shared(p, url).unwrap(), b.shared(p, url).unwrap()),
            "{url}: unchanged, so the predecessor's list"
        );
    }
    let (ea, eb) = (
        a.shared(p, type_url::ENDPOINT).unwrap(),
        b.shared(p, type_url::ENDPOINT).unwrap(),
    );
    let d = eb.delta_from(ea).expect("endpoints changed");
    let updated: Vec<&str> = d.updated.iter().map(|c| c.resource.name.as_str()).collect();
    assert_eq!(updated, ["outbound|80||web.shop.svc.cluster.local"]);
    assert!(!d.updated[0].added && d.removed.is_empty());
    assert!(Arc::ptr_eq(
        ea.get("outbound|5432||db.shop.svc.cluster.local").unwrap(),
        eb.get("outbound|5432||db.shop.svc.cluster.local").unwrap()
    ));
    // web-1 (by address and by metadata) may have changed; the others did not.
    assert_eq!(check_own(&a, &b), [false, true, true, false, true]);
    assert!(b.follows(&a.generation()) && !a.follows(&b.generation()));
}

#[test]
fn a_label_change_moves_the_inbound_ports_of_that_proxy_only() {
    let a = ctx(&base());
    warm(&a);
    let b = next(
        &a,
        &base().replace(
            "labels:\n    app: web\n  weight: 1",
            "labels:\n    app: db\n  weight: 1",
        ),
    );
    let web = &proxies()[0];
    assert_ne!(
        versions(&a.own(web, type_url::LISTENER)),
        versions(&b.own(web, type_url::LISTENER))
    );
    assert_eq!(check_own(&a, &b), [false, true, true, false, true]);
}

#[test]
fn an_entry_at_a_proxy_address_touches_it() {
    let a = ctx(&base());
    warm(&a);
    let b = next(&a, &(base() + &entry("aaa", "shop", "10.0.0.2", "web", 1)));
    assert_eq!(check_own(&a, &b), [true, false, true, true, true]);
    // Not in another namespace.
    let c = next(&b, &(base() + &entry("aaa", "other", "10.0.0.2", "web", 1)));
    assert_eq!(
        check_own(&b, &c),
        [true, false, true, true, true],
        "removed from shop"
    );
}

#[test]
fn other_changes_touch_every_proxy_and_record_additions_and_removals() {
    let a = ctx(&base());
    warm(&a);
    let b = next(&a, &(base() + &service("web2", "shop", "web", 9080)));
    assert_eq!(check_own(&a, &b), [false; 5]);
    let p = &proxies()[1];
    let (ca, cb) = (
        a.shared(p, type_url::CLUSTER).unwrap(),
        b.shared(p, type_url::CLUSTER).unwrap(),
    );
    let d = cb.delta_from(ca).unwrap();
    assert!(
        d.updated
            .iter()
            .any(|c| c.added && c.resource.name == "outbound|9080||web2.shop.svc.cluster.local")
    );
    warm(&b);
    let c = next(&b, &base());
    let (cb, cc) = (
        b.shared(p, type_url::CLUSTER).unwrap(),
        c.shared(p, type_url::CLUSTER).unwrap(),
    );
    assert_eq!(
        cc.delta_from(cb).unwrap().removed,
        [Arc::from("outbound|9080||web2.shop.svc.cluster.local")]
    );
    let pa = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: shop\nspec:\n  mtls:\n    mode: STRICT\n---\n";
    warm(&c);
    let d = next(&c, &(base() + pa));
    assert_eq!(check_own(&c, &d), [false; 5]);
    assert_ne!(
        versions(&c.own(&proxies()[0], type_url::LISTENER)),
        versions(&d.own(&proxies()[0], type_url::LISTENER))
    );
}

#[test]
fn only_the_direct_predecessor_counts() {
    let a = ctx(&base());
    warm(&a);
    let b = next(&a, &base());
    let c = next(&b, &base());
    let p = &proxies()[2];
    assert!(c.own_unchanged(p, type_url::CLUSTER, &b.generation()));
    assert!(!c.own_unchanged(p, type_url::CLUSTER, &a.generation()));
    assert!(
        a.own_unchanged(p, type_url::CLUSTER, &a.generation()),
        "itself"
    );
    assert!(!a.own_unchanged(p, type_url::CLUSTER, &c.generation()));
    // b never built its lists: c's are new, without a delta, but the same resources.
    let (la, lc) = (
        a.shared(p, type_url::ENDPOINT).unwrap(),
        c.shared(p, type_url::ENDPOINT).unwrap(),
    );
    assert!(lc.delta_from(la).is_none());
    assert_eq!(versions(la.items()), versions(lc.items()));
    // generate() is the shared list followed by the own resources.
    let all = c.generate(p, type_url::CLUSTER);
    let shared = c.shared(p, type_url::CLUSTER).unwrap();
    assert_eq!(versions(&all[..shared.len()]), versions(shared.items()));
    assert_eq!(
        versions(&all[shared.len()..]),
        versions(&c.own(p, type_url::CLUSTER))
    );
}
