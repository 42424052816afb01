//! `weft-agent`: runs beside each workload (pilot-agent's part).

mod bootstrap;
mod certs;
mod config;
mod envfile;
mod envoy;
mod sds;
mod status;
mod upstream;
mod xds_proxy;

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("version") | Some("--version") => {
            println!("weft-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: weft-agent version");
            ExitCode::from(2)
        }
    }
}
