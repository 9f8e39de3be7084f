//! `wal-store put`: durable storage of each record's file, in walpipe's durability order.
//!
//! For each batch of records already waiting on stdin:
//! 1. bring each file into the archive under its final name without ever replacing one
//!    (`link(2)` on one filesystem, else copy to a temp name + fsync + rename-no-replace);
//!    if the name is taken, compare contents: the same WAL → `duplicate`, a different one →
//!    the source goes to `errors/<name>.<stamp>.duplicate` (`conflict`); an encrypted copy
//!    is compared decrypted with `--key`/`--passphrase-*`, and without them cannot be
//!    compared: a conflict, as in Barman (see `compare`);
//! 2. fsync every directory that gained a name, once;
//! 3. append the xlog.db lines for the batch under its lock, with one fsync, leaving out
//!    a WAL that another run storing it at the same time catalogued meanwhile (it reads
//!    only the lines appended since the batch began: `Xlogdb::append_new_since`);
//! 4. only then remove sources and temps, and fsync their directories.
//!
//! A kill between any two steps leaves the source in its queue; the next run finds the
//! identical archived copy and, if xlog.db lacks it, catalogues it then (outcome `stored`),
//! so nothing is lost, nothing is catalogued twice, and no false duplicate reaches errors/.
//!
//! A cloud archive ([`crate::cloud`]) changes step 1 only: each record's WAL name is
//! looked up by one listing (an object under any extension takes the name), then uploaded
//! create-only, several records at a time (`--jobs`); a taken name is downloaded beside
//! the source (a temp of its own, `.<name>.<pid>-<random>.compare`, swept by the next put
//! of that WAL if this one is killed: [`crate::cloud::download`]) and compared the same
//! way.
//! There are no directories to fsync, and xlog.db is the local `--xlogdb`, when given.
//! Once the store itself fails (no answer, refused credentials, no bucket), the records
//! after it fail at once as `temporary`, their sources kept ([`crate::cloud::failure`]).

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wal_core::durable;
use wal_core::error::{ErrorKind, IoContext, Result};
use wal_core::layout::errors_path;
use wal_core::lookahead::{FileIdentity, Mark, Marks};
use wal_core::record::{Outcome, RecordError};
use wal_core::stage::{self, Summary};
use wal_core::trust::Territory;
use wal_core::xlogdb::{CatalogueEnd, XlogLine};
use wal_core::{WalError, WalName, WalRecord};

use futures::StreamExt;

use crate::STAGE;
use crate::cli::{Decryption, Target};
use crate::cloud::download::{self, Kind};
use crate::cloud::{Bucket, Upload};
use crate::compare::{Comparison, compare};
use crate::identity;
use crate::report::Report;
use crate::shape::Seen;
use wal_core::identity::{self as archive_identity, Identity};
use wal_core::shape::LongHeader;

/// What `put` was asked to do.
#[derive(Debug)]
// Each flag is an independent switch of the command line, not a state machine.
#[allow(clippy::struct_excessive_bools)]
pub struct PutOptions<'a> {
    /// Where to store.
    pub target: &'a Target,
    /// Flat queue directory instead of an archive.
    pub queue: bool,
    /// Leave sources in place.
    pub keep_source: bool,
    /// Print Barman's lines on stderr, under this queue's label.
    pub report: Option<&'a str>,
    /// Begin each of them with a mark (`report.rs`).
    pub report_marked: bool,
    /// Records per xlog.db fsync.
    pub max_batch: usize,
    /// How to decrypt encrypted copies to compare them; `None`: they cannot be compared.
    pub decryption: Option<&'a Decryption>,
    /// The directories put may act on ([`wal_core::trust`]).
    pub territory: &'a Territory,
    /// Where comparison copies go when a record's file lies outside our directories.
    pub temp_dir: Option<&'a Path>,
    /// Check the shape of what is stored (`--no-header-check` turns it off).
    pub header_check: bool,
    /// Where to mark the look-ahead records stored ([`wal_core::lookahead`]).
    pub marks: Option<&'a Path>,
}

