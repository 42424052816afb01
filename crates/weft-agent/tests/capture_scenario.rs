//! Traffic capture with real iptables in a network namespace: `weft-agent istio-iptables`
//! installs Istio's VM rules (IPv4 and IPv6), re-applying gives the identical ruleset, applying
//! over a half-removed or foreign leftover state works, captured traffic reaches the local
//! 15001/15006/15053 listeners while SSH and the proxy user's own traffic do not, and
//! `--cleanup-only` removes everything.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use weft_testkit::{Host, Lab, ip};

const AGENT: &str = env!("CARGO_BIN_EXE_weft-agent");
/// TEST-NET-2: never answered by anyone; the lab routes it to a host that does not forward it.
const SERVICE_IP: &str = "198.51.100.1";
const DNS_SERVER_IP: &str = "198.51.100.53";
/// The system Python, which the proxy user can run (a pyenv shim under /root is not reachable).
const PYTHON: &str = "/usr/bin/python3";

/// A DNS responder answering every A query with 203.0.113.7.
const DNS_RESPONDER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 15053))
print("dns responder ready", flush=True)
while True:
    q, peer = s.recvfrom(4096)
    i = 12
    while q[i] != 0:
        i += q[i] + 1
    i += 5
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04" + bytes([203, 0, 113, 7])
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:i] + answer, peer)
"#;

const T: Duration = Duration::from_secs(60);

fn as_proxy_user(argv: &[&str]) -> Vec<String> {
    ["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups"]
        .iter()
        .chain(argv)
        .map(|s| s.to_string())
        .collect()
}

fn agent(host: &Host, root: &Path, extra: &[&str]) -> weft_testkit::CommandOutput {
    let mut cmd = Command::new(AGENT);
    cmd.arg("istio-iptables")
        .arg("--root")
        .arg(root)
        .args(extra);
    let out = host
        .run_command(&cmd, T)
        .expect("run weft-agent istio-iptables");
    assert!(out.success(), "{out}");
    out
}

/// `iptables-save` (or `ip6tables-save`) without comments, and chains without policy and
/// counters (`:NAME`).
fn saved(host: &Host, tool: &str) -> String {
    let out = host.run(&[tool], T).expect(tool);
    assert!(out.success(), "{out}");
    out.stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(' ') {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of a save that mention ISTIO_ chains, each prefixed with its table.
fn istio_lines(save: &str) -> Vec<String> {
    let mut table = "";
    let mut out = Vec::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t;
        } else if line.contains("ISTIO_") {
            out.push(format!("{table}: {line}"));
        }
    }
    out
}

fn sh(host: &Host, argv: &[&str]) {
    let out = host.run(argv, T).expect("command");
    assert!(out.success(), "{out}");
}

