use super::*;
use crate::xds::test_mesh::{Mesh, eds_name};
use std::collections::BTreeMap;
use weft_proto::type_url;

/// What a delta client holds, applying each diff the way Envoy does.
#[derive(Default, Debug, Clone, PartialEq)]
struct Client(BTreeMap<String, String>);

impl Client {
    /// Applies `d`; checks it is minimal: no resource the client already holds at that version,
    /// unless it was (re)subscribed since the last diff, and no removal of what it does not hold.
    fn apply(&mut self, d: &Diff, resubscribed: &HashSet<String>) {
        for r in &d.updates {
            assert!(
                self.0.get(&r.name) != Some(&r.version) || resubscribed.contains(&r.name),
                "{} re-sent unchanged",
                r.name
            );
            self.0.insert(r.name.clone(), r.version.clone());
        }
        for n in &d.removed {
            assert!(self.0.remove(&**n).is_some(), "{n} removed but not held");
        }
    }
}

/// What the client must hold after a diff: every resource of the context it subscribes to.
fn expected(ctx: &PushContext, proxy: &Proxy, url: &str, w: &Watch) -> Client {
    Client(
        ctx.generate(proxy, url)
            .iter()
            .filter(|r| w.selects(&r.name))
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect(),
    )
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Stream {
    url: &'static str,
    w: Watch,
    client: Client,
    resubscribed: HashSet<String>,
}

impl Stream {
    fn new(url: &'static str, wildcard: bool) -> Stream {
        Stream {
            url,
            w: Watch {
                wildcard,
                ..Default::default()
            },
            client: Client::default(),
            resubscribed: HashSet::new(),
        }
    }

    fn sync(&mut self, ctx: &PushContext, proxy: &Proxy) -> Diff {
        let d = self.w.update(ctx, proxy, self.url);
        self.client.apply(&d, &self.resubscribed);
        self.resubscribed.clear();
        assert_eq!(
            self.client,
            expected(ctx, proxy, self.url, &self.w),
            "{}",
            self.url
        );
        d
    }

    fn subscribe(&mut self, name: &str) {
        self.w.subscribe(name);
        self.resubscribed.insert(name.to_string());
    }

    fn unsubscribe(&mut self, name: &str) {
        self.w.unsubscribe(name);
        self.client.0.remove(name); // Envoy drops what it unsubscribes
        self.resubscribed.remove(name);
    }
}

#[test]
fn an_envoy_like_client_always_holds_exactly_what_it_subscribes_to() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut mesh = Mesh::new(12, 24);
        let proxy = mesh.proxy(3);
        let mut ctx = mesh.context(None);
        let mut streams = [
            Stream::new(type_url::CLUSTER, true),
            Stream::new(type_url::ENDPOINT, false),
            Stream::new(type_url::LISTENER, true),
            Stream::new(type_url::ROUTE, false),
        ];
        streams[3].subscribe("80");
        for s in 0..mesh.services {
            streams[1].subscribe(&eds_name(s));
        }
        for st in &mut streams {
            st.sync(&ctx, &proxy);
        }
        assert!(streams[1].w.covering(), "every EDS name: kept as the list");
        for _step in 0..60 {
            // A configuration change.
            match rng.below(6) {
                0 | 1 => {
                    let e = rng.below(mesh.entries.len());
                    mesh.entries[e].1 = 1 + rng.below(5) as u32;
                }
                2 => mesh.entries.push((rng.below(mesh.services), 1)),
                3 if mesh.entries.len() > 4 => {
                    mesh.entries.pop();
                }
                4 => mesh.services += 1,
                _ if mesh.services > 4 => mesh.services -= 1,
                _ => {}
            }
            mesh.entries.retain(|(s, _)| *s < mesh.services);
            ctx = match rng.below(8) {
                0 => mesh.context(None), // no predecessor: the slow path
                1 => {
                    // The stream misses a context.
                    let skipped = mesh.context(Some(&ctx));
                    for st in &streams {
                        skipped.generate(&proxy, st.url);
                    }
                    mesh.context(Some(&skipped))
                }
                _ => mesh.context(Some(&ctx)),
            };
            // Envoy's EDS subscription follows the clusters it holds, sometimes late.
            let clusters: Vec<String> = (0..mesh.services).map(eds_name).collect();
            if rng.below(4) > 0 {
                for c in &clusters {
                    if !streams[1].w.selects(c) {
                        streams[1].subscribe(c);
                    }
                }
                let stale: Vec<String> = streams[1]
                    .client
                    .0
                    .keys()
                    .filter(|n| !clusters.contains(n))
                    .cloned()
                    .collect();
                for n in stale {
                    streams[1].unsubscribe(&n);
                }
            }
            // Now and then a name that does not exist, or a re-subscription.
            match rng.below(10) {
                0 => streams[1].subscribe("outbound|80||nothing.ns-0.svc.cluster.local"),
                1 => streams[1].subscribe(&eds_name(0)),
                2 => streams[1].unsubscribe("outbound|80||nothing.ns-0.svc.cluster.local"),
                3 => {
                    // A wildcard switch on CDS.
                    streams[0].unsubscribe("*");
                    streams[0].subscribe(&eds_name(1));
                    streams[0].sync(&ctx, &proxy);
                    streams[0].subscribe("*");
                }
                _ => {}
            }
            for st in &mut streams {
                st.sync(&ctx, &proxy);
            }
        }
        // A reconnect: a new watch told what the client holds sends nothing more.
        let eds = &streams[1];
        let mut again = Watch::default();
        again.declare(eds.client.0.clone().into_iter().collect());
        for n in eds.client.0.keys() {
            again.subscribe(n);
        }
        let d = again.update(&ctx, &proxy, type_url::ENDPOINT);
        assert!(d.is_empty(), "seed {seed}: {d:?}");
    }
}

