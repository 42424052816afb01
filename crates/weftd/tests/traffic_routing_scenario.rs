//! VirtualService routing end to end: weftd with a config directory, a client with traffic
//! capture, weft-agent and real Envoy, and plain servers (no sidecar, so the client's Envoy is the
//! only one routing). Uses the helloworld seed (004) as written:
//! - without a VirtualService both helloworld versions answer;
//! - the seed's 20/80 VirtualService over the two version Services, then its 70/30 one over
//!   the DestinationRule's subsets, split 1,000 requests within ±5 points;
//! - the canary seed (001): `canary-user: true` always reaches vm-v2, other requests split 90/10;
//! - a 3-attempt retry turns a flaky server's 503 into a 200;
//! - an injected abort returns its status, a route timeout gives 504 on a path routed to a slow
//!   service;
//! - a `*` host bound to the mesh is rejected with Istio's message and changes nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use weft_testkit::mesh::{CAPTURE_ENV, ControlPlane, VmRoot};
use weft_testkit::{Attempt, Host, Lab, Process, connectable, poll_until, test_http_binary};

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The seed's two version Services (004), verbatim.
const SEED_SERVICES: &str =
    include_str!("../../model/tests/seeds/004-services-helloworld-v1-v2.yaml");
/// The seed's simple-virtual-service: 20% to helloworld-v1, 80% to helloworld-v2.
const SEED_SPLIT: &str =
    include_str!("../../model/tests/seeds/004-virtualservice-helloworld-20-80.yaml");
/// The seed's helloworld DestinationRule (subsets by version) and its 70/30 VirtualService.
const SEED_SUBSETS: &str =
    include_str!("../../model/tests/seeds/004-destinationrule-helloworld.yaml");
const SEED_SUBSET_SPLIT: &str =
    include_str!("../../model/tests/seeds/004-virtualservice-helloworld-subsets-70-30.yaml");
/// The canary seed (001, indentation restored): the forum Service, and the VirtualService with
/// its DestinationRule.
const SEED_FORUM: &str =
    include_str!("../../model/tests/seeds/reindented/001-serviceaccount-service-forum.yaml");
const SEED_CANARY: &str = include_str!(
    "../../model/tests/seeds/reindented/001-virtualservice-destinationrule-forum-canary.yaml"
);

/// Istio's helloworld sample Service (what the seed deploys first), the workloads, and two
/// more services for the resilience checks.
fn workloads(v1: Ipv4Addr, v2: Ipv4Addr, client: Ipv4Addr) -> String {
    let entry = |name: &str, ip: Ipv4Addr, labels: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: {ip}
  labels: {labels}
"
        )
    };
    let service = |name: &str, port: u16| {
        format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: {port}}}]
"
        )
    };
    let mut out = String::from(
        "apiVersion: v1
kind: Service
metadata:
  name: helloworld
  labels: {app: helloworld, service: helloworld}
spec:
  ports: [{port: 5000, name: http}]
  selector: {app: helloworld}
",
    );
    out += &entry("helloworld-v1", v1, "{app: helloworld, version: v1}");
    out += &entry("helloworld-v2", v2, "{app: helloworld, version: v2}");
    out += &service("flaky", 7000);
    out += &entry("flaky", v1, "{app: flaky}");
    out += &service("ops", 7100);
    out += &entry("ops", v2, "{app: ops}");
    out += &service("slow", 7100);
    out += &entry("slow", v1, "{app: slow}");
    for (name, ip, version) in [("forum-vm-v1", v1, "v1"), ("forum-vm-v2", v2, "v2")] {
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: istioinaction}}
spec:
  address: {ip}
  labels: {{app: forum, version: {version}}}
"
        );
    }
    out += &format!(
        "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client, namespace: default}}
spec:
  address: {client}
  labels: {{app: client}}
  serviceAccount: client
"
    );
    out
}

const RETRIES: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky, namespace: default}
spec:
  hosts: [flaky]
  http:
  - route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: 5xx}
";

const FAULTS_AND_TIMEOUTS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ops, namespace: default}
spec:
  hosts: [ops.default.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: ops}}]
  - match: [{uri: {prefix: /slow}}]
    timeout: 1s
    route: [{destination: {host: slow}}]
  - timeout: 1s
    route: [{destination: {host: ops}}]
";

const MESH_WILDCARD: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: everything, namespace: default}
spec:
  hosts: ['*']
  http:
  - route: [{destination: {host: ops}}]
";

/// Starts `weft-test-http` as `name` on `0.0.0.0:port` in `host` with `extra` arguments.
fn server(host: &Host, name: &str, port: u16, extra: &[&str]) -> Process {
    let mut cmd = Command::new(test_http_binary().unwrap());
    cmd.args(["--name", name, "--listen", &format!("0.0.0.0:{port}")])
        .args(extra);
    let p = host.spawn_command(name, &cmd).unwrap();
    host.wait_for_tcp(
        connectable(SocketAddr::from(([0, 0, 0, 0], port))),
        Duration::from_secs(10),
    )
    .unwrap();
    p
}

