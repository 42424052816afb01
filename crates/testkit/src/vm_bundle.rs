//! Making a VM bundle with `weftctl x workload entry configure` (run in the control-plane host)
//! and installing it into a [`VmRoot`] the way Istio's VM instructions do: `cluster.env` to
//! `/var/lib/istio/envoy/`, `mesh.yaml` to `/etc/istio/config/mesh`, `root-cert.pem` to
//! `/etc/certs/`, `istio-token` to `/var/run/secrets/tokens/`, and `hosts` appended to `/etc/hosts`.

use crate::binaries::workspace_binary;
use crate::error::{Error, Result};
use crate::mesh::{ControlPlane, VmRoot};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `weftctl <args>` in the control-plane host against its admin API; returns stdout.
pub fn weftctl(cp: &ControlPlane, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(workspace_binary("weftctl", "weftctl")?);
    cmd.args(["--server", "http://127.0.0.1:8080", "--admin-token-file"])
        .arg(cp.state_dir.join("admin-token"))
        .args(args);
    let out = cp
        .host
        .run_command(&cmd, Duration::from_secs(30))?
        .checked()?;
    Ok(out.stdout)
}

/// `weftctl x workload entry configure -f <group> -o <out> <extra...>`; returns its output.
pub fn configure(
    cp: &ControlPlane,
    group_file: &Path,
    out: &Path,
    extra: &[&str],
) -> Result<String> {
    let group = group_file.to_string_lossy();
    let out_dir = out.to_string_lossy();
    let mut args = vec![
        "x",
        "workload",
        "entry",
        "configure",
        "-f",
        &group,
        "-o",
        &out_dir,
    ];
    args.extend_from_slice(extra);
    weftctl(cp, &args)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::io(format!("copy {} to {}", from.display(), to.display()), e))
}

/// Installs the bundle in `dir` into `root`.
pub fn install(dir: &Path, root: &VmRoot) -> Result<()> {
    copy(
        &dir.join("cluster.env"),
        &root.path("var/lib/istio/envoy/cluster.env"),
    )?;
    copy(&dir.join("mesh.yaml"), &root.path("etc/istio/config/mesh"))?;
    copy(
        &dir.join("root-cert.pem"),
        &root.path("etc/certs/root-cert.pem"),
    )?;
    copy(&dir.join("istio-token"), &root.token_path())?;
    let hosts = std::fs::read_to_string(dir.join("hosts"))
        .map_err(|e| Error::io("read the bundle's hosts", e))?;
    let etc_hosts = root.path("etc/hosts");
    let mut text = std::fs::read_to_string(&etc_hosts).unwrap_or_default();
    text.push_str(&hosts);
    std::fs::write(&etc_hosts, text).map_err(|e| Error::io("append to etc/hosts", e))
}
