//! The start script's defaults on a real host: with no `ISTIO_SVC_IP` and no `POD_NAME`, the agent
//! names itself after the host's first usable address (not loopback, link-local or a container
//! bridge) and its short host name, and warns when it had several addresses to choose from.
//!
//! The agent is started in a lab host (own network and UTS namespaces, so the host name can be
//! set) with a bundle that has no root certificate: it resolves its settings, logs its node id and
//! stops at the missing certificate, which is all this test needs.

use std::process::Command;
use std::time::Duration;
use weft_testkit::mesh::VmRoot;
use weft_testkit::{Host, Lab};

const AGENT: &str = env!("CARGO_BIN_EXE_weft-agent");
const T: Duration = Duration::from_secs(30);

fn ip(host: &Host, args: &[&str]) {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    host.run(&argv, T).unwrap().checked().unwrap();
}

/// Runs the agent in `host` under the host name `hostname`; returns its log (stderr).
fn run_agent(host: &Host, root: &VmRoot, hostname: &str) -> String {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--uts",
        "sh",
        "-c",
        "hostname \"$0\" && exec \"$1\" proxy --root \"$2\"",
    ])
    .arg(hostname)
    .arg(AGENT)
    .arg(&root.root);
    for k in ["ISTIO_SVC_IP", "INSTANCE_IP", "POD_NAME"] {
        cmd.env_remove(k);
    }
    let out = host.run_command(&cmd, T).unwrap();
    assert!(
        !out.success(),
        "the agent cannot start without a root certificate: {out}"
    );
    assert!(out.stderr.contains("root-cert.pem"), "{out}");
    out.stderr
}

fn node_id(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains(" starting "))
        .unwrap_or_else(|| panic!("no start line in:\n{log}"));
    let start = line.find("node=").expect("node field") + "node=".len();
    line[start..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn instance_ip_and_pod_name_default_from_the_host() {
    let lab = Lab::new("startup").unwrap();
    let net = lab.network("mesh").unwrap();
    let vm = lab.host("vm", &[&net]).unwrap();
    // Container bridges with addresses of their own, which must never be chosen.
    ip(&vm, &["link", "add", "docker0", "type", "bridge"]);
    ip(&vm, &["addr", "add", "172.17.0.1/16", "dev", "docker0"]);
    ip(&vm, &["link", "set", "docker0", "up"]);
    ip(&vm, &["link", "add", "cni0", "type", "bridge"]);
    ip(&vm, &["addr", "add", "10.244.0.1/24", "dev", "cni0"]);
    ip(&vm, &["link", "set", "cni0", "up"]);

    let root = VmRoot::new(&lab.dir().join("vm-root")).unwrap();
    root.write_cluster_env(&[("POD_NAMESPACE", "forum")])
        .unwrap();

    let log = run_agent(&vm, &root, "forum-vm-1.example.internal");
    assert_eq!(
        node_id(&log),
        format!(
            "sidecar~{}~forum-vm-1.forum~forum.svc.cluster.local",
            vm.ip()
        ),
        "{log}"
    );
    assert!(
        !log.contains("ISTIO_SVC_IP is not set"),
        "one candidate, no warning:\n{log}"
    );

    // A second usable address: the agent still picks one, and says which and among what.
    // (A veth pair: the kernel may lack the dummy driver. Its `veth*` end is a bridge port.)
    ip(
        &vm,
        &[
            "link", "add", "ens9", "type", "veth", "peer", "name", "veth9",
        ],
    );
    ip(&vm, &["addr", "add", "192.0.2.50/24", "dev", "ens9"]);
    ip(&vm, &["addr", "add", "10.55.0.1/24", "dev", "veth9"]);
    ip(&vm, &["link", "set", "ens9", "up"]);
    ip(&vm, &["link", "set", "veth9", "up"]);
    let log = run_agent(&vm, &root, "forum-vm-1");
    let warning = log
        .lines()
        .find(|l| l.contains("ISTIO_SVC_IP is not set: using "))
        .unwrap_or_else(|| panic!("no warning about the choice in:\n{log}"));
    let eth0 = format!("{} (eth0)", vm.ip());
    assert!(
        warning.contains(&eth0) && warning.contains("192.0.2.50 (ens9)"),
        "{warning}"
    );
    assert!(
        !warning.contains("172.17.0.1") && !warning.contains("10.244.0.1"),
        "{warning}"
    );
    let chosen = warning
        .split("ISTIO_SVC_IP is not set: using ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(
        chosen == vm.ip().to_string() || chosen == "192.0.2.50",
        "{warning}"
    );
    assert_eq!(
        node_id(&log),
        format!("sidecar~{chosen}~forum-vm-1.forum~forum.svc.cluster.local"),
        "{log}"
    );

    // The bundle's ISTIO_SVC_IP is taken as it is.
    root.write_cluster_env(&[("POD_NAMESPACE", "forum"), ("ISTIO_SVC_IP", "192.0.2.50")])
        .unwrap();
    let log = run_agent(&vm, &root, "forum-vm-1");
    assert!(node_id(&log).starts_with("sidecar~192.0.2.50~"), "{log}");
    assert!(!log.contains("ISTIO_SVC_IP is not set"), "{log}");
}
