//! `weft-bench`: Weft's benchmarks. Each one starts the release `weftd` built beside it, measures a
//! peer on the same machine in the same run (e.g. `openssl speed`), and prints Markdown rows with
//! the ratios, because absolute numbers from noisy shared machines mean little on their own.

mod baseline;
mod ca;
mod dns;
mod join;
mod latency;
mod stats;
mod weftd;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weft-bench",
    version,
    about = "Weft benchmarks, reported as ratios against a peer measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CA signing: CreateCertificate throughput (closed loop) or latency at a fixed rate (open loop).
    Ca(CaArgs),
    /// VM join time: agent start → first successful request from webapp, and its parts, with a
    /// fast probe and with Istio's default probe period (release binaries, netns lab, as root).
    Join(JoinArgs),
    /// Added latency of the mesh for HTTP with mTLS: direct vs two Envoys configured by weftd vs
    /// two Envoys with a hand-written minimal mTLS config (release binaries, netns lab, as root).
    Latency(LatencyArgs),
    /// DNS proxy: weft-agent's vs dnsmasq on the same names, QPS with each server on one core
    /// and latency percentiles at a fixed rate, with dnsperf; and the agent's RSS (netns, root).
    Dns(DnsArgs),
    /// The latency benchmark's application: answers every request with `--size` bytes.
    #[command(hide = true)]
    HttpServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 1024)]
        size: usize,
    },
}

#[derive(clap::Args)]
struct LatencyArgs {
    /// Requests per second (open loop, spread over the connections).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Keep-alive HTTP/1.1 connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: u64,
    /// Seconds per path per round.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Rounds (each runs direct, weftd and static once, interleaved).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    rounds: u64,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
}

#[derive(clap::Args)]
struct DnsArgs {
    /// Names in the table (and in dnsmasq's hosts file, and queried).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    names: u64,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    seconds: u32,
    /// Saturation runs per server (alternating); the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: u64,
    /// The fixed rate of the latency run, queries per second (dnsperf -Q).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// The weft-agent binary (default: the one beside weft-bench).
    #[arg(long)]
    agent: Option<PathBuf>,
}

#[derive(clap::Args)]
struct JoinArgs {
    /// Joins measured per probe setting.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    runs: u64,
    /// The WorkloadGroup probe's periodSeconds under test.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=60))]
    period: u32,
    /// The baseline's periodSeconds (Istio's default: 10).
    #[arg(long = "baseline-period", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    baseline_period: u32,
}

#[derive(clap::Args)]
struct CaArgs {
    /// Concurrent gRPC clients, each on its own connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    clients: u64,
    /// Certificates to request in the timed phase.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Key algorithm of weftd's root CA (workload keys are always P-256).
    #[arg(long = "key-alg", value_enum, default_value_t = KeyAlg::EcdsaP256)]
    key_alg: KeyAlg,
    /// Open loop: send at this fixed rate (e.g. `500` or `500/s`), latency measured from each
    /// request's scheduled time. Without it, closed loop: every client sends as fast as it can.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Talk to weftd's TLS port (the default).
    #[arg(long, conflicts_with = "plaintext")]
    tls: bool,
    /// Talk to weftd's plaintext port.
    #[arg(long)]
    plaintext: bool,
    /// How clients authenticate: a bearer token per request, or a client certificate (obtained
    /// with a token first; needs TLS).
    #[arg(long, value_enum, default_value_t = Auth::Token)]
    auth: Auth,
    /// The weftd binary (default: the one beside weft-bench).
    #[arg(long)]
    weftd: Option<PathBuf>,
    /// Seconds each baseline measurement runs (`openssl speed -seconds`, and each of weft-identity's
    /// CA operations in-process).
    #[arg(long = "baseline-seconds", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=60))]
    baseline_seconds: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlg {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "rsa-2048")]
    Rsa2048,
}

#[derive(Clone, Copy, ValueEnum)]
enum Auth {
    Token,
    Cert,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive rate (e.g. 500 or 500/s)")),
    }
}

impl CaArgs {
    fn config(&self) -> ca::Config {
        ca::Config {
            clients: self.clients as usize,
            requests: self.requests as usize,
            ca_key: match self.key_alg {
                KeyAlg::EcdsaP256 => weft_identity::KeyAlgorithm::EcdsaP256,
                KeyAlg::Rsa2048 => weft_identity::KeyAlgorithm::Rsa2048,
            },
            rate: self.rate,
            tls: !self.plaintext,
            auth: match self.auth {
                Auth::Token => ca::Auth::Token,
                Auth::Cert => ca::Auth::Cert,
            },
            weftd: self.weftd.clone(),
            baseline_seconds: self.baseline_seconds,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Ca(args) => ca::run(&args.config()).await,
        Command::HttpServer { listen, size } => latency::serve(listen, size),
        Command::Latency(args) => {
            let cfg = latency::Config {
                rate: args.rate,
                connections: args.connections as usize,
                seconds: args.seconds,
                rounds: args.rounds as usize,
                size: args.size,
            };
            tokio::task::spawn_blocking(move || latency::run(&cfg))
                .await
                .unwrap_or_else(|e| Err(format!("latency benchmark panicked: {e}")))
        }
        Command::Dns(args) => {
            let cfg = dns::Config {
                names: args.names as usize,
                seconds: args.seconds,
                rate: args.rate,
                rounds: args.rounds as usize,
                agent: args.agent,
            };
            tokio::task::spawn_blocking(move || dns::run(&cfg))
                .await
                .unwrap_or_else(|e| Err(format!("dns benchmark panicked: {e}")))
        }
        Command::Join(args) => {
            let cfg = join::Config {
                runs: args.runs as usize,
                period: args.period,
                baseline_period: args.baseline_period,
            };
            tokio::task::spawn_blocking(move || join::run(&cfg))
                .await
                .unwrap_or_else(|e| Err(format!("join benchmark panicked: {e}")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500"), Ok(500.0));
        assert_eq!(parse_rate("500/s"), Ok(500.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn transport_flags_conflict() {
        assert!(Cli::try_parse_from(["weft-bench", "ca", "--tls", "--plaintext"]).is_err());
        let Command::Ca(a) = Cli::try_parse_from(["weft-bench", "ca"]).unwrap().command else {
            panic!("ca")
        };
        assert!(a.config().tls);
    }
}
