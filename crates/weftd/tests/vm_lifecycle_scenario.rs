//! The seed's forum VM flow end to end, with real agents and Envoys in network namespaces:
//! a WorkloadGroup with an HTTP probe, `weftctl x workload entry configure --autoregister`, the
//! bundle installed into each VM's root, and the agent started (as istio-proxy, with capture).
//! The VM appears as `forum-<ip>-vm-network` with `Healthy=True`; webapp reaches it through
//! `Service forum` 80→8080; when its app stops it turns unhealthy and webapp gets Envoy's 503
//! `no healthy upstream`; two VMs share the load; a token for another service account cannot
//! join; and a stopped agent's entry is gone after the grace period.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_testkit::mesh::{CAPTURE_ENV, ControlPlane, MeshWorkload, VmRoot};
use weft_testkit::vm_bundle::{configure, install, weftctl};
use weft_testkit::{Host, Lab, Process};

const NS: &str = "forum-services";
const GRACE_SECS: u64 = 3;

/// The seed's WorkloadGroup (seed 002), probing every second instead of every five.
const GROUP: &str = "apiVersion: networking.istio.io/v1alpha3
kind: WorkloadGroup
metadata:
  name: forum
  namespace: forum-services
spec:
  metadata:
    labels:
      app: forum
  template:
    serviceAccount: forum-sa
    network: vm-network
  probe:
    periodSeconds: 1
    initialDelaySeconds: 1
    httpGet:
      port: 8080
      path: /api/healthz
";

fn mesh_config(webapp_ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: forum
  namespace: forum-services
spec:
  ports:
  - name: http
    port: 80
    targetPort: 8080
  selector:
    app: forum
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: webapp
  namespace: istioinaction
spec:
  address: {webapp_ip}
  labels:
    app: webapp
  serviceAccount: webapp
"
    )
}

fn entries(cp: &ControlPlane) -> String {
    weftctl(cp, &["get", "workloadentries", "-n", NS]).unwrap_or_else(|e| e.to_string())
}

