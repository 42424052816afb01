//! DestinationRule traffic policies end to end: weftd with a config directory, a client VM
//! (capture, weft-agent, real Envoy) and three plain HTTP backends (no sidecars) behind the
//! Service `echo`, plus a slow backend behind `slow`.
//!
//! - subsets: `outbound|80|v1|echo…` holds only the v1 endpoint (Envoy's `/clusters`);
//! - consistentHash by cookie: the first response sets the cookie, requests carrying it all
//!   land on one backend, requests without it spread;
//! - outlierDetection: a backend answering 503 to everything is ejected
//!   (`outlier_detection.ejections_enforced_total`, `failed_outlier_check`) and traffic
//!   continues on the other two;
//! - connectionPool: with one connection and one pending request allowed, concurrent slow
//!   requests overflow with Envoy's 503 (`reset reason: overflow`, `upstream_rq_pending_overflow`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use weft_testkit::mesh::{CAPTURE_ENV, ControlPlane, VmRoot};
use weft_testkit::{Attempt, Host, Lab, Process, poll_until, test_http_binary};

const NS: &str = "shop";
const ECHO: &str = "echo.shop.svc.cluster.local";
const SLOW: &str = "slow.shop.svc.cluster.local";

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Services `echo` (port 80 → 8080 on three backends, versions v1, v2, v2) and `slow` (port 80
/// → 8081 on the third), and the client's WorkloadEntry.
fn workloads(client: &Host, backends: &[&Host]) -> String {
    let mut out = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {NS}}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: slow, namespace: {NS}}}
spec:
  selector: {{app: slow}}
  ports: [{{name: http, port: 80, targetPort: 8081}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client, namespace: {NS}}}
spec:
  address: {}
  labels: {{app: client}}
  serviceAccount: client
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: slow, namespace: {NS}}}
spec:
  address: {}
  labels: {{app: slow}}
",
        client.ip(),
        backends[2].ip()
    );
    for (i, b) in backends.iter().enumerate() {
        let version = if i == 0 { "v1" } else { "v2" };
        out.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-{n}, namespace: {NS}}}
spec:
  address: {ip}
  labels: {{app: echo, version: {version}}}
",
            n = i + 1,
            ip = b.ip()
        ));
    }
    out
}

fn rule(host: &str, spec: &str) -> String {
    let name = host.split('.').next().unwrap();
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {NS}}}
spec:
  host: {host}
{spec}"
    )
}

/// `weft-test-http` in `host` on `port` answering as `name`, with extra flags; `process` names
/// the process (and its log).
fn serve(host: &Host, process: &str, name: &str, port: u16, flags: &[&str]) -> Process {
    let mut cmd = Command::new(test_http_binary().unwrap());
    cmd.args(["--name", name, "--listen", &format!("0.0.0.0:{port}")])
        .args(flags);
    let p = host.spawn_command(process, &cmd).unwrap();
    host.wait_for_tcp(SocketAddr::from((host.ip(), port)), Duration::from_secs(5))
        .unwrap();
    p
}

/// One response: status, headers (lower-case names), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The backend that answered (`server=` line of weft-test-http's body).
    fn server(&self) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix("server="))
    }
}

fn get(host: &Host, url: &str, headers: &[String]) -> Result<Response, String> {
    let mut args: Vec<&str> = vec!["-sS", "-i"];
    for h in headers {
        args.extend(["-H", h.as_str()]);
    }
    args.push(url);
    let out = host
        .curl(&args, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("{}{}", out.stdout, out.stderr));
    }
    let text = out.stdout.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Envoy's admin `path` in `host`.
fn admin(host: &Host, path: &str) -> String {
    host.http_get(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
        path,
        Duration::from_secs(2),
    )
    .map(|r| r.body)
    .unwrap_or_default()
}

