//! The agent's settings, resolved the way Istio's VM start-up resolves them: environment files
//! under `--root` (`sidecar.env`, then `cluster.env`), the mesh config's `proxyMetadata`, and the
//! process environment. Precedence, highest first: process environment (so systemd
//! `Environment=` and tests can override a file) > `cluster.env` > `sidecar.env` > mesh
//! `proxyMetadata`.
//!
//! Defaults of the start script: `ISTIO_SVC_IP` (the instance address) is the host's first usable
//! address ([`crate::instance_ip`]), `POD_NAME` the short host name.

use crate::{envfile, instance_ip};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weft_identity::KeyAlgorithm;

/// Whether this agent fronts a workload or runs a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyType {
    Sidecar,
    Router,
}

impl ProxyType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Sidecar => "sidecar",
            ProxyType::Router => "router",
        }
    }
}

/// Every file and socket the agent uses, relative to `--root` exactly as Istio lays out a VM.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Self {
        Paths {
            root: root.to_path_buf(),
        }
    }
    fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    pub fn root_cert(&self) -> PathBuf {
        self.at("etc/certs/root-cert.pem")
    }
    pub fn token(&self) -> PathBuf {
        self.at("var/run/secrets/tokens/istio-token")
    }
    pub fn mesh_config(&self) -> PathBuf {
        self.at("etc/istio/config/mesh")
    }
    /// The VM's hosts file (istioctl's `hosts` is appended to it).
    pub fn hosts(&self) -> PathBuf {
        self.at("etc/hosts")
    }
    pub fn cluster_env(&self) -> PathBuf {
        self.at("var/lib/istio/envoy/cluster.env")
    }
    pub fn sidecar_env(&self) -> PathBuf {
        self.at("var/lib/istio/envoy/sidecar.env")
    }
    /// Envoy ↔ agent xDS socket.
    pub fn xds_socket(&self) -> PathBuf {
        self.at("etc/istio/proxy/XDS")
    }
    /// Envoy ↔ agent SDS socket.
    pub fn sds_socket(&self) -> PathBuf {
        self.at("var/run/secrets/workload-spiffe-uds/socket")
    }
    /// Where the generated Envoy bootstrap is written.
    pub fn bootstrap(&self) -> PathBuf {
        self.at("etc/istio/proxy/envoy-rev.json")
    }
    /// Default OUTPUT_CERTS directory.
    pub fn default_output_certs(&self) -> PathBuf {
        self.at("etc/certs")
    }
}

/// Resolved agent configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub paths: Paths,
    pub proxy_type: ProxyType,
    pub pod_name: String,
    pub namespace: String,
    pub service_account: String,
    pub instance_ip: String,
    pub trust_domain: String,
    pub cluster_id: String,
    /// `host:port` of the xDS server (mesh config `discoveryAddress`).
    pub discovery_address: String,
    /// `host:port` of the CA (`CA_ADDR`, default: discovery address).
    pub ca_address: String,
    /// Name to verify in weftd's serving certificate (`ISTIOD_SAN`, else the host of the address).
    pub istiod_san: Option<String>,
    pub secret_ttl: Duration,
    pub grace_ratio: f64,
    pub key_algorithm: KeyAlgorithm,
    /// Directory certificates are written to (`OUTPUT_CERTS`).
    pub output_certs: PathBuf,
    /// Directory with an existing certificate to authenticate renewal (`PROV_CERT`).
    pub prov_cert: Option<PathBuf>,
    /// Envoy node metadata (Istio's keys).
    pub metadata: Map<String, Value>,
    /// `defaultConfig` from the mesh config, as JSON (readinessProbe etc.).
    pub proxy_config: Map<String, Value>,
    /// The merged settings (files, proxyMetadata, environment) for anything else.
    pub env: BTreeMap<String, String>,
}

fn parse_duration(key: &str, v: &str) -> Result<Duration, String> {
    weft_model::Duration::parse(v)
        .map(|d| d.as_std())
        .map_err(|e| format!("{key}={v:?}: {e}"))
}

fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => envfile::parse(&t).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads the mesh config file (`{"defaultConfig": {...}}` as JSON or YAML). Missing is fine.
pub fn read_mesh_config(path: &Path) -> Result<Map<String, Value>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let v: Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("{}: invalid mesh config: {e}", path.display()))?;
    Ok(v.get("defaultConfig")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

impl AgentConfig {
    /// Resolves settings from `root` and the given process environment.
    pub fn load(
        root: &Path,
        proxy_type: ProxyType,
        process_env: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let paths = Paths::new(root);
        let proxy_config = read_mesh_config(&paths.mesh_config())?;
        let mut env = BTreeMap::new();
        if let Some(pm) = proxy_config.get("proxyMetadata").and_then(Value::as_object) {
            for (k, v) in pm {
                env.insert(
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        env.extend(read_env_file(&paths.sidecar_env())?);
        env.extend(read_env_file(&paths.cluster_env())?);
        env.extend(process_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();

        let namespace = get("POD_NAMESPACE")
            .or_else(|| get("ISTIO_NAMESPACE"))
            .unwrap_or_else(|| "default".into());
        let pod_name = get("POD_NAME").unwrap_or_else(short_hostname);
        let service_account = get("SERVICE_ACCOUNT").unwrap_or_else(|| "default".into());
        // The start script runs the agent with INSTANCE_IP=$ISTIO_SVC_IP, defaulting the latter to
        // the host's first address; INSTANCE_IP alone is honoured too.
        let instance_ip = get("ISTIO_SVC_IP")
            .or_else(|| get("INSTANCE_IP"))
            .unwrap_or_else(instance_ip::default_instance_ip);
        let trust_domain = get("TRUST_DOMAIN").unwrap_or_else(|| "cluster.local".into());
        let cluster_id = get("ISTIO_META_CLUSTER_ID").unwrap_or_else(|| "Kubernetes".into());
        let discovery_address = proxy_config
            .get("discoveryAddress")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| "istiod.istio-system.svc:15012".into());
        let ca_address = get("CA_ADDR").unwrap_or_else(|| discovery_address.clone());
        let secret_ttl = match get("SECRET_TTL") {
            Some(v) => parse_duration("SECRET_TTL", &v)?,
            None => Duration::from_secs(24 * 3600),
        };
        let grace_ratio = match get("SECRET_GRACE_PERIOD_RATIO") {
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..1.0).contains(r))
                .ok_or_else(|| {
                    format!("SECRET_GRACE_PERIOD_RATIO={v:?}: expected a number in [0, 1)")
                })?,
            None => 0.5,
        };
        let key_algorithm = match get("WORKLOAD_RSA_KEY_SIZE") {
            Some(v) if v == "2048" => KeyAlgorithm::Rsa2048,
            Some(v) => {
                return Err(format!(
                    "WORKLOAD_RSA_KEY_SIZE={v:?}: only 2048 is supported"
                ));
            }
            None => KeyAlgorithm::EcdsaP256,
        };
        let output_certs = get("OUTPUT_CERTS")
            .map(|p| resolve(root, &p))
            .unwrap_or_else(|| paths.default_output_certs());
        let prov_cert = get("PROV_CERT").map(|p| resolve(root, &p));
        let mut cfg = AgentConfig {
            paths,
            proxy_type,
            pod_name,
            namespace,
            service_account,
            instance_ip,
            trust_domain,
            cluster_id,
            discovery_address,
            ca_address,
            istiod_san: get("ISTIOD_SAN"),
            secret_ttl,
            grace_ratio,
            key_algorithm,
            output_certs,
            prov_cert,
            metadata: Map::new(),
            proxy_config,
            env,
        };
        cfg.metadata = cfg.node_metadata()?;
        Ok(cfg)
    }

    /// `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local` (or `router~...`).
    pub fn node_id(&self) -> String {
        format!(
            "{}~{}~{}.{}~{}.svc.cluster.local",
            self.proxy_type.as_str(),
            self.instance_ip,
            self.pod_name,
            self.namespace,
            self.namespace
        )
    }

    /// Istio's node metadata: `ISTIO_META_X` → `X`, `ISTIO_METAJSON_X` merged as JSON, plus the
    /// agent's own keys.
    fn node_metadata(&self) -> Result<Map<String, Value>, String> {
        let mut m = Map::new();
        for (k, v) in &self.env {
            if let Some(name) = k.strip_prefix("ISTIO_METAJSON_") {
                let parsed: Value =
                    serde_json::from_str(v).map_err(|e| format!("{k}: invalid JSON: {e}"))?;
                m.insert(name.to_string(), parsed);
            } else if let Some(name) = k.strip_prefix("ISTIO_META_") {
                m.insert(name.to_string(), Value::String(v.clone()));
            }
        }
        m.insert("NAME".into(), json!(self.pod_name));
        m.insert("NAMESPACE".into(), json!(self.namespace));
        m.insert("SERVICE_ACCOUNT".into(), json!(self.service_account));
        m.insert("INSTANCE_IPS".into(), json!(self.instance_ip));
        m.insert("CLUSTER_ID".into(), json!(self.cluster_id));
        m.entry("ISTIO_VERSION")
            .or_insert(json!(concat!("weft-", env!("CARGO_PKG_VERSION"))));
        m.insert(
            "PROXY_CONFIG".into(),
            Value::Object(self.proxy_config.clone()),
        );
        Ok(m)
    }

    /// Envoy's `--service-cluster`-like node cluster: `<ISTIO_SERVICE>` or `<pod>.<ns>`.
    pub fn node_cluster(&self) -> String {
        self.env
            .get("ISTIO_SERVICE")
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("{}.{}", self.pod_name, self.namespace))
    }

    /// The SPIFFE identity this workload asks for.
    pub fn spiffe_uri(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

fn resolve(root: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        root.join(p.strip_prefix("/").unwrap_or(p))
    } else {
        root.join(p)
    }
}

/// The short host name (`hostname -s`), Istio's POD_NAME default on a VM.
pub fn short_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().split('.').next().unwrap_or_default().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_node_id_and_metadata_from_files_and_env() {
        let root = std::env::temp_dir().join(format!("weft-agent-cfg-{}", std::process::id()));
        let p = Paths::new(&root);
        std::fs::create_dir_all(p.cluster_env().parent().unwrap()).unwrap();
        std::fs::create_dir_all(p.mesh_config().parent().unwrap()).unwrap();
        std::fs::write(
            p.cluster_env(),
            "POD_NAMESPACE='forum-services'\nSERVICE_ACCOUNT='forum-sa'\nISTIO_META_NETWORK='vm-network'\nISTIO_METAJSON_LABELS='{\"app\":\"forum\"}'\nSECRET_TTL='1h'\n",
        )
        .unwrap();
        std::fs::write(
            p.mesh_config(),
            "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n  proxyMetadata:\n    TRUST_DOMAIN: cluster.local\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> = [
            ("POD_NAME".to_string(), "forum-vm".to_string()),
            ("INSTANCE_IP".to_string(), "198.18.1.10".to_string()),
            ("SECRET_TTL".to_string(), "20s".to_string()),
        ]
        .into();
        let c = AgentConfig::load(&root, ProxyType::Sidecar, &env).unwrap();
        assert_eq!(
            c.node_id(),
            "sidecar~198.18.1.10~forum-vm.forum-services~forum-services.svc.cluster.local"
        );
        assert_eq!(c.secret_ttl, Duration::from_secs(20), "process env wins");
        assert_eq!(c.metadata["NETWORK"], "vm-network");
        assert_eq!(c.metadata["LABELS"]["app"], "forum");
        assert_eq!(c.metadata["SERVICE_ACCOUNT"], "forum-sa");
        assert_eq!(c.ca_address, "istiod.istio-system.svc:15012");
        assert_eq!(
            c.spiffe_uri(),
            "spiffe://cluster.local/ns/forum-services/sa/forum-sa"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn precedence_env_then_cluster_env_then_sidecar_env_then_proxy_metadata() {
        let root = std::env::temp_dir().join(format!("weft-agent-prec-{}", std::process::id()));
        let p = Paths::new(&root);
        std::fs::create_dir_all(p.cluster_env().parent().unwrap()).unwrap();
        std::fs::create_dir_all(p.mesh_config().parent().unwrap()).unwrap();
        std::fs::write(
            p.mesh_config(),
            "defaultConfig:\n  proxyMetadata:\n    A: mesh\n    B: mesh\n    C: mesh\n    D: mesh\n",
        )
        .unwrap();
        std::fs::write(p.sidecar_env(), "B=sidecar\nC=sidecar\nD=sidecar\n").unwrap();
        std::fs::write(
            p.cluster_env(),
            "C='cluster'\nD='cluster'\nISTIO_SVC_IP='10.1.2.3'\nINSTANCE_IP='10.9.9.9'\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> = [("D".to_string(), "process".to_string())].into();
        let c = AgentConfig::load(&root, ProxyType::Sidecar, &env).unwrap();
        let got: Vec<&str> = ["A", "B", "C", "D"]
            .iter()
            .map(|k| c.env[*k].as_str())
            .collect();
        assert_eq!(got, ["mesh", "sidecar", "cluster", "process"]);
        assert_eq!(
            c.instance_ip, "10.1.2.3",
            "ISTIO_SVC_IP wins over INSTANCE_IP"
        );
        assert!(!c.pod_name.is_empty(), "POD_NAME defaults to the host name");
        assert_eq!(c.pod_name, short_hostname());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
