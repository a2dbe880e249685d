//! The error of the test bed itself (a tool missing, a mount failing): not a violation.

use std::fmt;

/// Something went wrong with the test bed, not with the code under test: a command failed
/// (mkfs, losetup, mount, the shutdown), a workload could not be set up. A [`run`](crate::run)
/// that returns it has proven nothing either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    msg: String,
}

impl Error {
    /// An error with this description.
    pub fn new(msg: impl Into<String>) -> Self {
        Error { msg: msg.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// The result of a test-bed operation.
pub type Result<T> = std::result::Result<T, Error>;
