//! The files in `packaging/` as systemd reads them: `systemd-analyze verify` accepts the unit
//! without a single complaint (with the installed binary path pointed at the one just built), and
//! `systemd-sysusers` + `systemd-tmpfiles`, run into an empty root, create the proxy user and every
//! directory the unit's `ReadWritePaths=` needs, owned by that user.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_weft-agent");

fn packaging(file: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../packaging")
    .join(file)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-packaging-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (the systemd package provides it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn unit_text() -> String {
    std::fs::read_to_string(packaging("weft-agent.service")).unwrap()
}

#[test]
fn systemd_accepts_the_unit() {
    let dir = scratch("verify");
    let unit = dir.join("weft-agent.service");
    std::fs::write(
        &unit,
        unit_text().replace("/usr/local/bin/weft-agent", AGENT),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    // verify exits 0 even for ignored lines; any message is a mistake in the unit.
    assert_eq!(out, "", "systemd-analyze verify complained");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sysusers_and_tmpfiles_prepare_what_the_unit_needs() {
    let root = scratch("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "").unwrap();
    std::fs::write(root.join("etc/group"), "").unwrap();
    let root_arg = format!("--root={}", root.display());
    run(Command::new("systemd-sysusers")
        .arg(&root_arg)
        .arg(packaging("weft-agent.sysusers")));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let uid: u32 = passwd
        .lines()
        .find_map(|l| l.strip_prefix("istio-proxy:x:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no istio-proxy user in:\n{passwd}"))
        .parse()
        .unwrap();
    run(Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(&root_arg)
        .arg(packaging("weft-agent.tmpfiles")));

    let unit = unit_text();
    let writable: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(!writable.is_empty());
    for path in writable {
        // `-` marks an optional path; /var/run is /run on every systemd host.
        let path = path.trim_start_matches('-');
        let on_host = path
            .strip_prefix("/var/run/")
            .map_or(path.to_string(), |rest| format!("/run/{rest}"));
        let meta = std::fs::metadata(root.join(on_host.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("tmpfiles does not create {path}: {e}"));
        if meta.is_dir() {
            assert_eq!(meta.uid(), uid, "{path} belongs to istio-proxy");
        }
    }
    // The agent creates the SDS socket's directory only if it may; tmpfiles makes sure.
    let sds = std::fs::metadata(root.join("run/secrets/workload-spiffe-uds")).unwrap();
    assert_eq!((sds.uid(), sds.mode() & 0o777), (uid, 0o750));
    std::fs::remove_dir_all(&root).unwrap();
}
