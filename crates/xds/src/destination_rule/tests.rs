//! Lookup order, exportTo, host specificity, merging, workload selection and policy merging,
//! each against what istiod does for the same rules.

use super::*;
use crate::mesh::MeshConfig;
use crate::proxy::Proxy;
use crate::registry::Allocations;
use weft_model::load::{Outcome, load_str};

fn snapshot(yaml: &str) -> Snapshot {
    let resources = load_str("dr.yaml", yaml)
        .into_iter()
        .filter_map(|e| match e.outcome {
            Outcome::Valid { resource, .. } => Some(Arc::new(*resource)),
            Outcome::Skipped { .. } => None,
            o => panic!("{o:?}"),
        });
    Snapshot::new(1, resources)
}

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.0.0.1
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  clusterIP: 10.0.0.2
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: ext}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
";

/// A rule named `name` in `ns` for `host`, created at minute `minute`, with extra spec lines.
fn dr(ns: &str, name: &str, minute: u32, host: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: {ns}\n  creationTimestamp: \"2024-01-01T00:{minute:02}:00Z\"\nspec:\n  host: {host}\n{extra}"
    )
}

struct World {
    rules: DestinationRules,
    registry: Registry,
}

impl World {
    fn new(rules: &[String]) -> World {
        let yaml = format!("{SERVICES}{}", rules.concat());
        let snap = snapshot(&yaml);
        let registry = Registry::build(&snap, &Allocations::new(), &MeshConfig::default());
        World {
            rules: DestinationRules::new(&snap, "istio-system", &registry),
            registry,
        }
    }

    /// `namespace/name`s of the rule a proxy in `ns` with `labels` uses for `host`.
    fn rule_for(&self, ns: &str, labels: &[(&str, &str)], host: &str) -> Option<Vec<String>> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let svc = self.registry.service(host).expect("service");
        self.rules
            .outbound(ns, &labels, svc)
            .map(|r| r.from.clone())
    }
}

const REVIEWS: &str = "reviews.shop.svc.cluster.local";

fn from(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}

#[test]
fn proxy_namespace_then_service_namespace_then_root() {
    let w = World::new(&[
        dr("istio-system", "mesh", 0, "\"*.local\"", ""),
        dr("shop", "reviews", 1, "reviews", ""),
        dr("web", "reviews-web", 2, REVIEWS, ""),
    ]);
    assert_eq!(w.rule_for("web", &[], REVIEWS), from(&["web/reviews-web"]));
    assert_eq!(w.rule_for("other", &[], REVIEWS), from(&["shop/reviews"]));
    assert_eq!(w.rule_for("shop", &[], REVIEWS), from(&["shop/reviews"]));
    assert_eq!(
        w.rule_for("other", &[], "ratings.shop.svc.cluster.local"),
        from(&["istio-system/mesh"]),
        "the root namespace's rule covers the rest"
    );
    assert_eq!(
        w.rule_for("other", &[], "api.example.com"),
        None,
        "*.local does not cover api.example.com"
    );
}

#[test]
fn export_to_limits_who_sees_a_rule() {
    let w = World::new(&[
        dr("shop", "private", 0, "reviews", "  exportTo: [\".\"]\n"),
        dr("shop", "to-web", 1, "ratings", "  exportTo: [web]\n"),
        dr(
            "istio-system",
            "root-private",
            2,
            "\"*\"",
            "  exportTo: [\".\"]\n",
        ),
    ]);
    assert_eq!(w.rule_for("shop", &[], REVIEWS), from(&["shop/private"]));
    assert_eq!(w.rule_for("web", &[], REVIEWS), None);
    let ratings = "ratings.shop.svc.cluster.local";
    assert_eq!(w.rule_for("web", &[], ratings), from(&["shop/to-web"]));
    assert_eq!(w.rule_for("other", &[], ratings), None);
    assert_eq!(
        w.rule_for("istio-system", &[], "api.example.com"),
        from(&["istio-system/root-private"]),
        "a root-private rule applies to the root namespace's own proxies"
    );
    assert_eq!(w.rule_for("other", &[], "api.example.com"), None);
    assert!(w.rules.own_view("web"), "named in an exportTo");
    assert!(w.rules.own_view("shop"), "has rules of its own");
    assert!(!w.rules.own_view("other"));
}

