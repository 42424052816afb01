//! Workload certificates: obtain one from weftd's CA, write it to `OUTPUT_CERTS` (0600, atomically,
//! only when it changed), publish it to SDS, and rotate it at half its lifetime (±1%). A valid
//! certificate on disk is reused after a restart; renewal uses the certificate itself over mTLS, so a
//! VM keeps its identity after the bootstrap token expires or is deleted.

use crate::config::AgentConfig;
use crate::upstream::{self, Target};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use weft_identity::certinfo::{CertInfo, split_pem};
use weft_identity::csr::{WorkloadKey, build_csr};
use weft_identity::store::write_atomic;
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;

/// The certificate material the agent currently holds. `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadCerts {
    /// PKCS#8 PEM private key.
    pub key_pem: String,
    /// PEM chain: leaf first, then intermediates (root excluded).
    pub cert_chain_pem: String,
    /// PEM root certificate(s) to trust.
    pub root_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Latest certificates; `None` until the first one is issued. SDS watches this.
pub type CertWatch = watch::Receiver<Option<Arc<WorkloadCerts>>>;

impl std::fmt::Debug for WorkloadCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCerts")
            .field("key_pem", &"<redacted>")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadCerts {
    /// Builds from a CA response chain (leaf, intermediates…, root last) and the key.
    pub fn from_chain(key_pem: String, chain: &[String]) -> Result<Self, String> {
        let (root, rest) = chain
            .split_last()
            .ok_or_else(|| "the CA returned an empty certificate chain".to_string())?;
        let leaf_pem = rest.first().unwrap_or(root);
        let leaf = CertInfo::from_pem(leaf_pem)?;
        let cert_chain_pem = if rest.is_empty() {
            root.clone()
        } else {
            rest.concat()
        };
        Ok(WorkloadCerts {
            key_pem,
            cert_chain_pem,
            root_pem: root.clone(),
            not_before: leaf.not_before,
            not_after: leaf.not_after,
        })
    }

    pub fn leaf(&self) -> Result<CertInfo, String> {
        CertInfo::from_pem(&self.cert_chain_pem)
    }

    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// When to renew a certificate valid over `[not_before, not_after)`: when `ratio` of its lifetime
/// remains, shifted by `jitter` × 1% of the lifetime (`jitter` in [-1, 1]).
pub fn rotation_time(
    not_before: SystemTime,
    not_after: SystemTime,
    ratio: f64,
    jitter: f64,
) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or_default()
        .as_secs_f64();
    let remaining = lifetime * (ratio + 0.01 * jitter.clamp(-1.0, 1.0));
    not_after - Duration::from_secs_f64(remaining.clamp(0.0, lifetime))
}

