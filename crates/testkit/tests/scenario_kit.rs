//! Scenario tests for the kit itself: real namespaces, real Envoy, real curl.

use std::fs;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use weft_testkit::{DEFAULT_TIMEOUT, Lab, list_netns};

const HTTP_PORT: u16 = 8000;
const PROXY_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 15000;

/// Envoy: listener on PROXY_PORT → HTTP connection manager → router → static cluster `backend`.
fn proxy_config(upstream: SocketAddr) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 0.0.0.0, port_value: {PROXY_PORT} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }}
"#,
        ip = upstream.ip(),
        port = upstream.port()
    )
}

/// Whether a live process with this pid mentions `program` in its command line (it may still
/// be `ip netns exec … program` right after spawning).
fn still_running(pid: u32, program: &str) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(program.len()).any(|w| w == program.as_bytes()))
}

fn leftover_namespaces(created: &[String]) -> Vec<String> {
    let existing = list_netns().expect("ip netns list");
    created
        .iter()
        .filter(|ns| existing.contains(ns))
        .cloned()
        .collect()
}

#[test]
fn envoy_in_a_proxies_c_to_b_and_d_on_another_network_cannot_reach_b() {
    let lab = Lab::new("envoy_proxies").expect("lab");
    let mesh = lab.network("mesh").expect("network mesh");
    let other = lab.network("other").expect("network other");
    let a = lab.host("a", &[&mesh]).expect("host a");
    let b = lab.host("b", &[&mesh]).expect("host b");
    let c = lab.host("c", &[&mesh]).expect("host c");
    let d = lab.host("d", &[&other]).expect("host d");
    assert_eq!(b.ip(), mesh.addr(11));
    assert_eq!(d.ip(), other.addr(10));

    let backend: SocketAddr = (b.ip(), HTTP_PORT).into();
    b.start_http_server("b", backend, &["x-request-id", "x-test"])
        .expect("http server in b");
    let envoy = a
        .start_envoy("envoy-a", &proxy_config(backend), ADMIN_PORT)
        .expect("envoy in a");
    let clusters = envoy.admin_get("/clusters").expect("admin /clusters");
    assert!(
        clusters.body.contains(&format!("backend::{backend}")),
        "{}",
        clusters.body
    );

    let url = format!("http://{}:{PROXY_PORT}/through-envoy", a.ip());
    let out = c
        .curl(
            &["-H", "x-test: hello", url.as_str()],
            Duration::from_secs(5),
        )
        .expect("curl from c");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("server=b\n"), "{out}");
    assert!(out.stdout.contains("path=/through-envoy\n"), "{out}");
    assert!(out.stdout.contains("header.x-test=hello\n"), "{out}");
    // Envoy's connection manager adds x-request-id: the request went through A.
    assert!(out.stdout.contains("header.x-request-id="), "{out}");

    let direct = format!("http://{backend}/direct");
    let out = d
        .curl(&[direct.as_str()], Duration::from_secs(2))
        .expect("curl from d");
    assert!(!out.success(), "d must not reach b: {out}");
    assert!(out.elapsed < Duration::from_secs(5), "{out}");
}

#[test]
fn gateway_on_two_networks_forwards_between_them() {
    let lab = Lab::new("gateway").expect("lab");
    let cluster = lab.network("cluster").expect("network cluster");
    let vm = lab.network("vm").expect("network vm");
    let gw = lab.host("gw", &[&cluster, &vm]).expect("host gw");
    let server = lab.host("server", &[&cluster]).expect("host server");
    let client = lab.host("client", &[&vm]).expect("host client");
    assert_eq!(gw.interfaces().len(), 2);
    assert_eq!(gw.interfaces()[1].name, "eth1");

    server
        .start_http_server("server", ([0, 0, 0, 0], HTTP_PORT).into(), &[])
        .expect("http server");
    let url = format!("http://{}:{HTTP_PORT}/via-gateway", server.ip());

    // Without routes the client cannot reach the other network.
    let out = client
        .curl(&[url.as_str()], Duration::from_secs(2))
        .expect("curl");
    assert!(!out.success(), "{out}");

    gw.enable_forwarding().expect("forwarding");
    client.set_default_route(gw.ip_on(&vm)).expect("route");
    server
        .add_route(&vm.cidr(), gw.ip_on(&cluster))
        .expect("return route");
    let out = client
        .curl(&[url.as_str()], Duration::from_secs(5))
        .expect("curl");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("server=server\n"), "{out}");
    assert!(out.stdout.contains("path=/via-gateway\n"), "{out}");
}

