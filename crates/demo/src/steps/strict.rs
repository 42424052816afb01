//! Mesh-wide STRICT mutual TLS from the seed's PeerAuthentication: a plain request from outside
//! the mesh fails, mesh traffic goes on through the gateway.

use std::time::{Duration, Instant};

use super::traffic::{FORUM_IDENTITY, FORUM_URL, WEBAPP_IDENTITY};
use super::{check, kit, show_stats};
use crate::narrate::{ok, run_shown, say, show_call};
use crate::{Demo, need};
use weft_testkit::seed_lab::{call, sni_cluster, stat};

const COUNTER: &str = "upstream_cx_rx_bytes_total";

impl Demo {
    pub(crate) fn strict(&mut self) -> Result<String, String> {
        let s = &self.s;
        let weftctl = need(&self.weftctl, "weftctl")?;
        let direct = format!("http://{}:8080/api/users", s.forum.ip());
        say(
            "PERMISSIVE (Istio's default): the outsider, not in the mesh, gets in with plain HTTP:",
        );
        let before = call(&s.outsider, &[&direct]);
        show_call("outsider", &before, 14);
        check(before.ok(), || {
            "before STRICT, the outsider should get in (PERMISSIVE)".into()
        })?;

        say(
            "the seed's mesh-wide PeerAuthentication (istio-system, STRICT), as written, added to the config directory:",
        );
        let start = Instant::now();
        let file = kit(s.apply_strict())?;
        run_shown(
            &s.cp,
            &["cat", &s.config_dir().join(file).display().to_string()],
            Duration::from_secs(10),
            12,
        )?;
        let refused = kit(s.wait_call_fails(&s.outsider, &[&direct], Duration::from_secs(20)))?;
        let took = start.elapsed();
        weftctl.run(&["get", "peerauthentications", "-A"], 4)?;
        show_call("outsider", &refused, 4);
        ok(&format!(
            "the outsider is refused {} ms after the file was written",
            took.as_millis()
        ));

        say("mesh traffic goes on, both ways through the gateway:");
        let forum_sni = sni_cluster("forum.forum-services");
        let webapp_sni = sni_cluster("webapp.istioinaction");
        let bytes = |sni: &str| stat(&s.gw, &format!("{sni}.{COUNTER}"));
        let before = (bytes(&forum_sni), bytes(&webapp_sni));
        let got = call(&s.webapp, &[FORUM_URL]);
        show_call("webapp", &got, 14);
        check(got.ok() && got.output.contains(WEBAPP_IDENTITY), || {
            "under STRICT, webapp → forum should still work over mutual TLS".into()
        })?;
        let got = call(&s.forum, &["webapp.istioinaction/api/catalog/items/1"]);
        show_call("forum", &got, 14);
        check(got.ok() && got.output.contains(FORUM_IDENTITY), || {
            "under STRICT, the VM → webapp should still work over mutual TLS".into()
        })?;
        let after = kit(s.wait_stat_above(
            &[(&forum_sni, before.0), (&webapp_sni, before.1)],
            COUNTER,
            Duration::from_secs(10),
        ))?;
        show_stats(&s.gw, &forum_sni, &[COUNTER]);
        show_stats(&s.gw, &webapp_sni, &[COUNTER]);
        ok(&format!(
            "the gateway carried both: bytes received from the VM {} → {}, from webapp {} → {}",
            before.0, after[0], before.1, after[1]
        ));
        Ok(format!(
            "outsider refused after {} ms; mesh traffic goes on",
            took.as_millis()
        ))
    }
}
