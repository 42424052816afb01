use super::*;
use crate::load::{Outcome, load_str};
use crate::resource::Spec;

fn doc(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: policy\n  namespace: istioinaction\nspec:\n{spec}"
    )
}

fn load(spec: &str) -> Outcome {
    let out = load_str("ap.yaml", &doc(spec));
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap().outcome
}

fn errors(spec: &str) -> Vec<String> {
    match load(spec) {
        Outcome::Invalid { errors, .. } => errors.iter().map(|e| e.to_string()).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn valid(spec: &str) -> (AuthorizationPolicy, Vec<String>) {
    match load(spec) {
        Outcome::Valid { resource, warnings } => match resource.spec {
            Spec::AuthorizationPolicy(ap) => (ap, warnings.iter().map(|w| w.to_string()).collect()),
            other => panic!("unexpected spec {other:?}"),
        },
        other => panic!("expected valid, got {other:?}"),
    }
}

const SEED_HEAD: &str = "  selector:
    matchLabels:
      app: forum
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/istioinaction/sa/webapp\"]
        namespaces: [\"istioinaction\"]
    to:
    - operation:
        methods: [\"GET\", \"POST\"]
        paths: [\"/api/*\"]
";

#[test]
fn seed_policy_is_valid() {
    let (ap, warnings) = valid(&format!(
        "{SEED_HEAD}    when:\n    - key: request.headers[user-role]\n      values: [admin, user]\n"
    ));
    assert!(warnings.is_empty());
    assert_eq!(ap.action(), "ALLOW");
    assert_eq!(ap.selector.as_ref().unwrap().match_labels["app"], "forum");
    let rule = &ap.rules[0];
    let src = rule.from.as_ref().unwrap()[0].source.as_ref().unwrap();
    assert_eq!(
        src.principals,
        vec!["cluster.local/ns/istioinaction/sa/webapp"]
    );
    let op = rule.to.as_ref().unwrap()[0].operation.as_ref().unwrap();
    assert_eq!(op.methods, vec!["GET", "POST"]);
    assert_eq!(rule.when[0].values, vec!["admin", "user"]);
    let json = serde_json::to_value(&ap).unwrap();
    assert_eq!(
        json["rules"][0]["when"][0]["key"],
        "request.headers[user-role]"
    );
    assert!(json.get("action").is_none());
    assert!(
        json["rules"][0]["from"][0]["source"]
            .get("ipBlocks")
            .is_none()
    );
}

#[test]
fn seed_policy_with_unknown_attribute_is_invalid() {
    assert_eq!(
        errors(&format!(
            "{SEED_HEAD}    when:\n    - key: request.time.hour\n      values: [\"9\"]\n"
        )),
        vec!["spec.rules[0].when[0].key: unknown attribute: request.time.hour"]
    );
}

#[test]
fn full_field_set_is_valid() {
    let (ap, warnings) = valid(
        "  action: DENY
  rules:
  - from:
    - source:
        notPrincipals: [\"cluster.local/ns/a/sa/b\"]
        requestPrincipals: [\"issuer/subject\"]
        notRequestPrincipals: [\"*\"]
        notNamespaces: [kube-system]
        ipBlocks: [10.0.0.0/8, 192.168.1.7]
        notIpBlocks: [\"2001:db8::/32\"]
        remoteIpBlocks: [1.2.3.4]
        notRemoteIpBlocks: [5.6.7.0/24]
        trustDomains: [\"*.example.com\", cluster.local]
        notTrustDomains: [evil.io]
    - source:
        serviceAccounts: [web, other/api]
        notServiceAccounts: [legacy]
    to:
    - operation:
        hosts: [\"*.example.com\"]
        notHosts: [admin.example.com]
        ports: [\"8080\"]
        notPorts: [\"9090\"]
        methods: [GET]
        notMethods: [DELETE]
        paths: [\"/api/{*}/items/{**}\"]
        notPaths: [\"/admin*\"]
    when:
    - key: source.ip
      values: [10.1.0.0/16]
    - key: destination.port
      notValues: [\"22\"]
    - key: request.auth.claims[iss]
      values: [\"https://accounts.example.com\"]
    - key: source.serviceAccount
      values: [ns/sa]
    - key: experimental.envoy.filters.network.mysql_proxy[db.table]
      values: [\"[update]\"]
    - key: connection.sni
      values: [\"*.example.com\"]
",
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ap.action(), "DENY");
    let back = serde_json::to_value(&ap).unwrap();
    let again: AuthorizationPolicy = serde_json::from_value(back).unwrap();
    assert_eq!(again, ap);
}

#[test]
fn actions_and_providers() {
    valid("  action: AUDIT\n  rules:\n  - {}\n");
    valid(
        "  action: CUSTOM\n  provider:\n    name: ext-authz\n  rules:\n  - to:\n    - operation:\n        paths: [\"/admin\"]\n",
    );
    valid("  {}\n");
    valid("  action: ALLOW\n");
    assert_eq!(
        errors("  action: PERMIT\n"),
        vec![
            "spec.action: Unsupported value: \"PERMIT\": supported values: \"ALLOW\", \"DENY\", \"AUDIT\", \"CUSTOM\""
        ]
    );
    assert_eq!(
        errors("  action: DENY\n"),
        vec![
            "spec.rules: DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request"
        ]
    );
    assert_eq!(
        errors("  action: CUSTOM\n  provider:\n    name: ext\n"),
        vec![
            "spec.rules: CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request"
        ]
    );
    assert_eq!(
        errors("  action: CUSTOM\n  rules:\n  - {}\n"),
        vec!["spec.provider.name: `provider.name` must not be empty"]
    );
    assert_eq!(
        errors("  provider:\n    name: ext\n  rules:\n  - {}\n"),
        vec!["spec.provider: `provider` must not be with non CUSTOM action, found ALLOW"]
    );
    assert_eq!(
        errors("  action: DENY\n  provider:\n    name: ext\n  rules:\n  - {}\n"),
        vec!["spec.provider: `provider` must not be with non CUSTOM action, found DENY"]
    );
}

#[test]
fn custom_action_restrictions() {
    assert_eq!(
        errors(
            "  action: CUSTOM\n  provider:\n    name: ext\n  rules:\n  - from:\n    - source:\n        namespaces: [a]\n        requestPrincipals: [\"*\"]\n    when:\n    - key: request.auth.claims[group]\n      values: [admin]\n    - key: source.namespace\n      values: [a]\n"
        ),
        vec![
            "spec.rules[0].from[0].source.namespaces: From.Namespaces is currently not supported with CUSTOM action",
            "spec.rules[0].from[0].source.requestPrincipals: From.RequestPrincipals is currently not supported with CUSTOM action",
            "spec.rules[0].when[0].key: request.auth.claims[group] is currently not supported with CUSTOM action",
            "spec.rules[0].when[1].key: source.namespace is currently not supported with CUSTOM action",
        ]
    );
}

#[test]
fn rule_shape_rules() {
    assert_eq!(
        errors("  rules:\n  - from: []\n    to: []\n"),
        vec![
            "spec.rules[0].from: `from` must not be empty, found at rule 0",
            "spec.rules[0].to: `to` must not be empty, found at rule 0",
        ]
    );
    assert_eq!(
        errors("  rules:\n  - {}\n  - from:\n    - {}\n    to:\n    - {}\n"),
        vec![
            "spec.rules[1].from[0].source: `from.source` must not be nil, found at rule 1",
            "spec.rules[1].to[0].operation: `to.operation` must not be nil, found at rule 1",
        ]
    );
    assert_eq!(
        errors("  rules:\n  - from:\n    - source: {}\n    to:\n    - operation: {}\n"),
        vec![
            "spec.rules[0].from[0].source: `from.source` must not be empty, found at rule 0",
            "spec.rules[0].to[0].operation: `to.operation` must not be empty, found at rule 0",
        ]
    );
    assert_eq!(
        errors(
            "  rules:\n  - from:\n    - source:\n        principals: [a]\n        serviceAccounts: [b]\n"
        ),
        vec![
            "spec.rules[0].from[0].source: cannot set serviceAccounts with namespaces or principals, found at rule 0"
        ]
    );
}

#[test]
fn source_value_rules() {
    assert_eq!(
        errors(
            "  rules:\n  - from:\n    - source:\n        principals: [a, \"\"]\n        ipBlocks: [10.0.0.0/33, 300.1.1.1, \"1.2.3.4\"]\n        notRemoteIpBlocks: [\"fe80::1%eth0/64\"]\n"
        ),
        vec![
            "spec.rules[0].from[0].source.ipBlocks[0]: bad CIDR range (10.0.0.0/33): netip.ParsePrefix(\"10.0.0.0/33\"): prefix length out of range",
            "spec.rules[0].from[0].source.ipBlocks[1]: bad IP address (300.1.1.1)",
            "spec.rules[0].from[0].source.notRemoteIpBlocks[0]: bad CIDR range (fe80::1%eth0/64): netip.ParsePrefix(\"fe80::1%eth0/64\"): IPv6 zones cannot be present in a prefix",
            "spec.rules[0].from[0].source.principals[1]: empty value not allowed, found in Principals",
        ]
    );
    assert_eq!(
        errors(
            "  rules:\n  - from:\n    - source:\n        serviceAccounts: [\"a/b/c\", \"*\"]\n        notServiceAccounts: [\"/x\"]\n        trustDomains: [\"a*b\"]\n        notTrustDomains: [\"td/x\"]\n"
        ),
        vec![
            "spec.rules[0].from[0].source.serviceAccounts[0]: expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\" in ServiceAccounts",
            "spec.rules[0].from[0].source.trustDomains[0]: wildcard is only allowed at the start or end, found in TrustDomains: \"a*b\"",
            "spec.rules[0].from[0].source.notServiceAccounts[0]: expected format 'serviceAccount' or 'namespace/serviceAccount', found empty namespace \"/x\" in NotServiceAccounts",
            "spec.rules[0].from[0].source.notTrustDomains[0]: trust domain must not contain '/', found in NotTrustDomains: \"td/x\"",
        ]
    );
}

#[test]
fn operation_rules() {
    assert_eq!(
        errors(
            "  rules:\n  - to:\n    - operation:\n        ports: [http, \"70000\", \"\"]\n        methods: [\"\"]\n        paths: [\"/a/{**}/{*}\", \"/b/{x}\", \"/c/{*}/d e\"]\n        notPaths: [\"/ok/{*}\"]\n"
        ),
        vec![
            "spec.rules[0].to[0].operation.ports[0]: bad port (http): strconv.ParseUint: parsing \"http\": invalid syntax",
            "spec.rules[0].to[0].operation.ports[1]: bad port (70000): <nil>",
            "spec.rules[0].to[0].operation.ports[2]: bad port (): strconv.ParseUint: parsing \"\": invalid syntax",
            "spec.rules[0].to[0].operation.ports[2]: empty value not allowed, found in Ports",
            "spec.rules[0].to[0].operation.methods[0]: empty value not allowed, found in Methods",
            "spec.rules[0].to[0].operation.paths[0]: invalid or unsupported path a/{**}/{*}, found in Paths. {**} is not the last operator",
        ]
    );
    assert_eq!(
        errors(
            "  rules:\n  - to:\n    - operation:\n        paths: [\"/b/{x}\"]\n        notPaths: [\"/c/{*}/d e\"]\n"
        ),
        vec![
            "spec.rules[0].to[0].operation.paths[0]: invalid or unsupported path b/{x}, found in Paths. Contains '{' or '}' beyond a supported path template",
            "spec.rules[0].to[0].operation.notPaths[0]: invalid or unsupported path c/{*}/d e, found in NotPaths. Contains segment d e with invalid string literal",
        ]
    );
}

#[test]
fn condition_rules() {
    assert_eq!(
        errors(
            "  rules:\n  - when:\n    - key: \"\"\n      values: [a]\n    - key: source.ip\n    - key: request.headers\n      values: [a]\n    - key: destination.namespace\n      values: [a]\n    - key: destination.labels[app]\n      values: [a]\n    - key: destination.user\n      values: [a]\n"
        ),
        vec![
            "spec.rules[0].when[0].key: `key` must not be empty",
            "spec.rules[0].when[1]: at least one of `values` or `notValues` must be set for key source.ip",
            "spec.rules[0].when[2].key: bad key (request.headers): should have format a[b]",
            "spec.rules[0].when[3].key: attribute destination.namespace is replaced by the metadata.namespace",
            "spec.rules[0].when[4].key: attribute destination.labels[app] is replaced by the workload selector",
            "spec.rules[0].when[5].key: deprecated attribute destination.user: only supported in v1alpha1",
        ]
    );
    assert_eq!(
        errors(
            "  rules:\n  - when:\n    - key: source.ip\n      values: [10.0.0.1, bad]\n      notValues: [\"\"]\n    - key: destination.port\n      values: [\"-1\"]\n    - key: source.serviceAccount\n      values: [\"ns/*\"]\n    - key: source.trustDomain\n      notValues: [\"**\"]\n"
        ),
        vec![
            "spec.rules[0].when[0].values[1]: invalid `value` for `key` source.ip: bad IP address (bad)",
            "spec.rules[0].when[0].notValues[0]: invalid `notValue` for `key` source.ip: empty value not allowed, found in source.ip",
            "spec.rules[0].when[1].values[0]: invalid `value` for `key` destination.port: bad port (-1): strconv.ParseUint: parsing \"-1\": invalid syntax",
            "spec.rules[0].when[2].values[0]: invalid `value` for `key` source.serviceAccount: wildcard not allowed, found in source.serviceAccount",
            "spec.rules[0].when[3].notValues[0]: invalid `notValue` for `key` source.trustDomain: at most one wildcard is allowed, found in source.trustDomain: \"**\"",
        ]
    );
}

#[test]
fn selector_and_target_refs() {
    valid(
        "  targetRef:\n    kind: Gateway\n    group: gateway.networking.k8s.io\n    name: ingress\n",
    );
    valid(
        "  targetRefs:\n  - kind: Service\n    group: \"\"\n    name: web\n  - kind: ServiceEntry\n    group: networking.istio.io\n    name: ext\n",
    );
    assert_eq!(
        errors(
            "  selector:\n    matchLabels:\n      app: web\n  targetRefs:\n  - kind: Service\n    name: web\n"
        ),
        vec!["spec: only one of targetRefs or workloadSelector can be set"]
    );
    assert_eq!(
        errors("  targetRef:\n    kind: Deployment\n    group: apps\n    namespace: other\n"),
        vec![
            "spec.targetRef.name: targetRef name must be set",
            "spec.targetRef.namespace: targetRef namespace must not be set; cross namespace referencing is not supported",
            "spec.targetRef.kind: targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was apps/Deployment",
        ]
    );
    assert_eq!(
        errors("  selector:\n    matchLabels:\n      \"app*\": web\n"),
        vec![
            "spec.selector.matchLabels[app*]: wildcard is not supported in selector: \"app*=web\""
        ]
    );
}

#[test]
fn deny_with_only_http_attributes_warns() {
    let (_, warnings) =
        valid("  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n");
    assert_eq!(
        warnings,
        vec![
            "spec.rules[0]: configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port"
        ]
    );
    let (_, warnings) = valid(
        "  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n        ports: [\"80\"]\n",
    );
    assert!(warnings.is_empty());
    let (_, warnings) = valid(
        "  action: DENY\n  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"*\"]\n",
    );
    assert_eq!(warnings.len(), 1);
}

#[test]
fn unknown_fields_are_reported() {
    assert_eq!(
        errors("  rules:\n  - from:\n    - source:\n        principal: [a]\n"),
        vec![
            "spec.rules[0].from[0].source: unknown field \"principal\"",
            "spec.rules[0].from[0].source: `from.source` must not be empty, found at rule 0",
        ]
    );
}

#[test]
fn dry_run_annotation() {
    let with = |annotation: &str, spec: &str| {
        let doc = format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: ns\n  annotations:\n    istio.io/dry-run: \"{annotation}\"\nspec:\n{spec}"
        );
        load_str("ap.yaml", &doc).remove(0).to_string()
    };
    assert_eq!(
        with(
            "true",
            "  action: DENY\n  rules:\n  - to:\n    - operation:\n        ports: [\"22\"]\n"
        ),
        "ap.yaml doc 0: AuthorizationPolicy ns/p: OK"
    );
    assert_eq!(
        with("yes", "  {}\n"),
        "ap.yaml doc 0: AuthorizationPolicy ns/p: ERROR metadata.annotations: ns/p has annotation istio.io/dry-run with invalid value (yes): strconv.ParseBool: parsing \"yes\": invalid syntax"
    );
    assert_eq!(
        with("true", "  action: AUDIT\n"),
        "ap.yaml doc 0: AuthorizationPolicy ns/p: ERROR metadata.annotations: the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action AUDIT in ns/p"
    );
}