/// `curl` from `host`: (status, body).
fn call(host: &Host, url: &str) -> (u16, String) {
    match host.curl(&["-s", "-w", "\n%{http_code}", url], Duration::from_secs(5)) {
        Ok(out) => {
            let text = out.stdout.trim_end().to_string();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
            (code.trim().parse().unwrap_or(0), body.to_string())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Waits until the client's Envoy holds configuration containing `needle`.
fn wait_for_config(client: &Host, agent: &Process, what: &str, needle: &str) {
    poll_until(what, Duration::from_secs(20), || {
        agent.ensure_running()?;
        let dump = client
            .http_get(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
                "/config_dump",
                Duration::from_secs(2),
            )
            .map(|r| r.body)
            .unwrap_or_default();
        Ok(if dump.contains(needle) {
            Attempt::Ready(())
        } else {
            Attempt::NotYet(String::new())
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(30)));
}

/// Sends `n` requests (with `headers`) over one keep-alive connection (curl's URL globbing);
/// returns how many servers `<prefix>v1` and `<prefix>v2` answered, and how many requests did
/// not get a 200.
fn spread_to(
    client: &Host,
    url: &str,
    n: usize,
    prefix: &str,
    headers: &[&str],
) -> (usize, usize, usize) {
    let mut args = vec![
        "-s".to_string(),
        "-w".to_string(),
        "code=%{http_code}\n".to_string(),
    ];
    for h in headers {
        args.extend(["-H".to_string(), h.to_string()]);
    }
    args.push(format!("{url}/[1-{n}]"));
    let out = client.curl(&args, Duration::from_secs(60)).unwrap();
    let count = |s: &str| out.stdout.matches(s).count();
    let ok = count("code=200");
    (
        count(&format!("server={prefix}v1\n")),
        count(&format!("server={prefix}v2\n")),
        n - ok,
    )
}

fn spread(client: &Host, url: &str, n: usize) -> (usize, usize, usize) {
    spread_to(client, url, n, "helloworld-", &[])
}

#[test]
fn virtual_services_split_canary_retry_abort_and_time_out() {
    let lab = Lab::new("traffic").unwrap();
    let net = lab.network("mesh").unwrap();
    let cp_host = lab.host("cp", &[&net]).unwrap();
    let client = lab.host("client", &[&net]).unwrap();
    let srv1 = lab.host("srv1", &[&net]).unwrap();
    let srv2 = lab.host("srv2", &[&net]).unwrap();
    client.set_default_route(cp_host.ip()).unwrap();

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    write(
        &config,
        "workloads.yaml",
        &workloads(srv1.ip(), srv2.ip(), client.ip()),
    );
    write(&config, "seed-services.yaml", SEED_SERVICES);
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &["--config-dir", &config.to_string_lossy()],
    )
    .unwrap();

    let _v1 = server(&srv1, "helloworld-v1", 5000, &[]);
    let _v2 = server(&srv2, "helloworld-v2", 5000, &[]);
    let _forum_v1 = server(&srv1, "forum-vm-v1", 8080, &[]);
    let _forum_v2 = server(&srv2, "forum-vm-v2", 8080, &[]);
    let flaky = server(
        &srv1,
        "flaky",
        7000,
        &[
            "--fail-first",
            "1",
            "--echo-header",
            "x-envoy-attempt-count",
        ],
    );
    let _ops = server(&srv2, "ops", 7100, &[]);
    let _slow = server(&srv1, "slow", 7100, &["--delay", "3000"]);

    let root = VmRoot::new(&lab.dir().join("client-root")).unwrap();
    root.write_bundle(&cp, &client, "default", "client", "client", CAPTURE_ENV)
        .unwrap();
    root.install_capture(&client).unwrap();
    let agent = root
        .start_agent_as_proxy_user(&client, "client-agent", &[])
        .unwrap();
    let hello = cp.service_vip("default", "helloworld").unwrap();
    let hello_url = format!("http://{hello}:5000/hello");

    // (a) No VirtualService: the helloworld Service reaches both versions.
    poll_until(
        "helloworld through the client's Envoy",
        Duration::from_secs(40),
        || {
            agent.ensure_running()?;
            let (code, body) = call(&client, &hello_url);
            Ok(if code == 200 {
                Attempt::Ready(body)
            } else {
                Attempt::NotYet(format!("{code} {body}"))
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(30)));
    let (v1, v2, failed) = spread(&client, &hello_url, 200);
    assert_eq!(failed, 0);
    assert!(v1 > 0 && v2 > 0, "both versions answer: v1 {v1}, v2 {v2}");

    // The seed's 20/80 VirtualService: 1,000 requests split within ±5 points.
    write(&config, "helloworld-vs.yaml", SEED_SPLIT);
    wait_for_config(&client, &agent, "the 20/80 split", "weighted_clusters");
    let (v1, v2, failed) = spread(&client, &hello_url, 1000);
    assert_eq!((failed, v1 + v2), (0, 1000), "v1 {v1}, v2 {v2}");
    assert!(
        (150..=250).contains(&v1),
        "v1 got {v1} of 1000, want 200 ± 50"
    );

    // The seed's DestinationRule and 70/30 VirtualService over its subsets (replacing the 20/80
    // one: for the mesh, the first VirtualService of a host wins, nothing is merged).
    write(&config, "helloworld-dr.yaml", SEED_SUBSETS);
    write(&config, "helloworld-vs.yaml", SEED_SUBSET_SPLIT);
    wait_for_config(
        &client,
        &agent,
        "the 70/30 subset split",
        "outbound|5000|helloworld-v1|helloworld.default.svc.cluster.local",
    );
    let (v1, v2, failed) = spread(&client, &hello_url, 1000);
    assert_eq!((failed, v1 + v2), (0, 1000), "v1 {v1}, v2 {v2}");
    assert!(
        (650..=750).contains(&v1),
        "v1 got {v1} of 1000, want 700 ± 50"
    );

    // (b) The canary seed: canary users always reach vm-v2, the others split 90/10.
    write(&config, "forum.yaml", SEED_FORUM);
    write(&config, "forum-canary.yaml", SEED_CANARY);
    wait_for_config(
        &client,
        &agent,
        "the canary routes",
        "outbound|8080|vm-v2|forum.istioinaction.svc.cluster.local",
    );
    let forum = cp.service_vip("istioinaction", "forum").unwrap();
    let forum_url = format!("http://{forum}:8080/api");
    let canary = spread_to(
        &client,
        &forum_url,
        100,
        "forum-vm-",
        &["canary-user: true"],
    );
    assert_eq!(canary, (0, 100, 0), "canary users: (v1, v2, failed)");
    let (v1, v2, failed) = spread_to(&client, &forum_url, 1000, "forum-vm-", &[]);
    assert_eq!((failed, v1 + v2), (0, 1000), "v1 {v1}, v2 {v2}");
    assert!(
        (50..=150).contains(&v2),
        "vm-v2 got {v2} of 1000, want 100 ± 50"
    );

    // (c) Retries: the flaky server answers its first request 503; three attempts make it 200.
    write(&config, "retries.yaml", RETRIES);
    wait_for_config(&client, &agent, "the retry policy", "\"num_retries\": 3");
    let flaky_vip = cp.service_vip("default", "flaky").unwrap();
    let (code, body) = call(&client, &format!("http://{flaky_vip}:7000/once"));
    assert_eq!(code, 200, "{body}\n{}", flaky.log_tail(5));
    assert!(body.contains("header.x-envoy-attempt-count=2"), "{body}");
    let log = flaky.log();
    assert!(
        log.contains("/once HTTP/1.1 from") && log.contains("-> 503"),
        "{log}"
    );

    // (d) and (e): an injected abort, then a path routed to a slow service times out.
    write(&config, "ops.yaml", FAULTS_AND_TIMEOUTS);
    wait_for_config(&client, &agent, "the ops routes", "\"http_status\": 418");
    let ops = cp.service_vip("default", "ops").unwrap();
    assert_eq!(
        call(&client, &format!("http://{ops}:7100/abort/now")).0,
        418
    );
    let (code, body) = call(&client, &format!("http://{ops}:7100/slow"));
    assert_eq!((code, body.as_str()), (504, "upstream request timeout"));
    let (code, body) = call(&client, &format!("http://{ops}:7100/fast"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("server=ops"), "{body}");

    // A `*` host bound to the mesh: rejected with Istio's message, nothing changes.
    write(&config, "wildcard.yaml", MESH_WILDCARD);
    let errors = poll_until(
        "the `*` host to be rejected",
        Duration::from_secs(10),
        || {
            let (_, body) = cp.api("GET", "/api/v1/errors", None)?;
            Ok(if body.contains("everything") {
                Attempt::Ready(body)
            } else {
                Attempt::NotYet(body)
            })
        },
    )
    .unwrap();
    assert!(
        errors.contains(
            "spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway"
        ),
        "{errors}"
    );
    let (v1, v2, failed) = spread(&client, &hello_url, 20);
    assert_eq!((failed, v1 + v2), (0, 20));

    // Envoy accepted every push.
    let syncz = cp.syncz().unwrap();
    assert!(!syncz.contains("\"NACK\""), "{syncz}");
}
