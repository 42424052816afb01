//! The application readiness probe in a running agent: weftd in one host; weft-agent, real Envoy
//! and an HTTP application in another. The mesh config's `readinessProbe` probes the application on
//! the instance address; its answer going 200 → 503 → 200 turns the agent's readiness (15020,
//! which Envoy's 15021 listener routes to) ready → not ready (with Istio's failure text) → ready,
//! and each transition is reported upstream on the xDS stream.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use weft_testkit::mesh::{ControlPlane, VmRoot};
use weft_testkit::{Attempt, Host, Lab, poll_until};

/// An HTTP application answering every GET with the status code written in the file `argv[2]`.
const APP: &str = r#"
import http.server, sys
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[2]) as f:
            code = int(f.read().strip())
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((sys.argv[1], 8080), App)
print("app ready", flush=True)
server.serve_forever()
"#;

const BAD: &str = "status code was not from [200,400), bad code 503";

/// The agent's readiness answer (code, body) on 15020.
fn readiness(vm: &Host) -> Option<(u16, String)> {
    let status = SocketAddr::from((Ipv4Addr::LOCALHOST, 15020));
    let r = vm
        .http_get(status, "/healthz/ready", Duration::from_secs(3))
        .ok()?;
    Some((r.status, r.body))
}

fn wait_readiness(vm: &Host, what: &str, want: impl Fn(u16, &str) -> bool) {
    poll_until(what, Duration::from_secs(40), || {
        Ok(match readiness(vm) {
            Some((code, body)) if want(code, &body) => Attempt::Ready(()),
            other => Attempt::NotYet(format!("{other:?}")),
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn readiness_probe_drives_agent_readiness_and_reports() {
    let lab = Lab::new("ready").unwrap();
    let net = lab.network("mesh").unwrap();
    let cp_host = lab.host("cp", &[&net]).unwrap();
    let vm = lab.host("vm", &[&net]).unwrap();
    let cp = ControlPlane::start(&cp_host, &lab.dir().join("state"), &[]).unwrap();

    let code_file = lab.dir().join("app-code");
    std::fs::write(&code_file, "200").unwrap();
    let script = lab.dir().join("app.py");
    std::fs::write(&script, APP).unwrap();
    let app = vm
        .spawn(
            "app",
            &[
                "python3".as_ref(),
                script.as_os_str(),
                vm.ip().to_string().as_ref(),
                code_file.as_os_str(),
            ],
        )
        .unwrap();
    app.wait_for_log("app ready", Duration::from_secs(10))
        .unwrap();

    let root = VmRoot::new(&lab.dir().join("vm-root")).unwrap();
    root.write_bundle(&cp, &vm, "forum", "forum-sa", "forum-vm", &[])
        .unwrap();
    root.write_mesh_config(&format!(
        "defaultConfig:\n  discoveryAddress: {}\n  readinessProbe:\n    periodSeconds: 1\n    httpGet:\n      path: /ready\n      port: 8080\n",
        cp.xds_address()
    ))
    .unwrap();
    let agent = root.start_agent(&vm, "agent", &[]).unwrap();

    wait_readiness(&vm, "the workload to be ready", |code, _| code == 200);
    std::fs::write(&code_file, "503").unwrap();
    wait_readiness(&vm, "the failing probe to show", |code, body| {
        code == 503 && body.trim() == format!("application readiness probe failing: {BAD}")
    });
    std::fs::write(&code_file, "200").unwrap();
    wait_readiness(&vm, "the workload to be ready again", |code, _| code == 200);

    // Each transition went upstream: healthy, unhealthy with Istio's text, healthy again.
    let log = agent.log();
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("health reported upstream"))
        .collect();
    let bad = reports
        .iter()
        .position(|l| l.contains("upstream: unhealthy") && l.contains(BAD))
        .unwrap_or_else(|| panic!("no unhealthy report in:\n{}", reports.join("\n")));
    assert!(
        reports[..bad]
            .iter()
            .any(|l| l.contains("upstream: healthy")),
        "{reports:#?}"
    );
    assert!(
        reports[bad + 1..]
            .iter()
            .any(|l| l.contains("upstream: healthy")),
        "{reports:#?}"
    );
    // Transitions only: no two reports in a row say the same.
    for pair in reports.windows(2) {
        let healthy = |l: &str| l.contains("upstream: healthy");
        assert_ne!(healthy(pair[0]), healthy(pair[1]), "{reports:#?}");
    }
}
