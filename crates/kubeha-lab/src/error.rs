//! One error type for the lab, every variant carrying what was being done.

use std::fmt::Display;

/// What went wrong, with the step that was running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The [`crate::LabConfig`] (or a stored lab) cannot be used as given.
    #[error("invalid lab configuration: {0}")]
    Config(String),
    /// The Docker Engine refused or failed a request.
    #[error("{context}: {cause}")]
    Docker {
        context: String,
        cause: bollard::errors::Error,
    },
    /// A local file or process could not be used.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    /// A command ran but failed (its exit status and the end of its output).
    #[error("{context}: {detail}")]
    Failed { context: String, detail: String },
    /// Something did not happen in time.
    #[error("timed out after {secs}s: {context}")]
    Timeout { context: String, secs: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the step being run to low-level errors.
pub(crate) trait Context<T> {
    fn context<C: Display>(self, context: C) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context<C: Display>(self, context: C) -> Result<T> {
        self.map_err(|cause| Error::Io {
            context: context.to_string(),
            cause,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, bollard::errors::Error> {
    fn context<C: Display>(self, context: C) -> Result<T> {
        self.map_err(|cause| Error::Docker {
            context: context.to_string(),
            cause,
        })
    }
}
