//! `weft-bench dns`: the agent's DNS proxy against dnsmasq on the same names, in the same run.
//!
//! Both servers run in one network namespace (ports of their own, nothing else on them), pinned
//! to one core (`taskset -c 1`), with dnsperf pinned to the other. The agent is the real release
//! `weft-agent proxy` (with Envoy, whose control plane is unreachable), answering from the name
//! table it persisted — the same table dnsmasq reads as an `--addn-hosts` file. Measured: QPS at
//! saturation (median of the rounds), latency percentiles at a fixed rate (dnsperf `-Q`, every
//! answer's latency from `-v`), and the agent's RSS idle, with the table, and after the load.

mod data;
mod dnsperf;

use crate::stats::{Percentiles, ms};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use weft_identity::csr::{WorkloadKey, build_csr};
use weft_identity::{CertificateAuthority, Identity, KeyAlgorithm};
use weft_testkit::{Host, Lab};

pub struct Config {
    pub names: usize,
    pub seconds: u32,
    pub rate: u32,
    pub rounds: usize,
    pub agent: Option<PathBuf>,
}

const SERVER_CORE: &str = "1";
const LOAD_CORE: &str = "0";
const WEFT_PORT: u16 = 15053;
const DNSMASQ_PORT: u16 = 5353;
const NS: &str = "bench";

/// The servers, in the order results are kept: dnsmasq, then the agent.
const PORTS: [u16; 2] = [DNSMASQ_PORT, WEFT_PORT];

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn run(cfg: &Config) -> Result<(), String> {
    let agent_bin = weft_testkit::local::binary_beside(
        "weft-agent",
        cfg.agent.as_deref(),
        "build it with `cargo build --release -p weft-agent` (scripts/bench dns does)",
    )?;
    for tool in ["dnsperf", "dnsmasq", "taskset", "dig", "envoy"] {
        which(tool)?;
    }
    let lab = Lab::new("dns-bench").map_err(err)?;
    let host = lab.host("vm", &[]).map_err(err)?;
    let dir = lab.dir().to_path_buf();
    let hosts = dir.join("hosts");
    let queries = dir.join("queries.txt");
    std::fs::write(&hosts, data::hosts_file(cfg.names)).map_err(err)?;
    std::fs::write(&queries, data::query_file(cfg.names)).map_err(err)?;
    let root = dir.join("vm-root");
    agent_root(&root)?;
    let probe = data::service(cfg.names / 2).0;

    // The agent without a table (what a VM runs before weftd ever answered).
    let agent = start_agent(&host, &agent_bin, &root)?;
    wait_answer(&host, WEFT_PORT, &probe, "SERVFAIL")?;
    std::thread::sleep(Duration::from_secs(3));
    let rss_idle = rss_kib(agent.pid())?;
    agent.stop(Duration::from_secs(10));

    // The agent restarted with the 10k-name table it persisted.
    let saved = root.join("var/lib/istio/dns/name-table.pb");
    std::fs::create_dir_all(saved.parent().unwrap()).map_err(err)?;
    std::fs::write(
        &saved,
        prost::Message::encode_to_vec(&data::name_table(cfg.names)),
    )
    .map_err(err)?;
    let agent = start_agent(&host, &agent_bin, &root)?;
    wait_answer(&host, WEFT_PORT, &probe, "NOERROR")?;
    std::thread::sleep(Duration::from_secs(3));
    let rss_table = rss_kib(agent.pid())?;

    let dnsmasq = host
        .spawn(
            "dnsmasq",
            &[
                "taskset",
                "-c",
                SERVER_CORE,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                &format!("--addn-hosts={}", hosts.display()),
                &format!("--port={DNSMASQ_PORT}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local-ttl=30",
                "--pid-file=",
                "--user=root",
            ],
        )
        .map_err(err)?;
    wait_answer(&host, DNSMASQ_PORT, &probe, "NOERROR")?;
    let rss_dnsmasq = rss_kib(dnsmasq.pid())?;

    // Saturation, alternating servers so drifting machine load hits both.
    let mut qps: Vec<Vec<dnsperf::Report>> = vec![Vec::new(), Vec::new()];
    for _ in 0..cfg.rounds {
        for (i, port) in PORTS.into_iter().enumerate() {
            qps[i].push(dnsperf(&host, port, &queries, cfg.seconds, None)?);
        }
    }
    // A fixed rate, every answer's latency.
    let mut fixed = Vec::new();
    for port in PORTS {
        fixed.push(dnsperf(&host, port, &queries, cfg.seconds, Some(cfg.rate))?);
    }
    let rss_after = rss_kib(agent.pid())?;
    agent.ensure_running().map_err(err)?;
    dnsmasq.ensure_running().map_err(err)?;

    report(
        cfg,
        &qps,
        &fixed,
        Rss {
            idle: rss_idle,
            table: rss_table,
            after: rss_after,
            dnsmasq: rss_dnsmasq,
        },
    );
    agent.stop(Duration::from_secs(10));
    dnsmasq.stop(Duration::from_secs(5));
    Ok(())
}

fn which(tool: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file();
    if found {
        Ok(())
    } else {
        Err(format!("{tool} not found (scripts/setup installs it)"))
    }
}

/// A VM root the agent starts from without weftd: a valid workload certificate, DNS capture on,
/// an unreachable discovery address.
fn agent_root(root: &Path) -> Result<(), String> {
    for d in ["etc/certs", "etc/istio/config", "var/lib/istio/envoy"] {
        std::fs::create_dir_all(root.join(d)).map_err(err)?;
    }
    let now = SystemTime::now();
    let ca = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "weft-bench", now)?;
    let key = WorkloadKey::generate(KeyAlgorithm::EcdsaP256)?;
    let id = Identity::new("cluster.local", NS, NS);
    let csr = build_csr(&key, &id.uri())?;
    let chain = ca
        .sign(&csr, &id, Duration::from_secs(24 * 3600), now)
        .map_err(|e| format!("signing the bench certificate: {e:?}"))?;
    let files = [
        ("etc/certs/key.pem", key.pem()),
        ("etc/certs/cert-chain.pem", chain.concat()),
        ("etc/certs/root-cert.pem", ca.root_pem().to_string()),
        (
            "etc/istio/config/mesh",
            "defaultConfig:\n  discoveryAddress: 127.0.0.1:1\n".to_string(),
        ),
        (
            "var/lib/istio/envoy/cluster.env",
            format!(
                "ISTIO_META_DNS_CAPTURE='true'\nPOD_NAMESPACE='{NS}'\nSERVICE_ACCOUNT='{NS}'\n"
            ),
        ),
        ("etc/resolv.conf", "nameserver 127.0.0.1\n".to_string()),
    ];
    for (rel, text) in files {
        std::fs::write(root.join(rel), text).map_err(|e| format!("{rel}: {e}"))?;
    }
    Ok(())
}

