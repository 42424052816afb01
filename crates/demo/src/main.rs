//! `weft-demo`: the user's seed lab (shared/seeds/002: a `forum` VM in `forum-services`, a `webapp`
//! in `istioinaction`, Service `forum` 80 → 8080, mesh-wide STRICT) run end to end on this machine,
//! each step narrated with the command a user would type and its real output.
//!
//! Hosts are network namespaces on one bridge (198.18.0.0/24, the kit's benchmark range); weftd,
//! weft-agent and Envoy are the real programs, capture is real iptables, the clients are real curl.
//! The configuration is embedded (`config/*.yaml`) and written to a config directory at run time.
//! Needs root. Exits non-zero if any step fails, after printing the relevant log tails.

mod bundle;
mod narrate;

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use bundle::VmSpec;
use narrate::{Steps, command, command_line, ok, output, run_shown, say, show, show_output};
use serde_json::Value;
use weft_testkit::mesh::{ControlPlane, ISTIOD_SAN, PROXY_UID, VmRoot};
use weft_testkit::{Attempt, CommandOutput, Host, Lab, Process, poll_until, workspace_binary};

/// The embedded default configuration (templates: `{{KEY}}` is filled in at run time).
const FORUM_SERVICE: &str = include_str!("../config/forum-service.yaml");
const FORUM_ENTRY: &str = include_str!("../config/forum-workloadentry.yaml");
const WEBAPP_ENTRY: &str = include_str!("../config/webapp-workloadentry.yaml");
const MESH_STRICT: &str = include_str!("../config/peerauthentication-mesh-strict.yaml");

const FORUM: VmSpec = VmSpec {
    workload: "forum",
    pod_name: "forum-vm",
    namespace: "forum-services",
    service_account: "forum-sa",
    ports: &[("http", 8080)],
    network: "vm-network",
};

const WEBAPP: VmSpec = VmSpec {
    workload: "webapp",
    pod_name: "webapp-vm",
    namespace: "istioinaction",
    service_account: "webapp",
    ports: &[],
    network: "vm-network",
};

const FORUM_CLUSTER: &str = "outbound|80||forum.forum-services.svc.cluster.local";
const ENVOY_ADMIN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let start = Instant::now();
    println!(
        "Weft demo: the seed lab (forum VM + webapp, Service forum 80 → 8080, mesh-wide STRICT)"
    );
    let lab = match Lab::new("demo") {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("weft-demo: cannot build the lab: {e}");
            eprintln!(
                "weft-demo: run it as root on Linux with iproute2 (scripts/demo does the set-up)"
            );
            return ExitCode::FAILURE;
        }
    };
    let bin_dir = workspace_binary("weftctl", "weftctl")
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    narrate::set_shorthands(lab.dir(), bin_dir.as_deref());
    println!(
        "LAB={}  (logs and configs; removed at the end)",
        lab.dir().display()
    );

    let id = lab.id().to_string();
    let dir = lab.dir().to_path_buf();
    let demo = match Demo::new(lab) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("weft-demo: cannot create the lab's hosts: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut steps = Steps::new();
    demo.run(&mut steps);

    // 7. Clean up: the Lab's Drop stops every process group and deletes the namespaces (and with
    // them every iptables rule); on failure the directory with all logs is kept.
    let failed = !steps.all_passed();
    if failed {
        demo.lab.keep_dir();
    }
    let processes = demo.lab.processes();
    let namespaces = demo.lab.namespaces();
    steps.run(
        "Clean up",
        "stop every process, delete the hosts' namespaces (and with them the capture rules)",
        Vec::new,
        move || {
            let count = processes.len();
            let names: Vec<&str> = processes.iter().map(Process::name).collect();
            say(&format!(
                "dropping the lab: process groups {} get SIGTERM (SIGKILL after 3 s); {} namespaces are deleted",
                names.join(", "),
                namespaces.len()
            ));
            drop(demo);
            let still_running: Vec<String> = processes
                .iter()
                .filter(|p| p.is_running())
                .map(|p| p.name().to_string())
                .collect();
            let left: Vec<String> = weft_testkit::list_netns()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|n| n.starts_with(&format!("{id}-")))
                .collect();
            command("host", &format!("ip netns list | grep -c '^{id}-'"));
            output(&left.len().to_string(), 1);
            if !still_running.is_empty() || !left.is_empty() {
                return Err(format!(
                    "left behind: processes {still_running:?}, namespaces {left:?}"
                ));
            }
            if failed {
                say(&format!("logs and configs kept in {}", dir.display()));
            } else {
                say(&format!("{} removed", dir.display()));
            }
            ok("nothing left behind");
            Ok((
                (),
                format!(
                    "{count} processes stopped, {} namespaces deleted",
                    namespaces.len()
                ),
            ))
        },
    );
    steps.print_summary(start.elapsed());
    if steps.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The lab's hosts and directories.
