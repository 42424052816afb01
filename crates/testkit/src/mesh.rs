//! Weft-specific scenario helpers: a control plane (`weftd`) in a lab host, and VM roots with
//! Istio's file layout for `weft-agent proxy --root`.

use crate::binaries::{envoy_binary, workspace_binary};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::process::Process;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The `istio-proxy` user the agent and Envoy run as.
pub const PROXY_UID: u32 = 1337;

/// cluster.env settings for Istio's default VM capture (everything in, everything out, SSH and the
/// agent's own ports excluded).
pub const CAPTURE_ENV: &[(&str, &str)] = &[
    ("ISTIO_INBOUND_PORTS", "*"),
    ("ISTIO_LOCAL_EXCLUDE_PORTS", "22,15090,15021,15020"),
    ("ISTIO_SERVICE_CIDR", "*"),
];

/// Name weftd's serving certificate carries and agents verify.
pub const ISTIOD_SAN: &str = "istiod.istio-system.svc";

/// A running `weftd` in a lab host, listening on all of the host's addresses.
pub struct ControlPlane {
    pub host: Host,
    pub state_dir: PathBuf,
    pub process: Process,
    extra_args: Vec<String>,
}

impl ControlPlane {
    /// Starts weftd in `host` with its state in `state_dir` and `extra_args` (e.g. `--config-dir`).
    pub fn start(host: &Host, state_dir: &Path, extra_args: &[&str]) -> Result<Self> {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let process = spawn_weftd(host, state_dir, &extra_args)?;
        Ok(ControlPlane {
            host: host.clone(),
            state_dir: state_dir.to_path_buf(),
            process,
            extra_args,
        })
    }

    /// Stops weftd (SIGTERM) and starts it again on the same state.
    pub fn restart(&mut self) -> Result<()> {
        self.process.stop(Duration::from_secs(5));
        self.process = spawn_weftd(&self.host, &self.state_dir, &self.extra_args)?;
        Ok(())
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.host.ip()
    }

    /// `ip:15012`.
    pub fn xds_address(&self) -> String {
        format!("{}:15012", self.ip())
    }

    pub fn admin_token(&self) -> Result<String> {
        std::fs::read_to_string(self.state_dir.join("admin-token"))
            .map(|t| t.trim().to_string())
            .map_err(|e| Error::io("read weftd's admin-token", e))
    }

    /// Calls the admin API with curl from the control-plane host; returns (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        let token = self.admin_token()?;
        let url = format!("http://127.0.0.1:8080{path}");
        let auth = format!("Authorization: Bearer {token}");
        let mut args = vec![
            "-s",
            "-X",
            method,
            "-H",
            auth.as_str(),
            "-w",
            "\n%{http_code}",
        ];
        if let Some(b) = body {
            args.extend(["-H", "content-type: application/json", "--data-binary", b]);
        }
        args.push(url.as_str());
        let out = self.host.curl(&args, Duration::from_secs(10))?.checked()?;
        let (body, code) = out
            .stdout
            .trim_end()
            .rsplit_once('\n')
            .unwrap_or(("", out.stdout.trim()));
        let code = code
            .trim()
            .parse()
            .map_err(|_| Error::new(format!("curl printed no status: {}", out.stdout)))?;
        Ok((code, body.to_string()))
    }

    /// Mints a bootstrap token for `namespace`/`service_account`.
    pub fn mint_token(
        &self,
        namespace: &str,
        service_account: &str,
        seconds: u64,
    ) -> Result<String> {
        let body = format!(
            "{{\"namespace\":\"{namespace}\",\"serviceAccount\":\"{service_account}\",\"durationSeconds\":{seconds}}}"
        );
        let (code, text) = self.api("POST", "/api/v1/tokens", Some(&body))?;
        if code != 200 {
            return Err(Error::new(format!("minting a token failed: {code} {text}")));
        }
        let start = text
            .find("\"token\"")
            .and_then(|i| text[i + 7..].find('"').map(|j| i + 7 + j + 1))
            .ok_or_else(|| Error::new(format!("no token in {text}")))?;
        let end = text[start..]
            .find('"')
            .ok_or_else(|| Error::new(format!("no token in {text}")))?;
        Ok(text[start..start + end].to_string())
    }

    pub fn root_cert(&self) -> Result<String> {
        let (code, text) = self.api("GET", "/api/v1/root-cert", None)?;
        if code != 200 {
            return Err(Error::new(format!("root-cert: {code} {text}")));
        }
        Ok(text + "\n")
    }

    /// The VIP weftd allocated (or the clusterIP) for Service `namespace/name`.
    pub fn service_vip(&self, namespace: &str, name: &str) -> Result<String> {
        let (code, body) = self.api(
            "GET",
            &format!("/api/v1/resources/services?namespace={namespace}&name={name}"),
            None,
        )?;
        let vip = body
            .split("\"vip\"")
            .nth(1)
            .and_then(|r| r.split('"').nth(1))
            .map(str::to_string);
        let cluster_ip = body
            .split("\"clusterIP\"")
            .nth(1)
            .and_then(|r| r.split('"').nth(1))
            .map(str::to_string);
        vip.or(cluster_ip).ok_or_else(|| {
            Error::new(format!(
                "no VIP for service {namespace}/{name}: {code} {body}"
            ))
        })
    }

    /// `/debug/syncz` as text (JSON).
    pub fn syncz(&self) -> Result<String> {
        self.api("GET", "/debug/syncz", None).map(|(_, b)| b)
    }
}

