//! `wal-store rebuild-xlogdb`: a new xlog.db from what the archive holds.
//!
//! Barman's rebuild walks the archive in name order and records segments, backup labels
//! and history files (spec §2.3). We also record `.partial` files, which Barman's
//! archive-wal catalogues but its rebuild forgets, so a rebuilt catalogue equals the one
//! archiving wrote. Compression comes from magic bytes.

use wal_core::WalKind;
use wal_core::compression::Compression;
use wal_core::error::{IoContext, Result};
use wal_core::layout::list_archive;
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
        let compression =
            Compression::identify_file(&file.path).context("cannot read", &file.path)?;
        lines.push(XlogLine {
            name: file.name.to_string(),
            size: file.size,
            time: file.time,
            compression: compression.map(|c| c.name().to_string()),
            encryption: None,
        });
    }
    target.xlogdb.replace(&lines)?;
    eprintln!(
        "Done rebuilding xlogdb for server {} (history: {}, backup_labels: {}, wal_file: {}, partial: {})",
        target.layout.server, counts[0], counts[1], counts[2], counts[3]
    );
    Ok(Summary::default())
}