/// A cloud archive's catalogue is local: a directory missing for it is said before the
/// first upload, not after every object went up with each record then failing (and
/// its source kept) for want of its catalogue line.
fn catalogue_can_be_written(xlogdb: Option<&wal_core::xlogdb::Xlogdb>) -> Result<()> {
    let Some(path) = xlogdb.map(wal_core::xlogdb::Xlogdb::path) else {
        return Ok(());
    };
    let dir = wal_core::durable::parent_of(path);
    if dir.is_dir() {
        Ok(())
    } else {
        Err(WalError::Config(format!(
            "--xlogdb {}: its directory {} is not there (the wrappers make it; \
             by hand: mkdir -p {})",
            path.display(),
            dir.display(),
            dir.display()
        )))
    }
}

/// Stores every record of `input`.
pub fn run(
    options: &PutOptions<'_>,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Summary> {
    let bucket = match options.target {
        Target::Local(_) => None,
        Target::Cloud(cloud) => {
            catalogue_can_be_written(cloud.xlogdb.as_ref())?;
            Some(Bucket::open(cloud)?)
        }
    };
    let mut store = Store {
        options,
        bucket: bucket.as_ref(),
        catalogued: None,
        identity: None,
        swept: HashSet::new(),
        report: Report::new(
            options.report,
            options.report_marked,
            options.target.server(),
        ),
    };
    let progress = wal_core::progress::Progress::on_terminal(STAGE, "files stored");
    let summary = stage::run_batches(STAGE, options.max_batch, input, output, |batch| {
        store.put_batch(batch);
        for record in batch.iter().filter(|record| record.error.is_none()) {
            progress.tick(record.size);
        }
        Ok(())
    })?;
    drop(progress);
    store.report.finish();
    Ok(summary)
}

struct Store<'a> {
    options: &'a PutOptions<'a>,
    /// The connected cloud archive, when the target is one.
    bucket: Option<&'a Bucket<'a>>,
    /// Names in xlog.db, read when first needed (only to resume an interrupted store).
    catalogued: Option<HashSet<String>>,
    /// The system the local archive belongs to, read or written when first needed.
    identity: Option<Identity>,
    report: Report,
    /// The directories swept of killed runs' copies in this run.
    swept: HashSet<PathBuf>,
}

/// What the trust boundary lets put do with one record's files ([`wal_core::trust`]).
#[derive(Debug, Clone, Copy, Default)]
struct Admitted {
    /// The file at `path` is ours (the record's queue source, or one of its temps): it
    /// may be linked into the archive, given the source's mode and mtime, and removed.
    /// Any other file is only read: copied into the archive, never changed.
    path_ours: bool,
    /// The source is an entry of one of our queues: it may be removed once stored, or
    /// moved to errors/.
    source_ours: bool,
}

/// What step 1 found for a record, before any comparison.
enum Found {
    /// Stored now, at this place, with this size.
    New(PathBuf, u64),
    /// The name is taken by the file or object at `stored_at`; `copy` is a local file
    /// with its bytes (the file itself, or a download that `downloaded` says to remove).
    Taken {
        stored_at: PathBuf,
        copy: PathBuf,
        downloaded: bool,
    },
}

/// Where a record stands after step 1.
enum Placed {
    /// Newly in the archive (or found there from an interrupted run): needs cataloguing.
    New(PathBuf, u64),
    /// Identical copy already stored and catalogued.
    Duplicate(PathBuf),
    /// Handled: the source went to errors/ (the record carries the error).
    Conflict,
}