fn spawn_weftd(host: &Host, state_dir: &Path, extra: &[String]) -> Result<Process> {
    let bin = workspace_binary("weftd", "weftd")?;
    let mut cmd = Command::new(bin);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .args(["--xds-tls-addr", "0.0.0.0:15012"])
        .args(["--xds-plaintext-addr", "127.0.0.1:15010"])
        .args(["--http-addr", "0.0.0.0:8080"])
        .args(["--monitoring-addr", "0.0.0.0:15014"])
        .args(["--log-level", "info"])
        .args(extra);
    let p = host.spawn_command("weftd", &cmd)?;
    for port in [15012, 8080] {
        host.wait_for_tcp(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(20),
        )
        .map_err(|e| Error::new(format!("{e}\nweftd log:\n{}", p.log_tail(30))))?;
    }
    Ok(p)
}

/// A VM's filesystem root with Istio's layout.
pub struct VmRoot {
    pub root: PathBuf,
}

impl VmRoot {
    pub fn new(root: &Path) -> Result<Self> {
        for d in [
            "etc/certs",
            "var/run/secrets/tokens",
            "var/lib/istio/envoy",
            "etc/istio/config",
        ] {
            std::fs::create_dir_all(root.join(d))
                .map_err(|e| Error::io(format!("create {d}"), e))?;
        }
        Ok(VmRoot {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> Result<()> {
        std::fs::write(self.path(rel), text).map_err(|e| Error::io(format!("write {rel}"), e))
    }

    pub fn write_root_cert(&self, pem: &str) -> Result<()> {
        self.write("etc/certs/root-cert.pem", pem)
    }

    pub fn write_token(&self, token: &str) -> Result<()> {
        self.write("var/run/secrets/tokens/istio-token", token)
    }

    pub fn token_path(&self) -> PathBuf {
        self.path("var/run/secrets/tokens/istio-token")
    }

    /// Writes `cluster.env` from pairs (values single-quoted, as istioctl writes them).
    pub fn write_cluster_env(&self, vars: &[(&str, &str)]) -> Result<()> {
        let text: String = vars
            .iter()
            .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "'\"'\"'")))
            .collect();
        self.write("var/lib/istio/envoy/cluster.env", &text)
    }

    pub fn write_mesh_config(&self, yaml: &str) -> Result<()> {
        self.write("etc/istio/config/mesh", yaml)
    }

