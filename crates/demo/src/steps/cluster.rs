//! The cluster side: the lab's hosts, weftd on the embedded configuration, the east-west
//! gateway, webapp and catalog.

use std::time::Duration;

use super::{check, kit, lines_with, started};
use crate::narrate::{command, ok, output, run_shown, say, show, show_call};
use crate::weftctl::Weftctl;
use crate::{Demo, need};
use weft_testkit::seed_lab::manifests::{
    CROSS_NETWORK_GATEWAY, Fix, ISTIOD_GATEWAY, SEED_MANIFESTS,
};
use weft_testkit::seed_lab::{GATEWAY_LISTENERS, admin};

const T: Duration = Duration::from_secs(30);

impl Demo {
    pub(crate) fn topology(&mut self) -> Result<String, String> {
        let s = &self.s;
        say(&format!(
            "network cluster    {}: cp {} (weftd), gw {}, webapp {}, catalog {}",
            s.cluster.cidr(),
            s.cp.ip(),
            s.gw_internal(),
            s.webapp.ip(),
            s.catalog.ip()
        ));
        say(&format!(
            "network vm-network {}: gw {}, forum {} (the VM), outsider {} (not in the mesh), dns {} (the VM's DNS server)",
            s.vm_net.cidr(),
            s.gw_external(),
            s.forum.ip(),
            s.outsider.ip(),
            s.dns.ip()
        ));
        let fwd = run_shown(&s.gw, &["cat", "/proc/sys/net/ipv4/ip_forward"], T, 2)?;
        check(fwd.stdout.trim() == "0", || {
            format!("the gateway host forwards packets: {}", fwd.stdout)
        })?;
        let route = run_shown(&s.forum, &["ip", "route"], T, 5)?;
        let via = format!("default via {}", s.gw_external());
        check(route.stdout.contains(&via), || {
            format!(
                "the VM's default route is not the gateway: {}",
                route.stdout
            )
        })?;
        ok(
            "the VM's default route is the gateway, which routes nothing: only its Envoy joins the networks",
        );
        Ok(format!(
            "cluster {}, vm-network {}, no forwarding",
            s.cluster.cidr(),
            s.vm_net.cidr()
        ))
    }

    pub(crate) fn control_plane(&mut self) -> Result<String, String> {
        let s = &self.s;
        let state = s.dir().join("state");
        let weftctl = Weftctl::new(&s.cp, &state)?;

        say(
            "the seed's manifests as written (embedded in weft-demo), checked as Istio checks them:",
        );
        let seed_dir = s.dir().join("seed");
        std::fs::create_dir_all(&seed_dir).map_err(|e| e.to_string())?;
        for m in SEED_MANIFESTS {
            std::fs::write(seed_dir.join(m.file), m.verbatim).map_err(|e| e.to_string())?;
        }
        let seed_arg = seed_dir.display().to_string();
        let out = weftctl.offline(&["validate", "-f", &seed_arg], 20)?;
        let invalid: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(": ERROR "))
            .collect();
        let expected = [CROSS_NETWORK_GATEWAY.file, ISTIOD_GATEWAY.file];
        check(
            invalid.len() == 3
                && invalid
                    .iter()
                    .all(|l| expected.iter().any(|f| l.contains(f))),
            || "the seed's manifests should have exactly the 3 known invalid resources".into(),
        )?;
        say(
            "so the lab applies them fixed, where Istio rejects them (and namespaced as the seed applies them):",
        );
        for m in SEED_MANIFESTS.iter().filter(|m| !m.fixes.is_empty()) {
            let lines: Vec<String> = m.fixes.iter().map(describe_fix).collect();
            output(&format!("{}:\n{}", m.file, lines.join("\n")), 12);
        }

        let files = kit(s.write_config())?;
        say(&format!(
            "the config directory: {} (the cluster's objects: istio-system's network, the east-west\ngateway's Service, istiod, webapp and catalog), and the mesh networks file:",
            files
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        run_shown(
            &s.cp,
            &["cat", &s.networks_file().display().to_string()],
            T,
            10,
        )?;
        let config_arg = s.config_dir().display().to_string();
        let out = weftctl.offline(&["validate", "-f", &config_arg], 20)?;
        check(out.success(), || {
            "the lab's config directory is not valid".into()
        })?;

        let cp = kit(s.start_weftd())?;
        command("cp", &started(&cp.process));
        let log = cp.process.log();
        output(
            &lines_with(
                &log,
                &["CA", "loaded config file", "rejected", "config store ready"],
            ),
            20,
        );
        check(log.contains("config store ready"), || {
            "weftd did not log `config store ready`".into()
        })?;
        command(
            "cp",
            &format!(
                "curl -s -H \"Authorization: Bearer $(cat {})\" http://127.0.0.1:8080/api/v1/errors",
                show(&state.join("admin-token"))
            ),
        );
        let (_, body) = kit(cp.api("GET", "/api/v1/errors", None))?;
        output(&body, 20);
        let errors: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("/api/v1/errors: {e}"))?;
        let rejected = errors["errors"].as_array().map_or(usize::MAX, Vec::len);
        check(rejected == 0, || {
            format!("weftd rejected resources of the lab's configuration: {body}")
        })?;
        ok("weftd loaded every resource; none rejected");
        let out = weftctl.run(&["get", "svc", "-A"], 12)?;
        for svc in [
            "webapp",
            "catalog",
            "forum",
            "istiod",
            "istio-eastwestgateway",
        ] {
            check(
                out.stdout
                    .lines()
                    .any(|l| l.split_whitespace().nth(1) == Some(svc)),
                || format!("Service {svc} is not served"),
            )?;
        }
        ok("every Service has its VIP");
        self.cp = Some(cp);
        self.weftctl = Some(weftctl);
        Ok(format!(
            "{} files loaded, 0 rejected; 3 seed resources fixed",
            files.len()
        ))
    }

