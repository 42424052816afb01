//! The VM side: the seed's WorkloadGroup, the bundle weftctl makes from it, the VM that reaches
//! only the gateway, and its agent joining through the gateway.

use std::thread;
use std::time::Duration;

use super::{check, kit, show_stats, started};
use crate::narrate::{command, ok, output, run_shown, say, show, show_call};
use crate::{Demo, need};
use weft_testkit::seed_lab::{ISTIOD_CLUSTER, OUTSIDE_NAME, admin, connect, health_of, stat};

const T: Duration = Duration::from_secs(30);

impl Demo {
    pub(crate) fn workload_group(&mut self) -> Result<String, String> {
        let s = &self.s;
        let weftctl = need(&self.weftctl, "weftctl")?;
        say("the seed's WorkloadGroup, as written (its probe makes weftd's entry Healthy or not):");
        run_shown(
            &s.cp,
            &[
                "cat",
                &s.config_dir()
                    .join("forum-group.yaml")
                    .display()
                    .to_string(),
            ],
            T,
            25,
        )?;
        let out = weftctl.run(&["get", "workloadgroups", "-n", "forum-services"], 4)?;
        check(out.stdout.lines().any(|l| l.starts_with("forum ")), || {
            "WorkloadGroup forum is not served".into()
        })?;
        weftctl.run(&["get", "svc", "forum", "-n", "forum-services"], 4)?;
        let out = weftctl.quiet(&["get", "workloadentries", "-n", "forum-services"])?;
        weftctl.show(&["get", "workloadentries", "-n", "forum-services"], &out, 4);
        check(!out.stdout.contains("forum-"), || {
            "a forum WorkloadEntry exists before any VM joined".into()
        })?;
        ok(
            "group forum (service account forum-sa, network vm-network) is served; no VM has joined yet",
        );
        Ok("WorkloadGroup forum-services/forum served, no entries".into())
    }

    pub(crate) fn bundle(&mut self) -> Result<String, String> {
        let s = &self.s;
        let cp = need(&self.cp, "weftd")?;
        let weftctl = need(&self.weftctl, "weftctl")?;
        let b = kit(s.configure_forum(cp))?;
        let args: Vec<&str> = b.args.iter().map(String::as_str).collect();
        weftctl.show_command(&args);
        output(&b.printed, 10);
        check(b.printed.contains("was successful"), || {
            "weftctl x workload entry configure did not succeed".into()
        })?;
        run_shown(&s.cp, &["ls", "-l", &b.dir.display().to_string()], T, 10)?;
        let read =
            |f: &str| std::fs::read_to_string(b.dir.join(f)).map_err(|e| format!("{f}: {e}"));
        for (file, max) in [("hosts", 3), ("mesh.yaml", 25), ("cluster.env", 30)] {
            run_shown(
                &s.cp,
                &["cat", &b.dir.join(file).display().to_string()],
                T,
                max,
            )?;
        }
        let hosts = read("hosts")?;
        let want = format!("{} istiod.istio-system.svc", s.gw_external());
        check(hosts.trim() == want, || {
            format!("hosts should be `{want}`, not `{}`", hosts.trim())
        })?;
        let env = read("cluster.env")?;
        for want in [
            "ISTIO_META_NETWORK='vm-network'",
            "SERVICE_ACCOUNT='forum-sa'",
            "POD_NAMESPACE='forum-services'",
        ] {
            check(env.contains(want), || format!("cluster.env lacks {want}"))?;
        }
        let mesh = read("mesh.yaml")?;
        for want in ["ISTIO_META_AUTO_REGISTER_GROUP: forum", "readinessProbe:"] {
            check(mesh.contains(want), || format!("mesh.yaml lacks {want}"))?;
        }
        check(!mesh.contains("discoveryAddress"), || {
            "mesh.yaml should leave discoveryAddress to Istio's default".into()
        })?;
        ok(&format!(
            "no discoveryAddress: the agent uses Istio's default istiod.istio-system.svc:15012, which hosts puts at the gateway ({})",
            s.gw_external()
        ));
        self.bundle = Some(b);
        Ok("bundle: hosts → gateway, network vm-network, autoregister".into())
    }

