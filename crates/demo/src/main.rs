//! `weft-demo`: the user's seed lab (shared/seeds/002, "extending the mesh to VMs") run end to end
//! on this machine, each step narrated with the command a user would type and its real output.
//!
//! Two networks of network-namespace hosts: "cluster" (weftd, the east-west gateway, webapp and
//! catalog in istioinaction) and "vm-network" (the forum VM, which reaches only the gateway, its
//! DNS server, and an outsider). weftd, weft-agent, weftctl and Envoy are the real programs, capture is real
//! iptables, the clients are real curl. The configuration is embedded: the seed's own manifests
//! (fixed only where Istio rejects them) and the cluster's objects, from `weft_testkit::seed_lab`,
//! which the seed-lab scenario test builds the same lab with. Needs root. Exits non-zero if any
//! step fails (after printing the relevant log tails); the lab is torn down at the end, on
//! failure and on Ctrl-C.

mod narrate;
mod steps;
mod weftctl;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use narrate::{Steps, log_tails};
use weft_testkit::mesh::{ControlPlane, VmRoot};
use weft_testkit::seed_lab::{Bundle, SeedLab, Workload};
use weft_testkit::{Lab, Process, workspace_binary};
use weftctl::Weftctl;

/// What the steps build, for the steps after them.
pub struct Demo {
    s: SeedLab,
    cp: Option<ControlPlane>,
    weftctl: Option<Weftctl>,
    gw_agent: Option<Process>,
    webapp: Option<Workload>,
    catalog: Option<Workload>,
    bundle: Option<Bundle>,
    forum_root: Option<VmRoot>,
    forum_agent: Option<Process>,
}

/// A value an earlier step made (an error naming it if that step did not run).
fn need<'a, T>(value: &'a Option<T>, what: &str) -> Result<&'a T, String> {
    value
        .as_ref()
        .ok_or_else(|| format!("{what} is missing (an earlier step did not run)"))
}

type StepFn = fn(&mut Demo) -> Result<String, String>;

/// The steps: title, what it shows, the processes whose logs explain a failure, and the step.
const STEPS: &[(&str, &str, &[&str], StepFn)] = &[
    (
        "The lab",
        "two networks of hosts; the gateway host routes no packets between them",
        &[],
        Demo::topology,
    ),
    (
        "weftd",
        "the seed's manifests (fixed where Istio rejects them) and the cluster's objects, loaded",
        &["weftd"],
        Demo::control_plane,
    ),
    (
        "East-west gateway",
        "weft-agent proxy router, configured by weftd from the seed's Gateways",
        &["weftd", "gw-agent"],
        Demo::gateway,
    ),
    (
        "webapp and catalog",
        "two cluster-side workloads in istioinaction, each answering on its own VIP",
        &["weftd", "webapp-agent", "catalog-agent"],
        Demo::cluster_workloads,
    ),
    (
        "The forum WorkloadGroup",
        "the seed's group and Service for the VM, served by weftd",
        &["weftd"],
        Demo::workload_group,
    ),
    (
        "The VM's bundle",
        "weftctl x workload entry configure --autoregister --ingressIP <gateway>",
        &["weftd"],
        Demo::bundle,
    ),
    (
        "Only the gateway",
        "the bundle installed on the VM, which reaches the gateway and nothing else of the cluster",
        &["forum", "dnsmasq"],
        Demo::only_gateway,
    ),
    (
        "The VM joins",
        "capture and the agent: through the gateway to weftd (expose-istiod), registered, Healthy",
        &["weftd", "gw-agent", "forum-agent"],
        Demo::join,
    ),
    (
        "DNS on the VM",
        "the agent's DNS proxy: mesh names from weftd's name table, other names from the VM's DNS server",
        &["weftd", "forum-agent", "dnsmasq"],
        Demo::dns,
    ),
    (
        "The VM calls the cluster",
        "the VM's app → webapp and catalog by name: capture, the VM's Envoy, the gateway on 15443",
        &[
            "weftd",
            "gw-agent",
            "forum-agent",
            "webapp-agent",
            "catalog-agent",
        ],
        Demo::vm_to_cluster,
    ),
    (
        "webapp calls the VM",
        "webapp → forum.forum-services: webapp's Envoy, the gateway, the VM's Envoy, the app",
        &["weftd", "gw-agent", "forum-agent", "webapp-agent", "forum"],
        Demo::cluster_to_vm,
    ),
    (
        "Mesh-wide STRICT",
        "the seed's PeerAuthentication: plain requests from outside fail, mesh traffic goes on",
        &["weftd", "gw-agent", "forum-agent", "webapp-agent"],
        Demo::strict,
    ),
];

fn main() -> ExitCode {
    let start = Instant::now();
    println!(
        "Weft demo: the seed lab (a forum VM on its own network joins the mesh through an east-west gateway)"
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
    if let Err(e) = lab.tear_down_on_signals(|sig| {
        eprintln!(
            "\nweft-demo: {sig}: stopping every process of the lab and deleting its namespaces"
        );
    }) {
        eprintln!("weft-demo: {e}");
        return ExitCode::FAILURE;
    }
    let bin_dir = workspace_binary("weftctl", "weftctl")
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    narrate::set_shorthands(lab.dir(), bin_dir.as_deref());
    println!(
        "LAB={}  (logs and configs; removed at the end)",
        lab.dir().display()
    );
    let s = match SeedLab::new(lab) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weft-demo: cannot create the lab's hosts: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut demo = Demo {
        s,
        cp: None,
        weftctl: None,
        gw_agent: None,
        webapp: None,
        catalog: None,
        bundle: None,
        forum_root: None,
        forum_agent: None,
    };
    let mut steps = Steps::new();
    for (title, what, logs, step) in STEPS {
        if steps.failed() {
            steps.skip(title, "an earlier step failed");
            continue;
        }
        if !steps.run(title, what, || step(&mut demo)) {
            let processes: Vec<Process> = demo
                .s
                .lab
                .processes()
                .into_iter()
                .filter(|p| logs.contains(&p.name()))
                .collect();
            log_tails(&processes);
        }
    }
    steps::cleanup::run(demo, &mut steps);
    steps.print_summary(start.elapsed());
    if steps.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
