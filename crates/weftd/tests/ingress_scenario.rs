//! The ingress gateway end to end: weftd with a config directory, an ingress gateway host running
//! `weft-agent proxy router` (labelled `istio: ingressgateway`) with real Envoy, the helloworld
//! v1 and v2 workloads (plain servers), and a client outside the mesh that reaches only the
//! gateway:
//!
//! ```text
//!  network "mesh"                          network "edge"
//!  cp .   weftd                            client   curl, no mesh
//!  gw     ingress gateway  ─────────────── gw
//!  srv1, srv2  helloworld-v1, -v2
//! ```
//!
//! Using the helloworld seed (004): its Gateway (port 80, `hosts: "*"`), its DestinationRule and
//! its 70/30 subset VirtualService, bound to that Gateway (and to a second Gateway with TLS
//! servers) with the hosts `hello.example.com` and `example.com` added:
//! - 1,000 requests to the gateway's port 80 split 70/30 within ±5 points;
//! - a Host no virtual host admits gets 404;
//! - an HTTPS server with certificate files (a CA and a certificate made with openssl here)
//!   serves the same routes over TLS, checked with `curl --cacert --resolve`; a MUTUAL one
//!   wants a client certificate from the CA;
//! - an HTTP server for `*.example.com` with `httpsRedirect` redirects hello.example.com and
//!   gives 404 for example.com (a VirtualService host the Gateway host does not admit).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use weft_testkit::mesh::{ControlPlane, VmRoot};
use weft_testkit::{Attempt, Host, Lab, Process, connectable, poll_until, test_http_binary};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/seeds");

