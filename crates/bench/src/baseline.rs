//! The peers every CA result is divided by, measured in the same run: this machine's raw signing
//! and verifying speed (`openssl speed`, one core; Debian ships `openssl`, elsewhere install it from
//! the system's package manager), and weft-identity's own CA operations in-process (one core).

use crate::weftd::cpu_time;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};
use weft_identity::ca::DEFAULT_TTL;
use weft_identity::token::TokenAuthority;
use weft_identity::{CertificateAuthority, Identity, KeyAlgorithm};

/// Operations per second on one core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Speed {
    pub sign_per_s: f64,
    pub verify_per_s: f64,
}

impl Speed {
    pub fn sign_us(&self) -> f64 {
        1e6 / self.sign_per_s
    }

    pub fn verify_us(&self) -> f64 {
        1e6 / self.verify_per_s
    }
}

/// Runs `openssl speed -seconds <seconds> <algorithm>` (e.g. `ecdsap256`, `rsa2048`).
pub fn openssl_speed(algorithm: &str, seconds: u32) -> Result<Speed, String> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), algorithm])
        .output()
        .map_err(|e| {
            format!("cannot run `openssl speed` ({e}); install openssl (Debian: apt-get install openssl)")
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "`openssl speed {algorithm}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse(&stdout).ok_or_else(|| {
        format!("cannot find sign/s and verify/s in `openssl speed {algorithm}` output:\n{stdout}")
    })
}

/// Finds the `sign/s` and `verify/s` columns: the header line names the columns, and the result
/// line's last fields line up with them (its first fields are the algorithm's description).
fn parse(output: &str) -> Option<Speed> {
    let mut lines = output.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find(|l| l.split_whitespace().any(|w| w == "sign/s"))?
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines
        .find(|l| !l.trim().is_empty())?
        .split_whitespace()
        .collect();
    let values = row.get(row.len().checked_sub(header.len())?..)?;
    let column = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| *h == name)?;
        values[i].parse().ok().filter(|v: &f64| *v > 0.0)
    };
    Some(Speed {
        sign_per_s: column("sign/s")?,
        verify_per_s: column("verify/s")?,
    })
}

/// What weftd's CA library costs in-process on one core, without gRPC, TLS or threads: the floor
/// weftd's own CPU per certificate is compared with.
#[derive(Clone, Copy, Debug)]
pub struct LibrarySpeed {
    /// `CertificateAuthority::sign`: parse the CSR, verify its signature, issue the certificate.
    pub sign_csr_us: f64,
    /// `CertificateAuthority::sign_key`: issuing alone (the CSR step skipped).
    pub issue_us: f64,
    /// `TokenAuthority::verify`: an ES256 bootstrap token.
    pub verify_token_us: f64,
}

/// Times weft-identity's CA operations for about `seconds` each, with the same workload CSRs the
/// benchmark sends.
pub fn library_speed(
    ca_key: KeyAlgorithm,
    csrs: &[String],
    seconds: f64,
) -> Result<LibrarySpeed, String> {
    let now = SystemTime::now();
    let ca = CertificateAuthority::new_root(ca_key, "cluster.local", now)?;
    let id = Identity::new("cluster.local", "bench", "library");
    let workload = KeyAlgorithm::EcdsaP256.generate()?;
    let token_key = KeyAlgorithm::EcdsaP256.generate()?;
    let tokens = TokenAuthority::from_pem(&token_key.serialize_pem(), &token_key.public_key_pem())?;
    let token = tokens.mint("bench", "library", Duration::from_secs(3600), now)?;
    let sign_csr_us = time_per_op(seconds, |i| {
        ca.sign(&csrs[i % csrs.len()], &id, DEFAULT_TTL, now)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    let issue_us = time_per_op(seconds, |_| {
        ca.sign_key(&workload, &id, DEFAULT_TTL, now)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    let verify_token_us = time_per_op(seconds, |_| tokens.verify(&token, now).map(drop))?;
    Ok(LibrarySpeed {
        sign_csr_us,
        issue_us,
        verify_token_us,
    })
}

/// Runs `op(0), op(1), ...` for about `seconds`; CPU microseconds per call. CPU time (this
/// thread's, like `openssl speed`'s user time) rather than wall time, so other processes sharing
/// the core do not inflate it.
fn time_per_op(
    seconds: f64,
    mut op: impl FnMut(usize) -> Result<(), String>,
) -> Result<f64, String> {
    let budget = Duration::from_secs_f64(seconds);
    let (start, cpu0) = (Instant::now(), cpu_time("thread-self")?);
    let mut n = 0;
    while n == 0 || start.elapsed() < budget {
        op(n)?;
        n += 1;
    }
    let cpu = cpu_time("thread-self")?.saturating_sub(cpu0);
    Ok(cpu.as_secs_f64() * 1e6 / n as f64)
}

/// Cores this process may use (what `nproc` prints).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU model from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// CPU time all processes on the machine have spent busy (not idle, not waiting for I/O) so far,
/// from `/proc/stat`, plus the time stolen by the hypervisor; to tell how much else was running.
pub fn machine_busy() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let busy = [0, 1, 2, 5, 6].into_iter().map(field).sum();
    let tck = crate::weftd::clock_ticks_per_second();
    let secs = |t: u64| Duration::from_secs_f64(t as f64 / tck);
    Some((secs(busy), secs(field(7))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ecdsa() {
        let out = "Doing 256 bits sign ecdsa's for 3s: 188704 256 bits ECDSA signs in 3.00s\n\
                   version: 3.0.19\n\
                   \x20                             sign    verify    sign/s verify/s\n\
                   \x20256 bits ecdsa (nistp256)   0.0000s   0.0000s  62901.4  20781.4\n";
        assert_eq!(
            parse(out),
            Some(Speed {
                sign_per_s: 62901.4,
                verify_per_s: 20781.4
            })
        );
    }

    #[test]
    fn parses_rsa_with_extra_columns() {
        let old = "                  sign    verify    sign/s verify/s\n\
                   rsa 2048 bits 0.000241s 0.000014s   4152.4  70876.5\n";
        assert_eq!(parse(old).unwrap().sign_per_s, 4152.4);
        // OpenSSL 3.2+ adds encrypt/decrypt columns.
        let new = "                  sign    verify    encrypt   decrypt   sign/s verify/s  encr./s  decr./s\n\
                   rsa 2048 bits 0.000241s 0.000014s 0.000015s 0.000240s   4152.4  70876.5  66000.0   4160.0\n";
        let s = parse(new).unwrap();
        assert_eq!((s.sign_per_s, s.verify_per_s), (4152.4, 70876.5));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse("openssl: unknown algorithm\n"), None);
    }
}