    pub(crate) fn gateway(&mut self) -> Result<String, String> {
        let s = &self.s;
        let cp = need(&self.cp, "weftd")?;
        let (root, agent) = kit(s.start_gateway(cp))?;
        say(
            "its bundle: a token for istio-system/istio-eastwestgateway, the root certificate, and cluster.env:",
        );
        run_shown(
            &s.gw,
            &[
                "cat",
                &root
                    .path("var/lib/istio/envoy/cluster.env")
                    .display()
                    .to_string(),
            ],
            T,
            12,
        )?;
        command("gw", &started(&agent));
        let listeners = kit(s.wait_gateway(&agent))?;
        command("gw", "curl -s localhost:15000/listeners");
        output(&listeners, 10);
        check(!listeners.contains("virtualInbound"), || {
            "a router should have no inbound listener".into()
        })?;
        ok(&format!(
            "listeners {}: 15443 is AUTO_PASSTHROUGH (mesh traffic, by SNI), 15012 and 15017 PASSTHROUGH to istiod (expose-istiod)",
            GATEWAY_LISTENERS.join(", ")
        ));
        say("and one SNI-DNAT cluster per service port (outbound_.<port>_._.<host>) behind 15443:");
        command(
            "gw",
            "curl -s localhost:15000/clusters | grep -o '^outbound_[^:]*' | sort -u",
        );
        let mut sni: Vec<&str> = Vec::new();
        let clusters = admin(&s.gw, "/clusters");
        for l in clusters.lines().filter(|l| l.starts_with("outbound_")) {
            let name = l.split("::").next().unwrap_or(l);
            if !sni.contains(&name) {
                sni.push(name);
            }
        }
        sni.sort_unstable();
        output(&sni.join("\n"), 12);
        for svc in [
            "webapp.istioinaction",
            "catalog.istioinaction",
            "forum.forum-services",
        ] {
            let want = format!("outbound_.80_._.{svc}.svc.cluster.local");
            check(sni.contains(&want.as_str()), || {
                format!("the gateway has no cluster {want}")
            })?;
        }
        self.gw_agent = Some(agent);
        Ok("router listeners 15443, 15012, 15017".into())
    }

    pub(crate) fn cluster_workloads(&mut self) -> Result<String, String> {
        let s = &self.s;
        let cp = need(&self.cp, "weftd")?;
        let weftctl = need(&self.weftctl, "weftctl")?;
        for (host, name) in [(&s.webapp, "webapp"), (&s.catalog, "catalog")] {
            let w = kit(s.start_cluster_workload(cp, host, name))?;
            say(&format!(
                "{name}: the app (the kit's HTTP server, echoing the client certificate Envoy saw), capture, the agent as istio-proxy:"
            ));
            command(name, &started(&w.app));
            command(
                name,
                &format!("weft-agent istio-iptables --root {}", show(&w.root.root)),
            );
            command(name, &started(&w.agent));
            if name == "webapp" {
                self.webapp = Some(w);
            } else {
                self.catalog = Some(w);
            }
        }
        let out = weftctl.run(&["get", "svc", "-n", "istioinaction"], 6)?;
        let catalog_vip = kit(cp.service_vip("istioinaction", "catalog"))?;
        check(out.stdout.contains(&catalog_vip), || {
            format!("catalog's VIP {catalog_vip} is not listed")
        })?;
        let webapp = need(&self.webapp, "webapp")?;
        let catalog = need(&self.catalog, "catalog")?;
        let url = format!("http://{catalog_vip}/items");
        let got = kit(s.wait_call(&s.webapp, &[&url], T, &[&webapp.agent, &catalog.agent]))?;
        show_call("webapp", &got, 14);
        let uri = "URI=spiffe://cluster.local/ns/istioinaction/sa/webapp";
        check(
            got.output.contains("server=catalog") && got.output.contains(uri),
            || "catalog should answer, with webapp's identity from mutual TLS".into(),
        )?;
        ok(&format!(
            "catalog answers on its own VIP {catalog_vip}, through both Envoys, and saw webapp's identity"
        ));
        Ok(format!(
            "catalog VIP {catalog_vip} answers webapp over mTLS"
        ))
    }
}

/// A fix as the lines it inserts and why (every fix inserts text into its `from`).
fn describe_fix(fix: &Fix) -> String {
    let suffix = fix
        .from
        .bytes()
        .rev()
        .zip(fix.to.bytes().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let prefix = fix.from.len() - suffix;
    let inserted = if fix.to.starts_with(&fix.from[..prefix]) && fix.to.len() >= fix.from.len() {
        &fix.to[prefix..fix.to.len() - suffix]
    } else {
        fix.to
    };
    let inserted: Vec<&str> = inserted
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("  + {:<42} ({})", inserted.join(" "), fix.why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_are_shown_as_the_lines_they_insert() {
        let shown: Vec<String> = ISTIOD_GATEWAY.fixes.iter().map(describe_fix).collect();
        assert!(
            shown[0].starts_with("  + namespace: istio-system "),
            "{shown:?}"
        );
        assert!(shown[2].starts_with("  + name: tls-istiod "), "{shown:?}");
        assert!(
            shown[4].starts_with("  + hosts: [\"*\"] gateways: [istiod-gateway] "),
            "{shown:?}"
        );
        assert!(shown[5].starts_with("  + sniHosts: [\"*\"] "), "{shown:?}");
    }
}
