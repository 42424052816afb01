//! Sanity check against Istio's own samples (bookinfo, helloworld, httpbin, multicluster...):
//! every networking resource in them is valid Istio and must load as valid here.

use crate::load::{Outcome, load_path};

const KINDS: &[&str] = &[
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "Sidecar",
];

#[test]
fn istio_samples_are_valid() {
    let dir = &std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/corpus/istio-samples");
    if !dir.exists() {
        eprintln!("skipping: {} not found", dir.display());
        return;
    }
    let entries = load_path(dir).expect("samples load");
    let ours: Vec<_> = entries
        .iter()
        .filter(|e| KINDS.contains(&e.kind.as_str()))
        .collect();
    assert!(
        ours.len() >= 20,
        "expected many networking resources, got {}",
        ours.len()
    );
    let bad: Vec<String> = ours
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Invalid { .. }))
        .map(|e| e.to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "invalid sample resources:\n{}",
        bad.join("\n")
    );
}