fn start_agent(host: &Host, bin: &Path, root: &Path) -> Result<weft_testkit::Process, String> {
    let bin = bin.display().to_string();
    let root = root.display().to_string();
    host.spawn(
        "weft-agent",
        &["taskset", "-c", SERVER_CORE, &bin, "proxy", "--root", &root],
    )
    .map_err(err)
}

/// Waits until the server on `port` answers `name` with `status`.
fn wait_answer(host: &Host, port: u16, name: &str, status: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let want = format!("status: {status}");
    loop {
        let out = host
            .run(
                &[
                    "dig",
                    "@127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "+tries=1",
                    "+time=1",
                    name,
                    "A",
                ],
                Duration::from_secs(5),
            )
            .map_err(err)?;
        if out.stdout.contains(&want) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "port {port} never answered {name} with {status}:\n{}",
                out.stdout
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn dnsperf_args(port: u16, queries: &Path, seconds: u32, rate: Option<u32>) -> Vec<String> {
    let mut a: Vec<String> = [
        "taskset",
        "-c",
        LOAD_CORE,
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-d",
        &queries.display().to_string(),
        "-l",
        &seconds.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(r) = rate {
        a.extend(["-Q".into(), r.to_string(), "-v".into()]);
    }
    a
}

fn dnsperf(
    host: &Host,
    port: u16,
    queries: &Path,
    seconds: u32,
    rate: Option<u32>,
) -> Result<dnsperf::Report, String> {
    let args = dnsperf_args(port, queries, seconds, rate);
    let out = host
        .run(&args, Duration::from_secs(u64::from(seconds) + 60))
        .map_err(err)?
        .checked()
        .map_err(err)?;
    dnsperf::parse(&out.stdout)
}

/// A process's resident memory: total, anonymous (heap, stacks) and file-backed (its code).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Mem {
    rss: u64,
    anon: u64,
    file: u64,
}

fn rss_kib(pid: u32) -> Result<Mem, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("pid {pid}: {e}"))?;
    parse_status(&status).ok_or_else(|| format!("pid {pid}: no VmRSS"))
}