struct Demo {
    lab: Lab,
    weftd_host: Host,
    forum_host: Host,
    webapp_host: Host,
    outsider: Host,
    config: PathBuf,
    state: PathBuf,
}

/// A VM that joined: its host, root, agent and (forum) app.
struct Joined {
    host: Host,
    agent: Process,
}

impl Demo {
    fn new(lab: Lab) -> Result<Self, String> {
        let e = |e: weft_testkit::Error| e.to_string();
        let net = lab.network("vm-network").map_err(e)?;
        let weftd_host = lab.host("weftd", &[&net]).map_err(e)?;
        let forum_host = lab.host("forum-vm", &[&net]).map_err(e)?;
        let webapp_host = lab.host("webapp-vm", &[&net]).map_err(e)?;
        let outsider = lab.host("outsider", &[&net]).map_err(e)?;
        // Like a real VM, the workloads have a default route (to the control-plane host, which does
        // not forward): without one, connecting to a VIP fails before capture can redirect it.
        for h in [&forum_host, &webapp_host] {
            h.set_default_route(weftd_host.ip()).map_err(e)?;
        }
        let config = lab.dir().join("config");
        std::fs::create_dir_all(&config).map_err(|e| e.to_string())?;
        Ok(Demo {
            state: lab.dir().join("state"),
            lab,
            weftd_host,
            forum_host,
            webapp_host,
            outsider,
            config,
        })
    }