#[test]
fn most_specific_host_wins() {
    let w = World::new(&[
        dr("shop", "all", 0, "\"*\"", ""),
        dr("shop", "svc", 1, "\"*.svc.cluster.local\"", ""),
        dr("shop", "shop", 2, "\"*.shop.svc.cluster.local\"", ""),
        dr("shop", "exact", 3, REVIEWS, ""),
    ]);
    assert_eq!(w.rule_for("shop", &[], REVIEWS), from(&["shop/exact"]));
    assert_eq!(
        w.rule_for("shop", &[], "ratings.shop.svc.cluster.local"),
        from(&["shop/shop"])
    );
    assert_eq!(
        w.rule_for("shop", &[], "api.example.com"),
        from(&["shop/all"])
    );
}

#[test]
fn rules_for_one_host_merge_oldest_policy_first() {
    let w = World::new(&[
        dr(
            "shop",
            "newer",
            5,
            REVIEWS,
            "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n  subsets:\n  - {name: v2, labels: {version: v2}}\n  - {name: v1, labels: {version: dup}}\n",
        ),
        dr(
            "shop",
            "older",
            1,
            "reviews",
            "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n",
        ),
    ]);
    let svc = w.registry.service(REVIEWS).unwrap();
    let rule = w.rules.outbound("shop", &BTreeMap::new(), svc).unwrap();
    assert_eq!(rule.from, ["shop/older", "shop/newer"]);
    let subsets: Vec<(&str, &str)> = rule
        .spec
        .subsets
        .iter()
        .map(|s| (s.name.as_str(), s.labels["version"].as_str()))
        .collect();
    assert_eq!(
        subsets,
        [("v1", "v1"), ("v2", "v2")],
        "a duplicate name is dropped"
    );
    let lb = cluster_policy(rule, 9080, "").load_balancer.unwrap();
    assert_eq!(lb.simple.as_deref(), Some("ROUND_ROBIN"));
}

#[test]
fn different_export_to_stays_apart() {
    // Istio keeps both; a proxy of the namespace gets the last catch-all of the list.
    let w = World::new(&[
        dr("shop", "public", 0, REVIEWS, "  subsets: [{name: a}]\n"),
        dr(
            "shop",
            "private",
            1,
            REVIEWS,
            "  exportTo: [\".\"]\n  subsets: [{name: b}]\n",
        ),
    ]);
    assert_eq!(w.rule_for("shop", &[], REVIEWS), from(&["shop/private"]));
    assert_eq!(w.rule_for("web", &[], REVIEWS), from(&["shop/public"]));
}

#[test]
fn workload_selector_picks_rule_for_matching_proxies_only() {
    let w = World::new(&[
        dr("shop", "all", 0, REVIEWS, ""),
        dr(
            "shop",
            "canary-clients",
            1,
            REVIEWS,
            "  workloadSelector:\n    matchLabels: {track: canary}\n",
        ),
        dr(
            "web",
            "web-canary",
            2,
            REVIEWS,
            "  workloadSelector:\n    matchLabels: {track: canary}\n",
        ),
    ]);
    assert_eq!(
        w.rule_for("shop", &[("track", "canary"), ("app", "x")], REVIEWS),
        from(&["shop/canary-clients"])
    );
    assert_eq!(
        w.rule_for("shop", &[("app", "x")], REVIEWS),
        from(&["shop/all"])
    );
    assert_eq!(
        w.rule_for("web", &[("app", "x")], REVIEWS),
        None,
        "the proxy's namespace has a rule for the host, none for this proxy: no fallback"
    );
    assert_eq!(
        w.rule_for("other", &[("track", "canary")], REVIEWS),
        from(&["shop/all"]),
        "selecting rules are private to their namespace"
    );
    let svc = w.registry.service(REVIEWS).unwrap();
    assert_eq!(
        w.rules.inbound("shop", svc).map(|r| r.from.clone()),
        from(&["shop/all"]),
        "inbound ignores selecting rules"
    );
}

