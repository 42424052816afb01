//! The main job, proven: the demo binary runs the seed lab end to end and narrates the evidence of
//! every step; a failed step and Ctrl-C both leave nothing behind. Needs root, like every
//! network-namespace scenario.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn demo() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft-demo"));
    cmd.env("NO_COLOR", "1");
    cmd
}

/// The narration of step `n` (from its heading to the next one).
fn step(stdout: &str, n: usize) -> &str {
    let start = stdout
        .find(&format!("━━ {n}. "))
        .unwrap_or_else(|| panic!("no step {n} in:\n{stdout}"));
    let rest = &stdout[start..];
    let skip = "━━".len();
    let end = rest[skip..].find("\n━━ ").map_or(rest.len(), |i| i + skip);
    &rest[..end]
}

/// The value of counter `name` as shown in `text` (`name: N`).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in:\n{text}"))
}

fn has(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{n:?} missing in:\n{text}");
    }
}

/// The lab directory the demo announced (`LAB=<dir>  (...)`).
fn lab_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LAB="))
        .unwrap_or_else(|| panic!("no LAB= line in:\n{stdout}"));
    PathBuf::from(line.split_whitespace().next().unwrap())
}

/// Namespaces of the demo process `pid` still on the machine.
fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("weft{pid}-")))
        .map(str::to_string)
        .collect()
}

/// Processes whose command line names `dir` (weftd, agents, Envoys, apps of that lab).
fn processes_naming(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(dir) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Asserts that the lab of demo `pid` left no namespace and (within a few seconds, for short
/// commands the demo started just before exiting) no process.
fn nothing_left(pid: u32, dir: &str) {
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_naming(dir);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weft-demo did not exit within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_demo_runs_the_seed_lab_and_shows_each_steps_evidence() {
    let child = demo()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft-demo");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weft-demo exited with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(!stdout.contains('✘'), "{stdout}");

    // 1. Two networks; the gateway forwards nothing; the VM's way out is the gateway.
    has(
        step(&stdout, 1),
        &[
            "[gw]$ cat /proc/sys/net/ipv4/ip_forward\n      0\n",
            "default via 198.18.1.10 dev eth0",
        ],
    );
    // 2. The seed's own manifests: the invalid ones named with Istio's errors, fixed; weftd
    //    loads every resource of the config directory and rejects none.
    let s = step(&stdout, 2);
    has(
        s,
        &[
            "Gateway default/cross-network-gateway: ERROR spec.servers[0].port.name: port name must be set",
            "VirtualService default/istiod-vs: ERROR spec.tls: delegate virtual service must have no tls route specified",
            "3 valid, 3 invalid, 1 skipped",
            "+ name: tls ",
            "+ sniHosts: [\"*\"]",
            "13 valid, 0 invalid, 0 skipped",
            "loaded config file $LAB/config/gateways.yaml: 3 resources, 0 rejected",
            "config store ready: 13 resources",
            "\"errors\": []",
            "✔ weftd loaded every resource; none rejected",
        ],
    );
    // 3. The gateway's listeners and one SNI cluster per service.
    has(
        step(&stdout, 3),
        &[
            "[gw]$ weft-agent proxy router --root $LAB/gw-root &",
            "0.0.0.0_15443::0.0.0.0:15443",
            "0.0.0.0_15012::0.0.0.0:15012",
            "0.0.0.0_15017::0.0.0.0:15017",
            "outbound_.80_._.forum.forum-services.svc.cluster.local",
        ],
    );
    // 4. catalog answers on its own VIP, over mTLS from webapp.
    let s = step(&stdout, 4);
    has(
        s,
        &[
            "x-weft-server: catalog",
            "server=catalog",
            "URI=spiffe://cluster.local/ns/istioinaction/sa/webapp",
            "✔ catalog answers on its own VIP",
        ],
    );
    // 5. The seed's group is served; no VM yet.
    has(
        step(&stdout, 5),
        &[
            "serviceAccount: forum-sa",
            "No resources found in forum-services namespace.",
        ],
    );
    // 6. The bundle: what configure printed and the files it wrote.
    has(
        step(&stdout, 6),
        &[
            "--autoregister --ingressIP 198.18.1.10",
            "was successful",
            "cluster.env",
            "istio-token",
            "198.18.1.10 istiod.istio-system.svc",
            "ISTIO_META_NETWORK='vm-network'",
            "ISTIO_META_AUTO_REGISTER_GROUP='forum'",
        ],
    );
    // 7. The VM: direct connects to the cluster fail, the gateway connects.
    has(
        step(&stdout, 7),
        &[
            "Failed to connect to 198.18.0.10 port 15012",
            "Failed to connect to 198.18.0.12 port 8080",
            "✔ the VM reaches only the gateway's address",
        ],
    );
    // 8. The VM joined through the gateway: its entry is Healthy, its xDS stream is open.
    let s = step(&stdout, 8);
    assert!(
        s.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"forum-198.18.1.11-vm-network") && f.last() == Some(&"True")
        }),
        "{s}"
    );
    let istiod = "cluster.outbound|15012||istiod.istio-system.svc.cluster.local";
    assert!(
        counter(s, &format!("{istiod}.upstream_cx_active")) >= 1,
        "{s}"
    );
    has(s, &["spiffe://cluster.local/ns/forum-services/sa/forum-sa"]);
    // 9. DNS on the VM: mesh names answer their VIPs (as weftd lists them), another name is
    //    answered by the VM's DNS server, and the apps' queries are captured.
    let s = step(&stdout, 9);
    let services = step(&stdout, 2);
    for (ns, name) in [
        ("istioinaction", "webapp"),
        ("istioinaction", "catalog"),
        ("forum-services", "forum"),
    ] {
        let vip = services
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 3 && f[0] == ns && f[1] == name).then(|| f[3].to_string())
            })
            .unwrap_or_else(|| panic!("no VIP for {ns}/{name} in:\n{services}"));
        has(
            s,
            &[&format!(
                "[forum]$ dig +short @localhost -p 15053 {name}.{ns}\n      {vip}\n"
            )],
        );
        if name == "webapp" {
            has(
                s,
                &[&format!(
                    "[forum]$ dig +short webapp.istioinaction\n      {vip}\n"
                )],
            );
        }
    }
    has(
        s,
        &[
            "[forum]$ dig +short @localhost -p 15053 www.example.com\n      203.0.113.10\n",
            "query[A] www.example.com from 198.18.1.11",
            "--dport 53 -j REDIRECT --to-ports 15053",
        ],
    );
    // 10. The VM's app → webapp and catalog by name through the gateway's 15443.
    let s = step(&stdout, 10);
    has(
        s,
        &[
            "[forum]$ curl -sS -i --max-time 3 webapp.istioinaction/api/catalog/items/1",
            "[forum]$ curl -sS -i --max-time 3 catalog.istioinaction/items",
            "server=webapp",
            "server=catalog",
            "URI=spiffe://cluster.local/ns/forum-services/sa/forum-sa",
            "webapp.istioinaction.svc.cluster.local::198.18.1.10:15443::rq_success::",
            "catalog.istioinaction.svc.cluster.local::198.18.1.10:15443::rq_success::",
        ],
    );
    for svc in ["webapp.istioinaction", "catalog.istioinaction"] {
        let name = format!("cluster.outbound_.80_._.{svc}.svc.cluster.local.upstream_cx_total");
        assert!(counter(s, &name) >= 1, "{s}");
    }
    // 11. webapp → forum.forum-services through the gateway to the VM's app.
    let s = step(&stdout, 11);
    has(
        s,
        &[
            "[webapp]$ curl -sS -i --max-time 3 forum.forum-services/api/users",
            "server=forum",
            "URI=spiffe://cluster.local/ns/istioinaction/sa/webapp",
            "forum.forum-services.svc.cluster.local::198.18.0.11:15443::rq_success::",
        ],
    );
    let forum_sni = "cluster.outbound_.80_._.forum.forum-services.svc.cluster.local";
    assert!(
        counter(s, &format!("{forum_sni}.upstream_cx_total")) >= 1,
        "{s}"
    );
    // 12. STRICT: the outsider got in before, is refused after; mesh traffic goes on.
    let s = step(&stdout, 12);
    let (before, after) = s.split_once("mode: STRICT").expect("the STRICT manifest");
    has(before, &["[outsider]$ curl", "x-weft-server: forum"]);
    has(
        after,
        &[
            "istio-system   default   STRICT",
            "✔ the outsider is refused",
            "✔ the gateway carried both",
        ],
    );
    assert!(
        after.contains("[outsider]$ curl") && after.contains("curl: ("),
        "{after}"
    );
    // 13. Clean up, verified from outside too.
    has(step(&stdout, 13), &["✔ nothing left behind"]);
    has(&stdout, &["13/13 steps passed"]);
    let dir = lab_dir(&stdout);
    assert!(!dir.exists(), "{} is left", dir.display());
    nothing_left(pid, &dir.to_string_lossy());
}