#[test]
fn one_endpoint_change_is_one_update_and_reuses_everything_else() {
    let mut mesh = Mesh::new(50, 100);
    let proxy = mesh.proxy(7);
    let a = mesh.context(None);
    let mut eds = Stream::new(type_url::ENDPOINT, false);
    for s in 0..mesh.services {
        eds.subscribe(&eds_name(s));
    }
    let mut cds = Stream::new(type_url::CLUSTER, true);
    assert_eq!(eds.sync(&a, &proxy).updates.len(), 50);
    assert_eq!(cds.sync(&a, &proxy).updates.len(), 50 + 3 + 1);
    assert!(eds.w.covering());
    assert_eq!(
        eds.w.pending.capacity(),
        0,
        "nothing kept of the 50 subscriptions"
    );
    mesh.entries[20].1 = 9; // wl-20 belongs to svc-20
    let b = mesh.context(Some(&a));
    let d = eds.sync(&b, &proxy);
    let names: Vec<&str> = d.updates.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [eds_name(20)]);
    assert!(d.removed.is_empty());
    assert!(cds.sync(&b, &proxy).is_empty());
    // The own (inbound) cluster was not rebuilt: the same Arc.
    let Held::Lists { own, .. } = &cds.w.held else {
        panic!()
    };
    let before = own[0].clone();
    mesh.entries[21].1 = 9;
    let c = mesh.context(Some(&b));
    assert!(cds.sync(&c, &proxy).is_empty());
    let Held::Lists { own, .. } = &cds.w.held else {
        panic!()
    };
    assert!(Arc::ptr_eq(&before, &own[0]));
}

#[test]
fn a_new_service_is_sent_only_once_subscribed() {
    let mut mesh = Mesh::new(4, 4);
    let proxy = mesh.proxy(0);
    let a = mesh.context(None);
    let mut eds = Stream::new(type_url::ENDPOINT, false);
    for s in 0..4 {
        eds.subscribe(&eds_name(s));
    }
    eds.sync(&a, &proxy);
    mesh.services = 5;
    let b = mesh.context(Some(&a));
    assert!(eds.sync(&b, &proxy).is_empty(), "svc-4 not subscribed yet");
    eds.subscribe(&eds_name(4));
    let d = eds.sync(&b, &proxy);
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].name, eds_name(4));
    // Removing it: a removal, then Envoy unsubscribes.
    mesh.services = 4;
    let c = mesh.context(Some(&b));
    let d = eds.sync(&c, &proxy);
    assert_eq!(d.removed, [Arc::from(eds_name(4).as_str())]);
    eds.unsubscribe(&eds_name(4));
    assert!(eds.sync(&c, &proxy).is_empty());
}

#[test]
fn sotw_names_and_current() {
    let mesh = Mesh::new(6, 6);
    let proxy = mesh.proxy(1);
    let a = mesh.context(None);
    let mut w = Watch::default();
    assert!(w.set_names(&[eds_name(0), eds_name(1)]));
    assert!(!w.set_names(&[eds_name(1), eds_name(0)]), "same names");
    assert_eq!(w.update(&a, &proxy, type_url::ENDPOINT).updates.len(), 2);
    let names: Vec<String> = w.current().iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, [eds_name(0), eds_name(1)]);
    assert!(w.update(&a, &proxy, type_url::ENDPOINT).is_empty());
}
