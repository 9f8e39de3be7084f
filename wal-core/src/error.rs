//! The one error type of walpipe.
//!
//! Errors are typed here so that every binary classifies them the same way: into an
//! [`ErrorKind`] for the `error` field of a record, and into an exit code at the process
//! boundary ([`crate::exit`]). Messages name their subject (a file, a WAL name) so one
//! stderr line is enough to act on.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What went wrong, as written in a record's `error.kind` (snake case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A queue entry that is not a WAL file (Barman moves these to `errors/` as `.unknown`).
    Unknown,
    /// An input line that is not a record.
    BadRecord,
    /// A file the record points at does not exist.
    NotFound,
    /// Reading or writing a file failed.
    Io,
    /// A file's content is not what its record says (bad magic, truncated stream).
    Corrupt,
    /// The same WAL name is already stored with different content.
    Conflict,
    /// A hook script asked to stop archiving.
    Aborted,
    /// A transient failure: retrying later may succeed.
    Temporary,
    /// Bad flags: a value that is not valid on its own (a number out of range, an unknown
    /// algorithm, flags that exclude each other).
    Usage,
    /// Settings that are each well-formed but name places walpipe cannot use: directories
    /// that overlap, a server name that is not a plain name, an archive or endpoint URL
    /// that does not parse, an archive that belongs to another PostgreSQL system.
    Config,
    /// A bug: something walpipe believed impossible happened.
    Internal,
}

impl ErrorKind {
    /// The wire name (`not_found`, `bad_record`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unknown => "unknown",
            ErrorKind::BadRecord => "bad_record",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Io => "io",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Temporary => "temporary",
            ErrorKind::Usage => "usage",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure walpipe reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A system call on `path` failed; `action` says what we were doing ("cannot open").
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing, phrased to precede the path: "cannot open", "cannot fsync".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: io::Error,
    },
    /// A name that is not a WAL file name (`docs/barman-formats.md#wal-file-names`).
    #[error("{name}: not a WAL file name")]
    BadWalName {
        /// The offending name.
        name: String,
    },
    /// A line of the record stream could not be parsed.
    #[error("line {line}: not a record: {reason}")]
    BadRecord {
        /// 1-based line number in the stage's input.
        line: u64,
        /// The parser's explanation.
        reason: String,
    },
    /// A line of xlog.db could not be parsed.
    #[error("{}: line {line}: cannot parse line: {text:?}", path.display())]
    BadXlogLine {
        /// The xlog.db file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The line as found.
        text: String,
    },
    /// A file's content does not match what it claims to be.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The destination holds a different file under the same name.
    #[error("{name}: already stored with different content at {}", existing.display())]
    Conflict {
        /// The WAL name.
        name: String,
        /// The stored copy that differs.
        existing: PathBuf,
    },
    /// A record lacks a field this stage needs.
    #[error("{name}: record has no `{field}`")]
    MissingField {
        /// The WAL name (may be empty for malformed records).
        name: String,
        /// The missing field.
        field: &'static str,
    },
    /// Bad command-line flags or values (exit 64).
    #[error("{0}")]
    Usage(String),
    /// A configuration walpipe cannot work with (exit 78): see [`ErrorKind::Config`].
    #[error("{0}")]
    Config(String),
    /// Failure that may go away on retry (lock busy, store unreachable).
    #[error("{0}")]
    Temporary(String),
    /// Something impossible happened.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WalError {
    /// Wraps an `io::Error` with the action and the path it concerns.
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        WalError::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The kind written into a failed record's `error.kind`.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            WalError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            WalError::Io { .. } => ErrorKind::Io,
            WalError::BadWalName { .. } => ErrorKind::Unknown,
            WalError::BadRecord { .. } | WalError::MissingField { .. } => ErrorKind::BadRecord,
            WalError::BadXlogLine { .. } | WalError::Corrupt { .. } => ErrorKind::Corrupt,
            WalError::Conflict { .. } => ErrorKind::Conflict,
            WalError::Usage(_) => ErrorKind::Usage,
            WalError::Config(_) => ErrorKind::Config,
            WalError::Temporary(_) => ErrorKind::Temporary,
            WalError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Shorthand used across walpipe.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// Adds the action and path to an `io::Result`, turning it into a [`WalError`].
pub trait IoContext<T> {
    /// `fs::File::open(p).context("cannot open", p)`.
    fn context(self, action: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| WalError::io(action, path, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_file_and_the_cause() {
        let err = WalError::io(
            "cannot open",
            "/q/000000010000000A00000042",
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let text = err.to_string();
        assert!(
            text.starts_with("cannot open /q/000000010000000A00000042: "),
            "{text}"
        );
    }

    #[test]
    fn kinds_have_snake_case_wire_names() {
        assert_eq!(
            serde_json::to_string(&ErrorKind::BadRecord).unwrap(),
            "\"bad_record\""
        );
        assert_eq!(ErrorKind::NotFound.to_string(), "not_found");
    }
}
