//! `wal-store delete`: removes the archived files of the input records.
//!
//! Deletion is per file, always: Barman removes a whole hash directory when 256 entries
//! are to go (spec §5.3), which with smaller segments or extra backup labels removes WAL
//! that should stay. Files already gone count as deleted (a re-run after a kill, Barman
//! #1213); hash directories that become empty are removed; xlog.db loses the lines of
//! what was deleted, once per batch.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use wal_core::durable;
use wal_core::error::Result;
use wal_core::record::Outcome;
use wal_core::stage::{self, Summary};
use wal_core::{WalError, WalName, WalRecord};

use crate::STAGE;
use crate::cli::Target;

/// Deletes what the input records name.
pub fn run(target: &Target, input: impl BufRead + Send, output: impl Write) -> Result<Summary> {
    stage::run_batches(STAGE, 256, input, output, |batch| {
        delete_batch(target, batch);
        Ok(())
    })
}

fn delete_batch(target: &Target, batch: &mut [WalRecord]) {
    let mut deleted = HashSet::new();
    let mut dirs = BTreeSet::new();
    for record in batch.iter_mut().filter(|r| !r.failed()) {
        match delete_one(target, record) {
            Ok(path) => {
                if let Some(dir) = path.parent() {
                    dirs.insert(dir.to_path_buf());
                }
                deleted.insert(record.name.clone());
                record.outcome = Some(Outcome::Deleted);
                record.stored_at = Some(path);
            }
            Err(err) => record.fail(STAGE, &err),
        }
    }
    if deleted.is_empty() {
        return;
    }
    let finished = sync_and_prune(&target.layout.wals, &dirs).and_then(|()| {
        target
            .xlogdb
            .retain(|line| !deleted.contains(&line.name))
            .map(|_| ())
    });
    if let Err(err) = finished {
        for record in batch
            .iter_mut()
            .filter(|r| r.outcome == Some(Outcome::Deleted))
        {
            record.outcome = None;
            record.fail(STAGE, &err);
        }
    }
}

fn delete_one(target: &Target, record: &WalRecord) -> Result<PathBuf> {
    let name = WalName::parse(&record.name)?;
    let path = target.layout.archived_path(&name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
        Err(e) => Err(WalError::io("cannot delete", &path, e)),
    }
}

/// fsyncs the directories that lost files and removes hash directories left empty.
fn sync_and_prune(wals: &Path, dirs: &BTreeSet<PathBuf>) -> Result<()> {
    let mut pruned = false;
    for dir in dirs {
        if dir.as_path() == wals {
            continue;
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => pruned = true,
            // Not empty, or already gone: nothing to prune.
            Err(_) if !dir.exists() => {}
            Err(_) => durable::fsync_dir(dir)?,
        }
    }
    if pruned || dirs.contains(wals) {
        durable::fsync_dir(wals)?;
    }
    Ok(())
}
