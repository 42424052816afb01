//! `weftd`: the control plane. For now it loads and checks a config directory; the servers
//! (CA, xDS, admin API) are added by the identity and discovery work.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "weftd", version, about = "Weft control plane")]
struct Args {
    /// Directory of Istio/Kubernetes YAML or JSON files.
    #[arg(long = "config-dir")]
    config_dir: PathBuf,
    /// Load and validate the configuration, print every problem, and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let entries = match weft_model::load_path(&args.config_dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("weftd: cannot read config: {e}");
            return ExitCode::from(2);
        }
    };
    let invalid: Vec<_> = entries.iter().filter(|e| e.is_invalid()).collect();
    for e in &invalid {
        eprintln!("weftd: rejected {e}");
    }
    let served = entries
        .iter()
        .filter(|e| matches!(e.outcome, weft_model::Outcome::Valid { .. }))
        .count();
    println!(
        "weftd: {served} resources accepted, {} rejected from {}",
        invalid.len(),
        args.config_dir.display()
    );
    if args.check {
        return if invalid.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    eprintln!("weftd: serving (CA, xDS, admin API) is not built yet; run with --check");
    ExitCode::from(2)
}
