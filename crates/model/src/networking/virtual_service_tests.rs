//! VirtualService loading and validation tests.

use crate::load::{Outcome, load_str};
use crate::resource::Spec;

use crate::test_support::{errors, warnings};

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs\n  namespace: prod\nspec:\n{spec}"
    )
}

/// A mesh VirtualService routing to `reviews`, with `rule` as its only HTTP rule.
fn http(rule: &str) -> String {
    vs(&format!("  hosts: [reviews]\n  http:\n{rule}"))
}

const FULL: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-route
  namespace: prod
spec:
  hosts:
  - reviews.prod.svc.cluster.local
  - "*.reviews.example.com"
  - 10.0.0.1
  gateways:
  - mesh
  - istio-system/public-gateway
  exportTo: [".", istio-system]
  http:
  - name: reviews-v2-routes
    match:
    - name: jason
      uri:
        prefix: /wpcatalog
      headers:
        end-user:
          exact: jason
        x-version:
          regex: "^v[0-9]+$"
      queryParams:
        debug:
          exact: "true"
      withoutHeaders:
        x-canary:
          regex: "*"
      method:
        exact: GET
      authority:
        prefix: reviews
      scheme:
        exact: https
      port: 9080
      sourceLabels:
        app: productpage
      sourceNamespace: prod
      ignoreUriCase: true
      statPrefix: jason
      gateways: [mesh]
    - uri:
        regex: "^/consumercatalog/.*$"
    rewrite:
      uri: /newcatalog
      authority: reviews.internal
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v2
        port:
          number: 9080
      weight: 80
      headers:
        request:
          set:
            x-route: v2
        response:
          add:
            x-served-by: "%HOSTNAME%"
          remove: [x-internal]
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v3
      weight: 20
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,503
      retryRemoteLocalities: true
      retryIgnorePreviousHosts: false
      backoff: 25ms
    fault:
      delay:
        percentage:
          value: 0.1
        fixedDelay: 5s
      abort:
        percentage:
          value: 0.5
        httpStatus: 503
    mirrors:
    - destination:
        host: reviews-shadow
        subset: v1
      percentage:
        value: 50
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - regex: "https://.*\\.example\\.org"
      allowMethods: [GET, POST]
      allowHeaders: [X-Foo-Bar, "*"]
      exposeHeaders: [X-Expose]
      maxAge: 24h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    headers:
      request:
        add:
          x-request-start: "t=%START_TIME(%s.%3f)%"
        remove: [x-legacy]
      response:
        set:
          cache-control: no-cache
  - name: legacy
    match:
    - uri:
        exact: /legacy
    redirect:
      uri: /new
      authority: new.example.com
      scheme: https
      redirectCode: 301
      port: 8443
  - name: maintenance
    match:
    - uri:
        prefix: /maintenance
    directResponse:
      status: 503
      body:
        string: "down for maintenance"
  - name: regex-rewrite
    match:
    - uri:
        prefix: /v1
    rewrite:
      uriRegexRewrite:
        match: ^/v1(/.*)$
        rewrite: /v2\1
    mirror:
      host: reviews-shadow
    mirrorPercentage:
      value: 10
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
  - name: default
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v1
  tcp:
  - match:
    - port: 27017
      destinationSubnets: [10.0.0.0/8]
      sourceLabels:
        app: client
      gateways: [mesh]
      sourceNamespace: prod
    route:
    - destination:
        host: mongo.prod.svc.cluster.local
        port:
          number: 5555
"#;

