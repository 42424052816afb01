//! Durable CA state in weftd's state directory. A root is created once and then only ever loaded;
//! anything unreadable or mismatched stops weftd with the name of the file, never a silent new root.

use crate::ca::{CertificateAuthority, KeyAlgorithm};
use crate::token::TokenAuthority;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Writes `data` to `path` atomically (temp file + fsync + rename) with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where the CA came from, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum CaSource {
    Created,
    Loaded,
    PluggedIn,
}

pub struct CaFiles {
    pub dir: PathBuf,
}

impl CaFiles {
    pub fn new(state_dir: &Path) -> Self {
        CaFiles {
            dir: state_dir.to_path_buf(),
        }
    }

    fn cacerts(&self) -> PathBuf {
        self.dir.join("cacerts")
    }

    fn own(&self, name: &str) -> PathBuf {
        self.dir.join("ca").join(name)
    }

    /// Loads the plugged-in CA, or the CA created earlier, or creates one (first start only).
    pub fn load_or_create(
        &self,
        alg: KeyAlgorithm,
        trust_domain: &str,
        now: SystemTime,
    ) -> Result<(CertificateAuthority, CaSource), String> {
        let plugged = self.cacerts();
        if plugged.is_dir() {
            let f = |n: &str| plugged.join(n);
            let key = read(&f("ca-key.pem"))?;
            let cert = read(&f("ca-cert.pem"))?;
            let root = read(&f("root-cert.pem"))?;
            let chain = read(&f("cert-chain.pem"))?;
            let ca = CertificateAuthority::from_pem(&key, &cert, &chain, &root)
                .map_err(|e| format!("plugged-in CA in {}: {e}", plugged.display()))?;
            return Ok((ca, CaSource::PluggedIn));
        }
        let (key_path, cert_path) = (self.own("ca-key.pem"), self.own("root-cert.pem"));
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => {
                let key = read(&key_path)?;
                let cert = read(&cert_path)?;
                let ca = CertificateAuthority::from_pem(&key, &cert, "", &cert).map_err(|e| {
                    format!(
                        "CA in {}: {e}; refusing to start rather than replace the root (restore the files or move the directory away to start a new mesh)",
                        if e.starts_with("private key:") { &key_path } else { &cert_path }.display()
                    )
                })?;
                Ok((ca, CaSource::Loaded))
            }
            (false, false) => {
                let ca = CertificateAuthority::new_root(alg, trust_domain, now)?;
                write_atomic(&key_path, ca.key_pem().as_bytes(), 0o600)
                    .map_err(|e| format!("{}: {e}", key_path.display()))?;
                write_atomic(&cert_path, ca.root_pem().as_bytes(), 0o600)
                    .map_err(|e| format!("{}: {e}", cert_path.display()))?;
                Ok((ca, CaSource::Created))
            }
            (has_key, _) => {
                let missing = if has_key { &cert_path } else { &key_path };
                Err(format!(
                    "{} is missing while its pair exists; refusing to start rather than replace the root",
                    missing.display()
                ))
            }
        }
    }

    /// Loads or creates the token-signing key (0600).
    pub fn token_authority(&self) -> Result<TokenAuthority, String> {
        let path = self.own("token-signing-key.pem");
        let pem = if path.exists() {
            read(&path)?
        } else {
            let k = KeyAlgorithm::EcdsaP256.generate()?;
            let pem = k.serialize_pem();
            write_atomic(&path, pem.as_bytes(), 0o600)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            pem
        };
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        TokenAuthority::from_pem(&pem, &key.public_key_pem())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Loads or creates the admin credential (`<state-dir>/admin-token`, 0600).
    pub fn admin_token(&self) -> Result<String, String> {
        let path = self.dir.join("admin-token");
        if path.exists() {
            return Ok(read(&path)?.trim().to_string());
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "random source failed".to_string())?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn root_is_created_once_and_reused() {
        let d = tmpdir("reuse");
        let files = CaFiles::new(&d);
        let now = SystemTime::now();
        let (a, src) = files
            .load_or_create(KeyAlgorithm::EcdsaP256, "td", now)
            .unwrap();
        assert_eq!(src, CaSource::Created);
        let mode = fs::metadata(d.join("ca/ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, src) = files
            .load_or_create(KeyAlgorithm::EcdsaP256, "td", now)
            .unwrap();
        assert_eq!(src, CaSource::Loaded);
        assert_eq!(a.root_pem(), b.root_pem());
        let t1 = files.admin_token().unwrap();
        assert_eq!(t1, files.admin_token().unwrap());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn damaged_state_refuses_to_start() {
        let d = tmpdir("damaged");
        let files = CaFiles::new(&d);
        files
            .load_or_create(KeyAlgorithm::EcdsaP256, "td", SystemTime::now())
            .unwrap();
        fs::remove_file(d.join("ca/root-cert.pem")).unwrap();
        let err = files
            .load_or_create(KeyAlgorithm::EcdsaP256, "td", SystemTime::now())
            .err()
            .unwrap();
        assert!(err.contains("root-cert.pem is missing"), "{err}");
        fs::write(d.join("ca/root-cert.pem"), "garbage").unwrap();
        let err = files
            .load_or_create(KeyAlgorithm::EcdsaP256, "td", SystemTime::now())
            .err()
            .unwrap();
        assert!(err.contains("refusing to start"), "{err}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn plugged_in_files_are_named_when_missing() {
        let d = tmpdir("plugged");
        fs::create_dir_all(d.join("cacerts")).unwrap();
        let err = CaFiles::new(&d)
            .load_or_create(KeyAlgorithm::EcdsaP256, "td", SystemTime::now())
            .err()
            .unwrap();
        assert!(err.contains("cacerts/ca-key.pem"), "{err}");
        let _ = fs::remove_dir_all(&d);
    }
}
