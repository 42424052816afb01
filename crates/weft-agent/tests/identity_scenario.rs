//! Identity end to end: weftd in one host, weft-agent + real Envoy in another. The workload gets a
//! SPIFFE certificate over SDS, it rotates without restarting Envoy, renewal keeps working without
//! the token and across a weftd restart (same root), and a token for another identity is refused.

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use weft_testkit::mesh::{ControlPlane, VmRoot};
use weft_testkit::{Attempt, Host, Lab, poll_until};

#[derive(Debug, Clone, PartialEq)]
struct ServedCert {
    serial: String,
    uri: String,
    expiration: String,
}

/// The workload certificate Envoy is using, from its admin `/certs`.
fn served_cert(host: &Host) -> Option<ServedCert> {
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, 15000));
    let resp = host
        .http_get(admin, "/certs", Duration::from_secs(2))
        .ok()?;
    let v: Value = serde_json::from_str(&resp.body).ok()?;
    v["certificates"].as_array()?.iter().find_map(|c| {
        let leaf = c["cert_chain"].as_array()?.first()?;
        let uri = leaf["subject_alt_names"]
            .as_array()?
            .iter()
            .find_map(|s| s["uri"].as_str())?;
        Some(ServedCert {
            serial: leaf["serial_number"].as_str()?.to_string(),
            uri: uri.to_string(),
            expiration: leaf["expiration_time"].as_str()?.to_string(),
        })
    })
}

fn wait_for_cert(
    host: &Host,
    what: &str,
    timeout: Duration,
    differs_from: Option<&ServedCert>,
) -> ServedCert {
    poll_until(what, timeout, || {
        Ok(match served_cert(host) {
            Some(c) if differs_from.is_none_or(|old| old.serial != c.serial) => Attempt::Ready(c),
            other => Attempt::NotYet(format!("{other:?}")),
        })
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn envoy_pids(root: &VmRoot) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(root.path("etc/istio/proxy/envoy-rev.json"))
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn workload_identity_end_to_end() {
    let lab = Lab::new("ident").unwrap();
    let net = lab.network("mesh").unwrap();
    let cp_host = lab.host("cp", &[&net]).unwrap();
    let vm = lab.host("vm", &[&net]).unwrap();
    let intruder_host = lab.host("intruder", &[&net]).unwrap();
    let mut cp = ControlPlane::start(&cp_host, &lab.dir().join("state"), &[]).unwrap();

    let root = VmRoot::new(&lab.dir().join("vm-root")).unwrap();
    root.write_bundle(
        &cp,
        &vm,
        "forum",
        "forum-sa",
        "forum-vm",
        &[("SECRET_TTL", "20s")],
    )
    .unwrap();
    let agent = root.start_agent(&vm, "agent", &[]).unwrap();

    // 1. Envoy serves the workload's SPIFFE identity, delivered over SDS.
    let first = wait_for_cert(
        &vm,
        "Envoy to load the workload certificate",
        Duration::from_secs(30),
        None,
    );
    assert_eq!(first.uri, "spiffe://cluster.local/ns/forum/sa/forum-sa");
    assert!(!first.expiration.is_empty());
    for f in ["key.pem", "cert-chain.pem", "root-cert.pem"] {
        let mode = std::fs::metadata(root.path("etc/certs").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} must be 0600");
    }
    let pids = envoy_pids(&root);
    assert_eq!(pids.len(), 1, "one Envoy: {pids:?}");
    let first_seen = std::time::Instant::now();

    // 2. With SECRET_TTL=20s the certificate rotates at ~10 s and Envoy serves it without restarting.
    let second = wait_for_cert(
        &vm,
        "the first rotation",
        Duration::from_secs(25),
        Some(&first),
    );
    let after = first_seen.elapsed();
    assert!(
        after >= Duration::from_secs(6) && after <= Duration::from_secs(16),
        "rotation should come at about half of the 20 s lifetime, came after {after:?}"
    );
    assert_eq!(second.uri, first.uri);
    assert_eq!(
        envoy_pids(&root),
        pids,
        "Envoy must not restart on rotation"
    );
    assert!(agent.log().contains("Envoy started"));
    assert_eq!(agent.log().matches("Envoy started").count(), 1);

    // 3. The bootstrap token is gone: renewal continues with the certificate itself.
    std::fs::remove_file(root.token_path()).unwrap();
    let third = wait_for_cert(
        &vm,
        "rotation without a token",
        Duration::from_secs(25),
        Some(&second),
    );
    assert!(
        agent
            .log()
            .contains("workload certificate issued via certificate"),
        "{}",
        agent.log_tail(20)
    );

    // 4. weftd restarts: same root, the agent reconnects and keeps renewing.
    let root_before = cp.root_cert().unwrap();
    cp.restart().unwrap();
    assert_eq!(
        cp.root_cert().unwrap(),
        root_before,
        "the CA root must survive a restart"
    );
    poll_until(
        "the agent's xDS stream to come back",
        Duration::from_secs(30),
        || {
            let s = cp.syncz()?;
            Ok(if s.contains("forum-vm.forum") {
                Attempt::Ready(())
            } else {
                Attempt::NotYet(s)
            })
        },
    )
    .unwrap();
    wait_for_cert(
        &vm,
        "rotation after the weftd restart",
        Duration::from_secs(25),
        Some(&third),
    );
    assert_eq!(
        envoy_pids(&root),
        pids,
        "Envoy must not restart across a weftd restart"
    );

    // 5. A token for another service account cannot pose as forum-sa: the xDS stream is refused.
    let bad_root = VmRoot::new(&lab.dir().join("intruder-root")).unwrap();
    bad_root
        .write_bundle(&cp, &intruder_host, "forum", "forum-sa", "intruder", &[])
        .unwrap();
    bad_root
        .write_token(&cp.mint_token("forum", "intruder", 600).unwrap())
        .unwrap();
    let intruder = bad_root
        .start_agent(&intruder_host, "intruder-agent", &[])
        .unwrap();
    intruder
        .wait_for_log("PermissionDenied", Duration::from_secs(30))
        .or_else(|_| intruder.wait_for_log("authorization failed", Duration::from_secs(1)))
        .unwrap_or_else(|e| panic!("{e}\n{}", intruder.log_tail(30)));
    cp.process
        .wait_for_log("authorization failed: node", Duration::from_secs(5))
        .unwrap();
    let syncz = cp.syncz().unwrap();
    assert!(!syncz.contains("intruder.forum"), "{syncz}");
    assert!(
        served_cert(&intruder_host).is_none(),
        "the intruder's Envoy must get no config"
    );
}
