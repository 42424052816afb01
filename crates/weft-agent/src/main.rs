//! `weft-agent`: runs beside each workload. The proxy, SDS, DNS and capture commands are added
//! by the identity, discovery and seed-lab work; today it only reports its version.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("version") | Some("--version") => {
            println!("weft-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: weft-agent version (proxy, istio-iptables: not built yet)");
            ExitCode::from(2)
        }
    }
}
