//! Validation: collects every problem in a resource as a field path plus Istio's message.

pub mod common;

use crate::meta::ObjectMeta;
use std::fmt;

/// One problem, at a field path such as `spec.http[0].route[1].weight`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Errors and warnings found in one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<FieldError>,
}

impl Report {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records `Err(message)` from a check at `path`.
    pub fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.error(path, message);
        }
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What a validator may need to know besides the spec itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub meta: &'a ObjectMeta,
    /// Effective namespace (`default` when the document names none).
    pub namespace: &'a str,
}

/// Implemented by every spec type. Paths passed to `report` start with `spec.`
/// (or the top-level field name for kinds without a spec).
pub trait Validate {
    fn validate(&self, ctx: &Context<'_>, report: &mut Report);
}
