//! `wal-store get`: one archived file, copied out as stored.
//!
//! The restore path (`scripts/restore-wal`) decrypts and decompresses in later stages;
//! this stage only finds the file and copies it, never leaving a partial file under the
//! target name. Compression is identified by magic bytes (a local archive stores files
//! without extensions), which costs one small read instead of reading xlog.db per call.

use std::io::Write;
use std::path::Path;

use wal_core::compression::Compression;
use wal_core::durable;
use wal_core::error::{IoContext, Result};
use wal_core::layout::mtime_seconds;
use wal_core::record::Outcome;
use wal_core::stage::{RecordWriter, Summary};
use wal_core::{WalError, WalName, WalRecord};

use crate::STAGE;
use crate::cli::Target;

/// Copies `name` out of the archive to `to` and prints its record.
pub fn run(target: &Target, name: &str, to: &Path, output: impl Write) -> Result<Summary> {
    let wal = WalName::parse(name)?;
    let stored = target.layout.archived_path(&wal);
    let meta = match std::fs::metadata(&stored) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => {
            return Err(WalError::Corrupt {
                path: stored,
                message: "not a regular file".into(),
            });
        }
        Err(e) => return Err(WalError::io("not in the archive:", &stored, e)),
    };
    let compression = Compression::identify_file(&stored).context("cannot read", &stored)?;
    let size = durable::copy_durably(&stored, to)?;
    let mut record = WalRecord::new(wal.as_str());
    record.kind = Some(wal.kind());
    record.path = Some(to.to_path_buf());
    record.size = size;
    record.time = mtime_seconds(&meta);
    record.compression = compression;
    record.outcome = Some(Outcome::Fetched);
    record.stored_at = Some(stored);
    let mut writer = RecordWriter::new(STAGE, output);
    writer.write(&record, false)?;
    writer.flush()?;
    Ok(writer.summary())
}