#[test]
fn waits_report_clear_errors_and_commands_time_out() {
    let lab = Lab::new("waits").expect("lab");
    let net = lab.network("n").expect("network");
    let h = lab.host("h", &[&net]).expect("host");

    let script = "import socket, time\n\
                  s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                  s.bind(('0.0.0.0', 5353))\n\
                  time.sleep(600)\n";
    h.spawn("udp", &["python3", "-c", script]).expect("udp");
    h.wait_for_udp((h.ip(), 5353).into(), DEFAULT_TIMEOUT)
        .expect("udp bound");

    let err = h
        .wait_for_udp((h.ip(), 5354).into(), Duration::from_millis(200))
        .unwrap_err();
    assert!(err.message().contains("UDP"), "{err}");
    assert!(err.message().contains("timed out"), "{err}");

    let err = h
        .wait_for_tcp((h.ip(), 9).into(), Duration::from_millis(200))
        .unwrap_err();
    assert!(err.message().contains("refused"), "{err}");

    let err = h
        .run(&["sleep", "5"], Duration::from_millis(200))
        .unwrap_err();
    assert!(err.message().contains("did not finish"), "{err}");

    let out = h
        .run(&["ip", "-o", "addr"], DEFAULT_TIMEOUT)
        .expect("ip addr");
    assert!(out.stdout.contains(&h.ip().to_string()), "{out}");
}

#[test]
fn teardown_removes_namespaces_processes_and_directory() {
    let lab = Lab::new("teardown").expect("lab");
    let net = lab.network("n").expect("network");
    let h = lab.host("h", &[&net]).expect("host");
    lab.host("h2", &[&net]).expect("host 2");
    let sleeper = h
        .spawn(
            "sleeper",
            &["sh", "-c", "echo sleeper started; exec sleep 1000"],
        )
        .expect("sleep");
    sleeper
        .wait_for_log("sleeper started", DEFAULT_TIMEOUT)
        .expect("log");
    let namespaces = lab.namespaces();
    let dir = lab.dir().to_path_buf();
    assert_eq!(namespaces.len(), 3);
    assert!(leftover_namespaces(&namespaces).len() == 3);
    assert!(still_running(sleeper.pid(), "sleep"));

    drop(lab);

    assert_eq!(leftover_namespaces(&namespaces), Vec::<String>::new());
    assert!(!still_running(sleeper.pid(), "sleep"));
    assert!(!dir.exists(), "{} should be removed", dir.display());
}

#[test]
fn teardown_after_panic_removes_namespaces_and_keeps_logs() {
    let seen: Mutex<Option<(Vec<String>, PathBuf, u32)>> = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new("panics").expect("lab");
        let net = lab.network("n").expect("network");
        let h = lab.host("h", &[&net]).expect("host");
        let sleeper = h
            .spawn(
                "sleeper",
                &["sh", "-c", "echo sleeper started; exec sleep 1000"],
            )
            .expect("sleep");
        sleeper
            .wait_for_log("sleeper started", DEFAULT_TIMEOUT)
            .expect("log");
        *seen.lock().unwrap() = Some((lab.namespaces(), lab.dir().to_path_buf(), sleeper.pid()));
        panic!("deliberate panic to exercise teardown");
    }));
    assert!(result.is_err());
    let (namespaces, dir, pid) = seen.lock().unwrap().take().expect("lab was built");

    assert_eq!(leftover_namespaces(&namespaces), Vec::<String>::new());
    assert!(!still_running(pid, "sleep"));
    let log = fs::read_to_string(dir.join("sleeper.log")).expect("log kept after failure");
    assert!(log.contains("sleeper started"), "{log}");
    fs::remove_dir_all(&dir).expect("remove kept dir");
}

#[test]
fn envoy_with_a_bad_config_fails_with_its_log() {
    let lab = Lab::new("envoy_bad_config").expect("lab");
    let net = lab.network("n").expect("network");
    let h = lab.host("h", &[&net]).expect("host");
    let err = h
        .start_envoy("envoy-bad", "static_resources: {clusters: 7}\n", ADMIN_PORT)
        .unwrap_err();
    assert!(err.message().contains("exited"), "{err}");
    assert!(err.message().contains("envoy-bad.log"), "{err}");
}
