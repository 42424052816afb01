//! `weftctl x workload entry configure`: writes the files a VM needs to join the mesh
//! (`cluster.env`, `mesh.yaml`, `hosts`, `istio-token`, `root-cert.pem`), as
//! `istioctl x workload entry configure` does, with weftd standing in for the Kubernetes API:
//! it serves the WorkloadGroup (with `--name`/`-n`), mints the token and holds the root cert.

use crate::client::{Client, encode};
use crate::vm_bundle::{self, Group, MeshConfig, Options};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Mode of the output directory and the files in it, as istioctl writes them.
const FILE_MODE: u32 = 0o744;
/// Mode of `istio-token`: Weft keeps private keys and tokens owner-only (0600), where istioctl
/// writes the token 0744 like the other files.
const TOKEN_MODE: u32 = 0o600;

/// Go's `strconv.ParseBool`, which `--flag=VALUE` of a boolean flag accepts.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// filename of the WorkloadGroup artifact. Leave this field empty if using the API server
    #[arg(short = 'f', long = "file", default_value = "")]
    file: String,
    /// The name of the workload group
    #[arg(long, default_value = "")]
    name: String,
    /// The namespace that the workload instances belong to
    #[arg(short = 'n', long, default_value = "")]
    namespace: String,
    /// Output directory for generated files
    #[arg(short = 'o', long, default_value = "")]
    output: String,
    /// The ID used to identify the cluster
    #[arg(long = "clusterID", default_value = "Kubernetes")]
    cluster_id: String,
    /// The token duration in seconds (default: 1 hour)
    #[arg(
        long = "tokenDuration",
        default_value_t = 3600,
        allow_negative_numbers = true
    )]
    token_duration: i64,
    /// Name of the Service to be used as the ingress gateway, in the format <service>.<namespace>.
    /// Weft reads no Kubernetes Services: only named in the warning when --ingressIP is missing.
    #[arg(long = "ingressService", default_value = "istio-eastwestgateway")]
    ingress_service: String,
    /// IP address of the ingress gateway
    #[arg(long = "ingressIP", default_value = "")]
    ingress_ip: String,
    /// Creates a WorkloadEntry upon connection to istiod (if enabled in pilot).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool)]
    autoregister: bool,
    /// Enables the capture of outgoing DNS packets on port 53, redirecting to istio-agent
    #[arg(long = "capture-dns", default_value = "true", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool)]
    capture_dns: bool,
    /// Internal IP address of the workload
    #[arg(long = "internalIP", default_value = "")]
    internal_ip: String,
    /// External IP address of the workload
    #[arg(long = "externalIP", default_value = "")]
    external_ip: String,
    /// Control plane revision
    #[arg(short = 'r', long, default_value = "")]
    revision: String,
    /// Istio system namespace
    #[arg(short = 'i', long = "istioNamespace", default_value = "istio-system")]
    istio_namespace: String,
    /// Istio MeshConfig YAML (what istiod's `istio` ConfigMap holds under `mesh`): its
    /// defaultConfig and trustDomain go into mesh.yaml and cluster.env. Not an istioctl flag.
    #[arg(long = "mesh-config")]
    mesh_config: Option<PathBuf>,
}

/// Go's `%q` for a string.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `filepath.Join(dir, name)` (which cleans the result: `./out/` + `x` is `out/x`).
fn go_join(dir: &str, name: &str) -> String {
    let joined = if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    };
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Checks the flags as istioctl does (its argument checks, then its pre-run check), then
/// Weft's own checks of values istioctl takes on trust.
fn check(args: &Args) -> Result<(), String> {
    if args.file.is_empty() && (args.name.is_empty() || args.namespace.is_empty()) {
        return Err("expecting a WorkloadGroup artifact file or the name and namespace of an existing WorkloadGroup".into());
    }
    if args.output.is_empty() {
        return Err("expecting an output directory".into());
    }
    if !args.internal_ip.is_empty() && !args.external_ip.is_empty() {
        return Err("the flags --internalIP and --externalIP are mutually exclusive".into());
    }
    for (flag, value) in [
        ("--internalIP", &args.internal_ip),
        ("--externalIP", &args.external_ip),
        ("--ingressIP", &args.ingress_ip),
    ] {
        if !value.is_empty() && !vm_bundle::is_ip(value) {
            return Err(format!("invalid {flag} {value:?}: not an IP address"));
        }
    }
    if args.token_duration < 1 {
        return Err(format!(
            "invalid --tokenDuration {}: must be at least 1 second",
            args.token_duration
        ));
    }
    Ok(())
}

/// The WorkloadGroup from `-f`, or from weftd by `--name` and `-n`.
fn read_group(args: &Args, client: &Client) -> Result<Group, String> {
    if !args.file.is_empty() {
        let text =
            std::fs::read_to_string(&args.file).map_err(|e| format!("open {}: {e}", args.file))?;
        let doc: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(&text).map_err(|e| {
                let msg = e.to_string();
                format!("{}: {}", args.file, msg.lines().next().unwrap_or_default())
            })?
        };
        return Group::from_object(&doc).map_err(|e| format!("{}: {e}", args.file));
    }
    let path = format!(
        "/api/v1/resources/workloadgroups?namespace={}&name={}",
        encode(&args.namespace),
        encode(&args.name)
    );
    let resp = client.request("GET", &path, None, b"")?;
    let not_found = |why: String| {
        format!(
            "workloadgroup {} not found in namespace {}: {why}",
            args.name, args.namespace
        )
    };
    if resp.status != 200 {
        return Err(not_found(resp.message()));
    }
    let body = resp.json();
    let object = body["items"]
        .as_array()
        .and_then(|items| items.first())
        .map(|item| item["object"].clone())
        .ok_or_else(|| not_found("weftd listed no object".into()))?;
    Group::from_object(&object)
}