    pub(crate) fn only_gateway(&mut self) -> Result<String, String> {
        let s = &self.s;
        let b = need(&self.bundle, "the bundle")?;
        let (root, added) = kit(s.install_forum(b))?;
        say(&format!(
            "installed under the VM's root {} as Istio's VM instructions do: cluster.env and mesh.yaml,\nroot-cert.pem, istio-token, and hosts appended to etc/hosts:",
            show(&root.root)
        ));
        run_shown(
            &s.forum,
            &["find", &root.root.display().to_string(), "-type", "f"],
            T,
            10,
        )?;
        if !added.is_empty() {
            say(
                "plus, in cluster.env, what the group does not set: Istio's VM capture defaults, and CAPTURE_ALL_DNS\n(the lab's hosts share this machine's /etc/resolv.conf, whose server they cannot reach: every DNS\nquery of the VM's apps goes to the agent, wherever it is addressed):",
            );
            output(&added, 6);
        }
        let dns = kit(s.start_dns_server())?;
        say(&format!(
            "the VM's DNS server ({}, dnsmasq, knows {OUTSIDE_NAME} only), named in the VM's resolv.conf:",
            s.dns.ip()
        ));
        command("dns", &started(&dns));
        run_shown(
            &s.forum,
            &["cat", &root.path("etc/resolv.conf").display().to_string()],
            T,
            3,
        )?;
        let app = kit(s.start_forum_app())?;
        say("the VM's app (the kit's HTTP server standing in for forum):");
        command("forum", &started(&app));
        say("from the VM, weftd and webapp do not answer; the gateway does:");
        let targets = [
            (format!("{}:15012", s.cp.ip()), false),
            (format!("{}:8080", s.webapp.ip()), false),
            (format!("{}:15012", s.gw_external()), true),
        ];
        let calls: Vec<_> = thread::scope(|scope| {
            let running: Vec<_> = targets
                .iter()
                .map(|(t, _)| scope.spawn(|| connect(&s.forum, t)))
                .collect();
            running
                .into_iter()
                .map(|h| h.join().map_err(|_| "connect panicked".to_string()))
                .collect::<Result<Vec<_>, _>>()
        })?;
        for ((target, reachable), c) in targets.iter().zip(&calls) {
            show_call("forum", c, 3);
            if *reachable {
                say(
                    "  (connected: the gateway answers; what it expects on 15012 is TLS for weftd, not HTTP)",
                );
            }
            check((c.status == 1) == *reachable, || {
                if *reachable {
                    format!("the VM cannot connect to the gateway at {target}")
                } else {
                    format!("the VM reached {target} directly")
                }
            })?;
        }
        ok("the VM reaches only the gateway's address");
        self.forum_root = Some(root);
        Ok("direct connects to weftd and webapp fail; the gateway connects".into())
    }

    pub(crate) fn join(&mut self) -> Result<String, String> {
        let s = &self.s;
        let cp = need(&self.cp, "weftd")?;
        let weftctl = need(&self.weftctl, "weftctl")?;
        let root = need(&self.forum_root, "the VM's root")?;
        let agent = kit(s.start_forum_agent(root))?;
        command(
            "forum",
            &format!("weft-agent istio-iptables --root {}", show(&root.root)),
        );
        let rules = kit(s.forum.run(&["iptables", "-t", "nat", "-S"], T))?;
        let count = rules
            .stdout
            .lines()
            .filter(|l| l.starts_with("-A ISTIO"))
            .count();
        command("forum", "iptables -t nat -S | grep -c '^-A ISTIO'");
        output(&count.to_string(), 1);
        check(count > 0, || "no capture rules installed".into())?;
        command("forum", &started(&agent));
        say(
            "its control-plane connection: istiod.istio-system.svc:15012, which etc/hosts says is the gateway",
        );
        kit(s.wait_forum_healthy(cp, &agent))?;
        let out = weftctl.run(&["get", "workloadentries", "-n", "forum-services"], 4)?;
        let entry = s.forum_entry();
        check(
            health_of(&out.stdout, &entry).as_deref() == Some("True"),
            || format!("{entry} is not Healthy True"),
        )?;
        ok(&format!(
            "weftd registered {entry} from the agent's connection, and its probe made it Healthy"
        ));
        say("the gateway carries the VM's xDS stream to weftd (PASSTHROUGH 15012 → istiod):");
        show_stats(
            &s.gw,
            ISTIOD_CLUSTER,
            &["upstream_cx_total", "upstream_cx_active"],
        );
        check(
            stat(&s.gw, &format!("{ISTIOD_CLUSTER}.upstream_cx_active")) >= 1,
            || "no open connection from the gateway to weftd".into(),
        )?;
        command(
            "forum",
            "curl -s localhost:15000/certs | grep -o 'spiffe://[^\"]*' | sort -u",
        );
        let certs = admin(&s.forum, "/certs");
        let mut ids: Vec<&str> = certs
            .split("\"spiffe://")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let ids: Vec<String> = ids.iter().map(|i| format!("spiffe://{i}")).collect();
        output(&ids.join("\n"), 3);
        let want = "spiffe://cluster.local/ns/forum-services/sa/forum-sa";
        check(ids.iter().any(|i| i == want), || {
            format!("the VM's Envoy holds no certificate for {want}")
        })?;
        ok(&format!(
            "the VM's Envoy holds its workload certificate: {want}"
        ));
        self.forum_agent = Some(agent);
        Ok(format!("{entry} Healthy True, xDS through the gateway"))
    }
}
