use super::*;
use prost::Message;
use std::sync::Arc;
use weft_model::load::{Outcome, load_str};
use weft_proto::envoy_types::pb::envoy::config::rbac::v3::{Permission, Principal};

fn snapshot(yaml: &str) -> Snapshot {
    let resources = load_str("authz.yaml", yaml)
        .into_iter()
        .map(|e| match e.outcome {
            Outcome::Valid { resource, .. } => Arc::new(*resource),
            o => panic!("{o:?}"),
        });
    Snapshot::new(1, resources)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The seed's policy (seed 001), as restored.
const SEED: &str = r#"
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: forum-access-control, namespace: istioinaction}
spec:
  selector:
    matchLabels: {app: forum}
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/istioinaction/sa/webapp"]
        namespaces: ["istioinaction"]
    to:
    - operation:
        methods: ["GET", "POST"]
        paths: ["/api/*"]
    when:
    - key: request.headers[user-role]
      values: ["admin", "user"]
  - from:
    - source:
        principals: ["cluster.local/ns/istio-system/sa/istio-proxy"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/health", "/metrics"]
"#;

fn rbac_of(f: &HttpFilter) -> HttpRbac {
    let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("typed config")
    };
    HttpRbac::decode(any.value.as_slice()).unwrap()
}

fn and_rules(p: &Permission) -> &[Permission] {
    match &p.rule {
        Some(permission::Rule::AndRules(s)) => &s.rules,
        r => panic!("{r:?}"),
    }
}

fn and_ids(p: &Principal) -> &[Principal] {
    match &p.identifier {
        Some(principal::Identifier::AndIds(s)) => &s.ids,
        r => panic!("{r:?}"),
    }
}

#[test]
fn seed_policy_translates_like_istio() {
    let snap = snapshot(SEED);
    let aps = AuthorizationPolicies::new(&snap, "istio-system");
    let forum = aps.applicable("istioinaction", &labels(&[("app", "forum")]));
    let filters = http_filters(&forum);
    assert_eq!(filters.len(), 1);
    assert_eq!(filters[0].name, "envoy.filters.http.rbac");
    let rules = rbac_of(&filters[0]).rules.unwrap();
    assert_eq!(rules.action, 0, "ALLOW");
    let mut names: Vec<&String> = rules.policies.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ns[istioinaction]-policy[forum-access-control]-rule[0]",
            "ns[istioinaction]-policy[forum-access-control]-rule[1]"
        ]
    );
    let p0 = &rules.policies["ns[istioinaction]-policy[forum-access-control]-rule[0]"];
    // Permission: AND[ OR(method GET, method POST), OR(path prefix /api/) ].
    let perm = and_rules(&p0.permissions[0]);
    assert_eq!(perm.len(), 2);
    let Some(permission::Rule::OrRules(methods)) = &perm[0].rule else {
        panic!("{:?}", perm[0])
    };
    assert_eq!(methods.rules.len(), 2);
    let Some(permission::Rule::OrRules(paths)) = &perm[1].rule else {
        panic!()
    };
    let Some(permission::Rule::UrlPath(pm)) = &paths.rules[0].rule else {
        panic!()
    };
    assert!(format!("{pm:?}").contains("Prefix(\"/api/\")"), "{pm:?}");
    // Principal: AND[ OR(principal), OR(namespace), OR(header user-role) ].
    let ids = and_ids(&p0.principals[0]);
    assert_eq!(ids.len(), 3);
    let text = format!("{ids:?}");
    assert!(
        text.contains("Exact(\"spiffe://cluster.local/ns/istioinaction/sa/webapp\")"),
        "{text}"
    );
    assert!(text.contains(".*/ns/istioinaction/.*"), "{text}");
    assert!(
        text.contains("user-role") && text.contains("Exact(\"admin\")"),
        "{text}"
    );
    // Not selected: no filter at all.
    let other = aps.applicable("istioinaction", &labels(&[("app", "webapp")]));
    assert!(other.is_empty());
    assert!(http_filters(&other).is_empty());
}