#[test]
fn istio_iptables_captures_inbound_outbound_and_dns_and_cleans_up() {
    let lab = Lab::new("capture").expect("lab");
    let net = lab.network("lan").expect("network");
    let vm = lab.host("vm", &[&net]).expect("host vm");
    let client = lab.host("client", &[&net]).expect("host client");

    // Test-net traffic from the VM leaves through `client`, which forwards but has no route
    // onward: uncaptured connections fail at once (ICMP unreachable) instead of hanging.
    client.enable_forwarding().expect("forwarding");
    vm.add_route("198.51.100.0/24", client.ip()).expect("route");
    // A routable IPv6 address: IPv6 rules are installed too.
    ip(&[
        "-n",
        vm.netns(),
        "addr",
        "add",
        "fd00:5eed::10/64",
        "dev",
        "eth0",
        "nodad",
    ])
    .expect("ipv6 address");

    let root = lab.dir().join("vm-root");
    std::fs::create_dir_all(root.join("var/lib/istio/envoy")).unwrap();
    std::fs::write(
        root.join("var/lib/istio/envoy/cluster.env"),
        "ISTIO_INBOUND_PORTS='*'\n\
         ISTIO_LOCAL_EXCLUDE_PORTS='22,15090,15021,15020'\n\
         ISTIO_SERVICE_CIDR='*'\n\
         ISTIO_META_DNS_CAPTURE='true'\n\
         CAPTURE_ALL_DNS='true'\n",
    )
    .unwrap();

    // Stand-ins for Envoy's outbound and inbound listeners and the agent's DNS proxy (run as
    // the proxy user, as the agent does: its replies are in conntrack zone 2).
    vm.start_http_server("outbound-capture", ([0, 0, 0, 0], 15001).into(), &[])
        .expect("15001 server");
    vm.start_http_server("inbound-capture", ([0, 0, 0, 0], 15006).into(), &[])
        .expect("15006 server");
    let dns = vm
        .spawn(
            "dns-responder",
            &as_proxy_user(&[PYTHON, "-c", DNS_RESPONDER]),
        )
        .expect("dns responder");
    dns.wait_for_log("dns responder ready", T)
        .expect("dns responder ready");

    // --dry-run prints the rules and changes nothing.
    let dry = agent(&vm, &root, &["--dry-run"]);
    assert!(dry.stdout.starts_with("* nat\n"), "{dry}");
    assert!(dry.stdout.contains("# IPv6 (ip6tables-restore)\n"), "{dry}");
    assert!(istio_lines(&saved(&vm, "iptables-save")).is_empty());

    // Install.
    agent(&vm, &root, &[]);
    let v4 = saved(&vm, "iptables-save");
    let v6 = saved(&vm, "ip6tables-save");
    for want in [
        "nat: :ISTIO_INBOUND",
        "nat: :ISTIO_REDIRECT",
        "nat: :ISTIO_IN_REDIRECT",
        "nat: :ISTIO_OUTPUT",
        "nat: :ISTIO_OUTPUT_DNS",
        "nat: -A PREROUTING -p tcp -j ISTIO_INBOUND",
        "nat: -A OUTPUT -j ISTIO_OUTPUT",
        "nat: -A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
        "nat: -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "nat: -A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "raw: :ISTIO_OUTPUT_DNS",
        "raw: :ISTIO_INBOUND",
        "raw: -A OUTPUT -j ISTIO_OUTPUT_DNS",
    ] {
        assert!(
            istio_lines(&v4).iter().any(|l| l == want),
            "missing {want:?} in\n{v4}"
        );
    }
    assert!(
        istio_lines(&v6)
            .iter()
            .any(|l| l == "nat: -A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN"),
        "{v6}"
    );
    assert!(!v6.contains("*raw"), "no DNS capture over IPv6:\n{v6}");

    // Applying again gives exactly the same rules.
    agent(&vm, &root, &[]);
    assert_eq!(
        saved(&vm, "iptables-save"),
        v4,
        "re-apply changed IPv4 rules"
    );
    assert_eq!(
        saved(&vm, "ip6tables-save"),
        v6,
        "re-apply changed IPv6 rules"
    );

    // A half-removed state plus foreign leftovers (an old TPROXY chain in mangle, a duplicate
    // jump, a commented jump): applying replaces it all with the same rules.
    for cmd in [
        "iptables -t nat -D OUTPUT -j ISTIO_OUTPUT",
        "iptables -t nat -F ISTIO_INBOUND",
        "iptables -t nat -A PREROUTING -p tcp -j ISTIO_INBOUND",
        "iptables -t raw -D PREROUTING -j ISTIO_INBOUND",
        "iptables -t raw -F ISTIO_INBOUND",
        "iptables -t raw -X ISTIO_INBOUND",
        "iptables -t mangle -N ISTIO_DIVERT",
        "iptables -t mangle -A ISTIO_DIVERT -j MARK --set-mark 1337",
        "ip6tables -t nat -D OUTPUT -j ISTIO_OUTPUT",
        "ip6tables -t nat -X ISTIO_REDIRECT",
    ] {
        let argv: Vec<&str> = cmd.split(' ').collect();
        // `-X ISTIO_REDIRECT` fails while ISTIO_OUTPUT still jumps to it; that is fine.
        let _ = vm.run(&argv, T);
    }
    sh(
        &vm,
        &[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            "old istio tproxy",
            "-j",
            "ISTIO_DIVERT",
        ],
    );
    let broken = saved(&vm, "iptables-save");
    assert_ne!(istio_lines(&broken), istio_lines(&v4));
    agent(&vm, &root, &[]);
    assert_eq!(
        istio_lines(&saved(&vm, "iptables-save")),
        istio_lines(&v4),
        "apply over a half-removed state"
    );
    assert_eq!(istio_lines(&saved(&vm, "ip6tables-save")), istio_lines(&v6));

    // Outbound from an application (root): captured to 15001.
    let url = format!("http://{SERVICE_IP}:80/outbound");
    let out = vm.curl(&[url.as_str()], Duration::from_secs(5)).unwrap();
    assert!(out.stdout.contains("server=outbound-capture\n"), "{out}");

    // Inbound to any port but the excluded ones: captured to 15006.
    let inbound = format!("http://{}:8080/inbound", vm.ip());
    let out = client
        .curl(&[inbound.as_str()], Duration::from_secs(5))
        .unwrap();
    assert!(out.stdout.contains("server=inbound-capture\n"), "{out}");

    // SSH is not captured: nothing listens on 22, so the connection is refused.
    let ssh = format!("http://{}:22/", vm.ip());
    let out = client
        .curl(&[ssh.as_str()], Duration::from_secs(5))
        .unwrap();
    assert_eq!(out.code(), Some(7), "expected connection refused: {out}");
    assert!(!out.stdout.contains("server="), "{out}");

    // The proxy user's own traffic is not captured: it really goes out, and fails fast.
    let proxy_curl = as_proxy_user(&["curl", "-sS", "--max-time", "5", url.as_str()]);
    let out = vm.run(&proxy_curl, T).unwrap();
    assert!(!out.success(), "{out}");
    assert!(!out.stdout.contains("outbound-capture"), "{out}");
    assert!(out.elapsed < Duration::from_secs(4), "{out}");

    // DNS from an application: answered by the local DNS proxy.
    let dig = [
        "dig",
        "+short",
        "+tries=1",
        "+time=3",
        &format!("@{DNS_SERVER_IP}"),
        "capture.test",
        "A",
    ]
    .map(|s| s.to_string());
    let out = vm.run(&dig, T).unwrap();
    assert_eq!(out.stdout.trim(), "203.0.113.7", "{out}");

    // Clean-up removes every chain and jump, IPv4 and IPv6; traffic flows uncaptured again.
    agent(&vm, &root, &["--cleanup-only"]);
    let v4 = saved(&vm, "iptables-save");
    let v6 = saved(&vm, "ip6tables-save");
    assert!(istio_lines(&v4).is_empty(), "{v4}");
    assert!(istio_lines(&v6).is_empty(), "{v6}");
    let out = vm.curl(&[url.as_str()], Duration::from_secs(5)).unwrap();
    assert!(!out.success(), "{out}");
    assert!(!out.stdout.contains("outbound-capture"), "{out}");
    let out = client
        .curl(&[inbound.as_str()], Duration::from_secs(5))
        .unwrap();
    assert_eq!(out.code(), Some(7), "expected connection refused: {out}");
    // Cleaning up twice is fine.
    agent(&vm, &root, &["--cleanup-only"]);
}
