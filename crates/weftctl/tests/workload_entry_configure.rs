//! `weftctl x workload entry configure` writes the VM bundle as istioctl does: Istio's own goldens
//! (testdata/vmconfig/, from istioctl/pkg/workload/testdata) with a fake weftd serving the root cert
//! and the token, istioctl's errors, file modes, and an end-to-end run against a real weftd holding
//! the seed's forum WorkloadGroup.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Read at run time: a test binary built in another checkout must not read that checkout's files.
fn testdata() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("testdata/vmconfig")
}
const ADMIN_TOKEN: &str = "test-admin-token";

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "weftctl-entry-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request the fake weftd received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    body: String,
}

/// A fake weftd admin API on loopback: root cert `fake-CA-cert`, an empty token (what Istio's
/// test fakes serve), one WorkloadGroup by name, and `tokens_status` for token requests.
struct FakeWeftd {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    let mut authorization = String::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("authorization") {
                authorization = value.trim().to_string();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

impl FakeWeftd {
    fn start(group_json: Option<String>, tokens_status: u16) -> FakeWeftd {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().unwrap().push(req.clone());
                let (status, body) = if req.authorization != format!("Bearer {ADMIN_TOKEN}") {
                    (401, "bad admin token".to_string())
                } else {
                    match (req.method.as_str(), req.path.as_str()) {
                        ("GET", "/api/v1/root-cert") => (200, "fake-CA-cert".to_string()),
                        ("POST", "/api/v1/tokens") if tokens_status == 200 => (
                            200,
                            r#"{"token":"","expirationTimestamp":0}"#.to_string(),
                        ),
                        ("POST", "/api/v1/tokens") => (
                            tokens_status,
                            r#"{"error":"serviceAccount: invalid"}"#.to_string(),
                        ),
                        ("GET", p) if p.starts_with("/api/v1/resources/workloadgroups?") => {
                            match &group_json {
                                Some(g) if p.ends_with("namespace=bar&name=foo") => {
                                    (200, format!(r#"{{"items":[{{"source":"api","object":{g}}}]}}"#))
                                }
                                _ => (
                                    404,
                                    r#"{"error":"Error from server (NotFound): workloadgroups.networking.istio.io \"foo\" not found"}"#
                                        .to_string(),
                                ),
                            }
                        }
                        _ => (404, "no route".to_string()),
                    }
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeWeftd { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `weftctl [--server ...] x workload entry configure ARGS`.
fn configure(server: Option<(u16, &Path)>, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weftctl"));
    if let Some((port, token_file)) = server {
        cmd.args(["--server", &format!("http://127.0.0.1:{port}")])
            .arg("--admin-token-file")
            .arg(token_file);
    }
    let out = cmd
        .args(["x", "workload", "entry", "configure"])
        .args(args)
        .env_remove("WEFT_SERVER")
        .env_remove("WEFT_ADMIN_TOKEN_FILE")
        .output()
        .expect("run weftctl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn admin_token_file(dir: &Path) -> PathBuf {
    let p = dir.join("admin-token");
    std::fs::write(&p, format!("{ADMIN_TOKEN}\n")).unwrap();
    p
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every generated file equals Istio's golden.
fn assert_goldens(case: &str, out_dir: &Path) {
    for file in [
        "cluster.env",
        "mesh.yaml",
        "hosts",
        "istio-token",
        "root-cert.pem",
    ] {
        let golden = read(&testdata().join(case).join(format!("{file}.golden")));
        assert_eq!(read(&out_dir.join(file)), golden, "{case}/{file}");
    }
}

/// Istio's TestWorkloadEntryConfigure (ipv4, ipv6) and TestWorkloadEntryConfigureNilProxyMetadata.
#[test]
fn reproduces_istio_goldens() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "ipv4",
            &[
                "--internalIP",
                "10.10.10.10",
                "--ingressIP",
                "10.10.10.11",
                "--revision",
                "rev-1",
            ],
        ),
        (
            "ipv6",
            &[
                "--internalIP",
                "fd00:10:96::1",
                "--ingressIP",
                "fd00:10:96::2",
                "--revision",
                "rev-1",
            ],
        ),
        ("nil-proxy-metadata", &["--internalIP", "10.10.10.10"]),
    ];
    for (case, extra) in cases {
        let tmp = TempDir::new();
        let token_file = admin_token_file(tmp.path());
        let weftd = FakeWeftd::start(None, 200);
        let dir = tmp.path().join("out");
        let case_dir = testdata().join(case);
        let wg = case_dir.join("workloadgroup.yaml");
        let mesh = case_dir.join("meshconfig.yaml");
        let mut args = vec![
            "-f",
            wg.to_str().unwrap(),
            "--mesh-config",
            mesh.to_str().unwrap(),
            "--clusterID",
            "Kubernetes",
            "-o",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = configure(Some((weftd.port, &token_file)), &args);
        assert_eq!(out.code, 0, "{case}: {}", out.stderr);
        assert_goldens(case, &dir);
        assert_eq!(
            out.stdout,
            format!(
                "Configuration generation into directory {} was successful\n",
                dir.display()
            )
        );
        let warning = format!(
            "Warning: a security token for namespace \"bar\" and service account \"vm-serviceaccount\" has been generated and stored at \"{}/istio-token\"\n",
            dir.display()
        );
        assert!(out.stderr.starts_with(&warning), "{case}: {}", out.stderr);
        let no_ingress = "Warning: Could not auto-detect IP for istio-eastwestgateway/istio-system. Use --ingressIP to manually specify the Gateway address to reach istiod from the VM.\n";
        if case == "nil-proxy-metadata" {
            assert_eq!(out.stderr, format!("{warning}{no_ingress}"));
        } else {
            assert_eq!(out.stderr, warning);
        }
        // The token is asked for the template's service account in the group's namespace.
        let seen = weftd.seen();
        let token_req = seen.iter().find(|s| s.path == "/api/v1/tokens").unwrap();
        assert_eq!(token_req.method, "POST");
        assert_eq!(token_req.authorization, format!("Bearer {ADMIN_TOKEN}"));
        let body: serde_json::Value = serde_json::from_str(&token_req.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"namespace": "bar", "serviceAccount": "vm-serviceaccount", "durationSeconds": 3600})
        );
    }
}

#[test]
fn no_mesh_config_is_an_empty_one() {
    let tmp = TempDir::new();
    let token_file = admin_token_file(tmp.path());
    let weftd = FakeWeftd::start(None, 200);
    let dir = tmp.path().join("out");
    let wg = testdata().join("nil-proxy-metadata/workloadgroup.yaml");
    let out = configure(
        Some((weftd.port, &token_file)),
        &[
            "-f",
            wg.to_str().unwrap(),
            "--internalIP",
            "10.10.10.10",
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_goldens("nil-proxy-metadata", &dir);
}

#[test]
fn reads_the_group_from_weftd_by_name() {
    let wg_yaml = read(&testdata().join("ipv4/workloadgroup.yaml"));
    let wg: serde_json::Value = serde_saphyr::from_str(&wg_yaml).unwrap();
    let tmp = TempDir::new();
    let token_file = admin_token_file(tmp.path());
    let weftd = FakeWeftd::start(Some(wg.to_string()), 200);
    let dir = tmp.path().join("out");
    let mesh = testdata().join("ipv4/meshconfig.yaml");
    let out = configure(
        Some((weftd.port, &token_file)),
        &[
            "--name",
            "foo",
            "-n",
            "bar",
            "--mesh-config",
            mesh.to_str().unwrap(),
            "--internalIP",
            "10.10.10.10",
            "--ingressIP",
            "10.10.10.11",
            "-r",
            "rev-1",
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_goldens("ipv4", &dir);
    let paths: Vec<String> = weftd.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/resources/workloadgroups?namespace=bar&name=foo",
            "/api/v1/root-cert",
            "/api/v1/tokens"
        ]
    );

    // A group weftd does not have: istioctl's words around weftd's.
    let out = configure(
        Some((weftd.port, &token_file)),
        &["--name", "nope", "-n", "bar", "-o", dir.to_str().unwrap()],
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error: workloadgroup nope not found in namespace bar: Error from server (NotFound): workloadgroups.networking.istio.io \"foo\" not found\n"
    );
}

#[test]
fn modes_token_is_owner_only() {
    let tmp = TempDir::new();
    let token_file = admin_token_file(tmp.path());
    let weftd = FakeWeftd::start(None, 200);
    let dir = tmp.path().join("a/b");
    let wg = testdata().join("ipv4/workloadgroup.yaml");
    let args = [
        "-f",
        wg.to_str().unwrap(),
        "--ingressIP",
        "10.10.10.11",
        "-o",
        dir.to_str().unwrap(),
    ];
    let out = configure(Some((weftd.port, &token_file)), &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(mode(&dir) & 0o700, 0o700);
    for f in ["cluster.env", "mesh.yaml", "hosts", "root-cert.pem"] {
        assert_eq!(mode(&dir.join(f)), 0o744, "{f}");
    }
    // Weft's rule: private keys and tokens are 0600 (istioctl writes the token 0744).
    assert_eq!(mode(&dir.join("istio-token")), 0o600);
    // A token left from an earlier run with loose permissions is narrowed too.
    std::fs::set_permissions(
        dir.join("istio-token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = configure(Some((weftd.port, &token_file)), &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(mode(&dir.join("istio-token")), 0o600);
}

#[test]
fn istioctl_errors() {
    // istioctl's TestWorkloadEntryConfigureInvalidArgs, and its --internalIP/--externalIP check.
    let both = "-f wg.yaml -o out --internalIP 10.0.0.1 --externalIP 10.0.0.2";
    for (args, msg) in [
        (
            "--name foo -o temp --clusterID cid",
            "Error: expecting a WorkloadGroup artifact file or the name and namespace of an existing WorkloadGroup\n",
        ),
        (
            "-n bar -o temp --clusterID cid",
            "Error: expecting a WorkloadGroup artifact file or the name and namespace of an existing WorkloadGroup\n",
        ),
        (
            "-f file --clusterID cid",
            "Error: expecting an output directory\n",
        ),
        (
            "--name foo -n bar --clusterID cid",
            "Error: expecting an output directory\n",
        ),
        (
            both,
            "Error: the flags --internalIP and --externalIP are mutually exclusive\n",
        ),
        // Weft checks what istioctl takes on trust.
        (
            "-f wg.yaml -o out --ingressIP gateway.example",
            "Error: invalid --ingressIP \"gateway.example\": not an IP address\n",
        ),
        (
            "-f wg.yaml -o out --tokenDuration 0",
            "Error: invalid --tokenDuration 0: must be at least 1 second\n",
        ),
    ] {
        let argv: Vec<&str> = args.split_whitespace().collect();
        let out = configure(None, &argv);
        assert_eq!(out.code, 1, "{args}");
        assert_eq!(out.stdout, "", "{args}");
        assert_eq!(out.stderr, msg, "{args}");
    }
}

#[test]
fn weftd_refusing_the_token_leaves_no_files() {
    let tmp = TempDir::new();
    let token_file = admin_token_file(tmp.path());
    let weftd = FakeWeftd::start(None, 400);
    let dir = tmp.path().join("out");
    let wg = testdata().join("ipv4/workloadgroup.yaml");
    let out = configure(
        Some((weftd.port, &token_file)),
        &["-f", wg.to_str().unwrap(), "-o", dir.to_str().unwrap()],
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error: could not create a token under service account vm-serviceaccount in namespace bar: serviceAccount: invalid\n"
    );
    assert!(!dir.exists());
}

// ---------------------------------------------------------------------------------------------
// End to end: a real weftd holding the seed's forum WorkloadGroup.

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

fn start_weftd(state: &Path, config_dir: &Path) -> Weftd {
    let bin = weft_testkit::workspace_binary("weftd", "weftd").expect("build weftd");
    let http = free_port();
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let mut child = Command::new(bin)
        .arg("--state-dir")
        .arg(state)
        .arg("--config-dir")
        .arg(config_dir)
        .args(["--http-addr", &addr(http)])
        .args(["--xds-tls-addr", &addr(free_port())])
        .args(["--xds-plaintext-addr", &addr(free_port())])
        .args(["--monitoring-addr", &addr(free_port())])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start weftd");
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

/// The agent's env-file reading (crates/weft-agent/src/envfile.rs), for the forms Istio writes:
/// bare words and single-quoted words joined with `"'"`.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (key, value) = line.split_once('=').expect("KEY=value");
        assert!(
            key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'),
            "{key}"
        );
        let mut v = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => v.push(ch),
                        None => panic!("unterminated quote in {line:?}"),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(ch) => v.push(ch),
                        None => panic!("unterminated quote in {line:?}"),
                    }
                },
                c => {
                    assert!(!c.is_whitespace(), "unquoted space in {line:?}");
                    v.push(c);
                }
            }
        }
        out.insert(key.to_string(), v);
    }
    out
}

/// The claims of a JWT (its middle part, base64url without padding).
fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
        }
    }
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn forum_seed_end_to_end() {
    let tmp = TempDir::new();
    let config = tmp.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::copy(
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../model/tests/seeds/002-workloadgroup-forum.yaml"),
        config.join("forum.yaml"),
    )
    .unwrap();
    let state = tmp.path().join("state");
    let weftd = start_weftd(&state, &config);
    let token_file = state.join("admin-token");
    let dir = tmp.path().join("bundle");
    let out = configure(
        Some((weftd.http, &token_file)),
        &[
            "--name",
            "forum",
            "-n",
            "forum-services",
            "--autoregister",
            "--ingressIP",
            "198.18.0.10",
            "--tokenDuration",
            "600",
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "Warning: a security token for namespace \"forum-services\" and service account \"forum-sa\" has been generated and stored at \"{}/istio-token\"\n",
            dir.display()
        )
    );

    let env_text = read(&dir.join("cluster.env"));
    // Every value is quoted as Istio quotes it; the agent reads them back.
    for line in env_text.lines() {
        let value = line.split_once('=').unwrap().1;
        assert!(value.starts_with('\'') && value.ends_with('\''), "{line:?}");
    }
    let env = parse_env(&env_text);
    let expect = [
        ("ISTIO_META_AUTO_REGISTER_GROUP", "forum"),
        ("ISTIO_META_NETWORK", "vm-network"),
        ("ISTIO_META_WORKLOAD_NAME", "forum"),
        ("ISTIO_META_CLUSTER_ID", "Kubernetes"),
        ("ISTIO_META_DNS_CAPTURE", "true"),
        ("CANONICAL_SERVICE", "forum"),
        ("CANONICAL_REVISION", "latest"),
        ("SERVICE_ACCOUNT", "forum-sa"),
        ("POD_NAMESPACE", "forum-services"),
        ("ISTIO_NAMESPACE", "forum-services"),
        ("ISTIO_SERVICE", "forum.forum-services"),
        ("ISTIO_SERVICE_CIDR", "*"),
        ("ISTIO_INBOUND_PORTS", "*"),
        ("ISTIO_LOCAL_EXCLUDE_PORTS", "22,15090,15021,15020"),
        (
            "ISTIO_METAJSON_LABELS",
            r#"{"app":"forum","service.istio.io/canonical-name":"forum","service.istio.io/canonical-revision":"latest"}"#,
        ),
    ];
    for (k, v) in expect {
        assert_eq!(
            env.get(k).map(String::as_str),
            Some(v),
            "{k} in\n{env_text}"
        );
    }
    assert!(env_text.contains("ISTIO_META_AUTO_REGISTER_GROUP='forum'\n"));
    assert!(env_text.contains("ISTIO_META_NETWORK='vm-network'\n"));
    // No revision: the agent's defaults name istiod.istio-system.svc:15012.
    assert!(!env.contains_key("CA_ADDR"));
    assert!(!env.contains_key("ISTIO_SVC_IP"));

    assert_eq!(
        read(&dir.join("mesh.yaml")),
        "defaultConfig:\n  proxyMetadata:\n    CANONICAL_REVISION: latest\n    CANONICAL_SERVICE: forum\n    ISTIO_META_AUTO_REGISTER_GROUP: forum\n    ISTIO_META_CLUSTER_ID: Kubernetes\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    ISTIO_META_MESH_ID: \"\"\n    ISTIO_META_NETWORK: vm-network\n    ISTIO_META_WORKLOAD_NAME: forum\n    ISTIO_METAJSON_LABELS: '{\"app\":\"forum\",\"service.istio.io/canonical-name\":\"forum\",\"service.istio.io/canonical-revision\":\"latest\"}'\n    POD_NAMESPACE: forum-services\n    SERVICE_ACCOUNT: forum-sa\n    TRUST_DOMAIN: \"\"\n  readinessProbe:\n    httpGet:\n      path: /api/healthz\n      port: 8080\n    initialDelaySeconds: 1\n    periodSeconds: 5\n"
    );
    assert_eq!(
        read(&dir.join("hosts")),
        "198.18.0.10 istiod.istio-system.svc\n"
    );

    let root = read(&dir.join("root-cert.pem"));
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    let token = read(&dir.join("istio-token"));
    let claims = jwt_claims(&token);
    assert_eq!(
        claims["sub"],
        "system:serviceaccount:forum-services:forum-sa"
    );
    assert_eq!(claims["aud"], serde_json::json!(["istio-ca"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert_eq!(mode(&dir.join("istio-token")), 0o600);
}