fn fetch_root_cert(client: &Client) -> Result<Vec<u8>, String> {
    let resp = client.request("GET", "/api/v1/root-cert", None, b"")?;
    if resp.status != 200 {
        return Err(format!(
            "could not read the root certificate from weftd ({}): {}",
            resp.status,
            resp.message()
        ));
    }
    Ok(resp.body)
}

/// A token for the group's service account, audience `istio-ca`, minted by weftd.
fn mint_token(client: &Client, group: &Group, seconds: i64) -> Result<String, String> {
    let sa = group.service_account();
    let failed = |why: String| {
        format!(
            "could not create a token under service account {sa} in namespace {}: {why}",
            group.namespace
        )
    };
    let body =
        json!({"namespace": group.namespace, "serviceAccount": sa, "durationSeconds": seconds});
    let resp = client.request(
        "POST",
        "/api/v1/tokens",
        Some("application/json"),
        body.to_string().as_bytes(),
    )?;
    if resp.status != 200 {
        return Err(failed(resp.message()));
    }
    resp.json()["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| failed("weftd's answer has no token".into()))
}

/// Writes `contents` to `path` with exactly `mode`: an existing file is narrowed to `mode`
/// before anything is written into it.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("open {}: {e}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    f.set_permissions(Permissions::from_mode(mode))
        .map_err(fail)?;
    f.write_all(contents).map_err(fail)
}

pub fn run(args: &Args, server: &str, admin_token_file: &Path) -> Result<ExitCode, String> {
    check(args)?;
    let mesh = match &args.mesh_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            MeshConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => MeshConfig::default(),
    };
    let client = Client::new(server, admin_token_file)?;
    let group = read_group(args, &client)?;
    let opts = Options {
        istio_namespace: args.istio_namespace.clone(),
        revision: args.revision.clone(),
        cluster_id: args.cluster_id.clone(),
        internal_ip: args.internal_ip.clone(),
        external_ip: args.external_ip.clone(),
        ingress_ip: args.ingress_ip.clone(),
        autoregister: args.autoregister,
        capture_dns: args.capture_dns,
    };
    let bundle = vm_bundle::generate(&group, &mesh, &opts)?;
    if let Some(notice) = &bundle.labels_notice {
        println!("{notice}");
    }
    // Everything from weftd first, so that a refusal leaves no half-written bundle.
    let root_cert = fetch_root_cert(&client)?;
    let token = mint_token(&client, &group, args.token_duration)?;

    let dir = Path::new(&args.output);
    DirBuilder::new()
        .recursive(true)
        .mode(FILE_MODE)
        .create(dir)
        .map_err(|e| format!("mkdir {}: {e}", args.output))?;
    write_file(
        &dir.join("mesh.yaml"),
        bundle.mesh_yaml.as_bytes(),
        FILE_MODE,
    )?;
    write_file(
        &dir.join("cluster.env"),
        bundle.cluster_env.as_bytes(),
        FILE_MODE,
    )?;
    write_file(&dir.join("root-cert.pem"), &root_cert, FILE_MODE)?;
    write_file(&dir.join("istio-token"), token.as_bytes(), TOKEN_MODE)?;
    eprintln!(
        "Warning: a security token for namespace {} and service account {} has been generated and stored at {}",
        go_quote(&group.namespace),
        go_quote(group.service_account()),
        go_quote(&go_join(&args.output, "istio-token"))
    );
    write_file(&dir.join("hosts"), bundle.hosts.as_bytes(), FILE_MODE)?;
    if bundle.hosts.is_empty() {
        let (service, namespace) = match args.ingress_service.split('.').collect::<Vec<_>>()[..] {
            [svc, ns] => (svc, ns),
            _ => (args.ingress_service.as_str(), args.istio_namespace.as_str()),
        };
        eprintln!(
            "Warning: Could not auto-detect IP for {service}/{namespace}. Use --ingressIP to manually specify the Gateway address to reach istiod from the VM."
        );
    }
    println!(
        "Configuration generation into directory {} was successful",
        args.output
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_like_go() {
        assert_eq!(go_join("out", "istio-token"), "out/istio-token");
        assert_eq!(go_join("./out/", "istio-token"), "out/istio-token");
        assert_eq!(go_join("/tmp//a/../b", "istio-token"), "/tmp/b/istio-token");
        assert_eq!(go_join("../x", "t"), "../x/t");
        assert_eq!(go_join(".", "t"), "t");
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("bar"), "\"bar\"");
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn parses_go_booleans() {
        assert_eq!(go_bool("false"), Ok(false));
        assert_eq!(go_bool("T"), Ok(true));
        assert!(go_bool("yes").is_err());
    }
}