fn parse_status(status: &str) -> Option<Mem> {
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Mem {
        rss: kib("VmRSS:")?,
        anon: kib("RssAnon:").unwrap_or_default(),
        file: kib("RssFile:").unwrap_or_default(),
    })
}

struct Rss {
    idle: Mem,
    table: Mem,
    after: Mem,
    dnsmasq: Mem,
}

fn mib(m: Mem) -> String {
    let f = |k: u64| k as f64 / 1024.0;
    format!(
        "{:.1} MiB (anon {:.1}, file {:.1})",
        f(m.rss),
        f(m.anon),
        f(m.file)
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(cfg: &Config, qps: &[Vec<dnsperf::Report>], fixed: &[dnsperf::Report], rss: Rss) {
    let q: Vec<f64> = qps
        .iter()
        .map(|runs| median(runs.iter().map(|r| r.qps).collect()))
        .collect();
    let runs = |i: usize| {
        qps[i]
            .iter()
            .map(|r| format!("{:.0}", r.qps))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pct: Vec<Option<Percentiles>> = fixed
        .iter()
        .map(|r| Percentiles::of(r.latencies.clone()))
        .collect();
    println!(
        "\n### DNS proxy: weft-agent vs dnsmasq, {} names, server on 1 core\n",
        cfg.names
    );
    println!("| measure | weft-agent | dnsmasq | target | |");
    println!("|---|---|---|---|---|");
    println!(
        "| QPS at saturation, median of {} × {} s (runs) | {:.0} ({}) | {:.0} ({}) | ≥ dnsmasq | {} ({:.2}×) |",
        cfg.rounds,
        cfg.seconds,
        q[1],
        runs(1),
        q[0],
        runs(0),
        met(q[1] >= q[0]),
        q[1] / q[0]
    );
    let lat = |p: &Option<Percentiles>| match p {
        Some(p) => format!(
            "{} / {} / {} / {} ms",
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max)
        ),
        None => "no answers".into(),
    };
    let p99_ok = pct[1]
        .as_ref()
        .is_some_and(|p| p.p99 <= Duration::from_millis(1));
    println!(
        "| latency p50 / p90 / p99 / max at {} QPS ({} s) | {} | {} | p99 ≤ 1 ms | {} |",
        cfg.rate,
        cfg.seconds,
        lat(&pct[1]),
        lat(&pct[0]),
        met(p99_ok)
    );
    println!(
        "| dnsperf average ± stddev at {} QPS | {} ± {} ms | {} ± {} ms | | |",
        cfg.rate,
        ms(fixed[1].avg),
        ms(fixed[1].stddev),
        ms(fixed[0].avg),
        ms(fixed[0].stddev)
    );
    println!(
        "| lost / answered / not NOERROR at {} QPS | {} / {} / {} | {} / {} / {} | | |",
        cfg.rate,
        fixed[1].lost,
        fixed[1].completed,
        fixed[1].not_noerror,
        fixed[0].lost,
        fixed[0].completed,
        fixed[0].not_noerror
    );
    println!(
        "| agent RSS idle (no table, no control plane) | {} | | ≤ 10 MiB | {} |",
        mib(rss.idle),
        met(rss.idle.rss <= 10 * 1024)
    );
    println!(
        "| RSS with the {}-name table | {} | {} | ≤ 16 MiB | {} |",
        cfg.names,
        mib(rss.table),
        mib(rss.dnsmasq),
        met(rss.table.rss <= 16 * 1024)
    );
    println!("| agent RSS after the load | {} | | | |", mib(rss.after));
    println!(
        "\nCommands (inside the bench's network namespace): `{}` and `{}`; servers under `taskset -c {SERVER_CORE}`.",
        dnsperf_args(WEFT_PORT, Path::new("queries.txt"), cfg.seconds, None).join(" "),
        dnsperf_args(
            WEFT_PORT,
            Path::new("queries.txt"),
            cfg.seconds,
            Some(cfg.rate)
        )
        .join(" ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_status() {
        let s = "Name:\tweft-agent\nVmRSS:\t   11392 kB\nRssAnon:\t    4096 kB\nRssFile:\t    7296 kB\n";
        assert_eq!(
            parse_status(s),
            Some(Mem {
                rss: 11392,
                anon: 4096,
                file: 7296
            })
        );
        assert_eq!(parse_status("Name: x\n"), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
