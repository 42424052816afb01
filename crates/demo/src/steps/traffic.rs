//! Mesh traffic across the networks: the VM's app calling webapp and catalog, and webapp calling
//! the VM, each through the east-west gateway.

use std::time::Duration;

use super::{check, kit, show_stats};
use crate::narrate::{command, ok, output, say, show, show_call};
use crate::{Demo, need};
use weft_testkit::seed_lab::{clusters, sni_cluster, stat};

const T: Duration = Duration::from_secs(30);

pub(crate) const FORUM_IDENTITY: &str = "URI=spiffe://cluster.local/ns/forum-services/sa/forum-sa";
pub(crate) const WEBAPP_IDENTITY: &str = "URI=spiffe://cluster.local/ns/istioinaction/sa/webapp";

/// What webapp calls on the VM (its agent resolves the name).
pub(crate) const FORUM_URL: &str = "forum.forum-services/api/users";

impl Demo {
    pub(crate) fn vm_to_cluster(&mut self) -> Result<String, String> {
        let s = &self.s;
        let cp = need(&self.cp, "weftd")?;
        let forum_agent = need(&self.forum_agent, "the VM's agent")?;
        let webapp = need(&self.webapp, "webapp")?;
        let catalog = need(&self.catalog, "catalog")?;
        let gw = s.gw_external();
        let mut notes = Vec::new();
        for (name, path, w) in [
            ("webapp", "/api/catalog/items/1", webapp),
            ("catalog", "/items", catalog),
        ] {
            let vip = kit(cp.service_vip("istioinaction", name))?;
            say(&format!(
                "the VM's app, plain curl with no proxy settings, calls {name}.istioinaction (VIP {vip}):"
            ));
            let url = format!("{name}.istioinaction{path}");
            let got = kit(s.wait_call(&s.forum, &[&url], T, &[forum_agent, &w.agent]))?;
            show_call("forum", &got, 14);
            check(
                got.output.contains(&format!("server={name}\n"))
                    && got.output.contains(FORUM_IDENTITY),
                || format!("{name} should answer, with the VM's identity from mutual TLS"),
            )?;
            ok(&format!(
                "{name} answered and saw the VM's identity (forum-sa) from mutual TLS"
            ));
            let cluster = format!("outbound|80||{name}.istioinaction.svc.cluster.local");
            let endpoint = format!("{cluster}::{gw}:15443::");
            command(
                "forum",
                &format!(
                    "curl -s localhost:15000/clusters | grep -E '^{}::.*::(cx_total|rq_success|health_flags)'",
                    cluster.replace('|', "\\|")
                ),
            );
            let lines: Vec<String> = clusters(&s.forum, &cluster)
                .into_iter()
                .filter(|l| {
                    ["cx_total", "rq_success", "health_flags"]
                        .iter()
                        .any(|k| l.contains(&format!("::{k}::")))
                })
                .collect();
            output(&lines.join("\n"), 6);
            check(lines.iter().any(|l| l.starts_with(&endpoint)), || {
                format!("the VM's Envoy does not send {name} to the gateway ({gw}:15443)")
            })?;
            say(&format!(
                "the VM's Envoy has one endpoint for {name}: the gateway's {gw}:15443 (split horizon); the gateway's SNI cluster:"
            ));
            let sni = sni_cluster(&format!("{name}.istioinaction"));
            show_stats(
                &s.gw,
                &sni,
                &["upstream_cx_total", "upstream_cx_rx_bytes_total"],
            );
            let n = stat(&s.gw, &format!("{sni}.upstream_cx_total"));
            check(n >= 1, || {
                format!("the gateway's {sni} carried no connection")
            })?;
            notes.push(format!("{name} {n} cx"));
        }
        ok(
            "one gateway port, two services: the gateway routes each connection by the SNI the VM's Envoy sets",
        );
        Ok(format!("through the gateway: {}", notes.join(", ")))
    }

    pub(crate) fn cluster_to_vm(&mut self) -> Result<String, String> {
        let s = &self.s;
        let cp = need(&self.cp, "weftd")?;
        let forum_agent = need(&self.forum_agent, "the VM's agent")?;
        let webapp = need(&self.webapp, "webapp")?;
        let vip = kit(cp.service_vip("forum-services", "forum"))?;
        say(&format!(
            "webapp's app calls forum.forum-services (VIP {vip}; webapp's agent answers the name, as kube-dns would):"
        ));
        let got = kit(s.wait_call(&s.webapp, &[FORUM_URL], T, &[&webapp.agent, forum_agent]))?;
        show_call("webapp", &got, 14);
        check(
            got.output.contains("server=forum\n") && got.output.contains(WEBAPP_IDENTITY),
            || "the VM's app should answer, with webapp's identity from mutual TLS".into(),
        )?;
        ok("the VM's app answered and saw webapp's identity from mutual TLS");
        let gw = s.gw_internal();
        let cluster = "outbound|80||forum.forum-services.svc.cluster.local";
        command(
            "webapp",
            &format!(
                "curl -s localhost:15000/clusters | grep -E '^{}::.*::(cx_total|rq_success)'",
                cluster.replace('|', "\\|")
            ),
        );
        let lines: Vec<String> = clusters(&s.webapp, cluster)
            .into_iter()
            .filter(|l| l.contains("::cx_total::") || l.contains("::rq_success::"))
            .collect();
        output(&lines.join("\n"), 4);
        check(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{cluster}::{gw}:15443::"))),
            || format!("webapp's Envoy does not send forum to the gateway ({gw}:15443)"),
        )?;
        say(&format!(
            "webapp's Envoy reaches the VM at the vm-network's gateway {gw}:15443 (mesh networks); the gateway:"
        ));
        let sni = sni_cluster("forum.forum-services");
        show_stats(
            &s.gw,
            &sni,
            &["upstream_cx_total", "upstream_cx_rx_bytes_total"],
        );
        let n = stat(&s.gw, &format!("{sni}.upstream_cx_total"));
        check(n >= 1, || {
            format!("the gateway's {sni} carried no connection")
        })?;
        let app = s
            .lab
            .processes()
            .into_iter()
            .find(|p| p.name() == "forum")
            .ok_or("the VM's app is not running")?;
        command("forum", &format!("tail -1 {}", show(app.log_path())));
        output(&app.log_tail(1), 1);
        ok("webapp → gateway → the VM's Envoy → the app, mTLS end to end");
        Ok(format!("webapp → forum through the gateway ({n} cx)"))
    }
}