/// The seed manifest `name`, with each `(from, to)` change applied (each must apply).
fn seed(name: &str, changes: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(Path::new(SEEDS).join(name)).unwrap();
    for (from, to) in changes {
        assert!(text.contains(from), "{name}: {from:?} not found");
        text = text.replacen(from, to, 1);
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Istio's helloworld sample Service and the two version workloads.
fn workloads(v1: Ipv4Addr, v2: Ipv4Addr) -> String {
    let entry = |name: &str, ip: Ipv4Addr, version: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: {ip}
  labels: {{app: helloworld, version: {version}}}
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
    out += &entry("helloworld-v1", v1, "v1");
    out += &entry("helloworld-v2", v2, "v2");
    out
}

/// A second Gateway with certificate files in `dir`: SIMPLE HTTPS for hello.example.com on 443,
/// MUTUAL on 8443 (client certificates from the test CA), and plaintext `*.example.com` on 8080
/// redirecting to HTTPS.
fn https_gateway(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: hello-tls, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [hello.example.com]
    tls:
      mode: SIMPLE
      serverCertificate: {d}/tls.crt
      privateKey: {d}/tls.key
  - port: {{number: 8443, name: https-mutual, protocol: HTTPS}}
    hosts: [hello.example.com]
    tls:
      mode: MUTUAL
      serverCertificate: {d}/tls.crt
      privateKey: {d}/tls.key
      caCertificates: {d}/ca.crt
  - port: {{number: 8080, name: http-redirect, protocol: HTTP}}
    hosts: [\"*.example.com\"]
    tls: {{httpsRedirect: true}}
"
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is needed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.crt`), a server certificate for hello.example.com it signed (`tls.crt`,
/// `tls.key`) and a client certificate (`client.crt`, `client.key`).
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "1"]);
    ca.extend(["-subj", "/CN=weft ingress test CA"]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "tls.key", "-out", "tls.csr"]);
    csr.extend(["-subj", "/CN=hello.example.com"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:hello.example.com\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "client.key", "-out", "client.csr"]);
    csr.extend(["-subj", "/CN=outside client"]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.crt",
            "-days",
            "1",
        ],
    );
}

/// Starts `weft-test-http` as `name` on `0.0.0.0:port` in `host`.
fn server(host: &Host, name: &str, port: u16) -> Process {
    let mut cmd = Command::new(test_http_binary().unwrap());
    cmd.args(["--name", name, "--listen", &format!("0.0.0.0:{port}")]);
    let p = host.spawn_command(name, &cmd).unwrap();
    host.wait_for_tcp(
        connectable(SocketAddr::from(([0, 0, 0, 0], port))),
        Duration::from_secs(10),
    )
    .unwrap();
    p
}

fn admin(host: &Host, path: &str) -> String {
    host.http_get(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
        path,
        Duration::from_secs(2),
    )
    .map(|r| r.body)
    .unwrap_or_default()
}

/// `curl ARGS` from `host`: (status, body).
fn call(host: &Host, args: &[&str]) -> (u16, String) {
    let mut all: Vec<&str> = vec!["-s", "-w", "\n%{http_code}"];
    all.extend(args);
    match host.curl(&all, Duration::from_secs(5)) {
        Ok(out) => {
            let text = out.stdout.trim_end().to_string();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
            (code.trim().parse().unwrap_or(0), body.to_string())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// `n` requests to `url` (curl's URL globbing, one keep-alive connection) with `extra`
/// arguments: how many v1 and v2 answered, and how many did not get a 200.
fn spread(client: &Host, url: &str, n: usize, extra: &[&str]) -> (usize, usize, usize) {
    let mut args: Vec<String> = vec!["-s".into(), "-w".into(), "code=%{http_code}\n".into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(format!("{url}/[1-{n}]"));
    let out = client.curl(&args, Duration::from_secs(60)).unwrap();
    let count = |s: &str| out.stdout.matches(s).count();
    (
        count("server=helloworld-v1\n"),
        count("server=helloworld-v2\n"),
        n - count("code=200"),
    )
}

#[test]
fn ingress_gateway_splits_70_30_rejects_unknown_hosts_and_terminates_https() {
    let lab = Lab::new("ingress").unwrap();
    let mesh = lab.network("mesh").unwrap();
    let edge = lab.network("edge").unwrap();
    let cp_host = lab.host("cp", &[&mesh]).unwrap();
    let gw = lab.host("gw", &[&mesh, &edge]).unwrap();
    let srv1 = lab.host("srv1", &[&mesh]).unwrap();
    let srv2 = lab.host("srv2", &[&mesh]).unwrap();
    let client = lab.host("client", &[&edge]).unwrap();
    let gw_edge = gw.ip_on(&edge);

    let certs = lab.dir().join("certs");
    make_certificates(&certs);

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    write(&config, "workloads.yaml", &workloads(srv1.ip(), srv2.ip()));
    write(
        &config,
        "seed-services.yaml",
        &seed("004-services-helloworld-v1-v2.yaml", &[]),
    );
    write(
        &config,
        "helloworld-dr.yaml",
        &seed("004-destinationrule-helloworld.yaml", &[]),
    );
    write(
        &config,
        "helloworld-gateway.yaml",
        &seed("004-gateway-helloworld.yaml", &[]),
    );
    write(&config, "hello-tls.yaml", &https_gateway(&certs));
    write(
        &config,
        "helloworld-vs.yaml",
        &seed(
            "004-virtualservice-helloworld-subsets-70-30.yaml",
            &[(
                "  - \"helloworld.default.svc.cluster.local\"\n",
                "  - \"helloworld.default.svc.cluster.local\"\n  - hello.example.com\n  - example.com\n  gateways: [helloworld-gateway, hello-tls]\n",
            )],
        ),
    );
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &["--config-dir", &config.to_string_lossy()],
    )
    .unwrap();

    let _v1 = server(&srv1, "helloworld-v1", 5000);
    let _v2 = server(&srv2, "helloworld-v2", 5000);

    // The ingress gateway: `weft-agent proxy router`, labelled as Istio's ingress gateway.
    let gw_root = VmRoot::new(&lab.dir().join("gw-root")).unwrap();
    gw_root
        .write_bundle(
            &cp,
            &gw,
            "istio-system",
            "istio-ingressgateway",
            "istio-ingressgateway",
            &[("ISTIO_METAJSON_LABELS", r#"{"istio":"ingressgateway"}"#)],
        )
        .unwrap();
    let gw_agent = gw_root.start_agent(&gw, "gw-agent", &["router"]).unwrap();
    let http_url = format!("http://{gw_edge}:80/hello");
    let host = "Host: hello.example.com";
    poll_until(
        "helloworld through the ingress gateway",
        Duration::from_secs(40),
        || {
            gw_agent.ensure_running()?;
            let (code, body) = call(&client, &["-H", host, &http_url]);
            Ok(if code == 200 {
                Attempt::Ready(body)
            } else {
                Attempt::NotYet(format!("{code} {body}"))
            })
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}",
            admin(&gw, "/listeners"),
            gw_agent.log_tail(30)
        )
    });
    let listeners = admin(&gw, "/listeners");
    assert!(
        listeners.contains("0.0.0.0_80") && listeners.contains("0.0.0.0_443"),
        "{listeners}"
    );

    // 1,000 requests from outside to port 80: 70/30 within ±5 points.
    let (v1, v2, failed) = spread(&client, &http_url, 1000, &["-H", host]);
    assert_eq!((failed, v1 + v2), (0, 1000), "v1 {v1}, v2 {v2}");
    assert!(
        (650..=750).contains(&v1),
        "v1 got {v1} of 1000, want 700 ± 50"
    );

    // The subset VirtualService's own host is admitted by `*` too; a host none of the bound
    // VirtualServices has gets Envoy's 404 (no virtual host).
    let (code, body) = call(
        &client,
        &[
            "-H",
            "Host: helloworld.default.svc.cluster.local",
            &http_url,
        ],
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(&client, &["-H", "Host: nothing.example.org", &http_url]);
    assert_eq!(code, 404, "{body}");

    // HTTPS with the certificate files: the same routes over TLS, the certificate checked
    // against the test CA.
    let resolve = format!("hello.example.com:443:{gw_edge}");
    let ca = certs.join("ca.crt").to_string_lossy().into_owned();
    let tls = ["--cacert", ca.as_str(), "--resolve", resolve.as_str()];
    let (v1, v2, failed) = spread(&client, "https://hello.example.com/hello", 200, &tls);
    assert_eq!((failed, v1 + v2), (0, 200), "v1 {v1}, v2 {v2}");
    assert!(v1 > v2 && v2 > 0, "70/30 over TLS: v1 {v1}, v2 {v2}");
    // Without the CA the certificate is not trusted: TLS really is terminated with it.
    let out = client
        .curl(
            &[
                "--resolve",
                resolve.as_str(),
                "https://hello.example.com/hello",
            ],
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(!out.status.success(), "untrusted certificate accepted");

    // MUTUAL: with the client certificate the routes answer; without one the handshake fails.
    let resolve_mutual = format!("hello.example.com:8443:{gw_edge}");
    let (cert, key) = (certs.join("client.crt"), certs.join("client.key"));
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let mutual_url = "https://hello.example.com:8443/hello";
    let mut mtls = vec![
        "--cacert",
        ca.as_str(),
        "--resolve",
        resolve_mutual.as_str(),
    ];
    let (code, body) = call(
        &client,
        &[&mtls[..], &["--cert", &cert, "--key", &key, mutual_url]].concat(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("server=helloworld-v"), "{body}");
    mtls.push(mutual_url);
    let out = client.curl(&mtls, Duration::from_secs(5)).unwrap();
    assert!(
        !out.status.success(),
        "no client certificate accepted: {}",
        out.stdout
    );

    // `*.example.com` with httpsRedirect on 8080: hello.example.com is redirected to HTTPS;
    // example.com (a host of the VirtualService, but one `*.example.com` does not admit) is 404.
    let redirect_url = format!("http://{gw_edge}:8080/hello");
    let out = client
        .curl(
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                "-H",
                host,
                &redirect_url,
            ],
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(out.stdout, "301 https://hello.example.com/hello");
    let (code, body) = call(&client, &["-H", "Host: example.com", &redirect_url]);
    assert_eq!(code, 404, "{body}");
    // On port 80 (`*`) the same example.com is admitted.
    let (code, body) = call(&client, &["-H", "Host: example.com", &http_url]);
    assert_eq!(code, 200, "{body}");

    // Envoy accepted every push.
    let syncz = cp.syncz().unwrap();
    assert!(!syncz.contains("\"NACK\""), "{syncz}");
}