    /// The standard bundle for a VM talking to `cp` directly: root cert, token, cluster.env naming the
    /// identity and the CA, mesh config with the discovery address; `extra` env vars appended.
    pub fn write_bundle(
        &self,
        cp: &ControlPlane,
        vm: &Host,
        namespace: &str,
        service_account: &str,
        pod_name: &str,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        self.write_root_cert(&cp.root_cert()?)?;
        self.write_token(&cp.mint_token(namespace, service_account, 3600)?)?;
        let ip = vm.ip().to_string();
        let addr = cp.xds_address();
        let mut vars = vec![
            ("POD_NAMESPACE", namespace),
            ("SERVICE_ACCOUNT", service_account),
            ("POD_NAME", pod_name),
            ("INSTANCE_IP", ip.as_str()),
            ("CA_ADDR", addr.as_str()),
            ("ISTIOD_SAN", ISTIOD_SAN),
        ];
        vars.extend_from_slice(extra);
        self.write_cluster_env(&vars)?;
        self.write_mesh_config(&format!("defaultConfig:\n  discoveryAddress: {addr}\n"))
    }

    /// Starts `weft-agent proxy --root <root>` (plus `args`) in `host`, as the current user.
    pub fn start_agent(&self, host: &Host, name: &str, args: &[&str]) -> Result<Process> {
        host.spawn_command(name, &self.agent_command(args, false)?)
    }

    /// Starts the agent as the `istio-proxy` user (UID/GID 1337) the way a VM runs it, so that
    /// traffic capture exempts the agent and Envoy. The root is handed to that user first.
    pub fn start_agent_as_proxy_user(
        &self,
        host: &Host,
        name: &str,
        args: &[&str],
    ) -> Result<Process> {
        let out = Command::new("chown")
            .args(["-R", &format!("{PROXY_UID}:{PROXY_UID}")])
            .arg(&self.root)
            .output()
            .map_err(|e| Error::io("run chown", e))?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "chown failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        host.spawn_command(name, &self.agent_command(args, true)?)
    }

    fn agent_command(&self, args: &[&str], as_proxy_user: bool) -> Result<Command> {
        let bin = workspace_binary("weft-agent", "weft-agent")?;
        let mut cmd = if as_proxy_user {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={PROXY_UID}"),
                format!("--regid={PROXY_UID}"),
                "--clear-groups".to_string(),
            ])
            .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.arg("proxy")
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .env("ENVOY_BINARY", envoy_binary()?)
            .env("WEFT_LOG", "debug");
        Ok(cmd)
    }

    /// Installs traffic capture in `host` from this root's settings (`weft-agent istio-iptables`,
    /// run as root like the VM start script does).
    pub fn install_capture(&self, host: &Host) -> Result<()> {
        let bin = workspace_binary("weft-agent", "weft-agent")?;
        let mut cmd = Command::new(bin);
        cmd.arg("istio-iptables").arg("--root").arg(&self.root);
        host.run_command(&cmd, Duration::from_secs(60))?.checked()?;
        Ok(())
    }
}

/// A workload joined to the mesh the manual way: its root `<lab dir>/<name>-root` with the
/// standard bundle (identity `namespace`/`service_account`, VM capture defaults), capture
/// installed, and the agent running as `istio-proxy` (process name `<name>-agent`).
pub struct MeshWorkload {
    pub root: VmRoot,
    pub agent: Process,
}

impl MeshWorkload {
    pub fn start(
        lab_dir: &Path,
        cp: &ControlPlane,
        host: &Host,
        namespace: &str,
        service_account: &str,
        name: &str,
    ) -> Result<Self> {
        let root = VmRoot::new(&lab_dir.join(format!("{name}-root")))?;
        root.write_bundle(cp, host, namespace, service_account, name, CAPTURE_ENV)?;
        root.install_capture(host)?;
        let agent = root.start_agent_as_proxy_user(host, &format!("{name}-agent"), &[])?;
        Ok(MeshWorkload { root, agent })
    }
}