fn jitter() -> f64 {
    let mut b = [0u8; 8];
    let _ = getrandom_fill(&mut b);
    (u64::from_le_bytes(b) as f64 / u64::MAX as f64) * 2.0 - 1.0
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// Files under OUTPUT_CERTS.
struct OutputFiles {
    dir: PathBuf,
}

impl OutputFiles {
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    fn chain(&self) -> PathBuf {
        self.dir.join("cert-chain.pem")
    }
    fn root(&self) -> PathBuf {
        self.dir.join("root-cert.pem")
    }

    /// A certificate written earlier that is still valid and names `uri`.
    fn load(&self, uri: &str, now: SystemTime) -> Option<WorkloadCerts> {
        let c = self.load_any(now)?;
        c.leaf().ok()?.uris.iter().any(|u| u == uri).then_some(c)
    }

    /// Any valid certificate with its matching key in this directory.
    fn load_any(&self, now: SystemTime) -> Option<WorkloadCerts> {
        let key_pem = std::fs::read_to_string(self.key()).ok()?;
        let cert_chain_pem = std::fs::read_to_string(self.chain()).ok()?;
        let root_pem = std::fs::read_to_string(self.root()).ok()?;
        let leaf = CertInfo::from_pem(&cert_chain_pem).ok()?;
        let key = WorkloadKey::from_pem(&key_pem).ok()?;
        if key.public_key_der() != leaf.public_key_der || !leaf.valid_at(now) {
            return None;
        }
        Some(WorkloadCerts {
            key_pem,
            cert_chain_pem,
            root_pem,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
        })
    }

    /// Writes what changed; the key last-but-not-least so a reader never pairs a new key with an old chain
    /// for long (each file is replaced atomically).
    fn store(&self, c: &WorkloadCerts) -> Result<(), String> {
        for (path, data) in [
            (self.key(), &c.key_pem),
            (self.chain(), &c.cert_chain_pem),
            (self.root(), &c.root_pem),
        ] {
            if std::fs::read_to_string(&path).ok().as_deref() == Some(data.as_str()) {
                continue;
            }
            write_atomic(&path, data.as_bytes(), 0o600)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Reads the bootstrap token, if present and non-empty.
pub fn read_token(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Reads the mesh root the bundle installed; its absence is a set-up error that names the fix.
pub fn read_root(cfg: &AgentConfig) -> Result<String, String> {
    let path = cfg.paths.root_cert();
    let pem = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (create the VM bundle with `weftctl x workload entry configure` and install its root-cert.pem there)",
            path.display()
        )
    })?;
    if split_pem(&pem).is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    Ok(pem)
}

pub struct CertManager {
    cfg: Arc<AgentConfig>,
    out: OutputFiles,
    tx: watch::Sender<Option<Arc<WorkloadCerts>>>,
}

impl CertManager {
    pub fn new(cfg: Arc<AgentConfig>) -> (Self, CertWatch) {
        let (tx, rx) = watch::channel(None);
        let out = OutputFiles {
            dir: cfg.output_certs.clone(),
        };
        (CertManager { cfg, out, tx }, rx)
    }

    /// Reuses a valid certificate from disk, if any, and publishes it.
    pub fn load_existing(&self) -> Option<Arc<WorkloadCerts>> {
        let c = self
            .out
            .load(&self.cfg.spiffe_uri(), SystemTime::now())
            .map(Arc::new);
        if let Some(c) = &c {
            tracing::info!(
                "reusing the workload certificate in {} (valid until {})",
                self.out.dir.display(),
                fmt_time(c.not_after)
            );
            self.tx.send_replace(Some(c.clone()));
        }
        c
    }

    pub fn current(&self) -> Option<Arc<WorkloadCerts>> {
        self.tx.borrow().clone()
    }

    /// Requests a certificate from the CA: with the current certificate over mTLS when it is still
    /// valid, else with the bootstrap token.
    pub async fn request(&self) -> Result<Arc<WorkloadCerts>, String> {
        let now = SystemTime::now();
        // The credential: the current certificate, else a provisioned one (`PROV_CERT`).
        let current = self.current().filter(|c| c.valid_at(now)).or_else(|| {
            let dir = self.cfg.prov_cert.clone()?;
            OutputFiles { dir }.load_any(now).map(Arc::new)
        });
        let token = read_token(&self.cfg.paths.token());
        if current.is_none() && token.is_none() {
            return Err(format!(
                "no valid certificate and no bootstrap token at {} (create it with `weftctl x workload entry configure`)",
                self.cfg.paths.token().display()
            ));
        }
        let root = read_root(&self.cfg)?;
        let target = Target::new(&self.cfg.ca_address, self.cfg.istiod_san.as_deref(), root)
            .with_hosts_file(&self.cfg.paths.hosts());
        let alg = self.cfg.key_algorithm;
        let uri = self.cfg.spiffe_uri();
        let (key, csr) = tokio::task::spawn_blocking(move || {
            let key = WorkloadKey::generate(alg)?;
            let csr = build_csr(&key, &uri)?;
            Ok::<_, String>((key, csr))
        })
        .await
        .map_err(|e| e.to_string())??;
        let channel = upstream::connect(&target, current.as_deref()).await?;
        let mut client = IstioCertificateServiceClient::new(channel);
        let mut req = tonic::Request::new(IstioCertificateRequest {
            csr,
            validity_duration: self.cfg.secret_ttl.as_secs() as i64,
            metadata: None,
        });
        if let Ok(v) = self.cfg.cluster_id.parse() {
            req.metadata_mut().insert("clusterid", v);
        }
        if let (None, Some(t)) = (&current, &token) {
            let v = format!("Bearer {t}").parse().map_err(|_| {
                "the bootstrap token holds characters not allowed in a header".to_string()
            })?;
            req.metadata_mut().insert("authorization", v);
        }
        let how = if current.is_some() {
            "certificate"
        } else {
            "token"
        };
        let resp = client
            .create_certificate(req)
            .await
            .map_err(|s| {
                format!(
                    "CA at {} refused the request ({how}): {:?}: {}",
                    self.cfg.ca_address,
                    s.code(),
                    s.message()
                )
            })?
            .into_inner();
        let certs = Arc::new(WorkloadCerts::from_chain(key.pem(), &resp.cert_chain)?);
        if let Some(id) = certs.leaf()?.uris.first()
            && *id != self.cfg.spiffe_uri()
        {
            tracing::warn!(
                "the CA issued {id}, not the requested {}",
                self.cfg.spiffe_uri()
            );
        }
        self.out.store(&certs)?;
        tracing::info!(
            "workload certificate issued via {how}: {} valid until {}",
            self.cfg.spiffe_uri(),
            fmt_time(certs.not_after)
        );
        self.tx.send_replace(Some(certs.clone()));
        Ok(certs)
    }

    /// Keeps a valid certificate forever: first issue, then rotation; retries with backoff.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(500);
        let mut last_issue: Option<SystemTime> = None;
        loop {
            let mut due = match self.current() {
                Some(c) => rotation_time(c.not_before, c.not_after, self.cfg.grace_ratio, jitter()),
                None => SystemTime::now(),
            };
            // Never renew in a tight loop, whatever the certificate's dates say.
            if let Some(t) = last_issue {
                due = due.max(t + Duration::from_secs(1));
            }
            if let Ok(wait) = due.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
            match self.request().await {
                Ok(_) => {
                    backoff = Duration::from_millis(500);
                    last_issue = Some(SystemTime::now());
                }
                Err(e) => {
                    tracing::warn!("certificate request failed, retrying in {backoff:?}: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

fn fmt_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("{secs} (unix)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_half_life_with_one_percent_jitter() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let na = nb + Duration::from_secs(10_000);
        let mid = rotation_time(nb, na, 0.5, 0.0);
        assert_eq!(mid, nb + Duration::from_secs(5_000));
        assert_eq!(
            rotation_time(nb, na, 0.5, 1.0),
            nb + Duration::from_secs(4_900)
        );
        assert_eq!(
            rotation_time(nb, na, 0.5, -1.0),
            nb + Duration::from_secs(5_100)
        );
        for _ in 0..100 {
            let t = rotation_time(nb, na, 0.5, jitter());
            assert!(t >= nb + Duration::from_secs(4_900) && t <= nb + Duration::from_secs(5_100));
        }
    }
}