impl Store<'_> {
    fn put_batch(&mut self, batch: &mut [WalRecord]) {
        let mut to_catalogue = Vec::new();
        let mut settled = Vec::new();
        let mut sizes = Vec::new();
        for record in batch.iter_mut().filter(|r| r.failed()) {
            self.quarantine_unknown(record);
        }
        // Where the lines other runs append from now on begin: one of them may store and
        // catalogue a WAL of this batch meanwhile (Xlogdb::append_new_since).
        let since = self
            .options
            .target
            .xlogdb()
            .map_or_else(Default::default, wal_core::xlogdb::Xlogdb::end);
        let mut admitted = vec![Admitted::default(); batch.len()];
        for (index, record) in batch.iter_mut().enumerate() {
            if record.failed() {
                continue;
            }
            match self.admit(record) {
                Ok(verdict) => admitted[index] = verdict,
                Err(err) => record.fail(STAGE, &err),
            }
        }
        let found = match self.bucket {
            Some(bucket) => upload_all(bucket, batch, self.options, &admitted),
            None => batch
                .iter()
                .enumerate()
                .filter(|(_, record)| !record.failed())
                .map(|(index, record)| (index, self.place(record, admitted[index])))
                .collect(),
        };
        // A WAL queued twice (by pg_receivewal and by archive_command) may come twice in
        // one batch: it is stored and catalogued once, the other copy is a duplicate.
        let mut new_names = HashSet::new();
        for (index, found) in found {
            let record = &mut batch[index];
            let placed = found.and_then(|found| self.settle(record, found, admitted[index]));
            let placed = match placed {
                Ok(Placed::New(dest, _)) if !new_names.insert(record.name.clone()) => {
                    Ok(Placed::Duplicate(dest))
                }
                other => other,
            };
            match placed {
                Ok(Placed::New(dest, size)) => {
                    record.outcome = Some(Outcome::Stored);
                    record.stored_at = Some(dest);
                    to_catalogue.push(index);
                    sizes.push(size);
                }
                Ok(Placed::Duplicate(dest)) => {
                    record.outcome = Some(Outcome::Duplicate);
                    record.stored_at = Some(dest);
                    settled.push(index);
                }
                Ok(Placed::Conflict) => {}
                Err(err) => record.fail(STAGE, &err),
            }
        }
        match self.make_durable(batch, &to_catalogue, &sizes, since) {
            Ok(catalogued_elsewhere) => {
                // Stored by another run at the same time, which catalogued it first.
                for &index in &to_catalogue {
                    if catalogued_elsewhere.contains(&batch[index].name) {
                        batch[index].outcome = Some(Outcome::Duplicate);
                    }
                }
                settled.extend(to_catalogue);
            }
            Err(err) => {
                // The files may be in the archive, but not durably catalogued: keep the
                // sources; the next run completes the work.
                for &index in &to_catalogue {
                    batch[index].outcome = None;
                    batch[index].fail(STAGE, &err);
                }
            }
        }
        settled.sort_unstable();
        self.mark_ahead(batch, &settled);
        self.remove_sources(batch, &settled, &admitted);
        self.remove_failed_temps(batch);
        // The copies killed runs left under names no later run would replace
        // (wal_core::temp::create_unique), where this batch's copies were and where its
        // comparisons made theirs: unchanged for a day, none is on its way here. Each
        // directory once a run: a queue may hold a backlog of files.
        let dirs: BTreeSet<PathBuf> = batch
            .iter()
            .zip(&admitted)
            .filter(|(record, admitted)| {
                admitted.path_ours || admitted.source_ours || !record.temps.is_empty()
            })
            .filter_map(|(record, admitted)| scratch_dir(self.options, record, *admitted).ok())
            .collect();
        for dir in dirs {
            if self.swept.insert(dir.clone()) {
                wal_core::temp::sweep_stale_copies(&dir, wal_core::temp::STALE_COPY_AGE);
            }
        }
        for record in batch.iter() {
            self.report.record(record);
        }
    }

    /// Marks each look-ahead record now durably stored (or found stored), so that
    /// PostgreSQL's call for it returns at once (`wal-store settled`): with the identity
    /// of its pg_wal file, which must still be the one the scan saw.
    fn mark_ahead(&self, batch: &[WalRecord], settled: &[usize]) {
        let Some(dir) = self.options.marks else {
            return;
        };
        let marks = Marks::at(dir.to_path_buf());
        for record in settled.iter().map(|&index| &batch[index]) {
            let (Some(ahead), Some(source), Some(stored_at)) =
                (record.ahead, &record.source, &record.stored_at)
            else {
                continue;
            };
            // Still the file scanned, before anything read it: else what was stored may
            // not be what PostgreSQL will hand over.
            if !FileIdentity::of(source).is_ok_and(|now| now == Some(ahead.source)) {
                continue;
            }
            let mark = Mark {
                name: record.name.clone(),
                source: ahead.source,
                stored_at: stored_at.clone(),
            };
            // A mark that cannot be written costs only the work it would save; like any
            // look-ahead failure, it is not reported.
            let _ = marks.write(&mark);
        }
    }

    /// A failed record's temps (copies made upstream from a source that stays where it
    /// is) are of use to nobody: the ones of ours are removed and dropped from the
    /// record, so that a failure leaves nothing behind for the retry to trip over.
    fn remove_failed_temps(&self, batch: &mut [WalRecord]) {
        let territory = self.options.territory;
        for record in batch.iter_mut().filter(|record| record.failed()) {
            let (ours, others): (Vec<PathBuf>, Vec<PathBuf>) = std::mem::take(&mut record.temps)
                .into_iter()
                .partition(|temp| {
                    record.source.as_ref() != Some(temp)
                        && territory.temp_file(temp, &record.name).is_ok()
                });
            remove_quietly(ours.iter().map(PathBuf::as_path), false);
            record.temps = others;
        }
    }

    /// The trust boundary for one record, before anything is done with it: its source
    /// and path are never inside the archive or errors/; without `--keep-source` (and
    /// `--queue`) its source is an entry of one of our queues; every temp it lists is a
    /// temporary file of ours; its file is a regular file with the shape of WAL for its
    /// name. Anything else fails the record, with nothing touched.
    fn admit(&mut self, record: &WalRecord) -> Result<Admitted> {
        let territory = self.options.territory;
        let name = WalName::parse_file_name(&record.name)?;
        let path = record.require_path()?;
        // A temp of ours may sit in the archive root (archive-command --direct writes its
        // copies there, to link them); any other file the record points at is a source
        // and must not be a stored file.
        let path_is_temp = record.temps.contains(path) && record.source.as_ref() != Some(path);
        if !path_is_temp {
            territory.outside_guarded(path)?;
        }
        let mut source_ours = false;
        if let Some(source) = &record.source {
            territory.outside_guarded(source)?;
            if !self.options.keep_source && !self.options.queue {
                territory.queue_entry(source)?;
                source_ours = true;
            }
        }
        for temp in &record.temps {
            if record.source.as_ref() == Some(temp) {
                return Err(WalError::Usage(format!(
                    "{}: the record lists its source among its temps; left untouched",
                    temp.display()
                )));
            }
            territory.temp_file(temp, name.as_str())?;
        }
        let path_ours = if record.source.as_ref() == Some(path) {
            source_ours
        } else {
            record.temps.contains(path)
        };
        // A source is dropped only for what was made from it (itself, or a temp of ours):
        // storing some other file a record names must never cost the queued WAL.
        let source_ours = source_ours && path_ours;
        // Only a regular file is WAL; a fifo here must fail now, not hang a read later.
        let file = durable::open_wal(path)?;
        if self.options.header_check
            && let Seen::Checked(Some(header)) =
                crate::shape::check_file(&name, path, file, record.source.as_ref() == Some(path))?
        {
            self.check_identity(&name, &header)?;
        }
        Ok(Admitted {
            path_ours,
            source_ours,
        })
    }

    /// Refuses a segment of another system or release than the local archive's; the
    /// first segment stored gives an archive without an identity file its identity.
    fn check_identity(&mut self, name: &WalName, header: &LongHeader) -> Result<()> {
        let Target::Local(local) = self.options.target else {
            return Ok(());
        };
        // Into the incoming queue (archive_command's hand-off) the archive's identity is
        // checked, never written: the first store into the archive itself writes it.
        let Some(path) = archive_identity::path_for(&local.layout, self.options.queue) else {
            return Ok(());
        };
        if self.identity.is_none() {
            self.identity = archive_identity::load(&path)?;
        }
        let known = match &self.identity {
            Some(known) => known,
            None if self.options.queue => return Ok(()),
            None => self.identity.insert(identity::record(&path, header)?),
        };
        identity::check(known, header, name, &path)
    }

    /// Step 1 for one record, in a local archive.
    fn place(&self, record: &WalRecord, admitted: Admitted) -> Result<Found> {
        let Target::Local(target) = self.options.target else {
            return Err(WalError::Internal(
                "local placement for a cloud archive".into(),
            ));
        };
        let name = WalName::parse(&record.name)?;
        let path = record.require_path()?.clone();
        let layout = &target.layout;
        let dest = if self.options.queue {
            layout.wals.join(name.as_str())
        } else {
            layout.archived_path(&name)
        };
        if let Some(dir) = dest.parent() {
            durable::create_dir_durably(dir)?;
        }
        if admitted.path_ours && record.source.as_ref() != Some(&path) {
            // Barman gives the archived file the source's mode and mtime (copystat).
            copy_stat(record.source.as_deref(), &path, record.time)?;
        }
        let taken = |dest: PathBuf| Found::Taken {
            copy: dest.clone(),
            stored_at: dest,
            downloaded: false,
        };
        if std::fs::symlink_metadata(&dest).is_ok() {
            // Cheap early answer; the no-replace placement below stays the real guard.
            return Ok(taken(dest));
        }
        // A file we do not own (pg_wal, with --keep-source; a file a record names
        // elsewhere) is never hard-linked: PostgreSQL recycles segments by renaming and
        // overwriting them in place, which would rewrite the archived copy through the
        // shared inode. It is copied, and left as it is.
        let placed = if admitted.path_ours {
            durable::place(&path, &dest).map(|_| ())
        } else {
            durable::copy_no_replace(&path, &dest).map(|_| ())
        };
        match placed {
            Ok(()) => {
                let size = std::fs::metadata(&dest)
                    .context("cannot stat", &dest)?
                    .len();
                Ok(Found::New(dest, size))
            }
            Err(WalError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                Ok(taken(dest))
            }
            // Our copy gone while another run stored this WAL meanwhile (a copy of ours
            // taken for a killed run's: wal_core::temp::sweep_stale_copies): compared
            // with the source, a duplicate.
            Err(WalError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(&dest).is_ok() =>
            {
                Ok(taken(dest))
            }
            Err(err) => Err(err),
        }
    }

    /// What a record's step 1 amounts to: a taken name is the same WAL, or a conflict.
    fn settle(
        &mut self,
        record: &mut WalRecord,
        found: Found,
        admitted: Admitted,
    ) -> Result<Placed> {
        match found {
            Found::New(dest, size) => Ok(Placed::New(dest, size)),
            Found::Taken {
                stored_at,
                copy,
                downloaded,
            } => {
                let name = WalName::parse(&record.name)?;
                let path = record.require_path()?.clone();
                let settled = self.already_stored(record, &name, &path, &copy, stored_at, admitted);
                if downloaded {
                    if settled.is_err() && !copy.exists() {
                        // Removed under us (another process's sweep): say so, and let the
                        // run be retried rather than read it as a missing file.
                        return Err(WalError::Temporary(format!(
                            "{name}: the downloaded copy {} was removed before the comparison",
                            copy.display()
                        )));
                    }
                    remove_quietly([copy.as_path()], false);
                }
                settled
            }
        }
    }

    /// The name is taken: the same WAL, or a conflict.
    fn already_stored(
        &mut self,
        record: &mut WalRecord,
        name: &WalName,
        path: &Path,
        stored_copy: &Path,
        dest: PathBuf,
        admitted: Admitted,
    ) -> Result<Placed> {
        // Compare with the original when we still have it: that is what was handed to us.
        let (original, original_ours) = match &record.source {
            Some(source) if source.exists() => (source.clone(), admitted.source_ours),
            _ => (path.to_path_buf(), admitted.path_ours),
        };
        let scratch = self.scratch_dir(record, admitted)?;
        let why = match compare(
            stored_copy,
            &original,
            name.as_str(),
            self.options.decryption,
            &scratch,
        )? {
            Comparison::Same(stored) => {
                if self.options.queue || self.is_catalogued(name.as_str())? {
                    return Ok(Placed::Duplicate(dest));
                }
                // Stored by an interrupted run, perhaps with other settings: catalogue
                // what is actually stored, not what this run would have stored.
                record.compression = stored.compression;
                record.encryption = stored.encryption;
                let size = std::fs::metadata(stored_copy)
                    .context("cannot stat", stored_copy)?
                    .len();
                return Ok(Placed::New(dest, size));
            }
            Comparison::Different => "different content".to_string(),
            Comparison::Undecodable(why) | Comparison::Encrypted(why) => why,
        };
        // Our temps are of no further use either way.
        remove_quietly(record.temps.iter().map(PathBuf::as_path), false);
        let errors = match self.options.target.errors_dir() {
            Some(errors) if !self.options.queue && !self.options.keep_source && original_ours => {
                errors
            }
            // The source is not ours to move (pg_wal, a file elsewhere), or there is no
            // errors directory: fail, and let the caller retry after a human looked at
            // the stored copy.
            _ => {
                return Err(WalError::Conflict {
                    name: name.to_string(),
                    existing: dest,
                });
            }
        };
        let moved_to = errors_path(errors, name.as_str(), "duplicate", SystemTime::now());
        durable::create_dir_durably(errors)?;
        durable::move_durably(&original, &moved_to)?;
        record.outcome = Some(Outcome::Conflict);
        record.error = Some(RecordError {
            stage: STAGE.to_string(),
            kind: ErrorKind::Conflict,
            message: format!(
                "{name} is already present in server {} ({why}); moved to {}",
                self.options.target.server(),
                moved_to.display()
            ),
        });
        record.stored_at = Some(moved_to);
        Ok(Placed::Conflict)
    }

    /// Where put may write a record's comparison copies (decrypted or downloaded): the
    /// `--temp-dir`, else beside the record's file or source when they are ours, else the
    /// root of a local archive (hidden names, on the archive's filesystem).
    fn scratch_dir(&self, record: &WalRecord, admitted: Admitted) -> Result<PathBuf> {
        scratch_dir(self.options, record, admitted)
    }

    fn is_catalogued(&mut self, name: &str) -> Result<bool> {
        if self
            .catalogued
            .as_ref()
            .is_some_and(|names| names.contains(name))
        {
            return Ok(true);
        }
        // Not in what we read (or nothing read yet): re-read, another process may have
        // catalogued it meanwhile. Without a catalogue, what is stored is all there is.
        let Some(xlogdb) = self.options.target.xlogdb() else {
            return Ok(true);
        };
        let names = xlogdb.names()?;
        let found = names.contains(name);
        self.catalogued = Some(names);
        Ok(found)
    }

    /// Steps 2 and 3: fsync the directories that gained names, then catalogue the batch.
    fn make_durable(
        &mut self,
        batch: &[WalRecord],
        indices: &[usize],
        sizes: &[u64],
        since: CatalogueEnd,
    ) -> Result<HashSet<String>> {
        if indices.is_empty() {
            return Ok(HashSet::new());
        }
        if self.bucket.is_some() {
            // An object is durable once the store acknowledged it.
            return self.catalogue(batch, indices, sizes, since);
        }
        let dirs: BTreeSet<&Path> = indices
            .iter()
            .filter_map(|&i| batch[i].stored_at.as_deref().and_then(Path::parent))
            .collect();
        for dir in dirs {
            durable::fsync_dir(dir)?;
        }
        if self.options.queue {
            return Ok(HashSet::new());
        }
        self.catalogue(batch, indices, sizes, since)
    }

    /// Step 3: one xlog.db line per stored record, appended with one fsync, but for the
    /// WAL another run catalogued after `since` (the batch's start); returns those.
    fn catalogue(
        &mut self,
        batch: &[WalRecord],
        indices: &[usize],
        sizes: &[u64],
        since: CatalogueEnd,
    ) -> Result<HashSet<String>> {
        let Some(xlogdb) = self.options.target.xlogdb() else {
            return Ok(HashSet::new());
        };
        let lines: Vec<XlogLine> = indices
            .iter()
            .zip(sizes)
            .map(|(&index, &size)| {
                let record = &batch[index];
                XlogLine {
                    name: record.name.clone(),
                    size,
                    time: record.time,
                    compression: record.compression.map(|c| c.name().to_string()),
                    encryption: record.encryption.map(|e| e.name().to_string()),
                }
            })
            .collect();
        let elsewhere = xlogdb.append_new_since(&lines, since)?;
        if let Some(names) = &mut self.catalogued {
            names.extend(lines.into_iter().map(|line| line.name));
        }
        Ok(elsewhere)
    }

    /// Step 4: remove temps, then sources (unless kept), of stored and duplicate records.
    ///
    /// Temps first: a kill between the two then leaves a source (found identical and
    /// dropped next run), never an orphaned temp hard-linked to an archived WAL. Only the
    /// sources' directories are fsynced: a temp that reappears after a power loss is a
    /// hidden file that the next temp of that name replaces.
    fn remove_sources(&self, batch: &[WalRecord], indices: &[usize], admitted: &[Admitted]) {
        let temps = indices
            .iter()
            .flat_map(|&i| batch[i].temps.iter().map(PathBuf::as_path));
        remove_quietly(temps, false);
        if !self.options.keep_source {
            let sources = indices
                .iter()
                .filter(|&&i| admitted[i].source_ours)
                .filter_map(|&i| batch[i].source.as_deref());
            // The WAL is safe in the archive; a source left behind is found identical and
            // dropped by the next run.
            remove_quietly(sources, true);
        }
    }

    /// Moves a queue entry that wal-scan found not to be WAL to `errors/<name>.<stamp>.unknown`.
    fn quarantine_unknown(&mut self, record: &mut WalRecord) {
        let is_unknown = record
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Unknown);
        let Some(errors) = self.options.target.errors_dir() else {
            return;
        };
        if !is_unknown || self.options.queue || self.options.keep_source {
            return;
        }
        let Some(source) = record.source.clone() else {
            return;
        };
        if std::fs::symlink_metadata(&source).is_err() {
            return;
        }
        // Only an entry of our own queues is moved: a record may name any file.
        if let Err(err) = self.options.territory.queue_entry(&source) {
            stage::report_error(STAGE, &err);
            return;
        }
        let base = source
            .file_name()
            .map_or_else(|| record.name.clone(), |n| n.to_string_lossy().into_owned());
        let moved_to = errors_path(errors, &base, "unknown", SystemTime::now());
        let moved = durable::create_dir_durably(errors)
            .and_then(|()| durable::move_durably(&source, &moved_to));
        match moved {
            Ok(()) => {
                record.outcome = Some(Outcome::Unknown);
                record.stored_at = Some(moved_to);
            }
            Err(err) => stage::report_error(STAGE, &err),
        }
    }
}

