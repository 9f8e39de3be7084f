//! `wal-store settled --marks DIR PATH`: did an earlier call store PostgreSQL's `%p`
//! ahead of this one (archive-command --look-ahead)?
//!
//! The answer is yes only when everything still holds ([`wal_core::lookahead`]): PATH's
//! mark names this very file (size, modification time, device and inode: PostgreSQL
//! recycles segment files under new names, never the other way round, and a file it
//! rewrote would have another time), the stored copy is where the mark says (the place
//! this archive gives the name: a local file, or an object of the name with that URL),
//! and the catalogue has its line (when the archive has a catalogue). Anything else, an
//! unreadable mark or store included, is no: the call archives the file as any call
//! would, and finds a duplicate at worst. A yes is exit 0, a no exit 1, both silent.
//! Either way PATH's mark and those of the WAL files before it go: PostgreSQL archives
//! in name order, so it has moved past them.

use std::path::Path;

use wal_core::lookahead::{FileIdentity, Marks};
use wal_core::stage::Verdict;
use wal_core::{ExitCode, WalName};

use crate::cli::Target;
use crate::cloud::Bucket;

/// Answers for `path`, and forgets the marks PostgreSQL has moved past.
pub fn run(target: &Target, marks: &Path, path: &Path) -> Verdict {
    let marks = Marks::at(marks.to_path_buf());
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| WalName::parse_file_name(name).ok());
    let settled = name
        .as_ref()
        .is_some_and(|name| stored_ahead(target, &marks, name, path));
    if let Some(name) = &name {
        // Losing a mark costs only the work it saved: a failure here is no failure.
        let _ = marks.forget_up_to(name.as_str());
    }
    Verdict {
        summary: wal_core::stage::Summary::default(),
        status: Some(if settled {
            ExitCode::Ok
        } else {
            ExitCode::RecordsFailed
        }),
    }
}

/// Whether `name`'s mark vouches for the file at `path`, and what it says is still so.
fn stored_ahead(target: &Target, marks: &Marks, name: &WalName, path: &Path) -> bool {
    let Some(mark) = marks.read(name.as_str()) else {
        return false;
    };
    if !FileIdentity::of(path).is_ok_and(|found| found == Some(mark.source)) {
        return false;
    }
    let stored = match target {
        Target::Local(local) => {
            let place = local.layout.archived_path(name);
            place == mark.stored_at
                && std::fs::symlink_metadata(&place).is_ok_and(|meta| meta.file_type().is_file())
        }
        Target::Cloud(cloud) => Bucket::open(cloud).is_ok_and(|bucket| {
            let url = mark.stored_at.to_string_lossy();
            bucket
                .block_on(bucket.bounded(&url, bucket.find(name)))
                .is_ok_and(|found| found.iter().any(|object| bucket.url(&object.key) == url))
        }),
    };
    stored && catalogued(target, name)
}

/// Whether the archive's catalogue (when it has one) has `name`'s line.
fn catalogued(target: &Target, name: &WalName) -> bool {
    let Some(xlogdb) = target.xlogdb() else {
        return true;
    };
    xlogdb.catalogues(name.as_str()).unwrap_or(false)
}
