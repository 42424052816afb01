//! Discovery end to end: weftd with a config directory, two workloads (`webapp`, `forum`) each with
//! traffic capture, weft-agent and real Envoy, and an outsider without a proxy.
//! webapp reaches forum through its VIP over mutual TLS (the forum app sees webapp's SPIFFE identity),
//! PeerAuthentication STRICT/PERMISSIVE decides whether the outsider gets in, and config-directory
//! edits reach Envoy within a second, without NACKs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_testkit::mesh::{ControlPlane, MeshWorkload};
use weft_testkit::{Attempt, Host, Lab, poll_until};

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap(); // editors write via rename
}

fn forum_config(forum_ip: Ipv4Addr, weight: u32) -> String {
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
  name: forum
  namespace: forum-services
spec:
  address: {forum_ip}
  labels:
    app: forum
  serviceAccount: forum-sa
  weight: {weight}
"
    )
}

fn webapp_config(webapp_ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
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

fn peer_auth(mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: forum-services
spec:
  mtls:
    mode: {mode}
"
    )
}

/// Envoy's admin `/clusters` in `host`.
fn clusters(host: &Host) -> String {
    host.http_get(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
        "/clusters",
        Duration::from_secs(2),
    )
    .map(|r| r.body)
    .unwrap_or_default()
}

fn curl(host: &Host, url: &str) -> Result<String, String> {
    let out = host
        .curl(&["-sS", "-f", url], Duration::from_secs(3))
        .map_err(|e| e.to_string())?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{}{}", out.stdout, out.stderr))
    }
}

#[test]
fn webapp_reaches_forum_over_mtls_and_policy_and_edits_apply() {
    let lab = Lab::new("disc").unwrap();
    let net = lab.network("mesh").unwrap();
    let cp_host = lab.host("cp", &[&net]).unwrap();
    let webapp = lab.host("webapp", &[&net]).unwrap();
    let forum = lab.host("forum", &[&net]).unwrap();
    let outsider = lab.host("outsider", &[&net]).unwrap();
    // Like a real VM, the workloads have a default route (to the control-plane host, which does not
    // forward): without one, connecting to a VIP fails before capture can redirect it.
    for h in [&webapp, &forum] {
        h.set_default_route(cp_host.ip()).unwrap();
    }

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    write(&config, "forum.yaml", &forum_config(forum.ip(), 1));
    write(&config, "webapp.yaml", &webapp_config(webapp.ip()));
    let config_arg = config.to_string_lossy().to_string();
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &["--config-dir", &config_arg],
    )
    .unwrap();

    // The forum VM: its app, capture, and the agent as istio-proxy.
    forum
        .start_http_server(
            "forum-app",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            &["x-forwarded-client-cert"],
        )
        .unwrap();
    let forum_agent = MeshWorkload::start(
        lab.dir(),
        &cp,
        &forum,
        "forum-services",
        "forum-sa",
        "forum",
    )
    .unwrap()
    .agent;

    // The webapp VM: capture and agent; its "app" is curl run as root.
    let webapp_agent =
        MeshWorkload::start(lab.dir(), &cp, &webapp, "istioinaction", "webapp", "webapp")
            .unwrap()
            .agent;

    let vip = cp.service_vip("forum-services", "forum").unwrap();
    let forum_cluster = "outbound|80||forum.forum-services.svc.cluster.local";

    // 1. webapp → forum VIP:80 → webapp Envoy → mTLS → forum Envoy → forum app on 8080.
    let body = poll_until(
        "webapp to reach forum through both Envoys",
        Duration::from_secs(40),
        || {
            forum_agent.ensure_running()?;
            webapp_agent.ensure_running()?;
            Ok(match curl(&webapp, &format!("http://{vip}/api/posts")) {
                Ok(b) => Attempt::Ready(b),
                Err(e) => Attempt::NotYet(e),
            })
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nforum agent:\n{}\nwebapp agent:\n{}",
            forum_agent.log_tail(30),
            webapp_agent.log_tail(30)
        )
    });
    assert!(body.contains("server=forum-app"), "{body}");
    assert!(body.contains("path=/api/posts"), "{body}");
    assert!(
        body.contains("URI=spiffe://cluster.local/ns/istioinaction/sa/webapp"),
        "the forum app must see webapp's identity from mutual TLS: {body}"
    );
    let c = clusters(&webapp);
    assert!(
        c.contains(&format!("{forum_cluster}::{}:8080::", forum.ip())),
        "{c}"
    );

    // 2. PERMISSIVE (the default): a plain client outside the mesh reaches forum:8080.
    let direct = format!("http://{}:8080/", forum.ip());
    assert!(
        curl(&outsider, &direct)
            .unwrap()
            .contains("server=forum-app")
    );

    // 3. STRICT: the outsider is refused; mesh traffic continues.
    write(&config, "peer-auth.yaml", &peer_auth("STRICT"));
    poll_until(
        "STRICT to shut the outsider out",
        Duration::from_secs(10),
        || {
            Ok(match curl(&outsider, &direct) {
                Err(_) => Attempt::Ready(()),
                Ok(b) => Attempt::NotYet(b),
            })
        },
    )
    .unwrap();
    assert!(
        curl(&webapp, &format!("http://{vip}/"))
            .unwrap()
            .contains("server=forum-app")
    );

    // 4. Back to PERMISSIVE: the outsider gets in again.
    write(&config, "peer-auth.yaml", &peer_auth("PERMISSIVE"));
    poll_until(
        "PERMISSIVE to let the outsider in",
        Duration::from_secs(10),
        || {
            Ok(match curl(&outsider, &direct) {
                Ok(_) => Attempt::Ready(()),
                Err(e) => Attempt::NotYet(e),
            })
        },
    )
    .unwrap();

    // 5. A weight change in the config directory reaches webapp's Envoy within a second.
    let start = Instant::now();
    write(&config, "forum.yaml", &forum_config(forum.ip(), 7));
    let weight_line = format!("{forum_cluster}::{}:8080::weight::7", forum.ip());
    poll_until(
        "the new weight in webapp's Envoy",
        Duration::from_secs(5),
        || {
            let c = clusters(&webapp);
            Ok(if c.contains(&weight_line) {
                Attempt::Ready(())
            } else {
                Attempt::NotYet(String::new())
            })
        },
    )
    .unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "weight change took {took:?}");

    // 6. Removing the endpoint: it leaves webapp's Envoy within a second.
    let start = Instant::now();
    let service_only = forum_config(forum.ip(), 7);
    let service_only = service_only.split("---").next().unwrap().to_string();
    write(&config, "forum.yaml", &service_only);
    poll_until(
        "the removed endpoint to leave webapp's Envoy",
        Duration::from_secs(5),
        || {
            let c = clusters(&webapp);
            Ok(
                if c.contains(forum_cluster)
                    && !c.contains(&format!("{forum_cluster}::{}", forum.ip()))
                {
                    Attempt::Ready(())
                } else {
                    Attempt::NotYet(String::new())
                },
            )
        },
    )
    .unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "endpoint removal took {took:?}"
    );

    // 7. Envoy never NACKed anything.
    let syncz = cp.syncz().unwrap();
    assert!(
        syncz.contains("webapp.istioinaction") && syncz.contains("forum.forum-services"),
        "{syncz}"
    );
    assert!(!syncz.contains("\"NACK\""), "{syncz}");
    assert!(
        !cp.process.log().contains("NACK"),
        "{}",
        cp.process.log_tail(40)
    );
}
