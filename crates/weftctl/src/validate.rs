//! `weftctl validate -f PATH...`: one line per resource, exit 1 if any is invalid.

use std::path::PathBuf;
use std::process::ExitCode;
use weft_model::Outcome;

#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to validate (repeatable).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    let (mut valid, mut invalid, mut skipped) = (0, 0, 0);
    for path in &args.files {
        for entry in weft_model::load_path(path)? {
            match entry.outcome {
                Outcome::Valid { .. } => valid += 1,
                Outcome::Invalid { .. } => invalid += 1,
                Outcome::Skipped { .. } => skipped += 1,
            }
            println!("{entry}");
        }
    }
    eprintln!("{valid} valid, {invalid} invalid, {skipped} skipped");
    Ok(if invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
