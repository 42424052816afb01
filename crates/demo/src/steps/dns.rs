//! DNS on the VM: the agent's DNS proxy answers the mesh's names from the name table weftd sends
//! (NDS) and forwards other names to the VM's own DNS server; the VM's apps' queries are captured
//! to it.

use std::time::Duration;

use super::{check, kit, lines_with};
use crate::narrate::{command, ok, output, say, show, show_call};
use crate::{Demo, need};
use weft_testkit::seed_lab::{OUTSIDE_ADDR, OUTSIDE_NAME, dig};

const T: Duration = Duration::from_secs(30);

impl Demo {
    pub(crate) fn dns(&mut self) -> Result<String, String> {
        let s = &self.s;
        let cp = need(&self.cp, "weftd")?;
        need(&self.forum_agent, "the VM's agent")?;
        say("the agent's DNS proxy on localhost:15053 answers the mesh's names with their VIPs:");
        for (ns, name) in [
            ("istioinaction", "webapp"),
            ("istioinaction", "catalog"),
            ("forum-services", "forum"),
        ] {
            let vip = kit(cp.service_vip(ns, name))?;
            let host = format!("{name}.{ns}");
            let got = kit(s.wait_dig(&s.forum, &host, &vip, T))?;
            show_call("forum", &got, 3);
            check(got.output.trim() == vip, || {
                format!("{host} should answer {vip}")
            })?;
        }
        ok(
            "webapp.istioinaction, catalog.istioinaction and forum.forum-services answer their VIPs",
        );

        say(&format!(
            "{OUTSIDE_NAME} is not in the mesh: the agent forwards it to the VM's DNS server ({}):",
            s.dns.ip()
        ));
        let got = kit(s.wait_dig(&s.forum, OUTSIDE_NAME, OUTSIDE_ADDR, T))?;
        show_call("forum", &got, 3);
        check(got.output.trim() == OUTSIDE_ADDR, || {
            format!("{OUTSIDE_NAME} should answer {OUTSIDE_ADDR}")
        })?;
        let dnsmasq = s
            .lab
            .processes()
            .into_iter()
            .find(|p| p.name() == "dnsmasq")
            .ok_or("the VM's DNS server is not running")?;
        command(
            "dns",
            &format!("grep {OUTSIDE_NAME} {}", show(dnsmasq.log_path())),
        );
        let log = dnsmasq.log();
        let asked = lines_with(&log, &[OUTSIDE_NAME]);
        output(&asked, 6);
        let from = format!("query[A] {OUTSIDE_NAME} from {}", s.forum.ip());
        check(asked.contains(&from), || {
            format!("the VM's DNS server did not log `{from}`")
        })?;
        ok(&format!(
            "{OUTSIDE_NAME} → {OUTSIDE_ADDR}, answered by the VM's DNS server, asked by the VM's agent"
        ));

        say("the VM's apps need no settings: their DNS queries are captured to the agent:");
        command("forum", "iptables -t nat -S | grep 15053");
        let rules = kit(s.forum.run(&["iptables", "-t", "nat", "-S"], T))?;
        let dns_rules = lines_with(&rules.stdout, &["15053"]);
        output(&dns_rules, 6);
        check(!dns_rules.is_empty(), || "no DNS capture rules".into())?;
        let vip = kit(cp.service_vip("istioinaction", "webapp"))?;
        let got = dig(&s.forum, &["+short", "webapp.istioinaction"]);
        show_call("forum", &got, 3);
        check(got.output.trim() == vip, || {
            format!("the machine's resolver should get {vip} from the agent")
        })?;
        ok("a query to the machine's resolver is answered by the agent too");
        Ok(format!(
            "mesh names → VIPs; {OUTSIDE_NAME} from the VM's DNS server"
        ))
    }
}