    /// Processes of the lab with these names (for log tails on failure).
    fn logs(&self, names: &'static [&'static str]) -> impl FnOnce() -> Vec<Process> + '_ {
        move || {
            self.lab
                .processes()
                .into_iter()
                .filter(|p| names.contains(&p.name()))
                .collect()
        }
    }

    fn run(&self, steps: &mut Steps) {
        const LATER: [&str; 5] = [
            "forum VM joins",
            "webapp VM joins",
            "webapp calls forum",
            "mesh-wide STRICT",
            "live config edit",
        ];
        let Some((cp, weftctl)) = steps.run(
            "Control plane",
            "weftd with a config directory written from the embedded YAML: CA, xDS, admin API",
            self.logs(&["weftd"]),
            || self.control_plane(),
        ) else {
            for t in LATER {
                steps.skip(t, "needs the control plane");
            }
            return;
        };
        let forum = steps.run(
            LATER[0],
            "WorkloadGroup, bundle, traffic capture, app, and the agent as istio-proxy",
            self.logs(&["weftd", "forum-agent", "forum-app"]),
            || self.join(&cp, &weftctl, &FORUM, &self.forum_host, true),
        );
        let webapp = steps.run(
            LATER[1],
            "the same for the caller (a pod in the seed; a VM here): bundle, capture, agent",
            self.logs(&["weftd", "webapp-agent"]),
            || self.join(&cp, &weftctl, &WEBAPP, &self.webapp_host, false),
        );
        let (Some(forum), Some(webapp)) = (forum, webapp) else {
            for t in &LATER[2..] {
                steps.skip(t, "needs both VMs in the mesh");
            }
            return;
        };
        let all = &["weftd", "forum-agent", "webapp-agent", "forum-app"];
        let vip = steps.run(
            LATER[2],
            "curl from webapp to the forum VIP: both Envoys, mutual TLS, no change to either app",
            self.logs(all),
            || self.call(&cp, &weftctl, &forum, &webapp),
        );
        steps.run(
            LATER[3],
            "the seed's PeerAuthentication (istio-system, mode STRICT) added to the config directory",
            self.logs(all),
            || self.strict(&weftctl, &webapp, vip.as_deref()),
        );
        steps.run(
            LATER[4],
            "the forum WorkloadEntry's weight edited in place; how long until webapp's Envoy has it",
            self.logs(all),
            || self.live_edit(&weftctl, &webapp),
        );
    }

    // ---- 1. Control plane ------------------------------------------------------------------

    fn control_plane(&self) -> Result<((ControlPlane, Weftctl), String), String> {
        say(&format!(
            "hosts (network namespaces on one bridge, vm-network 198.18.0.0/24): weftd {}, forum-vm {}, webapp-vm {}, outsider {}",
            self.weftd_host.ip(),
            self.forum_host.ip(),
            self.webapp_host.ip(),
            self.outsider.ip()
        ));
        say("the config directory, from the demo's embedded YAML (VM addresses filled in):");
        self.write_config("forum-service.yaml", FORUM_SERVICE)?;
        self.write_config("forum-workloadentry.yaml", &self.forum_entry(1)?)?;
        let webapp_ip = self.webapp_host.ip().to_string();
        self.write_config(
            "webapp-workloadentry.yaml",
            &bundle::render(WEBAPP_ENTRY, &[("WEBAPP_IP", &webapp_ip)])?,
        )?;
        run_shown(
            &self.weftd_host,
            &["ls", "-1", &self.config.display().to_string()],
            CMD_TIMEOUT,
            10,
        )?;
        run_shown(
            &self.weftd_host,
            &[
                "cat",
                &self
                    .config
                    .join("forum-workloadentry.yaml")
                    .display()
                    .to_string(),
            ],
            CMD_TIMEOUT,
            20,
        )?;

        let config_arg = self.config.display().to_string();
        command(
            "weftd",
            &format!(
                "{} &",
                command_line(&[
                    "weftd",
                    "--state-dir",
                    &self.state.display().to_string(),
                    "--config-dir",
                    &config_arg,
                    "--xds-tls-addr",
                    "0.0.0.0:15012",
                    "--http-addr",
                    "0.0.0.0:8080",
                ])
            ),
        );
        let cp = ControlPlane::start(
            &self.weftd_host,
            &self.state,
            &["--config-dir", &config_arg],
        )
        .map_err(|e| e.to_string())?;
        output(&cp.process.log(), 12);
        ok("weftd listens on 15012 (xDS + CA over TLS) and 8080 (admin API)");

        say("its CA root was created in the state directory (and is reused on every restart):");
        let listing = run_shown(
            &self.weftd_host,
            &[
                "find",
                &self.state.display().to_string(),
                "-mindepth",
                "1",
                "-printf",
                "%M %u %6s %P\\n",
            ],
            CMD_TIMEOUT,
            20,
        )?;
        let ca_files: Vec<&str> = listing
            .stdout
            .lines()
            .filter(|l| l.contains(" ca/") && l.starts_with('-'))
            .collect();
        if ca_files.is_empty() {
            return Err(format!(
                "no CA files in the state directory:\n{}",
                listing.stdout
            ));
        }
        if let Some(open) = ca_files.iter().find(|l| !l.starts_with("-rw-------")) {
            return Err(format!("a CA file is readable by others: {open}"));
        }
        ok(&format!("{} CA files, all mode 0600", ca_files.len()));

        let weftctl = Weftctl::new(&cp)?;
        let out = weftctl.run(&["validate", "-f", &config_arg], false, 20)?;
        if !out.success() || !out.stderr.contains("0 invalid") {
            return Err("weftctl validate found a problem in the embedded config".into());
        }
        ok("the embedded config is valid Istio/Kubernetes");
        let out = poll_until(
            "weftd to serve the config directory's objects",
            Duration::from_secs(10),
            || {
                let out = weftctl.quiet(&["get", "svc,we", "-A"])?;
                Ok(
                    if out.stdout.contains("forum") && out.stdout.contains("webapp") {
                        Attempt::Ready(out)
                    } else {
                        Attempt::NotYet(format!("{}{}", out.stdout, out.stderr))
                    },
                )
            },
        )
        .map_err(|e| e.to_string())?;
        weftctl.show(&["get", "svc,we", "-A"], &out, 20);
        ok("weftd serves Service forum and both WorkloadEntries from the config directory");
        Ok(((cp, weftctl), "weftd up, CA root 0600, config valid".into()))
    }

    fn write_config(&self, name: &str, text: &str) -> Result<(), String> {
        write_atomically(&self.config, name, text)
    }

    fn forum_entry(&self, weight: u32) -> Result<String, String> {
        let ip = self.forum_host.ip().to_string();
        bundle::render(
            FORUM_ENTRY,
            &[("FORUM_IP", &ip), ("FORUM_WEIGHT", &weight.to_string())],
        )
    }

    // ---- 2./3. A VM joins ---------------------------------------------------------------------

    fn join(
        &self,
        cp: &ControlPlane,
        weftctl: &Weftctl,
        vm: &VmSpec,
        host: &Host,
        verbose: bool,
    ) -> Result<(Joined, String), String> {
        if verbose {
            say("as the seed does with istioctl, describe the group its VMs belong to:");
            let ports: Vec<String> = vm.ports.iter().map(|(n, p)| format!("{n}={p}")).collect();
            let out = weftctl.run(
                &[
                    "x",
                    "workload",
                    "group",
                    "create",
                    "--name",
                    vm.workload,
                    "-n",
                    vm.namespace,
                    "--labels",
                    &format!("app={}", vm.workload),
                    "--ports",
                    &ports.join(","),
                    "--serviceAccount",
                    vm.service_account,
                    "--network",
                    vm.network,
                ],
                false,
                20,
            )?;
            if !out.success() || !out.stdout.contains("kind: WorkloadGroup") {
                return Err("weftctl x workload group create failed".into());
            }
            // The seed's `kubectl apply -f workloadgroup.yaml`: into the config directory.
            let file = format!("{}-workloadgroup.yaml", vm.workload);
            self.write_config(&file, &out.stdout)?;
            say(&format!(
                "saved as $LAB/config/{file} (the seed's `kubectl apply -f workloadgroup.yaml`); Weft does not\nauto-register VMs from it yet, so the VM's WorkloadEntry is the one in the config directory"
            ));
        }

        // The bundle, in Istio's VM layout under the VM's root.
        let root_dir = self.lab.dir().join(format!("{}-root", vm.pod_name));
        let root = VmRoot::new(&root_dir).map_err(|e| e.to_string())?;
        let api = "http://127.0.0.1:8080";
        let auth = format!(
            "Authorization: Bearer $(cat {})",
            show(&self.state.join("admin-token"))
        );
        say(
            "the bundle: root certificate and a bootstrap token from weftd's admin API, cluster.env, mesh config",
        );
        let pem = cp.root_cert().map_err(|e| e.to_string())?;
        command(
            "weftd",
            &format!(
                "curl -s -H \"{auth}\" {api}/api/v1/root-cert > {}",
                show(&root.path("etc/certs/root-cert.pem"))
            ),
        );
        root.write_root_cert(&pem).map_err(|e| e.to_string())?;
        if verbose {
            let lines: Vec<&str> = pem.lines().filter(|l| !l.is_empty()).collect();
            output(
                &format!(
                    "{}\n{}…\n{}",
                    lines.first().unwrap_or(&""),
                    lines.get(1).map(|l| &l[..l.len().min(40)]).unwrap_or(""),
                    lines.last().unwrap_or(&"")
                ),
                3,
            );
        }
        let body = format!(
            "{{\"namespace\":\"{}\",\"serviceAccount\":\"{}\",\"durationSeconds\":3600}}",
            vm.namespace, vm.service_account
        );
        command(
            "weftd",
            &format!(
                "curl -s -X POST -H \"{auth}\" {api}/api/v1/tokens -d '{body}' | jq -r .token > {}",
                show(&root.token_path())
            ),
        );
        let token = cp
            .mint_token(vm.namespace, vm.service_account, 3600)
            .map_err(|e| e.to_string())?;
        root.write_token(&token).map_err(|e| e.to_string())?;
        let claims = bundle::jwt_claims(&token)?;
        if verbose {
            say("the token's claims (as the seed shows them for istio-token):");
            output(
                &serde_json::to_string_pretty(&claims).unwrap_or_default(),
                20,
            );
        }
        let want_sub = format!(
            "system:serviceaccount:{}:{}",
            vm.namespace, vm.service_account
        );
        if claims["sub"] != want_sub.as_str() {
            return Err(format!(
                "the token's subject is {}, not {want_sub}",
                claims["sub"]
            ));
        }

        let ip = host.ip().to_string();
        let env_text = bundle::cluster_env(vm, &ip, &cp.xds_address(), ISTIOD_SAN);
        let env_path = root.path("var/lib/istio/envoy/cluster.env");
        std::fs::write(&env_path, &env_text).map_err(|e| format!("write cluster.env: {e}"))?;
        root.write_mesh_config(&format!(
            "defaultConfig:\n  discoveryAddress: {}\n",
            cp.xds_address()
        ))
        .map_err(|e| e.to_string())?;
        if verbose {
            run_shown(
                host,
                &["cat", &env_path.display().to_string()],
                CMD_TIMEOUT,
                30,
            )?;
            run_shown(
                host,
                &[
                    "cat",
                    &root.path("etc/istio/config/mesh").display().to_string(),
                ],
                CMD_TIMEOUT,
                5,
            )?;
            run_shown(
                host,
                &["find", &root_dir.display().to_string(), "-type", "f"],
                CMD_TIMEOUT,
                10,
            )?;
        } else {
            command(
                host.name(),
                &format!(
                    "grep -E '^(POD|SERVICE_ACCOUNT|ISTIO_INBOUND|CA_ADDR)' {}",
                    show(&env_path)
                ),
            );
            let picked: String = env_text
                .lines()
                .filter(|l| {
                    ["POD", "SERVICE_ACCOUNT", "ISTIO_INBOUND", "CA_ADDR"]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .map(|l| format!("{l}\n"))
                .collect();
            output(&picked, 10);
        }

        // Traffic capture, as the VM's start script installs it (as root).
        let agent_bin = workspace_binary("weft-agent", "weft-agent").map_err(|e| e.to_string())?;
        let agent_bin = agent_bin.display().to_string();
        let root_arg = root_dir.display().to_string();
        if verbose {
            say("traffic capture: the rules first (--dry-run), then installed");
            let out = run_shown(
                host,
                &[
                    &agent_bin,
                    "istio-iptables",
                    "--root",
                    &root_arg,
                    "--dry-run",
                ],
                CMD_TIMEOUT,
                15,
            )?;
            if !out.success() {
                return Err("istio-iptables --dry-run failed".into());
            }
        }
        let out = run_shown(
            host,
            &[&agent_bin, "istio-iptables", "--root", &root_arg],
            Duration::from_secs(60),
            6,
        )?;
        if !out.success() {
            return Err("istio-iptables failed".into());
        }
        command(host.name(), "iptables -t nat -S | grep -c '^-A ISTIO'");
        let rules = host
            .run(&["iptables", "-t", "nat", "-S"], CMD_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let count = rules
            .stdout
            .lines()
            .filter(|l| l.starts_with("-A ISTIO"))
            .count();
        output(&count.to_string(), 1);
        if count == 0 {
            return Err(format!("no ISTIO rules installed:\n{}", rules.stdout));
        }

        if !vm.ports.is_empty() {
            say(&format!(
                "the {} app (the kit's HTTP server standing in for the seed's service; it echoes x-forwarded-client-cert):",
                vm.workload
            ));
            command(
                host.name(),
                "weft-test-http --name forum-app --listen 0.0.0.0:8080 --echo-header x-forwarded-client-cert &",
            );
            host.start_http_server(
                &format!("{}-app", vm.workload),
                SocketAddr::from(([0, 0, 0, 0], vm.ports[0].1)),
                &["x-forwarded-client-cert"],
            )
            .map_err(|e| e.to_string())?;
        }

        say(
            "the agent, as the istio-proxy user (UID 1337) so that capture exempts it and its Envoy:",
        );
        command(
            host.name(),
            &format!(
                "chown -R {PROXY_UID}:{PROXY_UID} {} && setpriv --reuid={PROXY_UID} --regid={PROXY_UID} --clear-groups weft-agent proxy --root {} &",
                show(&root_dir),
                show(&root_dir)
            ),
        );
        let agent_name = format!("{}-agent", vm.workload);
        let agent = root
            .start_agent_as_proxy_user(host, &agent_name, &[])
            .map_err(|e| e.to_string())?;

        // Envoy gets its certificate over SDS from the agent, which got it from weftd's CA.
        let certs = poll_until(
            "Envoy to hold the workload certificate",
            Duration::from_secs(30),
            || {
                agent.ensure_running()?;
                let certs = host
                    .http_get(ENVOY_ADMIN, "/certs", Duration::from_secs(2))
                    .map(|r| r.body)
                    .unwrap_or_default();
                Ok(if certs.contains("spiffe://") {
                    Attempt::Ready(certs)
                } else if certs.is_empty() {
                    Attempt::NotYet("Envoy's admin API (127.0.0.1:15000) does not answer".into())
                } else {
                    Attempt::NotYet(certs)
                })
            },
        )
        .map_err(|e| e.to_string())?;
        let pid = agent.pid().to_string();
        let ps = run_shown(
            host,
            &[
                "ps",
                "-o",
                "user:12,uid,pid,ppid,comm",
                "--pid",
                &pid,
                "--ppid",
                &pid,
            ],
            CMD_TIMEOUT,
            6,
        )?;
        let as_proxy = |comm: &str| {
            ps.stdout.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 5 && f[1] == PROXY_UID.to_string() && f[4].starts_with(comm)
            })
        };
        if !as_proxy("weft-agent") || !as_proxy("envoy") {
            return Err("the agent and Envoy do not both run as UID 1337".into());
        }
        ok("weft-agent and its Envoy run as istio-proxy (1337)");

        command(host.name(), "curl -s localhost:15000/certs   # excerpt");
        let (uri, expires) = cert_summary(&certs)?;
        let want = vm.spiffe();
        if uri != want {
            return Err(format!("Envoy's certificate is for {uri}, not {want}"));
        }
        ok(&format!(
            "{} identity {uri}, expires {expires}",
            vm.workload
        ));
        Ok((
            Joined {
                host: host.clone(),
                agent,
            },
            uri,
        ))
    }

    // ---- 4. webapp calls forum ----------------------------------------------------------------

    fn call(
        &self,
        cp: &ControlPlane,
        weftctl: &Weftctl,
        forum: &Joined,
        webapp: &Joined,
    ) -> Result<(String, String), String> {
        let vip = cp
            .service_vip("forum-services", "forum")
            .map_err(|e| e.to_string())?;
        weftctl.run(&["get", "svc", "forum", "-n", "forum-services"], true, 5)?;
        say(&format!(
            "forum.forum-services has VIP {vip} (the seed's ClusterIP 10.10.200.72); webapp's app is plain curl:"
        ));
        let url = format!("http://{vip}/api/users");
        let start = Instant::now();
        let body = poll_until(
            "webapp to reach forum through both Envoys",
            Duration::from_secs(40),
            || {
                forum.agent.ensure_running()?;
                webapp.agent.ensure_running()?;
                let out = curl(&webapp.host, &url)?;
                Ok(if out.success() {
                    Attempt::Ready(out)
                } else {
                    Attempt::NotYet(format!("{}{}", out.stdout, out.stderr))
                })
            },
        )
        .map_err(|e| e.to_string())?;
        command("webapp-vm", &format!("curl -sSfi --max-time 3 {url}"));
        show_output(&body, 20);
        let want = format!("URI={}", WEBAPP.spiffe());
        if !body.stdout.contains("server=forum-app") || !body.stdout.contains(&want) {
            return Err(format!("forum's answer lacks webapp's identity ({want})"));
        }
        ok(&format!(
            "forum's app saw webapp's identity from mutual TLS ({want}), after {} ms of waiting for the mesh",
            start.elapsed().as_millis()
        ));
        let log = self.forum_host_app_log();
        command("forum-vm", &format!("tail -1 {}", show(&log.0)));
        output(&log.1, 1);
        say("the request reached the app from the forum VM's own Envoy, not from webapp directly");

        command(
            "webapp-vm",
            &format!(
                "curl -s localhost:15000/clusters | grep '{FORUM_CLUSTER}::{}:8080::'",
                self.forum_host.ip()
            ),
        );
        let lines = forum_endpoint_lines(&webapp.host, self.forum_host.ip());
        output(&lines, 12);

        let ps = poll_until("both proxies SYNCED", Duration::from_secs(15), || {
            let out = weftctl.quiet(&["proxy-status"])?;
            let synced = |id: &str| {
                out.stdout.lines().any(|l| {
                    l.starts_with(id)
                        && l.contains("SYNCED")
                        && !l.contains("STALE")
                        && !l.contains("NACK")
                })
            };
            Ok(if synced(&FORUM.proxy_id()) && synced(&WEBAPP.proxy_id()) {
                Attempt::Ready(out)
            } else {
                Attempt::NotYet(format!("{}{}", out.stdout, out.stderr))
            })
        })
        .map_err(|e| e.to_string())?;
        weftctl.show(&["proxy-status"], &ps, 10);
        ok("both proxies SYNCED");
        Ok((
            vip,
            "webapp → forum VIP over mTLS; proxy-status SYNCED".into(),
        ))
    }

    fn forum_host_app_log(&self) -> (PathBuf, String) {
        let p = self
            .lab
            .processes()
            .into_iter()
            .find(|p| p.name() == "forum-app");
        match p {
            Some(p) => (p.log_path().to_path_buf(), p.log_tail(1)),
            None => (self.lab.dir().join("forum-app.log"), String::new()),
        }
    }

    // ---- 5. mesh-wide STRICT --------------------------------------------------------------------

    fn strict(
        &self,
        weftctl: &Weftctl,
        webapp: &Joined,
        vip: Option<&str>,
    ) -> Result<((), String), String> {
        let direct = format!("http://{}:8080/api/users", self.forum_host.ip());
        say(
            "PERMISSIVE (Istio's default): a client outside the mesh reaches forum's port 8080 in plain text",
        );
        command("outsider", &format!("curl -sSfi --max-time 3 {direct}"));
        let before = curl(&self.outsider, &direct).map_err(|e| e.to_string())?;
        show_output(&before, 12);
        if !before.success() {
            return Err("before STRICT, the outsider should get in (PERMISSIVE)".into());
        }

        let file = "peerauthentication-mesh-strict.yaml";
        say(&format!(
            "add the seed's own manifest (embedded verbatim) to the config directory as $LAB/config/{file}:"
        ));
        let start = Instant::now();
        self.write_config(file, MESH_STRICT)?;
        run_shown(
            &self.weftd_host,
            &["cat", &self.config.join(file).display().to_string()],
            CMD_TIMEOUT,
            12,
        )?;
        let refused = poll_until(
            "STRICT to shut the outsider out",
            Duration::from_secs(15),
            || {
                let out = curl(&self.outsider, &direct)?;
                Ok(if out.success() {
                    Attempt::NotYet(out.stdout)
                } else {
                    Attempt::Ready(out)
                })
            },
        )
        .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        weftctl.run(&["get", "pa", "-A"], true, 5)?;
        command("outsider", &format!("curl -sSfi --max-time 3 {direct}"));
        show_output(&refused, 6);
        ok(&format!(
            "mesh-wide STRICT: the outsider is refused ({} ms after the file was written)",
            took.as_millis()
        ));

        let Some(vip) = vip else {
            return Err("mesh traffic not checked: the previous step found no VIP".into());
        };
        let url = format!("http://{vip}/api/users");
        command("webapp-vm", &format!("curl -sSfi --max-time 3 {url}"));
        let out = curl(&webapp.host, &url).map_err(|e| e.to_string())?;
        show_output(&out, 20);
        let want = format!("URI={}", WEBAPP.spiffe());
        if !out.success() || !out.stdout.contains(&want) {
            return Err("under STRICT, webapp → forum should still work over mutual TLS".into());
        }
        ok("mesh traffic still flows under STRICT (mutual TLS, webapp's identity)");
        Ok((
            (),
            format!(
                "outsider refused after {} ms; mesh still works",
                took.as_millis()
            ),
        ))
    }

    // ---- 6. live config edit --------------------------------------------------------------------

    fn live_edit(&self, weftctl: &Weftctl, webapp: &Joined) -> Result<((), String), String> {
        let forum_ip = self.forum_host.ip();
        let line = |w: u32| format!("{FORUM_CLUSTER}::{forum_ip}:8080::weight::{w}");
        let grep = format!(
            "curl -s localhost:15000/clusters | grep '{FORUM_CLUSTER}::{forum_ip}:8080::weight'"
        );
        command("webapp-vm", &grep);
        let before = clusters(&webapp.host);
        output(
            &grep_lines(
                &before,
                &format!("{FORUM_CLUSTER}::{forum_ip}:8080::weight"),
            ),
            3,
        );
        if !before.contains(&line(1)) {
            return Err("webapp's Envoy should have forum's endpoint with weight 1 first".into());
        }
        let file = "forum-workloadentry.yaml";
        command(
            "weftd",
            &format!("sed -i 's/weight: 1/weight: 7/' $LAB/config/{file}"),
        );
        let text = self.forum_entry(7)?;
        let start = Instant::now();
        self.write_config(file, &text)?;
        let deadline = start + Duration::from_secs(10);
        let took = loop {
            if clusters(&webapp.host).contains(&line(7)) {
                break start.elapsed();
            }
            if Instant::now() > deadline {
                return Err(format!("webapp's Envoy still lacks {} after 10 s", line(7)));
            }
            thread::sleep(Duration::from_millis(5));
        };
        command("webapp-vm", &grep);
        output(
            &grep_lines(
                &clusters(&webapp.host),
                &format!("{FORUM_CLUSTER}::{forum_ip}:8080::weight"),
            ),
            3,
        );
        ok(&format!(
            "the new weight reached webapp's Envoy {} ms after the file was written (debounce, push, EDS)",
            took.as_millis()
        ));
        let ps = weftctl.run(&["proxy-status"], true, 10)?;
        if ps.stdout.contains("NACK") {
            return Err("an Envoy rejected configuration (NACK)".into());
        }
        ok("no Envoy rejected anything (no NACK)");
        Ok((
            (),
            format!("weight 1 → 7 in webapp's Envoy in {} ms", took.as_millis()),
        ))
    }
}

