//! NDS: the name table each proxy gets (`testdata/names.golden.json`; `UPDATE_GOLDEN=1`
//! rewrites).

mod common;

use common::{decode, golden, snapshot};
use serde_json::{Value, json};
use weft_proto::nds::NameTable;
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, Proxy, PushContext};

fn context() -> PushContext {
    let mut allocations = Allocations::new();
    for (name, ip) in [
        ("allocated", "10.96.7.2"),
        ("auto.example.com", "240.240.0.1"),
        ("other.example.com", "240.240.0.2"),
    ] {
        allocations.insert(("apps".into(), name.into()), ip.parse().unwrap());
    }
    let snap = snapshot(include_str!("../testdata/names.yaml"));
    PushContext::new(snap, &allocations, &MeshConfig::default())
}

fn proxy(network: &str) -> Proxy {
    let mut p = Proxy::sidecar("client", "apps", "198.18.7.50", &[]);
    p.network = network.into();
    p
}

fn table(ctx: &PushContext, proxy: &Proxy) -> NameTable {
    let rs = ctx.generate(proxy, type_url::NAME_TABLE);
    assert_eq!(rs.len(), 1, "one name table per proxy");
    assert_eq!(rs[0].resource.type_url, type_url::NAME_TABLE);
    assert_eq!(rs[0].name, "", "unnamed, as istiod sends it");
    decode(&rs[0].resource)
}

fn to_json(t: &NameTable) -> Value {
    let table: serde_json::Map<String, Value> = t
        .table
        .iter()
        .map(|(host, i)| {
            let mut v = json!({"ips": i.ips, "registry": i.registry});
            if !i.shortname.is_empty() {
                v["shortname"] = json!(i.shortname);
                v["namespace"] = json!(i.namespace);
            }
            (host.clone(), v)
        })
        .collect();
    json!({ "table": table })
}

#[test]
fn name_table_golden() {
    let ctx = context();
    let t = table(&ctx, &proxy("net-1"));
    let mut text = serde_json::to_string_pretty(&to_json(&t)).unwrap();
    text.push('\n');
    golden("names.golden.json", &text);
}

#[test]
fn headless_endpoints_follow_the_proxy_network() {
    let ctx = context();
    let db = "db.apps.svc.cluster.local";
    // net-1 sees its own endpoint and the one without a network; the unhealthy one never.
    assert_eq!(
        table(&ctx, &proxy("net-1")).table[db].ips,
        vec!["198.18.7.1", "198.18.7.4"]
    );
    assert_eq!(
        table(&ctx, &proxy("net-2")).table[db].ips,
        vec!["198.18.7.2", "198.18.7.4"]
    );
    // A proxy without a network sees every healthy endpoint.
    assert_eq!(table(&ctx, &proxy("")).table[db].ips.len(), 3);
}

#[test]
fn dual_stack_services_give_the_proxy_its_family() {
    let ctx = context();
    let dual = "dual.apps.svc.cluster.local";
    assert_eq!(table(&ctx, &proxy("")).table[dual].ips, vec!["10.96.7.3"]);
    let v6 = Proxy::sidecar("client", "apps", "fd00::50", &[]);
    assert_eq!(table(&ctx, &v6).table[dual].ips, vec!["fd00:10:96::7:3"]);
}

#[test]
fn what_has_no_address_is_left_out() {
    let t = table(&context(), &proxy("net-1"));
    for host in [
        "empty.apps.svc.cluster.local",
        "*.wild.example.com",
        "cidr.internal",
    ] {
        assert!(!t.table.contains_key(host), "{host}: {:?}", t.table[host]);
    }
    // Without an allocation a DNS ServiceEntry has no address either.
    let snap = snapshot(include_str!("../testdata/names.yaml"));
    let bare = PushContext::new(snap, &Allocations::new(), &MeshConfig::default());
    let t = table(&bare, &proxy("net-1"));
    assert!(!t.table.contains_key("auto.example.com"));
    assert!(!t.table.contains_key("allocated.apps.svc.cluster.local"));
    // The same content encodes the same (the table is ordered): equal versions.
    let a = context().generate(&proxy("net-1"), type_url::NAME_TABLE);
    let b = context().generate(&proxy("net-1"), type_url::NAME_TABLE);
    assert_eq!(a[0].version, b[0].version);
}