/// Cloud step 1 for every healthy record of the batch, `--jobs` at a time.
fn upload_all(
    bucket: &Bucket<'_>,
    batch: &[WalRecord],
    options: &PutOptions<'_>,
    admitted: &[Admitted],
) -> Vec<(usize, Result<Found>)> {
    let work = batch
        .iter()
        .enumerate()
        .filter(|(_, record)| !record.failed())
        .map(|(index, record)| async move {
            let what = bucket.name_url(&record.name);
            let found = bucket
                .bounded(&what, upload_one(bucket, record, options, admitted[index]))
                .await;
            (index, found)
        });
    let mut found: Vec<_> = bucket.block_on(
        futures::stream::iter(work)
            .buffer_unordered(bucket.jobs())
            .collect(),
    );
    found.sort_by_key(|(index, _)| *index);
    found
}

/// Uploads one record's file unless its WAL name is taken by an object under any
/// extension; a taken name is downloaded beside the file, to be compared.
async fn upload_one(
    bucket: &Bucket<'_>,
    record: &WalRecord,
    options: &PutOptions<'_>,
    admitted: Admitted,
) -> Result<Found> {
    let name = WalName::parse_file_name(&record.name)?;
    let path = record.require_path()?;
    let key = bucket.key_for(record, &name);
    let mut existing = bucket.find(&name).await?;
    if existing.is_empty() {
        match bucket.upload(path, &key).await? {
            Upload::Created(size) => return Ok(Found::New(PathBuf::from(bucket.url(&key)), size)),
            // Someone stored it between our listing and our upload.
            Upload::Exists => existing = bucket.find(&name).await?,
        }
    }
    // Prefer the object under our own key when there are several.
    let Some(object) = existing
        .iter()
        .find(|object| object.key == key)
        .or_else(|| existing.first())
    else {
        return Err(WalError::Temporary(format!(
            "{}: the store refused to create it, yet does not list it",
            bucket.url(&key)
        )));
    };
    let scratch = scratch_dir(options, record, admitted)?;
    let dir = scratch.as_path();
    // What an earlier put of this WAL, killed while comparing, left here.
    download::sweep_dead_compares(dir, name.as_str());
    let (copy, _) = bucket
        .download_temp(&object.key, dir, name.as_str(), Kind::Compare)
        .await?;
    Ok(Found::Taken {
        stored_at: PathBuf::from(bucket.url(&object.key)),
        copy,
        downloaded: true,
    })
}

