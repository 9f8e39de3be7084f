//! `wal-store rebuild-xlogdb`: a new xlog.db from what the archive holds.
//!
//! Barman's rebuild walks the archive in name order and records segments, backup labels
//! and history files (`docs/barman-formats.md#xlogdb`). We also record `.partial` files,
//! which Barman's
//! archive-wal catalogues but its rebuild forgets, so a rebuilt catalogue equals the one
//! archiving wrote. What each file is comes from [`crate::list::entries`]; a cloud
//! archive's catalogue is the local `--xlogdb`, which must then be given.

use wal_core::WalError;
use wal_core::WalKind;
use wal_core::error::Result;
use wal_core::stage::Summary;
use wal_core::xlogdb::XlogLine;

use crate::cli::Target;
use crate::list::entries;

/// Rewrites xlog.db from the archive listing.
pub fn run(target: &Target) -> Result<Summary> {
    let Some(xlogdb) = target.xlogdb() else {
        return Err(WalError::Usage(
            "rebuild-xlogdb: a cloud archive's catalogue is local: give --xlogdb PATH".into(),
        ));
    };
    // A local archive's files are each opened for their magic bytes: on a large archive
    // that takes long enough for a DBA at a terminal to want to see it move.
    let progress = matches!(target, Target::Local(_))
        .then(|| wal_core::progress::Progress::on_terminal(crate::STAGE, "files read"));
    let files = entries(target, progress.as_ref())?;
    drop(progress);
    let mut counts = [0u64; 4];
    let mut lines = Vec::with_capacity(files.len());
    for file in &files {
        counts[match file.name.kind() {
            WalKind::History => 0,
            WalKind::Backup => 1,
            WalKind::Segment => 2,
            WalKind::Partial => 3,
        }] += 1;
        lines.push(XlogLine {
            name: file.name.to_string(),
            size: file.size,
            time: file.time,
            compression: file.compression.map(|c| c.name().to_string()),
            encryption: file.encryption.map(|e| e.name().to_string()),
        });
    }
    xlogdb.replace(&lines)?;
    wal_core::log::info!(
        "Done rebuilding xlogdb for server {} (history: {}, backup_labels: {}, wal_file: {}, partial: {})",
        target.server(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
    Ok(Summary::default())
}
