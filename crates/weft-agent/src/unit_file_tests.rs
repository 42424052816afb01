//! `packaging/weft-agent.service` checked against the agent itself, so neither can drift: every
//! `Exec*=` line is a command this binary's CLI accepts, in Istio's start order, and the writable
//! paths cover every file and socket the agent writes.

use crate::capture::settings::DEFAULT_PROXY_USER;
use crate::config::Paths;
use crate::{Cli, Command};
use clap::Parser;
use std::path::{Path, PathBuf};

const UNIT: &str = include_str!("../../../packaging/weft-agent.service");
const INSTALLED_AGENT: &str = "/usr/local/bin/weft-agent";

/// The values of `key=` lines in the unit, in order.
fn values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// An `Exec*=` value as argv. Prefixes such as `+` (full privileges, outside the sandbox) or `-`
/// (failure ignored) are not used: every step is sandboxed and must succeed.
fn argv(value: &str) -> Vec<&str> {
    assert!(
        !value.starts_with(['@', '-', ':', '+', '!', '|']),
        "no Exec prefixes: {value}"
    );
    value.split_whitespace().collect()
}

/// Parses a weft-agent invocation with the real CLI definition.
fn agent_command(argv: &[&str]) -> Command {
    assert_eq!(argv[0], INSTALLED_AGENT, "{argv:?}");
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli.command,
        Err(e) => panic!("{argv:?} is not a valid weft-agent command: {e}"),
    }
}

fn is_capture(cmd: &Command, want_cleanup_only: bool) -> bool {
    matches!(cmd, Command::IstioIptables { cleanup_only, dry_run: false, root, .. }
        if *cleanup_only == want_cleanup_only && root == Path::new("/"))
}

#[test]
fn exec_lines_run_the_start_sequence_with_valid_commands() {
    let pre: Vec<Command> = values("ExecStartPre")
        .into_iter()
        .map(|v| agent_command(&argv(v)))
        .collect();
    assert_eq!(pre.len(), 2);
    assert!(is_capture(&pre[0], true), "first: capture cleanup");
    assert!(is_capture(&pre[1], false), "then: capture install");

    let start = values("ExecStart");
    assert_eq!(start.len(), 1);
    let start = argv(start[0]);
    let user = format!("--reuid={DEFAULT_PROXY_USER}");
    let group = format!("--regid={DEFAULT_PROXY_USER}");
    assert_eq!(
        start[..4],
        ["/usr/bin/setpriv", &user, &group, "--init-groups"],
        "the agent runs as the proxy user the capture rules exempt"
    );
    assert!(matches!(
        agent_command(&start[4..]),
        Command::Proxy { kind, root, .. } if kind == "sidecar" && root == Path::new("/")
    ));

    let post: Vec<Command> = values("ExecStopPost")
        .into_iter()
        .map(|v| agent_command(&argv(v)))
        .collect();
    assert_eq!(post.len(), 1);
    assert!(
        is_capture(&post[0], true),
        "capture removed after the agent stops"
    );
    assert!(
        values("User").is_empty(),
        "setpriv, not User=, drops privileges"
    );
}

#[test]
fn sandbox_lets_the_agent_write_what_it_writes_and_nothing_more() {
    assert_eq!(values("ProtectSystem"), ["strict"]);
    assert_eq!(values("NoNewPrivileges"), ["yes"]);
    assert_eq!(
        values("CapabilityBoundingSet"),
        ["CAP_NET_ADMIN CAP_NET_RAW CAP_SETUID CAP_SETGID"]
    );
    assert!(
        values("AmbientCapabilities").is_empty(),
        "the agent needs none"
    );
    let writable: Vec<PathBuf> = values("ReadWritePaths")
        .into_iter()
        .flat_map(str::split_whitespace)
        .map(|p| PathBuf::from(p.trim_start_matches('-')))
        .collect();
    let paths = Paths::new(Path::new("/"));
    for written in [
        paths.xds_socket(),
        paths.sds_socket(),
        paths.bootstrap(),
        paths.default_output_certs().join("key.pem"),
    ] {
        assert!(
            writable.iter().any(|dir| written.starts_with(dir)),
            "{} is not under ReadWritePaths {writable:?}",
            written.display()
        );
    }
    // Nothing broader than the agent's own directories (and iptables' lock file).
    for dir in &writable {
        assert!(
            dir.components().count() >= 3,
            "too broad: {}",
            dir.display()
        );
    }
}