/// See [`Store::scratch_dir`].
fn scratch_dir(
    options: &PutOptions<'_>,
    record: &WalRecord,
    admitted: Admitted,
) -> Result<PathBuf> {
    let beside = |path: &Path| durable::parent_of(path).to_path_buf();
    if let Some(dir) = options.temp_dir {
        return Ok(dir.to_path_buf());
    }
    if admitted.path_ours
        && let Some(path) = &record.path
    {
        return Ok(beside(path));
    }
    if admitted.source_ours
        && let Some(source) = &record.source
    {
        return Ok(beside(source));
    }
    match options.target {
        Target::Local(local) => Ok(local.layout.wals.clone()),
        Target::Cloud(_) => Err(WalError::Usage(format!(
            "{}: its file is in no directory of ours, so the stored copy cannot be \
             fetched beside it for comparison: give --temp-dir DIR",
            record.name
        ))),
    }
}

/// Gives `path` the source's permissions (when the source is still there) and `time` as
/// its mtime.
fn copy_stat(source: Option<&Path>, path: &Path, time: f64) -> Result<()> {
    let file = File::options()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .context("cannot open", path)?;
    if let Some(meta) = source.and_then(|s| std::fs::metadata(s).ok()) {
        file.set_permissions(meta.permissions())
            .context("cannot chmod", path)?;
    }
    // A record's time is input: one no clock can hold is left out, never a panic.
    if let Some(when) = Duration::try_from_secs_f64(time)
        .ok()
        .filter(|_| time > 0.0)
        .and_then(|since| UNIX_EPOCH.checked_add(since))
    {
        file.set_modified(when)
            .context("cannot set mtime of", path)?;
    }
    Ok(())
}

fn remove_quietly<'a>(paths: impl IntoIterator<Item = &'a Path> + Clone, fsync: bool) {
    let removed = if fsync {
        durable::remove_durably(paths)
    } else {
        durable::remove_files(paths)
    };
    if let Err(err) = removed {
        stage::report_error(STAGE, &err);
    }
}