#[test]
fn full_example_is_valid() {
    let out = load_str("vs.yaml", FULL);
    let Outcome::Valid { resource, warnings } = &out[0].outcome else {
        panic!("{}", out[0]);
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    let Spec::VirtualService(v) = &resource.spec else {
        panic!("wrong spec");
    };
    assert_eq!(v.http.len(), 5);
    assert_eq!(v.http[0].route[0].weight, 80);
    assert_eq!(
        v.http[0].match_[0].headers["x-version"].regex.as_deref(),
        Some("^v[0-9]+$")
    );
    let json = serde_json::to_value(v).unwrap();
    assert_eq!(json["http"][0]["match"][0]["uri"]["prefix"], "/wpcatalog");
    assert_eq!(json["http"][1]["redirect"]["redirectCode"], 301);
}

#[test]
fn tls_and_delegate_examples_are_valid() {
    let tls = vs(
        "  hosts: [\"*.bookinfo.com\"]\n  gateways: [mygateway]\n  tls:\n  - match:\n    - port: 443\n      sniHosts: [login.bookinfo.com]\n    route:\n    - destination:\n        host: login.prod.svc.cluster.local\n",
    );
    assert!(warnings(&tls).is_empty());
    let root = vs(
        "  hosts: [\"*.example.com\"]\n  gateways: [istio-system/gw]\n  http:\n  - match:\n    - uri:\n        prefix: /reviews\n    delegate:\n      name: reviews\n      namespace: prod\n",
    );
    assert!(warnings(&root).is_empty());
    let delegate = vs(
        "  http:\n  - match:\n    - uri:\n        prefix: /reviews/v2\n    route:\n    - destination:\n        host: reviews-v2\n",
    );
    assert!(warnings(&delegate).is_empty());
}

#[test]
fn tls_match_needs_sni_hosts() {
    let y = vs(
        "  hosts: [reviews]\n  tls:\n  - match:\n    - port: 443\n    route:\n    - destination:\n        host: reviews\n",
    );
    assert_eq!(
        errors(&y),
        vec!["spec.tls[0].match[0].sniHosts: TLS match must have at least one SNI host"]
    );
}

#[test]
fn sni_hosts_must_match_hosts() {
    let y = vs(
        "  hosts: [\"*.bookinfo.com\"]\n  gateways: [gw]\n  tls:\n  - match:\n    - sniHosts: [login.example.com]\n    route:\n    - destination:\n        host: login\n  - route:\n    - destination:\n        host: login\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.tls[0].match[0].sniHosts[0]: SNI host \"login.example.com\" is not a compatible subset of any of the virtual service hosts: [*.bookinfo.com]",
            "spec.tls[1].match: TLS route must have at least one match condition",
        ]
    );
}

#[test]
fn host_rules() {
    let y = http("  - route:\n    - destination:\n        host: reviews\n")
        .replace("[reviews]", "[\"$MYDOMAIN\"]");
    assert_eq!(
        errors(&y),
        vec!["spec.hosts[0]: domain name \"$MYDOMAIN\" invalid (label \"$MYDOMAIN\" invalid)"]
    );
    let y = http("  - route:\n    - destination:\n        host: reviews\n")
        .replace("[reviews]", "[\"*\"]");
    assert_eq!(
        errors(&y),
        vec![
            "spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway"
        ]
    );
    let y = http("  - route:\n    - destination:\n        host: reviews\n")
        .replace("[reviews]", "[\"*\"]\n  gateways: [some-gw]");
    assert!(warnings(&y).is_empty());
    let y = http("  - route:\n    - destination:\n        host: reviews\n")
        .replace("[reviews]", "[\"*.foo.com\", a.foo.com]");
    assert_eq!(
        errors(&y),
        vec!["spec.hosts[1]: duplicate hosts in virtual service: *.foo.com & a.foo.com"]
    );
}

#[test]
fn routes_required() {
    let y = vs("  hosts: [reviews]\n");
    assert_eq!(
        errors(&y),
        vec!["spec: http, tcp or tls must be provided in virtual service"]
    );
    let y = http("  - match:\n    - uri:\n        prefix: /a\n");
    assert_eq!(
        errors(&y),
        vec!["spec.http[0]: HTTP route, redirect or direct_response is required"]
    );
}

#[test]
fn weights() {
    let y = http(
        "  - route:\n    - destination:\n        host: a\n      weight: -10\n    - destination:\n        host: b\n      weight: 110\n",
    );
    assert_eq!(
        errors(&y),
        vec!["spec.http[0].route[0].weight: weight -10 < 0"]
    );
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    - destination:\n        host: b\n",
    );
    assert_eq!(
        errors(&y),
        vec!["spec.http[0].route: total destination weight = 0"]
    );
}

