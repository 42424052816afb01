//! Golden rule text: `weft-agent istio-iptables --dry-run` for typical VM settings, read from a
//! cluster.env (and resolv.conf) under a temporary `--root`, as the agent reads them.
//!
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p weft-agent --test capture_golden` and review
//! the diff.

use std::path::PathBuf;
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_weft-agent");

struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir =
            std::env::temp_dir().join(format!("weft-capture-golden-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("var/lib/istio/envoy")).unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        Root(dir)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.0.join(rel), text).unwrap();
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the dry run with only `PATH` from the test's environment (plus `extra_env`).
fn dry_run(root: &Root, extra_env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(AGENT)
        .args(["istio-iptables", "--dry-run", "--root"])
        .arg(&root.0)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(extra_env.iter().copied())
        .output()
        .expect("run weft-agent");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_golden(name: &str, cluster_env: &str, resolv_conf: Option<&str>) {
    let root = Root::new(name);
    root.write("var/lib/istio/envoy/cluster.env", cluster_env);
    if let Some(r) = resolv_conf {
        root.write("etc/resolv.conf", r);
    }
    // Only IPv4 here, whatever addresses the test machine has.
    let (ok, got, stderr) = dry_run(&root, &[("ISTIO_DUAL_STACK", "false")]);
    assert!(ok, "dry run failed: {stderr}");
    let golden = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("testdata/iptables")
    .join(format!("{name}.golden"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            golden.display()
        )
    });
    assert!(
        got == want,
        "rules differ from {} (rerun with UPDATE_GOLDEN=1 and review the diff)\n{got}\nstderr:\n{stderr}",
        golden.display()
    );
}

/// What `istioctl x workload entry configure` writes (capture-relevant lines), DNS capture off.
const VM_DEFAULT: &str = "\
ISTIO_INBOUND_PORTS='*'
ISTIO_LOCAL_EXCLUDE_PORTS='22,15090,15021,15020'
ISTIO_SERVICE_CIDR='*'
ISTIO_NAMESPACE='vm-ns'
ISTIO_SERVICE='forum.vm-ns'
";

#[test]
fn default_vm() {
    check_golden("vm-default", VM_DEFAULT, None);
}

#[test]
fn default_vm_with_dns_capture() {
    // Istio's default bundle has DNS capture on; DNS to resolv.conf's IPv4 nameservers goes to
    // the agent (the IPv6 one is not captured).
    check_golden(
        "vm-dns",
        &format!("{VM_DEFAULT}ISTIO_META_DNS_CAPTURE='true'\n"),
        Some(
            "search vm-ns.svc.cluster.local\nnameserver 10.0.0.2\nnameserver 127.0.0.53\nnameserver fd00::53\n",
        ),
    );
}

#[test]
fn default_vm_capturing_all_dns() {
    check_golden(
        "vm-dns-all",
        &format!("{VM_DEFAULT}ISTIO_META_DNS_CAPTURE='true'\nCAPTURE_ALL_DNS='true'\n"),
        Some("nameserver 10.0.0.2\n"),
    );
}

#[test]
fn explicit_inbound_ports() {
    // 22 is listed but never captured.
    check_golden(
        "vm-inbound-ports",
        "ISTIO_INBOUND_PORTS='8080,9090,22'\nISTIO_LOCAL_EXCLUDE_PORTS='15090,15021,15020'\nISTIO_SERVICE_CIDR='*'\n",
        None,
    );
}

#[test]
fn service_cidrs_with_excludes() {
    check_golden(
        "vm-service-cidr",
        "ISTIO_INBOUND_PORTS='*'\n\
         ISTIO_LOCAL_EXCLUDE_PORTS='15090,15021,15020'\n\
         ISTIO_SERVICE_CIDR='10.96.0.0/12,240.240.0.0/16,fd00:10:96::/112'\n\
         ISTIO_SERVICE_EXCLUDE_CIDR='10.96.0.10/32,169.254.169.254'\n\
         ISTIO_OUTBOUND_PORTS='3306'\n\
         ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE='25,8000:8010'\n\
         PROXY_UID='999'\n\
         ENVOY_PORT='16001'\n\
         INBOUND_CAPTURE_PORT='16006'\n",
        None,
    );
}

#[test]
fn dual_stack() {
    let root = Root::new("dual-stack");
    root.write("var/lib/istio/envoy/cluster.env", VM_DEFAULT);
    let (ok, got, stderr) = dry_run(&root, &[("ISTIO_DUAL_STACK", "true")]);
    assert!(ok, "{stderr}");
    let (v4, v6) = got
        .split_once("# IPv6 (ip6tables-restore)\n")
        .unwrap_or_else(|| panic!("no IPv6 part:\n{got}"));
    let golden = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("testdata/iptables/vm-default.golden");
    let want_v4 = std::fs::read_to_string(golden).unwrap();
    assert_eq!(v4, want_v4);
    // The same structure with IPv6 loopback addresses.
    let want_v6 = want_v4
        .replace("127.0.0.6/32", "::6/128")
        .replace("127.0.0.1/32", "::1/128");
    assert_eq!(v6, want_v6);
}

#[test]
fn proxy_uid_comes_from_the_istio_proxy_user() {
    let root = Root::new("passwd");
    root.write("var/lib/istio/envoy/cluster.env", VM_DEFAULT);
    root.write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nistio-proxy:x:998:997::/nonexistent:/usr/sbin/nologin\n",
    );
    let (ok, got, stderr) = dry_run(&root, &[("ISTIO_DUAL_STACK", "false")]);
    assert!(ok, "{stderr}");
    assert!(
        got.contains("-m owner --uid-owner 998 -j RETURN\n"),
        "{got}"
    );
    assert!(
        got.contains("-m owner --gid-owner 997 -j RETURN\n"),
        "{got}"
    );
    assert!(!got.contains("1337"), "{got}");
}

#[test]
fn ssh_is_excluded_even_when_not_listed() {
    let root = Root::new("ssh");
    root.write(
        "var/lib/istio/envoy/cluster.env",
        "ISTIO_INBOUND_PORTS='*'\nISTIO_LOCAL_EXCLUDE_PORTS='15020'\n",
    );
    let (ok, got, stderr) = dry_run(&root, &[("ISTIO_DUAL_STACK", "false")]);
    assert!(ok, "{stderr}");
    assert!(
        got.contains(
            "-A ISTIO_INBOUND -p tcp --dport 22 -j RETURN\n-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN\n-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n"
        ),
        "{got}"
    );
    assert!(stderr.contains("SSH"), "{stderr}");
}

#[test]
fn process_environment_overrides_cluster_env_and_tproxy_is_refused() {
    let root = Root::new("tproxy");
    root.write("var/lib/istio/envoy/cluster.env", VM_DEFAULT);
    let (ok, _, stderr) = dry_run(&root, &[("ISTIO_INBOUND_INTERCEPTION_MODE", "TPROXY")]);
    assert!(!ok);
    assert!(
        stderr.contains("ISTIO_INBOUND_INTERCEPTION_MODE=TPROXY is not supported"),
        "{stderr}"
    );
    let (ok, _, stderr) = dry_run(&root, &[("ISTIO_SERVICE_CIDR", "10.0.0.0/40")]);
    assert!(!ok);
    assert!(stderr.contains("ISTIO_SERVICE_CIDR"), "{stderr}");
}
