//! `wal-store rebuild-xlogdb`: a new xlog.db from what the archive holds.
//!
//! Barman's rebuild walks the archive in name order and records segments, backup labels
//! and history files (spec §2.3). We also record `.partial` files, which Barman's
//! archive-wal catalogues but its rebuild forgets, so a rebuilt catalogue equals the one
//! archiving wrote. Compression comes from magic bytes; a file that starts an OpenPGP
//! message is recorded as `gpg`, its compression unknown (hidden by the encryption), as
//! Barman's `get_wal_file_info` records it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use wal_core::WalKind;
use wal_core::compression::{Compression, MAGIC_MAX_LENGTH};
use wal_core::error::{IoContext, Result};
use wal_core::layout::list_archive;
use wal_core::openpgp;
use wal_core::record::Encryption;
use wal_core::stage::Summary;
use wal_core::xlogdb::XlogLine;

use crate::cli::Target;

/// Rewrites xlog.db from the archive listing.
pub fn run(target: &Target) -> Result<Summary> {
    let listing = list_archive(&target.layout.wals)?;
    for path in &listing.unexpected {
        eprintln!(
            "wal-store: unexpected file in the archive, not catalogued: {}",
            path.display()
        );
    }
    let mut counts = [0u64; 4];
    let mut lines = Vec::with_capacity(listing.files.len());
    for file in &listing.files {
        counts[match file.name.kind() {
            WalKind::History => 0,
            WalKind::Backup => 1,
            WalKind::Segment => 2,
            WalKind::Partial => 3,
        }] += 1;
        let (compression, encryption) = identify(&file.path).context("cannot read", &file.path)?;
        lines.push(XlogLine {
            name: file.name.to_string(),
            size: file.size,
            time: file.time,
            compression: compression.map(|c| c.name().to_string()),
            encryption: encryption.map(|e| e.name().to_string()),
        });
    }
    target.xlogdb.replace(&lines)?;
    eprintln!(
        "Done rebuilding xlogdb for server {} (history: {}, backup_labels: {}, wal_file: {}, partial: {})",
        target.layout.server, counts[0], counts[1], counts[2], counts[3]
    );
    Ok(Summary::default())
}

/// How a stored file is stored, by its first bytes: encrypted, else compressed or not.
fn identify(path: &Path) -> io::Result<(Option<Compression>, Option<Encryption>)> {
    let length = MAGIC_MAX_LENGTH.max(openpgp::HEAD_LENGTH);
    let mut head = Vec::with_capacity(length);
    File::open(path)?
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