/// The value of counter `stat` (exact name) in Envoy's `/stats`, 0 when absent.
fn counter(host: &Host, filter: &str, stat: &str) -> u64 {
    admin(host, &format!("/stats?filter={filter}"))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{stat}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Endpoint addresses Envoy's `/clusters` lists for `cluster`.
fn members(host: &Host, cluster: &str) -> Vec<String> {
    let mut out: Vec<String> = admin(host, "/clusters")
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{cluster}::")))
        .filter_map(|rest| rest.split("::").next())
        .filter(|addr| addr.contains(':') && !addr.contains(' '))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn wait<T>(what: &str, agent: &Process, mut f: impl FnMut() -> Result<T, String>) -> T {
    poll_until(what, Duration::from_secs(20), || {
        agent.ensure_running()?;
        Ok(match f() {
            Ok(v) => Attempt::Ready(v),
            Err(e) => Attempt::NotYet(e),
        })
    })
    .unwrap_or_else(|e| panic!("{e}\nagent:\n{}", agent.log_tail(20)))
}

#[test]
fn destination_rule_policies_reach_envoy_and_shape_traffic() {
    let lab = Lab::new("traffic").unwrap();
    let net = lab.network("mesh").unwrap();
    let cp_host = lab.host("cp", &[&net]).unwrap();
    let client = lab.host("client", &[&net]).unwrap();
    let b1 = lab.host("b1", &[&net]).unwrap();
    let b2 = lab.host("b2", &[&net]).unwrap();
    let b3 = lab.host("b3", &[&net]).unwrap();
    client.set_default_route(cp_host.ip()).unwrap();

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    write(
        &config,
        "workloads.yaml",
        &workloads(&client, &[&b1, &b2, &b3]),
    );
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &["--config-dir", &config.to_string_lossy()],
    )
    .unwrap();
    let echo1 = serve(&b1, "echo-1", "echo-1", 8080, &[]);
    let _echo2 = serve(&b2, "echo-2", "echo-2", 8080, &[]);
    let _echo3 = serve(&b3, "echo-3", "echo-3", 8080, &[]);
    let _slow = serve(&b3, "slow", "slow", 8081, &["--delay", "1500"]);

    let root = VmRoot::new(&lab.dir().join("client-root")).unwrap();
    root.write_bundle(&cp, &client, NS, "client", "client", CAPTURE_ENV)
        .unwrap();
    root.install_capture(&client).unwrap();
    let agent = root
        .start_agent_as_proxy_user(&client, "client-agent", &[])
        .unwrap();
    let echo = format!("http://{}/", cp.service_vip(NS, "echo").unwrap());
    let slow = format!("http://{}/", cp.service_vip(NS, "slow").unwrap());
    wait("the client to reach echo", &agent, || {
        get(&client, &echo, &[]).and_then(|r| match r.status {
            200 => Ok(()),
            s => Err(format!("{s}")),
        })
    });
    let addr = |h: &Host, port: u16| format!("{}:{port}", h.ip());

    // (d) Subsets: each subset cluster holds only its endpoints (EDS filtered by labels).
    write(
        &config,
        "dr.yaml",
        &rule(
            ECHO,
            "  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
",
        ),
    );
    let v1 = format!("outbound|80|v1|{ECHO}");
    let v2 = format!("outbound|80|v2|{ECHO}");
    wait("subset clusters with their endpoints", &agent, || {
        let (m1, m2) = (members(&client, &v1), members(&client, &v2));
        let want2 = {
            let mut v = vec![addr(&b2, 8080), addr(&b3, 8080)];
            v.sort();
            v
        };
        if m1 == [addr(&b1, 8080)] && m2 == want2 {
            Ok(())
        } else {
            Err(format!("v1 {m1:?}, v2 {m2:?}"))
        }
    });
    assert_eq!(
        members(&client, &format!("outbound|80||{ECHO}")).len(),
        3,
        "the default cluster keeps every endpoint"
    );

    // (c) Consistent hash by cookie: Envoy sets it on the first response; it pins the session.
    write(
        &config,
        "dr.yaml",
        &rule(
            ECHO,
            "  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: weft-session, path: /, ttl: 60s}
",
        ),
    );
    let cookie = wait("a session cookie from Envoy", &agent, || {
        let r = get(&client, &echo, &[])?;
        let set = r.header("set-cookie").ok_or("no set-cookie yet")?;
        let pair = set.split(';').next().unwrap_or_default().trim().to_string();
        if pair.starts_with("weft-session=") {
            Ok(pair)
        } else {
            Err(format!("set-cookie {set}"))
        }
    });
    let with_cookie: Vec<String> = (0..20)
        .map(|_| {
            let r = get(&client, &echo, &[format!("cookie: {cookie}")]).unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.header("set-cookie").is_none(), "the cookie was sent");
            r.server().unwrap().to_string()
        })
        .collect();
    assert!(
        with_cookie.iter().all(|s| s == &with_cookie[0]),
        "one session, one backend: {with_cookie:?}"
    );
    let mut without: Vec<String> = (0..20)
        .map(|_| {
            get(&client, &echo, &[])
                .unwrap()
                .server()
                .unwrap()
                .to_string()
        })
        .collect();
    without.sort();
    without.dedup();
    assert!(without.len() > 1, "new sessions spread: {without:?}");

    // (a) Outlier detection: echo-1 now fails every request; it is ejected, the rest serve.
    echo1.stop(Duration::from_secs(2));
    let echo1 = serve(&b1, "echo-1-failing", "echo-1", 8080, &["--status", "503"]);
    write(
        &config,
        "dr.yaml",
        &rule(
            ECHO,
            "  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
",
        ),
    );
    let default_cluster = format!("outbound|80||{ECHO}");
    let ejected = format!("cluster.{default_cluster}.outlier_detection.ejections_enforced_total");
    let mut failures = 0;
    wait("echo-1 to be ejected", &agent, || {
        if let Ok(r) = get(&client, &echo, &[])
            && r.status == 503
        {
            failures += 1;
        }
        match counter(
            &client,
            "outlier_detection.ejections_enforced_total",
            &ejected,
        ) {
            0 => Err("no ejection yet".to_string()),
            n => Ok(n),
        }
    });
    assert!(
        failures >= 1,
        "echo-1's 503s reached the client before the ejection"
    );
    let clusters = admin(&client, "/clusters");
    assert!(
        clusters.contains(&format!(
            "{default_cluster}::{}::health_flags::/failed_outlier_check",
            addr(&b1, 8080)
        )),
        "{clusters}"
    );
    let served_by_1 = echo1
        .log()
        .lines()
        .filter(|l| l.contains(" -> 503"))
        .count();
    for _ in 0..20 {
        let r = get(&client, &echo, &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_ne!(r.server(), Some("echo-1"));
    }
    assert_eq!(
        echo1
            .log()
            .lines()
            .filter(|l| l.contains(" -> 503"))
            .count(),
        served_by_1,
        "no request reaches the ejected endpoint"
    );

    // (b) Connection pool: one connection, one pending request; concurrent slow requests beyond
    // that overflow with Envoy's local 503.
    write(
        &config,
        "dr-slow.yaml",
        &rule(
            SLOW,
            "  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
",
        ),
    );
    let slow_cluster = format!("outbound|80||{SLOW}");
    wait("the slow cluster's circuit breakers", &agent, || {
        let dump = admin(&client, "/clusters");
        let line = format!("{slow_cluster}::default_priority::max_connections::1");
        if dump.contains(&line) {
            Ok(())
        } else {
            Err("old limits".to_string())
        }
    });
    let outputs: Vec<String> = (0..4)
        .map(|i| {
            lab.dir()
                .join(format!("slow-{i}.out"))
                .display()
                .to_string()
        })
        .collect();
    let mut args: Vec<&str> = vec!["-sS", "-Z", "--parallel-immediate", "-w", "%{http_code}\n"];
    for o in &outputs {
        args.extend(["-o", o.as_str(), slow.as_str()]);
    }
    let out = client.curl(&args, Duration::from_secs(15)).unwrap();
    let codes: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(codes.len(), 4, "{out}");
    assert!(
        codes.contains(&"200"),
        "some requests are served: {codes:?}"
    );
    assert!(codes.contains(&"503"), "some requests overflow: {codes:?}");
    let bodies: Vec<String> = outputs
        .iter()
        .map(|o| std::fs::read_to_string(o).unwrap_or_default())
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("reset reason: overflow")),
        "{bodies:?}"
    );
    let overflow = counter(
        &client,
        "upstream_rq_pending_overflow",
        &format!("cluster.{slow_cluster}.upstream_rq_pending_overflow"),
    );
    assert!(overflow >= 1, "Envoy counts the overflow");
}
