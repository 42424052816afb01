//! AuthorizationPolicy end to end with real Envoys: the seed's `forum-access-control` policy
//! (seed 001, indentation restored) on the forum workload. webapp (service account `webapp`)
//! gets `GET /api/...` with `user-role: user`; a caller with service account `default` gets
//! `403 RBAC: access denied`; the health path is open to the named principal
//! (`istio-system/sa/istio-proxy`) and only to it; a mesh-wide DENY policy on top closes a
//! source namespace; removing the policies opens everything again.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use weft_testkit::mesh::{ControlPlane, MeshWorkload};
use weft_testkit::{Attempt, Host, Lab, Process, poll_until};

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn workloads(lab: &[(&str, &Host, &str, &str)]) -> String {
    let mut out = String::from(
        "apiVersion: v1
kind: Service
metadata: {name: forum, namespace: istioinaction}
spec:
  selector: {app: forum}
  ports: [{name: http, port: 80, targetPort: 8080}]
",
    );
    for (name, host, ns, sa) in lab {
        out.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  address: {}
  labels: {{app: {name}}}
  serviceAccount: {sa}
",
            host.ip()
        ));
    }
    out
}

/// The seed's policy, verbatim apart from the lost indentation.
const SEED_POLICY: &str = include_str!(
    "../../model/tests/seeds/reindented/001-authorizationpolicy-forum-access-control.yaml"
);

const DENY_OTHERS: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-legacy, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from: [{source: {namespaces: [legacy]}}]
";

/// `curl` from `host` to forum's VIP: (status, body).
fn call(host: &Host, vip: &str, path: &str, role: Option<&str>) -> (u16, String) {
    let url = format!("http://{vip}{path}");
    let header = role.map(|r| format!("user-role: {r}"));
    let mut args = vec!["-sS", "-w", "\n%{http_code}"];
    if let Some(h) = &header {
        args.extend(["-H", h.as_str()]);
    }
    args.push(&url);
    match host.curl(&args, Duration::from_secs(3)) {
        Ok(out) => {
            let text = out.stdout.trim_end().to_string();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
            (code.trim().parse().unwrap_or(0), body.to_string())
        }
        Err(e) => (0, e.to_string()),
    }
}

fn wait_for(what: &str, f: impl Fn() -> (u16, String), want: u16, agents: &[&Process]) -> String {
    poll_until(what, Duration::from_secs(40), || {
        for a in agents {
            a.ensure_running()?;
        }
        let (code, body) = f();
        Ok(if code == want {
            Attempt::Ready(body)
        } else {
            Attempt::NotYet(format!("{code} {body}"))
        })
    })
    .unwrap_or_else(|e| {
        let logs: Vec<String> = agents.iter().map(|a| a.log_tail(15)).collect();
        panic!("{e}\n{}", logs.join("\n---\n"))
    })
}

#[test]
fn seed_policy_allows_webapp_denies_others_and_keeps_health_open() {
    let lab = Lab::new("authz").unwrap();
    let net = lab.network("mesh").unwrap();
    let cp_host = lab.host("cp", &[&net]).unwrap();
    let forum = lab.host("forum", &[&net]).unwrap();
    let webapp = lab.host("webapp", &[&net]).unwrap();
    let other = lab.host("other", &[&net]).unwrap();
    let prober = lab.host("prober", &[&net]).unwrap();
    let legacy = lab.host("legacy", &[&net]).unwrap();
    let callers: [(&str, &Host, &str, &str); 4] = [
        ("webapp", &webapp, "istioinaction", "webapp"),
        ("other", &other, "istioinaction", "default"),
        ("prober", &prober, "istio-system", "istio-proxy"),
        ("legacy", &legacy, "legacy", "webapp"),
    ];
    for (_, h, _, _) in &callers {
        h.set_default_route(cp_host.ip()).unwrap();
    }
    forum.set_default_route(cp_host.ip()).unwrap();

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut all = vec![("forum", &forum, "istioinaction", "forum-sa")];
    all.extend(callers.iter().copied());
    write(&config, "workloads.yaml", &workloads(&all));
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &["--config-dir", &config.to_string_lossy()],
    )
    .unwrap();

    let mut agents = Vec::new();
    let _app = forum
        .start_http_server("forum-app", SocketAddr::from(([0, 0, 0, 0], 8080)), &[])
        .unwrap();
    for (name, host, ns, sa) in &all {
        agents.push(MeshWorkload::start(lab.dir(), &cp, host, ns, sa, name).unwrap());
    }
    let agent_refs: Vec<&Process> = agents.iter().map(|w| &w.agent).collect();
    let vip = cp.service_vip("istioinaction", "forum").unwrap();

    // Without a policy everyone gets in.
    for (name, host, _, _) in &callers {
        wait_for(
            &format!("{name} reaches forum before any policy"),
            || call(host, &vip, "/api/threads", None),
            200,
            &agent_refs,
        );
    }

    // The seed's ALLOW policy.
    write(&config, "policy.yaml", SEED_POLICY);
    let denied = wait_for(
        "other to be denied",
        || call(&other, &vip, "/api/threads", Some("user")),
        403,
        &agent_refs,
    );
    assert_eq!(denied, "RBAC: access denied");
    let body = wait_for(
        "webapp allowed",
        || call(&webapp, &vip, "/api/threads", Some("user")),
        200,
        &agent_refs,
    );
    assert!(body.contains("server=forum-app"), "{body}");
    // Every condition of the rule counts: the header, the method, the path. (Each check polls:
    // connections opened before the change keep their old filter chain while Envoy drains them.)
    let expect = |what: &str, host: &Host, path: &str, role: Option<&str>, want: u16| {
        wait_for(what, || call(host, &vip, path, role), want, &agent_refs);
    };
    expect(
        "webapp without user-role denied",
        &webapp,
        "/api/threads",
        None,
        403,
    );
    expect(
        "webapp as guest denied",
        &webapp,
        "/api/threads",
        Some("guest"),
        403,
    );
    expect(
        "webapp outside /api denied",
        &webapp,
        "/admin",
        Some("admin"),
        403,
    );
    // The health path: open to the named principal, and only for it.
    expect("prober on /health", &prober, "/health", None, 200);
    expect("prober on /metrics", &prober, "/metrics", None, 200);
    expect(
        "prober on /api denied",
        &prober,
        "/api/threads",
        Some("user"),
        403,
    );
    expect("other on /health denied", &other, "/health", None, 403);
    // Same service account name in another namespace: not webapp's principal.
    expect("legacy denied", &legacy, "/api/threads", Some("user"), 403);
    // And webapp is still allowed.
    expect(
        "webapp still allowed",
        &webapp,
        "/api/threads",
        Some("user"),
        200,
    );

    // Mesh-wide DENY on top, then neither policy: everything open again.
    write(&config, "policy.yaml", "");
    wait_for(
        "other allowed once the policy is gone",
        || call(&other, &vip, "/api/threads", None),
        200,
        &agent_refs,
    );
    write(&config, "deny.yaml", DENY_OTHERS);
    wait_for(
        "legacy denied mesh-wide",
        || call(&legacy, &vip, "/api/threads", None),
        403,
        &agent_refs,
    );
    expect(
        "other still allowed under the DENY",
        &other,
        "/api/threads",
        None,
        200,
    );
    expect(
        "webapp still allowed under the DENY",
        &webapp,
        "/api/threads",
        Some("user"),
        200,
    );
}
