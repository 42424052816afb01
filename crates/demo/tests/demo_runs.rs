//! The main job, proven: the demo binary runs the whole seed lab (weftd, two VMs with capture,
//! agents and real Envoy, mTLS, mesh-wide STRICT, a live edit) and exits 0. Needs root, like every
//! network-namespace scenario.

use std::process::Command;

#[test]
fn the_demo_runs_end_to_end() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft-demo"))
        .env("NO_COLOR", "1")
        .output()
        .expect("start weft-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weft-demo exited with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    // forum's app echoes the client certificate Envoy saw: webapp's SPIFFE identity.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("header.x-forwarded-client-cert=")
                && l.contains("URI=spiffe://cluster.local/ns/istioinaction/sa/webapp")),
        "no SPIFFE identity line in:\n{stdout}"
    );
    // The seed's manifest went in, and the outsider was refused because of it.
    assert!(stdout.contains("mode: STRICT"), "{stdout}");
    assert!(
        stdout.contains("✔ mesh-wide STRICT: the outsider is refused"),
        "no STRICT evidence in:\n{stdout}"
    );
    assert!(stdout.contains("7/7 steps passed"), "{stdout}");
}