#[test]
fn destinations() {
    let y = http(
        "  - route:\n    - destination:\n        host: \"*\"\n        subset: Bad_Subset\n        port:\n          number: 0\n    - weight: 100\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].route[0].destination.host: invalid destination host *",
            "spec.http[0].route[0].destination.subset: subset name is invalid: Bad_Subset",
            "spec.http[0].route[0].destination.port.number: port number 0 must be in the range 1..65535",
            "spec.http[0].route[1].destination: destination is required",
        ]
    );
}

#[test]
fn gateway_names() {
    let y = http("  - route:\n    - destination:\n        host: a\n").replace(
        "[reviews]",
        "[reviews.example.com]\n  gateways: [\"ns/bad_name\", \"/gw\"]",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.gateways[0]: invalid value for gateway name: \"bad_name\"",
            "spec.gateways[1]: config namespace and gateway name cannot be empty",
            "spec.gateways[1]: invalid value for namespace: \"\"",
        ]
    );
    let y = http("  - route:\n    - destination:\n        host: a\n").replace(
        "[reviews]",
        "[reviews.example.com]\n  gateways: [gw.istio-system]",
    );
    assert_eq!(
        warnings(&y),
        vec![
            "spec.gateways[0]: using legacy gatewayName format \"gw.istio-system\"; prefer the <namespace>/<name> format: \"istio-system/gw\""
        ]
    );
}

#[test]
fn string_matches() {
    let y = http(
        "  - match:\n    - uri:\n        regex: \"(abc\"\n      headers:\n        x-a:\n          prefix: \"\"\n        \"bad header\":\n          exact: x\n      method:\n        exact: GET\n        prefix: G\n      queryParams:\n        q:\n          regex: \"\"\n    route:\n    - destination:\n        host: a\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].match[0].headers[bad header]: header name bad header is not a valid header name",
            "spec.http[0].match[0].headers[x-a].prefix: \"headers\": prefix string match should not be empty",
            "spec.http[0].match[0].uri.regex: \"uri\": error parsing regexp: unclosed group: `(abc`; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
            "spec.http[0].match[0].method: must validate one and only one schema (oneOf): only one of exact, prefix, regex can be set",
            "spec.http[0].match[0].queryParams[q].regex: \"queryParams\": regex string match should not be empty",
        ]
    );
}

#[test]
fn jwt_claim_routing_needs_gateway() {
    let y = http(
        "  - match:\n    - headers:\n        \"@request.auth.claims.group\":\n          exact: admin\n    route:\n    - destination:\n        host: a\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].match[0].headers[@request.auth.claims.group]: JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway, found no gateways: []"
        ]
    );
}

#[test]
fn retries_and_timeout() {
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    timeout: 0s\n    retries:\n      attempts: 0\n      retryOn: 5xx,bogus\n      perTryTimeout: 0.5ms\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].retries: http retry policy configured when attempts are set to 0 (disabled)",
            "spec.http[0].retries.perTryTimeout: duration must be greater than 1ms",
            "spec.http[0].retries.retryOn: \"bogus\" is not a valid retryOn policy",
            "spec.http[0].timeout: duration must be greater than 1ms",
        ]
    );
    let y =
        http("  - route:\n    - destination:\n        host: a\n    retries:\n      attempts: -1\n");
    assert_eq!(
        errors(&y),
        vec!["spec.http[0].retries.attempts: attempts cannot be negative"]
    );
}

#[test]
fn faults() {
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    fault:\n      abort:\n        percentage:\n          value: 101\n        httpStatus: 700\n      delay:\n        exponentialDelay: 1s\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].fault.abort.percentage.value: percentage 101 is neither 0.0, nor in range [0.0001, 100.0]",
            "spec.http[0].fault.abort.httpStatus: HTTP status 700 is not in range 200-599",
            "spec.http[0].fault.delay.exponentialDelay: exponentialDelay not supported yet",
        ]
    );
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    fault:\n      abort:\n        grpcStatus: NOPE\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].fault.abort.grpcStatus: gRPC status \"NOPE\" is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"
        ]
    );
    let y = http("  - route:\n    - destination:\n        host: a\n    fault: {}\n");
    assert_eq!(
        errors(&y),
        vec!["spec.http[0].fault: HTTP fault injection must have an abort and/or a delay"]
    );
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    fault:\n      abort:\n        percentage:\n          value: 5\n",
    );
    assert_eq!(
        warnings(&y),
        vec!["spec.http[0].fault.abort: abort configured, but error type not set"]
    );
}

