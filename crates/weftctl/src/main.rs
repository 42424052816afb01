//! `weftctl`: validate mesh config and generate VM workload artifacts, speaking istioctl's flags.

mod validate;
mod workload_group;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weftctl",
    version,
    about = "Weft command-line tool (istioctl-compatible where it overlaps)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate Istio/Kubernetes YAML or JSON files (or directories of them).
    Validate(validate::Args),
    /// Experimental commands, as `istioctl x`.
    #[command(name = "x", alias = "experimental")]
    Experimental {
        #[command(subcommand)]
        command: Experimental,
    },
}

#[derive(Subcommand)]
enum Experimental {
    /// Commands to assist in configuring and deploying workloads running on VMs and other non-Kubernetes environments
    Workload {
        #[command(subcommand)]
        command: Workload,
    },
}

#[derive(Subcommand)]
enum Workload {
    /// Commands dealing with WorkloadGroup resources
    Group {
        #[command(subcommand)]
        command: Group,
    },
}

#[derive(Subcommand)]
enum Group {
    /// Creates a WorkloadGroup resource that provides a template for associated WorkloadEntries
    Create(workload_group::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Experimental {
            command:
                Experimental::Workload {
                    command:
                        Workload::Group {
                            command: Group::Create(args),
                        },
                },
        } => workload_group::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}