/// The HEALTHY column of `name` in `weftctl get workloadentries`, if listed.
fn health_of(cp: &ControlPlane, name: &str) -> Option<String> {
    entries(cp)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last().map(str::to_string))
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// webapp's request to forum's VIP: (HTTP status, body).
fn call(webapp: &Host, vip: &str) -> (u16, String) {
    let url = format!("http://{vip}/api/threads");
    match webapp.curl(
        &["-sS", "-w", "\n%{http_code}", &url],
        Duration::from_secs(3),
    ) {
        Ok(out) => {
            let text = out.stdout.trim_end().to_string();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
            (code.trim().parse().unwrap_or(0), body.to_string())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Makes the forum bundle and installs it in a new root for `vm`; starts its app and its agent.
struct ForumVm {
    host: Host,
    root: VmRoot,
    app: Option<Process>,
    agent: Option<Process>,
}

impl ForumVm {
    fn join(lab: &Lab, cp: &ControlPlane, host: Host, group_file: &Path) -> ForumVm {
        let name = host.name().to_string();
        let out = lab.dir().join(format!("{name}-bundle"));
        let printed = configure(
            cp,
            group_file,
            &out,
            &[
                "--autoregister",
                "--clusterID",
                "Kubernetes",
                "--ingressIP",
                &cp.ip().to_string(),
            ],
        )
        .unwrap();
        assert!(printed.contains("was successful"), "{printed}");
        let root = VmRoot::new(&lab.dir().join(format!("{name}-root"))).unwrap();
        install(&out, &root).unwrap();
        let mut vm = ForumVm {
            host,
            root,
            app: None,
            agent: None,
        };
        vm.start_app();
        // Capture is installed from the bundle's settings, plus the VM defaults.
        let env = std::fs::read_to_string(vm.root.path("var/lib/istio/envoy/cluster.env")).unwrap();
        let extra: String = CAPTURE_ENV
            .iter()
            .filter(|(k, _)| !env.contains(&format!("{k}=")))
            .map(|(k, v)| format!("{k}='{v}'\n"))
            .collect();
        std::fs::write(
            vm.root.path("var/lib/istio/envoy/cluster.env"),
            env + &extra,
        )
        .unwrap();
        vm.root.install_capture(&vm.host).unwrap();
        vm.agent = Some(
            vm.root
                .start_agent_as_proxy_user(&vm.host, &format!("{name}-agent"), &[])
                .unwrap(),
        );
        vm
    }

    fn entry_name(&self) -> String {
        format!("forum-{}-vm-network", self.host.ip())
    }

    fn start_app(&mut self) {
        let name = self.host.name().to_string();
        self.app = Some(
            self.host
                .start_http_server(&name, SocketAddr::from(([0, 0, 0, 0], 8080)), &[])
                .unwrap(),
        );
    }

    fn stop_app(&mut self) {
        if let Some(p) = self.app.take() {
            p.stop(Duration::from_secs(2));
        }
    }

    fn agent_log(&self) -> String {
        self.agent
            .as_ref()
            .map(|a| a.log_tail(40))
            .unwrap_or_default()
    }
}

#[test]
fn forum_vms_join_report_health_share_load_and_leave() {
    let lab = Lab::new("vmlc").unwrap();
    let net = lab.network("mesh").unwrap();
    let cp_host = lab.host("cp", &[&net]).unwrap();
    let webapp = lab.host("webapp", &[&net]).unwrap();
    let forum_a = lab.host("forum-a", &[&net]).unwrap();
    let forum_b = lab.host("forum-b", &[&net]).unwrap();
    let intruder = lab.host("intruder", &[&net]).unwrap();
    for h in [&webapp, &forum_a, &forum_b, &intruder] {
        h.set_default_route(cp_host.ip()).unwrap();
    }
    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("mesh.yaml"), mesh_config(webapp.ip())).unwrap();
    std::fs::write(config.join("forum-group.yaml"), GROUP).unwrap();
    let group_file = lab.dir().join("forum-group.yaml");
    std::fs::write(&group_file, GROUP).unwrap();
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &[
            "--config-dir",
            &config.to_string_lossy(),
            "--workload-entry-grace-period",
            &format!("{GRACE_SECS}s"),
        ],
    )
    .unwrap();

    // webapp: a manually registered workload with its agent and capture.
    let _webapp =
        MeshWorkload::start(lab.dir(), &cp, &webapp, "istioinaction", "webapp", "webapp").unwrap();
    let vip = cp.service_vip(NS, "forum").unwrap();

    // The first forum VM joins and turns healthy.
    let mut a = ForumVm::join(&lab, &cp, forum_a, &group_file);
    wait_until(
        "forum-a registered and Healthy=True",
        Duration::from_secs(20),
        || health_of(&cp, &a.entry_name()).as_deref() == Some("True"),
        || format!("{}\nagent:\n{}", entries(&cp), a.agent_log()),
    );
    wait_until(
        "webapp reaches forum-a",
        Duration::from_secs(10),
        || call(&webapp, &vip).0 == 200,
        || format!("{:?}", call(&webapp, &vip)),
    );
    let (_, body) = call(&webapp, &vip);
    assert!(body.contains("server=forum-a"), "{body}");

    // Its app stops: unhealthy, out of webapp's endpoints, Envoy answers 503.
    a.stop_app();
    wait_until(
        "forum-a Healthy=False",
        Duration::from_secs(10),
        || health_of(&cp, &a.entry_name()).as_deref() == Some("False"),
        || entries(&cp),
    );
    wait_until(
        "webapp gets 503 no healthy upstream",
        Duration::from_secs(10),
        || {
            let (code, body) = call(&webapp, &vip);
            code == 503 && body.contains("no healthy upstream")
        },
        || format!("{:?}", call(&webapp, &vip)),
    );
    a.start_app();
    wait_until(
        "forum-a back",
        Duration::from_secs(10),
        || call(&webapp, &vip).0 == 200,
        || format!("{}\n{:?}", entries(&cp), call(&webapp, &vip)),
    );

    // A second VM joins the group: both get traffic.
    let b = ForumVm::join(&lab, &cp, forum_b, &group_file);
    wait_until(
        "forum-b Healthy=True",
        Duration::from_secs(20),
        || health_of(&cp, &b.entry_name()).as_deref() == Some("True"),
        || format!("{}\nagent:\n{}", entries(&cp), b.agent_log()),
    );
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && Instant::now() < deadline {
        let (code, body) = call(&webapp, &vip);
        if code == 200 {
            seen.extend(
                body.lines()
                    .filter(|l| l.starts_with("server="))
                    .map(str::to_string),
            );
        }
    }
    assert_eq!(seen.len(), 2, "both VMs answer: {seen:?}");

    // A token for another service account cannot join the group.
    let out = lab.dir().join("intruder-bundle");
    configure(
        &cp,
        &group_file,
        &out,
        &["--autoregister", "--ingressIP", &cp.ip().to_string()],
    )
    .unwrap();
    let intruder_root = VmRoot::new(&lab.dir().join("intruder-root")).unwrap();
    install(&out, &intruder_root).unwrap();
    intruder_root
        .write_token(&cp.mint_token(NS, "default", 600).unwrap())
        .unwrap();
    // It claims the identity its token carries (else weftd refuses the node before the group
    // is even looked at).
    let env_path = intruder_root.path("var/lib/istio/envoy/cluster.env");
    let env = std::fs::read_to_string(&env_path).unwrap();
    assert!(env.contains("SERVICE_ACCOUNT='forum-sa'"), "{env}");
    std::fs::write(
        &env_path,
        env.replace("SERVICE_ACCOUNT='forum-sa'", "SERVICE_ACCOUNT='default'"),
    )
    .unwrap();
    let intruder_agent = intruder_root
        .start_agent(&intruder, "intruder-agent", &[])
        .unwrap();
    wait_until(
        "the intruder refused",
        Duration::from_secs(20),
        || intruder_agent.log().contains("may not join WorkloadGroup"),
        || intruder_agent.log_tail(30),
    );
    assert!(
        !entries(&cp).contains(&intruder.ip().to_string()),
        "{}",
        entries(&cp)
    );

    // forum-b's agent stops: its entry is gone after the grace period; forum-a serves alone.
    let stopped = Instant::now();
    if let Some(agent) = &b.agent {
        agent.stop(Duration::from_secs(5));
    }
    wait_until(
        "forum-b's entry deleted",
        Duration::from_secs(GRACE_SECS + 10),
        || health_of(&cp, &b.entry_name()).is_none(),
        || entries(&cp),
    );
    assert!(
        stopped.elapsed() >= Duration::from_secs(GRACE_SECS) - Duration::from_millis(200),
        "deleted before the grace period: {:?}",
        stopped.elapsed()
    );
    assert_eq!(health_of(&cp, &a.entry_name()).as_deref(), Some("True"));
    for _ in 0..5 {
        let (code, body) = call(&webapp, &vip);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("server=forum-a"), "{body}");
    }
}