#[test]
fn mirrors() {
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    mirror:\n      host: b\n    mirrors:\n    - destination:\n        host: c\n      percentage:\n        value: 120\n    - percentage:\n        value: 5\n    mirrorPercentage:\n      value: -1\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0]: HTTP route cannot contain both mirror and mirrors",
            "spec.http[0].mirrorPercentage: mirror_percentage must have a min value of 0 (it has -1.000000)",
            "spec.http[0].mirrors[0].percentage: mirror percentage must have a max value of 100 (it has 120.000000)",
            "spec.http[0].mirrors[1].destination: destination is required for mirrors",
        ]
    );
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    mirror:\n      host: b\n    mirror_percent: 50\n",
    );
    assert_eq!(
        warnings(&y),
        vec![
            "spec.http[0].mirrorPercent: using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead"
        ]
    );
}

#[test]
fn redirects_and_direct_responses() {
    let y = http(
        "  - redirect:\n      uri: /a\n      prefixRewrite: /b\n    route:\n    - destination:\n        host: a\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0]: HTTP route cannot contain both route and redirect",
            "spec.http[0].redirect: redirect may only specify one of uri or prefix_rewrite",
        ]
    );
    let y = http(
        "  - match:\n    - uri:\n        exact: /a\n    redirect:\n      prefixRewrite: /b\n  - redirect:\n      redirectCode: 200\n      uri: /c\n  - redirect:\n      scheme: ftp\n  - redirect: {}\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].redirect.prefixRewrite: redirect prefix_rewrite requires all URI matches to use prefix match type",
            "spec.http[1].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx",
            "spec.http[2].redirect.scheme: invalid redirect scheme, must be \"http\" or \"https\"",
            "spec.http[3].redirect: redirect must specify URI, authority, scheme, or port",
        ]
    );
    let y = http(
        "  - directResponse:\n      status: 100\n      body:\n        bytes: \"not base64!\"\n    fault:\n      delay:\n        fixedDelay: 1s\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0]: HTTP route cannot contain both fault and direct_response",
            "spec.http[0].directResponse.body.bytes: illegal base64 data",
            "spec.http[0].directResponse.status: HTTP status 100 is not in range 200-599",
        ]
    );
}

#[test]
fn rewrites() {
    let y = http(
        "  - route:\n    - destination:\n        host: a\n    rewrite: {}\n  - route:\n    - destination:\n        host: a\n    rewrite:\n      uri: /x\n      uriRegexRewrite:\n        match: a\n        rewrite: b\n  - route:\n    - destination:\n        host: a\n    rewrite:\n      uriRegexRewrite:\n        match: \"[\"\n        rewrite: b\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].rewrite: rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified",
            "spec.http[1].rewrite: rewrite may only contain one of URI or UriRegexRewrite",
            "spec.http[2].rewrite.uriRegexRewrite: UriRegexRewrite has errors: \"HTTPRewrite.UriRegexRewrite.Match\": error parsing regexp: unclosed character class: `[`; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
        ]
    );
}

#[test]
fn headers_and_cors() {
    let y = http(
        "  - route:\n    - destination:\n        host: a\n      headers:\n        response:\n          set:\n            host: x\n    headers:\n      request:\n        set:\n          \":path\": /x\n          \":authority\": a.example.com\n        add:\n          x-bad: \"%BAD\"\n      response:\n        remove: [\":status\"]\n    rewrite:\n      authority: b.example.com\n    corsPolicy:\n      allowOrigins:\n      - exact: \"\"\n      allowMethods: [FETCH]\n      allowHeaders: [\"bad header\"]\n      maxAge: 1500ms\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].headers.request.add[x-bad]: header value configuration: invalid header configuration. Un-terminated variable expression '%BAD'",
            "spec.http[0].headers.request.set[:path]: invalid header \":path\": header cannot have \":\" prefix",
            "spec.http[0].headers.response.remove[0]: invalid header \":status\": header cannot have \":\" prefix",
            "spec.http[0].corsPolicy.allowOrigins[0]: '' is not a valid match type for CORS allow origins",
            "spec.http[0].corsPolicy.allowMethods[0]: \"FETCH\" is not a supported HTTP method",
            "spec.http[0].corsPolicy.allowHeaders[0]: header name bad header is not a valid header name",
            "spec.http[0].corsPolicy.maxAge: max_age duration is accurate only to seconds precision",
            "spec.http[0].headers.request.set[:authority]: authority header cannot be set multiple times: have \"b.example.com\", attempting to set \"a.example.com\"",
            "spec.http[0].route[0].headers.response.set[host]: invalid header \"host\": cannot set Host header",
        ]
    );
}