#[test]
fn port_level_settings_replace_and_subsets_override() {
    let w = World::new(&[dr(
        "shop",
        "reviews",
        0,
        "reviews",
        "  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 7}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 5}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      tls: {mode: DISABLE}
      portLevelSettings:
      - port: {number: 9080}
        outlierDetection: {consecutive5xxErrors: 1}
",
    )]);
    let svc = w.registry.service(REVIEWS).unwrap();
    let rule = w.rules.outbound("shop", &BTreeMap::new(), svc).unwrap();
    // The port has its own settings: nothing is inherited from the top level.
    let p = cluster_policy(rule, 9080, "");
    assert_eq!(p.load_balancer.unwrap().simple.as_deref(), Some("RANDOM"));
    assert!(p.outlier_detection.is_none() && p.tls.is_none());
    // Another port: the top level.
    let p = cluster_policy(rule, 9090, "");
    assert_eq!(
        p.load_balancer.unwrap().simple.as_deref(),
        Some("ROUND_ROBIN")
    );
    assert_eq!(p.outlier_detection.unwrap().consecutive_5xx_errors, Some(7));
    // A subset's parts override the port's, the rest stays.
    let p = cluster_policy(rule, 9080, "v1");
    assert_eq!(
        p.connection_pool
            .unwrap()
            .tcp
            .as_ref()
            .unwrap()
            .max_connections,
        5
    );
    assert_eq!(p.load_balancer.unwrap().simple.as_deref(), Some("RANDOM"));
    // A subset's own port-level settings replace every part.
    let p = cluster_policy(rule, 9080, "v2");
    assert_eq!(p.outlier_detection.unwrap().consecutive_5xx_errors, Some(1));
    assert!(p.load_balancer.is_none() && p.tls.is_none() && p.connection_pool.is_none());
    // EDS marks endpoints by the subset's TLS mode, else the rule's.
    assert_eq!(tls_mode(rule, 9080, "v2"), Some("DISABLE"));
    assert_eq!(tls_mode(rule, 9080, "v1"), Some("ISTIO_MUTUAL"));
    assert_eq!(tls_mode(rule, 9080, "missing"), None);
}

#[test]
fn shared_view_and_proxy_specific_services() {
    let located = "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: located, namespace: other}
spec:
  address: 10.1.0.1
  locality: us-east/us-east-1a
"
    .to_string();
    let w = World::new(&[
        dr(
            "shop",
            "reviews",
            0,
            "reviews",
            "  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3}}\n",
        ),
        dr(
            "web",
            "ratings-web",
            1,
            "ratings.shop.svc.cluster.local",
            "  exportTo: [\".\"]\n",
        ),
        located,
    ]);
    let reviews = w.registry.service(REVIEWS).unwrap();
    assert!(w.rules.shared(reviews).is_some());
    let hosts = |p: &Proxy| -> Vec<String> {
        w.rules
            .proxy_specific(&w.registry, p)
            .services
            .iter()
            .map(|(s, _)| s.hostname.clone())
            .collect()
    };
    // Outlier detection turns on locality failover: reviews' endpoints depend on where the
    // proxy is, and this one is somewhere.
    assert_eq!(
        hosts(&Proxy::sidecar("a", "other", "10.1.0.1", &[])),
        [REVIEWS]
    );
    // One without a locality sees the shared lists.
    assert!(hosts(&Proxy::sidecar("b", "other", "10.1.0.9", &[])).is_empty());
    // The web namespace sees its own rule for ratings.
    assert_eq!(
        hosts(&Proxy::sidecar("c", "web", "10.1.0.2", &[])),
        ["ratings.shop.svc.cluster.local"]
    );
}

#[test]
fn short_hosts_resolve_in_the_rule_namespace() {
    assert_eq!(index::resolve_host("reviews", "shop"), REVIEWS);
    assert_eq!(index::resolve_host("reviews.shop", "x"), "reviews.shop");
    assert_eq!(index::resolve_host("*", "x"), "*");
    assert_eq!(index::resolve_host("10.0.0.1", "x"), "10.0.0.1");
}
