//! The VM's `/etc/hosts` (under `--root`): Istio's VM bundle ships a `hosts` file that maps
//! `istiod.istio-system.svc` to the ingress (east-west gateway) address and is appended to
//! `/etc/hosts`. The agent consults the root's hosts file for its control-plane addresses, so a
//! root other than `/` works the same way as a real VM.

use std::path::Path;

/// The address of `name` in hosts-file `text` (first match; comments and blank lines ignored).
pub fn lookup(text: &str, name: &str) -> Option<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            let ip = fields.next()?;
            fields
                .any(|n| n.eq_ignore_ascii_case(name))
                .then(|| ip.to_string())
        })
}

/// `host:port` with `host` replaced by its address from the hosts file at `path`, when listed
/// there; otherwise unchanged (the system resolver then decides).
pub fn dial_address(address: &str, path: &Path) -> String {
    let Some((host, port)) = address.rsplit_once(':') else {
        return address.to_string();
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return address.to_string();
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return address.to_string();
    };
    match lookup(&text, host) {
        Some(ip) if ip.contains(':') => format!("[{ip}]:{port}"),
        Some(ip) => format!("{ip}:{port}"),
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_names_up_like_the_resolver() {
        let text = "127.0.0.1 localhost\n# 10.0.0.9 istiod.istio-system.svc\n198.18.0.5 istiod.istio-system.svc  istiod # gateway\nfd00::5 v6.example\n";
        assert_eq!(
            lookup(text, "istiod.istio-system.svc").as_deref(),
            Some("198.18.0.5")
        );
        assert_eq!(lookup(text, "ISTIOD").as_deref(), Some("198.18.0.5"));
        assert_eq!(lookup(text, "nothere"), None);
        let dir = std::env::temp_dir().join(format!("weft-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            dial_address("istiod.istio-system.svc:15012", &path),
            "198.18.0.5:15012"
        );
        assert_eq!(dial_address("v6.example:15012", &path), "[fd00::5]:15012");
        assert_eq!(dial_address("10.1.1.1:15012", &path), "10.1.1.1:15012");
        assert_eq!(dial_address("other.svc:15012", &path), "other.svc:15012");
        assert_eq!(
            dial_address("istiod:15012", &dir.join("missing")),
            "istiod:15012"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