/// `weftctl` run inside the control-plane host against weftd's admin API.
struct Weftctl {
    host: Host,
    bin: PathBuf,
    token_file: PathBuf,
    flags_shown: Cell<bool>,
}

impl Weftctl {
    fn new(cp: &ControlPlane) -> Result<Self, String> {
        Ok(Weftctl {
            host: cp.host.clone(),
            bin: workspace_binary("weftctl", "weftctl").map_err(|e| e.to_string())?,
            token_file: cp.state_dir.join("admin-token"),
            flags_shown: Cell::new(false),
        })
    }

    fn argv(&self, args: &[&str], server: bool) -> Vec<String> {
        let mut argv = vec![self.bin.display().to_string()];
        if server {
            argv.extend([
                "--server".to_string(),
                "http://127.0.0.1:8080".to_string(),
                "--admin-token-file".to_string(),
                self.token_file.display().to_string(),
            ]);
        }
        argv.extend(args.iter().map(|s| s.to_string()));
        argv
    }

    /// Runs it without showing anything.
    fn quiet(&self, args: &[&str]) -> weft_testkit::Result<CommandOutput> {
        self.host.run(&self.argv(args, true), CMD_TIMEOUT)
    }

    /// Shows `weftctl ARGS` (the server flags spelled out the first time) and `out`.
    fn show(&self, args: &[&str], out: &CommandOutput, max_lines: usize) {
        if self.flags_shown.replace(true) {
            command(self.host.name(), &command_line(&self.argv(args, false)));
        } else {
            command(self.host.name(), &command_line(&self.argv(args, true)));
            say(
                "  (every weftctl call below that talks to weftd gets the same --server and --admin-token-file)",
            );
        }
        show_output(out, max_lines);
    }