#[test]
fn scope_order_and_empty_policies() {
    let snap = snapshot(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {ipBlocks: ["198.18.9.0/24"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-audit, namespace: shop}
spec:
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-nothing-allow-none, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: other}
spec:
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: trial
  namespace: shop
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"#,
    );
    let aps = AuthorizationPolicies::new(&snap, "istio-system");
    let cart = aps.applicable("shop", &labels(&[("app", "cart")]));
    let filters = http_filters(&cart);
    let actions: Vec<i32> = filters
        .iter()
        .map(|f| {
            let r = rbac_of(f);
            r.rules.or(r.shadow_rules).unwrap().action
        })
        .collect();
    assert_eq!(actions, [1, 2, 0], "DENY, AUDIT (LOG), ALLOW");
    let deny = rbac_of(&filters[0]);
    assert!(
        deny.rules
            .as_ref()
            .unwrap()
            .policies
            .contains_key("ns[istio-system]-policy[mesh-deny]-rule[0]")
    );
    assert_eq!(
        deny.rules.as_ref().unwrap().policies.len(),
        1,
        "the other namespace's policy does not apply"
    );
    let shadow = deny.shadow_rules.unwrap();
    assert!(
        shadow
            .policies
            .contains_key("ns[shop]-policy[trial]-rule[0]")
    );
    assert_eq!(deny.shadow_rules_stat_prefix, "istio_dry_run_deny_");
    // A selected ALLOW policy without rules: one policy that never matches (deny everything).
    let allow = rbac_of(&filters[2]).rules.unwrap();
    let never = &allow.policies["ns[shop]-policy[deny-nothing-allow-none]-rule[0]"];
    assert!(matches!(
        &never.permissions[0].rule,
        Some(permission::Rule::NotRule(_))
    ));
    // Another workload in shop: no ALLOW policy, so no ALLOW filter (allowed by default).
    let web = aps.applicable("shop", &labels(&[("app", "web")]));
    assert_eq!(http_filters(&web).len(), 2);
}

#[test]
fn tcp_chains_skip_http_only_allow_rules_and_widen_deny_rules() {
    let snap = snapshot(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: db}
spec:
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
  - from: [{source: {principals: ["cluster.local/ns/app/sa/api"]}}]
    to: [{operation: {ports: ["5432"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: db}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: ["app"]}}]
    to: [{operation: {methods: ["DELETE"]}}]
"#,
    );
    let aps = AuthorizationPolicies::new(&snap, "istio-system");
    let a = aps.applicable("db", &BTreeMap::new());
    let filters = network_filters(&a);
    assert_eq!(filters.len(), 2);
    let decode = |f: &Filter| {
        let Some(weft_proto::envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any)) =
            &f.config_type
        else {
            panic!()
        };
        NetworkRbac::decode(any.value.as_slice()).unwrap()
    };
    let deny = decode(&filters[0]);
    assert_eq!(deny.stat_prefix, "tcp.");
    let d = &deny.rules.unwrap().policies["ns[db]-policy[deny]-rule[0]"];
    // The HTTP-only method is dropped: the DENY rule matches any destination.
    assert!(matches!(
        and_rules(&d.permissions[0])[0].rule,
        Some(permission::Rule::Any(true))
    ));
    let allow = decode(&filters[1]).rules.unwrap();
    assert!(
        !allow.policies.contains_key("ns[db]-policy[allow]-rule[0]"),
        "HTTP-only ALLOW rule skipped"
    );
    let r1 = &allow.policies["ns[db]-policy[allow]-rule[1]"];
    assert!(matches!(
        and_rules(&r1.permissions[0])[0].rule,
        Some(permission::Rule::OrRules(ref s)) if matches!(s.rules[0].rule, Some(permission::Rule::DestinationPort(5432)))
    ));
    // On HTTP chains both rules are there.
    let http = rbac_of(&http_filters(&a)[1]).rules.unwrap();
    assert_eq!(http.policies.len(), 2);
}

#[test]
fn conditions_and_service_accounts() {
    let rule: weft_model::security::Rule = serde_json::from_value(serde_json::json!({
        "from": [{"source": {"serviceAccounts": ["web", "ops/admin"], "notIpBlocks": ["10.0.0.0/8"]}}],
        "when": [
            {"key": "destination.port", "values": ["8080"]},
            {"key": "source.namespace", "notValues": ["test-*"]},
        ]
    }))
    .unwrap();
    let m = Model::new("shop", &rule).unwrap();
    let p = m.generate(false, Action::Allow).unwrap();
    let text = format!("{:?}", p.principals);
    assert!(
        text.contains("spiffe://.+/ns/shop/(.+/|)sa/web(/.+)?"),
        "{text}"
    );
    assert!(
        text.contains("spiffe://.+/ns/ops/(.+/|)sa/admin(/.+)?"),
        "{text}"
    );
    assert!(
        text.contains("NotId") && text.contains("10.0.0.0"),
        "{text}"
    );
    assert!(text.contains(".*/ns/test-.*/.*"), "{text}");
    let perm = format!("{:?}", p.permissions);
    assert!(perm.contains("DestinationPort(8080)"), "{perm}");
    let bad: weft_model::security::Rule = serde_json::from_value(serde_json::json!({
        "when": [{"key": "request.time.hour", "values": ["9"]}]
    }))
    .unwrap();
    assert!(
        Model::new("shop", &bad)
            .unwrap_err()
            .contains("unknown attribute")
    );
}
