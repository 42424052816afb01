//! Corpus tests: the user's seed manifests (exact outcome of each, including the precise errors
//! of the ones that are not valid Istio) and Istio's own samples (all valid).
//!
//! `tests/seeds/*.yaml` are the seed manifests extracted verbatim (each names its seed file,
//! lines and section); `tests/seeds/reindented/` holds seed 001's manifests with the indentation
//! its blog export lost put back. `tests/seeds/expected.txt` pins one line per resource.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p weft-model --test corpus` and review the diff.

use std::path::{Path, PathBuf};
use weft_model::{Outcome, load_path};

fn manifest_dir() -> PathBuf {
    // At run time: a test binary built in another checkout must not read that checkout's files.
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
}

/// Renders every entry under `dir` with paths relative to `base`.
fn render(dir: &Path, base: &Path) -> String {
    let mut out = String::new();
    for entry in load_path(dir).expect("load") {
        let line = entry.to_string();
        let prefix = format!("{}/", base.display());
        out.push_str(&line.replacen(&prefix, "", 1));
        out.push('\n');
    }
    out
}

#[test]
fn seed_manifests_have_the_pinned_outcome() {
    let base = manifest_dir().join("tests");
    let actual = render(&base.join("seeds"), &base);
    let golden = base.join("seeds/expected.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    if actual != expected {
        let diff: Vec<String> = actual
            .lines()
            .zip(expected.lines().chain(std::iter::repeat("<missing>")))
            .filter(|(a, e)| a != e)
            .map(|(a, e)| format!("  got:  {a}\n  want: {e}"))
            .collect();
        panic!(
            "seed outcomes changed ({} vs {} lines):\n{}",
            actual.lines().count(),
            expected.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn every_seed_file_is_covered() {
    let seeds = manifest_dir().join("tests/seeds");
    let expected = std::fs::read_to_string(seeds.join("expected.txt")).unwrap_or_default();
    for f in weft_model::load::config_files(&seeds).unwrap() {
        let rel = f.strip_prefix(manifest_dir().join("tests")).unwrap();
        assert!(
            expected.contains(&format!("{} doc", rel.display())),
            "{} has no pinned outcome",
            rel.display()
        );
    }
}

#[test]
fn istio_samples_all_load_and_validate() {
    let dir = manifest_dir().join("../../../shared/corpus/istio-samples");
    let entries = load_path(&dir).expect("the Istio samples corpus must be readable");
    assert!(
        entries.len() > 50,
        "expected the whole corpus, got {}",
        entries.len()
    );
    let mut valid = 0;
    let mut problems = Vec::new();
    for e in &entries {
        match &e.outcome {
            Outcome::Valid { .. } => valid += 1,
            Outcome::Skipped { note } => {
                assert!(note.contains("is not a mesh kind"), "{e}");
                assert!(!e.kind.is_empty(), "{e}");
            }
            Outcome::Invalid { .. } => problems.push(e.to_string()),
        }
    }
    assert!(
        problems.is_empty(),
        "invalid sample resources:\n{}",
        problems.join("\n")
    );
    assert!(valid > 40, "only {valid} mesh resources validated");
}