    /// Runs and shows it; `server` says whether it talks to weftd.
    fn run(&self, args: &[&str], server: bool, max_lines: usize) -> Result<CommandOutput, String> {
        let out = self
            .host
            .run(&self.argv(args, server), CMD_TIMEOUT)
            .map_err(|e| e.to_string())?;
        if server {
            self.show(args, &out, max_lines);
        } else {
            command(self.host.name(), &command_line(&self.argv(args, false)));
            show_output(&out, max_lines);
        }
        Ok(out)
    }
}

/// Writes `dir/name` the way editors do (a temporary file renamed over it), so weftd never reads a
/// half-written file.
fn write_atomically(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| format!("rename to {name}: {e}"))
}

/// `curl -sSfi --max-time 3 URL` in `host` (a 4xx/5xx answer counts as failure).
fn curl(host: &Host, url: &str) -> weft_testkit::Result<CommandOutput> {
    host.curl(&["-i", "-f", url], Duration::from_secs(3))
}

/// Envoy's admin `/clusters` in `host` (empty if it does not answer).
fn clusters(host: &Host) -> String {
    host.http_get(ENVOY_ADMIN, "/clusters", Duration::from_secs(2))
        .map(|r| r.body)
        .unwrap_or_default()
}

fn grep_lines(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The lines of webapp's `/clusters` about forum's endpoint that say where and how it is.
fn forum_endpoint_lines(host: &Host, forum_ip: Ipv4Addr) -> String {
    let prefix = format!("{FORUM_CLUSTER}::{forum_ip}:8080::");
    clusters(host)
        .lines()
        .filter(|l| {
            l.starts_with(&prefix)
                && [
                    "health_flags",
                    "weight",
                    "cx_total",
                    "rq_success",
                    "hostname",
                ]
                .iter()
                .any(|k| l[prefix.len()..].starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Shows an excerpt of Envoy's `/certs` (the workload certificate and the root it chains to) and
/// returns the workload certificate's SPIFFE URI and expiry.
fn cert_summary(certs: &str) -> Result<(String, String), String> {
    let v: Value = serde_json::from_str(certs).map_err(|e| format!("/certs is not JSON: {e}"))?;
    let mut uri = None;
    let mut expires = String::new();
    let mut excerpt = Vec::new();
    for c in v["certificates"].as_array().into_iter().flatten() {
        for (kind, list) in [("cert_chain", &c["cert_chain"]), ("ca_cert", &c["ca_cert"])] {
            for cert in list.as_array().into_iter().flatten() {
                let san = cert["subject_alt_names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["uri"].as_str().or(s["dns"].as_str()))
                    .collect::<Vec<_>>()
                    .join(",");
                let entry = serde_json::json!({
                    kind: {
                        "subject_alt_names": san,
                        "serial_number": cert["serial_number"],
                        "valid_from": cert["valid_from"],
                        "expiration_time": cert["expiration_time"],
                        "days_until_expiration": cert["days_until_expiration"],
                    }
                });
                // Envoy lists a certificate once per secret that holds it.
                if !excerpt.contains(&entry) {
                    excerpt.push(entry);
                }
                if kind == "cert_chain" && uri.is_none() && san.starts_with("spiffe://") {
                    uri = Some(san.clone());
                    expires = cert["expiration_time"].as_str().unwrap_or("?").to_string();
                }
            }
        }
    }
    output(
        &serde_json::to_string_pretty(&excerpt).unwrap_or_default(),
        30,
    );
    uri.map(|u| (u, expires))
        .ok_or_else(|| format!("no SPIFFE certificate in Envoy's /certs:\n{certs}"))
}
