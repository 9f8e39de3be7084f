//! `wal-scan file PATH...`: records for files named on the command line.
//!
//! PostgreSQL's archive_command hands over one segment (`%p`) at a time; this turns it into
//! the same record an incoming-queue scan would have produced, so the rest of the pipeline
//! does not care where a WAL came from. A file that does not exist is a failure (exit 1):
//! PostgreSQL must retry it.

use std::io::Write;
use std::path::PathBuf;

use wal_core::WalError;

use crate::entry::{Entry, Sniff, examine, not_found};
use crate::output::Records;

/// Writes one record per path, in the order given.
pub fn scan<W: Write>(paths: &[PathBuf], out: &mut Records<W>) -> Result<(), WalError> {
    for path in paths {
        // `..` or `/` have no basename: never a WAL name, `examine` says so.
        let name = path.file_name().unwrap_or(path.as_os_str());
        let entry = match examine(path, name, Sniff::Content) {
            Entry::Vanished(cause) => {
                Entry::Failed(not_found(&name.to_string_lossy(), path, cause))
            }
            entry => entry,
        };
        out.emit(entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_missing_file_fails_its_record() {
        let mut output = Vec::new();
        let mut out = Records::new(&mut output);
        scan(
            &[Path::new("/nonexistent/000000010000000000000001").to_path_buf()],
            &mut out,
        )
        .unwrap();
        let summary = out.finish().unwrap();
        assert_eq!((summary.records, summary.failed), (1, 1));
        let text = String::from_utf8(output).unwrap();
        assert!(text.contains(r#""kind":"not_found""#), "{text}");
    }
}
