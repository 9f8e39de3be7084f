//! What an archive holds, as entries: the one walk behind `list` (records, for
//! `wal-scan archive`, retention and checks) and `rebuild-xlogdb` (a new catalogue).
//!
//! A local archive is walked as Barman's rebuild walks it; compression comes from magic
//! bytes, and a file that starts an OpenPGP message is `gpg`, its compression hidden by
//! the encryption (as Barman's `get_wal_file_info` records it). A cloud archive is one
//! listing of `…/<server>/wals/`; compression and encryption come from the key's
//! extensions, as barman-cloud names them.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use wal_core::compression::{Compression, MAGIC_MAX_LENGTH};
use wal_core::error::{IoContext, Result};
use wal_core::layout::list_archive;
use wal_core::openpgp;
use wal_core::record::Encryption;
use wal_core::stage::{RecordWriter, Summary};
use wal_core::{WalName, WalRecord};

use crate::STAGE;
use crate::cli::Target;
use crate::cloud::Bucket;
use wal_core::progress::Progress;

/// One archived file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its WAL name.
    pub name: WalName,
    /// Where it is: a path, or the object's URL.
    pub location: PathBuf,
    /// Whether `location` is a local file.
    pub local: bool,
    /// Its size as stored.
    pub size: u64,
    /// Its mtime (last-modified time for objects), seconds since the epoch.
    pub time: f64,
    /// A cloud object's entity tag.
    pub etag: Option<String>,
    /// How it is compressed (unknown when encrypted locally).
    pub compression: Option<Compression>,
    /// Whether it is encrypted.
    pub encryption: Option<Encryption>,
}

/// Every archived file in name order; things in the archive that are not WAL are
/// reported on stderr and skipped. `progress`, if any, counts the local files read.
pub fn entries(target: &Target, progress: Option<&Progress>) -> Result<Vec<Entry>> {
    match target {
        Target::Local(local) => {
            let listing = list_archive(&local.layout.wals)?;
            warn_unexpected(listing.unexpected.iter().map(|p| p.display().to_string()));
            listing
                .files
                .into_iter()
                .map(|file| {
                    if let Some(progress) = progress {
                        progress.tick(file.size);
                    }
                    let (compression, encryption) =
                        identify(&file.path).context("cannot read", &file.path)?;
                    Ok(Entry {
                        name: file.name,
                        local: true,
                        location: file.path,
                        size: file.size,
                        time: file.time,
                        etag: None,
                        compression,
                        encryption,
                    })
                })
                .collect()
        }
        Target::Cloud(cloud) => {
            let bucket = Bucket::open(cloud)?;
            let what = bucket.url(&cloud.location.wals_dir(&cloud.server));
            // A listing of a large archive takes many pages: the deadline is per page
            // set, generous, but still bounded.
            let (objects, others) = bucket.block_on(bucket.bounded(&what, bucket.list_wals()))?;
            warn_unexpected(others.iter().map(|key| bucket.url(key)));
            Ok(objects
                .into_iter()
                .map(|object| Entry {
                    location: PathBuf::from(bucket.url(&object.key)),
                    local: false,
                    name: object.info.name,
                    size: object.size,
                    time: object.time,
                    etag: object.etag,
                    compression: object.info.compression,
                    encryption: object.info.encryption,
                })
                .collect())
        }
    }
}

fn warn_unexpected(what: impl Iterator<Item = String>) {
    for item in what {
        wal_core::log::warn!(
            "{STAGE}: unexpected file in the archive, not a WAL file: {}",
            wal_core::log::one_line(&item)
        );
    }
}

/// `list`: one record per entry.
pub fn run(target: &Target, output: impl Write) -> Result<Summary> {
    let mut writer = RecordWriter::new(STAGE, output);
    for entry in entries(target, None)? {
        let mut record = WalRecord::new(entry.name.as_str());
        record.kind = Some(entry.name.kind());
        record.size = entry.size;
        record.time = entry.time;
        record.compression = entry.compression;
        record.encryption = entry.encryption;
        record.etag = entry.etag;
        if entry.local {
            record.path = Some(entry.location.clone());
        }
        record.stored_at = Some(entry.location);
        writer.write(&record, false)?;
    }
    writer.flush()?;
    Ok(writer.summary())
}

/// How a stored file is stored, by its first bytes (one read): encrypted, else compressed
/// or not.
pub(crate) fn identify(path: &Path) -> io::Result<(Option<Compression>, Option<Encryption>)> {
    let length = MAGIC_MAX_LENGTH.max(openpgp::HEAD_LENGTH);
    let mut head = Vec::with_capacity(length);
    wal_core::durable::open_regular(path)?
        .take(length as u64)
        .read_to_end(&mut head)?;
    if openpgp::identify(&head).is_some() {
        return Ok((None, Some(Encryption::Gpg)));
    }
    Ok((Compression::identify(&head), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_files_are_recorded_as_gpg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000010000000000000001");
        // `gpg --encrypt` output starts with an old-format PKESK packet.
        std::fs::write(&path, [0x85, 0x01, 0x8c, 0x03, 0x06, 0x15, 0x11]).unwrap();
        assert_eq!(identify(&path).unwrap(), (None, Some(Encryption::Gpg)));
        std::fs::write(&path, [0x28, 0xb5, 0x2f, 0xfd, 0x00]).unwrap();
        assert_eq!(identify(&path).unwrap(), (Some(Compression::Zstd), None));
        std::fs::write(&path, [0x10, 0xd1, 0x02, 0x00]).unwrap();
        assert_eq!(identify(&path).unwrap(), (None, None));
    }
}
