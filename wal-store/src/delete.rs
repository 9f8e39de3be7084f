//! `wal-store delete`: removes the archived files of the input records.
//!
//! Deletion is per file, always: Barman removes a whole hash directory when 256 entries
//! are to go (`docs/barman-formats.md#deleting-wal`), which with smaller segments or extra
//! backup labels removes WAL
//! that should stay. Files already gone count as deleted (a re-run after a kill, Barman
//! #1213); hash directories that become empty are removed; xlog.db loses the lines of
//! what was deleted, once per batch.
//!
//! In a cloud archive every object of the name goes (whatever its extension), `--jobs`
//! records at a time; an object already gone counts as deleted there too (Azure answers
//! 404 where S3 answers 204), and `--xlogdb`, when given, loses the lines. Once the
//! store itself fails, the records after it fail at once ([`crate::cloud::failure`]).

use std::collections::{BTreeSet, HashSet};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use wal_core::durable;
use wal_core::error::Result;
use wal_core::record::Outcome;
use wal_core::stage::{self, Summary};
use wal_core::{WalError, WalName, WalRecord};

use futures::StreamExt;
use wal_core::xlogdb::Xlogdb;

use crate::STAGE;
use crate::cli::{LocalTarget, Target};
use crate::cloud::Bucket;

/// Deletes what the input records name.
pub fn run(target: &Target, input: impl BufRead + Send, output: impl Write) -> Result<Summary> {
    match target {
        Target::Local(local) => stage::run_batches(STAGE, 256, input, output, |batch| {
            delete_batch(local, batch);
            Ok(())
        }),
        Target::Cloud(cloud) => {
            let bucket = Bucket::open(cloud)?;
            stage::run_batches(STAGE, 256, input, output, |batch| {
                delete_cloud_batch(&bucket, batch);
                Ok(())
            })
        }
    }
}

/// Deletes the objects of a batch's records, then their xlog.db lines.
fn delete_cloud_batch(bucket: &Bucket<'_>, batch: &mut [WalRecord]) {
    let work = batch
        .iter()
        .enumerate()
        .filter(|(_, record)| !record.failed())
        .map(|(index, record)| async move {
            let url = bucket.name_url(&record.name);
            (
                index,
                bucket
                    .bounded(&url, delete_object(bucket, &record.name))
                    .await,
            )
        });
    let results: Vec<_> = bucket.block_on(
        futures::stream::iter(work)
            .buffer_unordered(bucket.jobs())
            .collect(),
    );
    let mut deleted = HashSet::new();
    for (index, result) in results {
        let record = &mut batch[index];
        match result {
            Ok(url) => {
                deleted.insert(record.name.clone());
                record.outcome = Some(Outcome::Deleted);
                record.stored_at = Some(url);
            }
            Err(err) => record.fail(STAGE, &err),
        }
    }
    forget(bucket.target.xlogdb.as_ref(), batch, &deleted);
}

/// Deletes every object of `name`; returns the URL of the first (or of the key it would
/// have, when none was left).
async fn delete_object(bucket: &Bucket<'_>, name: &str) -> Result<PathBuf> {
    let wal = WalName::parse_file_name(name)?;
    let objects = bucket.find(&wal).await?;
    for object in &objects {
        bucket.delete(&object.key).await?;
    }
    let key = objects.first().map_or_else(
        || {
            bucket
                .target
                .location
                .name_prefix(&bucket.target.server, &wal)
        },
        |object| object.key.clone(),
    );
    Ok(PathBuf::from(bucket.url(&key)))
}

/// Removes the deleted names' lines from xlog.db; on failure the records fail (the files
/// are gone, but the catalogue still lists them: the next run finishes the job).
fn forget(xlogdb: Option<&Xlogdb>, batch: &mut [WalRecord], deleted: &HashSet<String>) {
    let (Some(xlogdb), false) = (xlogdb, deleted.is_empty()) else {
        return;
    };
    if let Err(err) = xlogdb.retain(|line| !deleted.contains(&line.name)) {
        for record in batch
            .iter_mut()
            .filter(|r| r.outcome == Some(Outcome::Deleted))
        {
            record.outcome = None;
            record.fail(STAGE, &err);
        }
    }
}

fn delete_batch(target: &LocalTarget, batch: &mut [WalRecord]) {
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
    if let Err(err) = sync_and_prune(&target.layout.wals, &dirs) {
        for record in batch
            .iter_mut()
            .filter(|r| r.outcome == Some(Outcome::Deleted))
        {
            record.outcome = None;
            record.fail(STAGE, &err);
        }
        return;
    }
    forget(Some(&target.xlogdb), batch, &deleted);
}

fn delete_one(target: &LocalTarget, record: &WalRecord) -> Result<PathBuf> {
    let name = WalName::parse_file_name(&record.name)?;
    let path = target.layout.archived_path(&name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            say_if_queued(&target.layout, &name);
            Ok(path)
        }
        Err(e) => Err(WalError::io("cannot delete", &path, e)),
    }
}

/// A name not in the archive counts as deleted (a re-run after a kill), but a DBA deleting
/// a WAL that still waits in a queue would read "deleted" and see it archived by the next
/// archive-wal: said, and left there (the queues are archive-wal's, not delete's).
fn say_if_queued(layout: &wal_core::layout::ServerLayout, name: &WalName) {
    for queue in [&layout.incoming, &layout.streaming] {
        let queued = queue.join(name.as_str());
        if std::fs::symlink_metadata(&queued).is_ok() {
            wal_core::log::warn!(
                "{STAGE}: {name}: not in the archive; it waits in {} and the next \
                 archive-wal stores it",
                wal_core::log::one_line(&queued.to_string_lossy())
            );
        }
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