#[test]
fn delegate_rules() {
    let y = vs(
        "  gateways: [gw]\n  http:\n  - delegate:\n      name: other\n    route:\n    - destination:\n        host: a\n  tcp:\n  - route:\n    - destination:\n        host: a\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.gateways: delegate virtual service must have no gateways specified",
            "spec.tcp: delegate virtual service must have no tcp route specified",
            "spec.http[0].delegate: delegate HTTP route cannot contain delegate",
        ]
    );
    let y = http(
        "  - name: root\n    delegate:\n      name: other\n    route:\n    - destination:\n        host: a\n    redirect:\n      uri: /x\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].redirect: root HTTP route root must not specify redirect",
            "spec.http[0].route: root HTTP route root must not specify route",
        ]
    );
}

#[test]
fn tcp_routes() {
    let y = vs(
        "  hosts: [mongo]\n  tcp:\n  - match:\n    - destinationSubnets: [10.0.0.0/33]\n      port: 70000\n      sourceLabels:\n        \"bad key!\": x\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.tcp[0].match[0].destinationSubnets[0]: 10.0.0.0/33 is not a valid CIDR block",
            "spec.tcp[0].match[0].port: port number 70000 must be in the range 1..65535",
            "spec.tcp[0].match[0].sourceLabels[bad key!]: invalid tag key: \"bad key!\"",
            "spec.tcp[0].route: TCP route is required",
        ]
    );
}

#[test]
fn unknown_fields_and_bad_enums() {
    let y = http(
        "  - route:\n    - destination:\n        host: a\n        weight: 10\n    redirect:\n      derivePort: FROM_NOWHERE\n",
    );
    assert_eq!(
        errors(&y),
        vec![
            "spec.http[0].route[0].destination: unknown field \"weight\"",
            "spec.http[0]: HTTP route cannot contain both route and redirect",
            "spec.http[0].redirect.derivePort: Unsupported value: \"FROM_NOWHERE\": supported values: \"FROM_PROTOCOL_DEFAULT\", \"FROM_REQUEST_PORT\"",
        ]
    );
}

#[test]
fn unreachable_rule_warnings() {
    let y = http(
        "  - name: a\n    match:\n    - uri:\n        prefix: /api\n    route:\n    - destination:\n        host: a\n  - name: b\n    match:\n    - uri:\n        prefix: /api/v1\n    route:\n    - destination:\n        host: a\n  - route:\n    - destination:\n        host: a\n  - match:\n    - uri:\n        exact: /x\n    route:\n    - destination:\n        host: a\n",
    );
    assert_eq!(
        warnings(&y),
        vec![
            "spec.http[3]: virtualService rule #3 not used (route without matches defined before)",
            "spec.http[1].match[0]: virtualService rule \"b\" match #0 of prefix /api/v1 is not used (duplicate/overlapping match in rule #0 of prefix /api on \"a\")",
        ]
    );
    let y = vs(
        "  hosts: [mongo]\n  tcp:\n  - match:\n    - port: 27017\n    route:\n    - destination:\n        host: a\n  - match:\n    - port: 27017\n    route:\n    - destination:\n        host: b\n",
    );
    assert_eq!(
        warnings(&y),
        vec![
            "spec.tcp[1].match[0]: virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)",
            "spec.tcp[1]: virtualService rule #1 not used (all matches used by prior rules)",
        ]
    );
}
