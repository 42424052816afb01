//! The one error type of the kit: a readable message.

use std::fmt;

/// An error from the scenario kit. It carries a human-readable message that already names the
/// command, namespace or address involved, so tests can simply `.expect("...")` it.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

/// Result alias used throughout the kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Creates an error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Wraps an I/O error with context ("what we were doing").
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(format!("{context}: {err}"))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

// Debug prints the plain message so `unwrap()`/`expect()` failures stay readable.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
