//! Helpers for the unit tests of the kinds: load one YAML document and look at its outcome.

use crate::load::{Outcome, load_str};
use crate::validate::FieldError;

/// The outcome of the single resource in `yaml`.
pub fn outcome(yaml: &str) -> Outcome {
    let mut out = load_str("test.yaml", yaml);
    assert_eq!(out.len(), 1, "expected one resource");
    out.remove(0).outcome
}

/// Its errors (`path: message`); panics if it was valid.
pub fn errors(yaml: &str) -> Vec<String> {
    match outcome(yaml) {
        Outcome::Invalid { errors, .. } => errors.iter().map(FieldError::to_string).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

/// Its warnings; panics if it was invalid.
pub fn warnings(yaml: &str) -> Vec<String> {
    match outcome(yaml) {
        Outcome::Valid { warnings, .. } => warnings.iter().map(FieldError::to_string).collect(),
        other => panic!("expected valid, got {other:?}"),
    }
}