#[test]
fn a_failed_step_stops_the_demo_and_still_cleans_up() {
    // An Envoy that cannot be run: the gateway step fails.
    let child = demo()
        .env("ENVOY_BINARY", "/nonexistent/envoy")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft-demo");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    has(step(&stdout, 3), &["✘ step failed:", "/nonexistent/envoy"]);
    has(
        &stdout,
        &[
            "–  4. webapp and catalog ",
            "an earlier step failed",
            "✔ 13. Clean up",
            "✔ nothing left behind",
            "3/13 steps passed",
        ],
    );
    let dir = lab_dir(&stdout);
    has(
        step(&stdout, 13),
        &[&format!("logs and configs kept in {}", dir.display())],
    );
    assert!(dir.join("weftd.log").exists(), "the logs are kept");
    nothing_left(pid, &dir.to_string_lossy());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_tears_the_lab_down() {
    let mut child = demo()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft-demo");
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // Read until the gateway runs and the cluster workloads are being started.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while !seen.contains("━━ 4. ") {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("weft-demo ended before step 4:\n{seen}");
        }
        seen.push_str(&line);
    }
    let dir = lab_dir(&seen);
    let rest = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    assert!(!namespaces_of(pid).is_empty(), "the lab should be up");
    let kill = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let stderr = errors.join().unwrap();
    seen.push_str(&rest.join().unwrap());
    assert_eq!(status.code(), Some(130), "{seen}\n{stderr}");
    has(
        &stderr,
        &[
            "SIGINT: stopping every process of the lab",
            "torn down after SIGINT",
        ],
    );
    assert!(!dir.exists(), "{} is left", dir.display());
    nothing_left(pid, &dir.to_string_lossy());
}
