//! Exit codes, decided in one place.
//!
//! walpipe's binaries exit with sysexits(3) codes and never above 125: PostgreSQL treats
//! an `archive_command` that exits above 125 (or dies by a signal) as fatal to its archiver
//! process (<https://www.postgresql.org/docs/15/continuous-archiving.html>).

use crate::error::{ErrorKind, WalError};

/// A process exit status as walpipe uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCode {
    /// Everything succeeded.
    Ok = 0,
    /// The stream went on but some records failed (their `error` says why).
    RecordsFailed = 1,
    /// Bad command line (EX_USAGE).
    Usage = 64,
    /// Input that is not a record stream, or malformed records (EX_DATAERR).
    DataErr = 65,
    /// An input file does not exist (EX_NOINPUT).
    NoInput = 66,
    /// A bug (EX_SOFTWARE).
    Software = 70,
    /// An output file cannot be created (EX_CANTCREAT).
    CantCreate = 73,
    /// An I/O error (EX_IOERR).
    IoErr = 74,
    /// Try again later (EX_TEMPFAIL).
    TempFail = 75,
    /// Unusable configuration (EX_CONFIG).
    Config = 78,
}

impl ExitCode {
    /// The numeric status.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status for an error that stopped the whole run.
    #[must_use]
    pub fn for_error(err: &WalError) -> ExitCode {
        match err {
            WalError::Io { action, .. } if action.contains("create") => ExitCode::CantCreate,
            _ => ExitCode::for_kind(err.kind()),
        }
    }

    /// The status for an error of the given kind.
    #[must_use]
    pub fn for_kind(kind: ErrorKind) -> ExitCode {
        match kind {
            ErrorKind::Unknown | ErrorKind::BadRecord | ErrorKind::Corrupt => ExitCode::DataErr,
            ErrorKind::NotFound => ExitCode::NoInput,
            ErrorKind::Io => ExitCode::IoErr,
            ErrorKind::Conflict | ErrorKind::Aborted => ExitCode::RecordsFailed,
            ErrorKind::Temporary => ExitCode::TempFail,
            ErrorKind::Usage => ExitCode::Usage,
            ErrorKind::Config => ExitCode::Config,
            ErrorKind::Internal => ExitCode::Software,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn every_code_stays_below_126() {
        for kind in [
            ErrorKind::Unknown,
            ErrorKind::BadRecord,
            ErrorKind::NotFound,
            ErrorKind::Io,
            ErrorKind::Corrupt,
            ErrorKind::Conflict,
            ErrorKind::Aborted,
            ErrorKind::Temporary,
            ErrorKind::Usage,
            ErrorKind::Config,
            ErrorKind::Internal,
        ] {
            assert!(ExitCode::for_kind(kind).code() < 126, "{kind}");
        }
    }

    #[test]
    fn errors_map_to_sysexits() {
        let missing = WalError::io("cannot open", "x", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(ExitCode::for_error(&missing), ExitCode::NoInput);
        let denied = WalError::io(
            "cannot create",
            "x",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(ExitCode::for_error(&denied).code(), 73);
        assert_eq!(
            ExitCode::for_error(&WalError::Usage("bad".into())).code(),
            64
        );
        assert_eq!(
            ExitCode::for_error(&WalError::Config("overlap".into())).code(),
            78
        );
        assert_eq!(
            ExitCode::for_error(&WalError::Temporary("busy".into())).code(),
            75
        );
        assert_eq!(
            ExitCode::for_error(&WalError::Internal("bug".into())).code(),
            70
        );
        let bad = WalError::BadRecord {
            line: 1,
            reason: "eof".into(),
        };
        assert_eq!(ExitCode::for_error(&bad).code(), 65);
    }
}
