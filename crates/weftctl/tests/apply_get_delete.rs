//! `weftctl apply/get/delete` against a real weftd on loopback: all-or-nothing apply with every
//! error, kubectl's result words and tables, deletes, config-file ownership, and a weftd restart
//! that keeps API objects and VIPs.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("weftctl-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A weftd child process, killed when dropped.
struct Weftd {
    child: Child,
    http: u16,
}

impl Drop for Weftd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_weftd(state: &Path, config_dir: Option<&Path>) -> Weftd {
    let bin = weft_testkit::workspace_binary("weftd", "weftd").expect("build weftd");
    let http = free_port();
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let mut cmd = Command::new(bin);
    cmd.arg("--state-dir")
        .arg(state)
        .args(["--http-addr", &addr(http)])
        .args(["--xds-tls-addr", &addr(free_port())])
        .args(["--xds-plaintext-addr", &addr(free_port())])
        .args(["--monitoring-addr", &addr(free_port())])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null());
    if let Some(dir) = config_dir {
        cmd.arg("--config-dir").arg(dir);
    }
    let mut child = cmd.spawn().expect("start weftd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("weftd exited early: {status}");
        }
        assert!(Instant::now() < deadline, "weftd did not listen on {http}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Weftd { child, http }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn weftctl(weftd: &Weftd, state: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["--server", &format!("http://127.0.0.1:{}", weftd.http)])
        .arg("--admin-token-file")
        .arg(state.join("admin-token"))
        .args(args)
        .output()
        .expect("run weftctl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn vs(name: &str, ns: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  hosts: [\"{host}\"]\n  gateways: [mesh]\n  http:\n  - route:\n    - destination:\n        host: \"{host}\"\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector: {app: web}\n  ports:\n  - name: http\n    port: 80\n";
const WORKLOAD_ENTRY: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: vm-1\n  namespace: shop\nspec:\n  address: 10.0.0.5\n  labels: {app: web}\n";

/// The table with the AGE column's values (which depend on the clock) replaced by `AGE`.
fn without_age(table: &str) -> String {
    let header = table.lines().next().unwrap_or_default();
    let Some(at) = header.find("AGE") else {
        return table.to_string();
    };
    // The AGE column ends where the next header starts (or at the end of the line).
    let next = header[at..].find("   ").and_then(|gap| {
        let rest = &header[at + gap..];
        Some(at + gap + rest.find(|c: char| c != ' ')?)
    });
    table
        .lines()
        .map(|l| match next {
            Some(n) => format!("{}{:<w$}{}", &l[..at], "AGE", &l[n..], w = n - at),
            None => format!("{}AGE", &l[..at]),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn apply_get_delete_and_restart() {
    let tmp = TempDir::new();
    let state = tmp.0.join("state");
    let files = tmp.0.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let weftd = start_weftd(&state, None);
    let run = |args: &[&str]| weftctl(&weftd, &state, args);

    // Two valid objects and one invalid: exit 1, every error named, nothing applied.
    let mixed = files.join("mixed.yaml");
    std::fs::write(
        &mixed,
        format!(
            "{}---\n{}---\n{}",
            vs("a", "shop", "a.shop.svc.cluster.local"),
            vs("bad", "shop", "*"),
            SERVICE
        ),
    )
    .unwrap();
    let out = run(&["apply", "-f", mixed.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains(&format!(
            "error: {} doc 1: VirtualService shop/bad: ERROR spec.hosts[0]: wildcard host * is not allowed",
            mixed.display()
        )),
        "{}",
        out.stderr
    );
    let out = run(&["get", "vs,svc", "-A"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(out.stderr, "No resources found\n");

    // A valid set: created, then unchanged.
    let good = files.join("good");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(
        good.join("1-vs.yaml"),
        format!(
            "{}---\n{}",
            vs("a", "shop", "a.shop.svc.cluster.local"),
            vs("b", "shop", "b.shop.svc.cluster.local")
        ),
    )
    .unwrap();
    std::fs::write(
        good.join("2-svc.yaml"),
        format!("{SERVICE}---\n{WORKLOAD_ENTRY}"),
    )
    .unwrap();
    let out = run(&["apply", "-f", good.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "virtualservice.networking.istio.io/a created\n\
         virtualservice.networking.istio.io/b created\n\
         service/web created\n\
         workloadentry.networking.istio.io/vm-1 created\n"
    );
    let out = run(&["apply", "-f", good.to_str().unwrap()]);
    assert_eq!(
        out.stdout,
        "virtualservice.networking.istio.io/a unchanged\n\
         virtualservice.networking.istio.io/b unchanged\n\
         service/web unchanged\n\
         workloadentry.networking.istio.io/vm-1 unchanged\n"
    );

    // Tables.
    let out = run(&["get", "virtualservices", "-n", "shop"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        without_age(&out.stdout),
        "NAME   GATEWAYS   HOSTS                          AGE\n\
         a      [\"mesh\"]   [\"a.shop.svc.cluster.local\"]   AGE\n\
         b      [\"mesh\"]   [\"b.shop.svc.cluster.local\"]   AGE"
    );
    assert!(
        out.stdout.lines().nth(1).unwrap().ends_with('s'),
        "age in seconds: {}",
        out.stdout
    );
    let out = run(&["get", "we", "-A"]);
    assert_eq!(
        without_age(&out.stdout),
        "NAMESPACE   NAME   AGE   ADDRESS    HEALTHY\nshop        vm-1   AGE   10.0.0.5   <none>"
    );
    let out = run(&["get", "svc", "web", "-n", "shop", "-o", "wide"]);
    let row = out.stdout.lines().nth(1).unwrap_or_default().to_string();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..2], ["web", "ClusterIP"], "{}", out.stdout);
    let vip = cols[2].to_string();
    assert!(vip.starts_with("10.96."), "{}", out.stdout);
    assert_eq!(cols[3..5], ["<none>", "80/TCP"]);
    assert_eq!(cols[6..], ["app=web", "api"]);
    let out = run(&["get", "vs", "-n", "default"]);
    assert_eq!(out.stderr, "No resources found in default namespace.\n");

    // -n gives objects written without a namespace one; another written namespace is refused.
    let gw = files.join("gw.yaml");
    std::fs::write(
        &gw,
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector: {istio: ingress}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
    )
    .unwrap();
    let out = run(&["apply", "-f", gw.to_str().unwrap(), "-n", "shop"]);
    assert_eq!(
        out.stdout, "gateway.networking.istio.io/gw created\n",
        "{}",
        out.stderr
    );
    let out = run(&["get", "gateways", "gw", "-n", "shop"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(&["apply", "-f", good.to_str().unwrap(), "-n", "other"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "the namespace from the provided object \"shop\" does not match the namespace \"other\""
        ),
        "{}",
        out.stderr
    );

    // yaml and json.
    let out = run(&["get", "vs", "a", "-n", "shop", "-o", "json"]);
    let obj: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(obj["kind"], "VirtualService");
    assert_eq!(obj["metadata"]["namespace"], "shop");
    assert!(
        obj["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let out = run(&["get", "we", "-n", "shop", "-o", "yaml"]);
    assert!(
        out.stdout.starts_with(
            "apiVersion: v1\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: WorkloadEntry\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("kind: List\nmetadata:\n  resourceVersion: \"\"\n"),
        "{}",
        out.stdout
    );

    // Unknown kinds and names, in kubectl's words.
    let out = run(&["get", "foo"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "error: the server doesn't have a resource type \"foo\"\n"
        )
    );
    let out = run(&["get", "vs", "nope", "-n", "shop"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error from server (NotFound): virtualservices.networking.istio.io \"nope\" not found\n"
    );

    // Delete by name, then again.
    let out = run(&["delete", "vs", "b", "-n", "shop"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "virtualservice.networking.istio.io \"b\" deleted\n"),
        "{}",
        out.stderr
    );
    let out = run(&["delete", "vs", "b", "-n", "shop"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error from server (NotFound): virtualservices.networking.istio.io \"b\" not found\n"
    );

    // Restart weftd (killed, not stopped gracefully), now with a config directory.
    drop(weftd);
    let config = tmp.0.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("c.yaml"),
        vs("c", "shop", "c.shop.svc.cluster.local"),
    )
    .unwrap();
    let weftd = start_weftd(&state, Some(&config));
    let run = |args: &[&str]| weftctl(&weftd, &state, args);
    let out = run(&["get", "vs", "-n", "shop", "-o", "wide"]);
    let rows: Vec<Vec<String>> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let names_sources: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r.last().unwrap().as_str()))
        .collect();
    let file_source = format!("file:{}", config.join("c.yaml").display());
    assert_eq!(
        names_sources,
        [("a", "api"), ("c", file_source.as_str())],
        "{}",
        out.stdout
    );
    let out = run(&["get", "svc", "web", "-n", "shop"]);
    assert!(
        out.stdout.contains(&format!(" {vip} ")),
        "VIP kept across restarts: {vip} in {}",
        out.stdout
    );

    // Objects of the config directory are the files' to change.
    let out = run(&["delete", "vs", "c", "-n", "shop"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("owned by config file"),
        "{}",
        out.stderr
    );
    let out = run(&["apply", "-f", config.join("c.yaml").to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is owned by config file"),
        "{}",
        out.stderr
    );

    // Delete by file.
    let out = run(&["delete", "-f", good.to_str().unwrap(), "--ignore-not-found"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "virtualservice.networking.istio.io \"a\" deleted\n\
         service \"web\" deleted\n\
         workloadentry.networking.istio.io \"vm-1\" deleted\n"
    );
    let out = run(&["get", "svc,we", "-A"]);
    assert_eq!(out.stderr, "No resources found\n");
}
