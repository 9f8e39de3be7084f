//! `wal-store get`: finds archived WAL files, and writes restored ones out durably.
//!
//! It is both ends of `scripts/restore-wal`'s pipeline (PostgreSQL's `restore_command`):
//!
//! ```text
//! wal-store get NAME | [wal-encrypt --decrypt |] wal-compress --decompress --temp-dir DIR
//!   | wal-store place --to %p          (or its alias: wal-store get --to %p)
//! ```
//!
//! * **Look-up** (NAMEs given): each name is searched where Barman's `get-wal` searches
//!   (`docs/barman-formats.md#where-get-wal-looks`): `wals/<hash>/NAME`, then the
//!   `incoming` and `streaming` queues (a WAL
//!   not archived yet is still restorable), with `--partial` also `NAME.partial`, then the
//!   archive once more (archive-wal may have moved the file meanwhile). A few `stat`s per
//!   name, never a listing of the archive, and no read of xlog.db: a local archive stores
//!   files under their plain names whatever Barman or walpipe compressed them with, and
//!   the first bytes (magic) say which compression, so Barman-written archives restore as
//!   they are. The record points at the file where it is (nothing copied; the next stage
//!   reads it from there) or, with `--to`/`--to-dir`, at a durable copy as stored. A name
//!   not found (locally or in a cloud archive) gives a failed record (the name asked for,
//!   `error: {stage: "wal-store", kind: "not_found", message}`), so that the verdict
//!   travels down the pipe (the middle stages pass failed records on untouched), one
//!   stderr line with the same message (none with `--quiet-missing`; other errors are
//!   still printed), and exit 66 ("not in the archive").
//! * **Write-out** (no NAMEs): the records on stdin are written to `--to PATH` (one
//!   record) or into `--to-dir DIR` under their names: temp file in the destination
//!   directory, fsync, rename without replacing, fsync the directory, so a killed run never
//!   leaves a partial file under the destination name. A record whose file is one of its
//!   own `temps` (a decompressed copy, a prefetched spool file) is moved there rather than
//!   copied; the record's other temps are removed, as `put` removes them once stored.
//!   `wal-store place --to PATH` / `--to-dir DIR` is the same write-out under a verb of
//!   its own; `get --to` / `get --to-dir` without NAMEs stays its alias.
//!
//! The write-out is the last stage, and its exit status is the whole restore's (the
//! wrapper maps no record and parses no stderr):
//!
//! | status | when | stderr |
//! |---|---|---|
//! | 0 | every record was written | nothing |
//! | [`ExitCode::for_kind`] of the record's kind: 66 `not_found`, 75 `temporary`, 65 `corrupt`, … | a record arrived failed (a stage before failed it) | nothing: that stage said why |
//! | the same, for the kind of its own failure (64 `usage`, 74 `io`, 65 `bad_record`, …) | the write-out failed a record (the destination exists, encrypted without a key, not WAL of its name) | one line, as every stage |
//! | 70 (EX_SOFTWARE) | no record at all on stdin: a stage before died or failed without passing anything on | one line: `wal-store: nothing written to PATH: the pipeline ended without a record (a stage before this one failed)` |
//!
//! With several records (`--to-dir`) the worst failure decides: any failure outranks
//! `not_found`, and among the others the first one seen does. `not_found` counts as such
//! only in a record that arrived failed by this stage's name (the look-up's); any other
//! stage's, or the write-out's own, is an I/O failure (74). 66 thus only ever means what
//! the look-up's record told: the archive has no such file, which PostgreSQL takes for
//! the end of the archive.
//!
//! A look-up that cannot start (a name that is no WAL name, a local archive directory
//! that is not there or not searchable, a cloud store that cannot be opened, settings
//! refused) hands each name down failed as `config` and says why once
//! ([`wal_core::stage::fail_every_name`]); a write-out whose own settings are refused
//! takes the verdict from such records silently ([`refused_write_out`]). `--sweep-temps`
//! first removes from `--temp-dir` the restore temps killed calls left there; the
//! write-out removes `.<dest>.<pid>.<n>.tmp` files of writers gone. The write-out's stdout records are the records it got,
//! with `outcome: fetched` and the destination in `path` for those written.
//!
//! Every stage writing into a pipe whose reader is gone (EPIPE: the next stage failed as
//! it started, a key file that is not there) exits 74 without a stderr line of its own
//! ([`wal_core::stage::downstream_gone`]): the stage that failed said why.
//!
//! In a cloud archive a look-up is one listing per name (`…/wals/<hash>/<name>`: the
//! object under whatever extension it was stored with, as barman-cloud-wal-restore
//! looks), names fetched `--jobs` at a time. The object is downloaded to `--to`/`--to-dir`
//! durably, or, without them, to a temp file in `--temp-dir` that the record lists in
//! its `temps`, so the rest of the pipeline treats it as any stage's copy. That temp,
//! `.<name>.<pid>-<random>.download`, is unique: two gets of one WAL into one directory
//! never share one ([`crate::cloud::download`]). Once the store itself
//! fails, the names not yet fetched fail at once ([`crate::cloud::failure`]).

use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use wal_core::durable;
use wal_core::error::{IoContext, Result};
use wal_core::layout::{ServerLayout, mtime_seconds};
use wal_core::record::Outcome;
use wal_core::stage::{self, RecordWriter, Verdict};
use wal_core::trust::Territory;
use wal_core::{ErrorKind, ExitCode, WalError, WalName, WalRecord};

use futures::StreamExt;

use crate::STAGE;
use crate::cli::{GetDestination, Target};
use crate::cloud::download::Kind;
use crate::cloud::{Bucket, StoredObject};

/// What `get` was asked to do.
#[derive(Debug)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of the command line"
)]
pub struct GetOptions<'a> {
    /// Where from.
    pub target: &'a Target,
    /// The names to look up; none: write out the records on stdin.
    pub names: &'a [String],
    /// Also look for `<segment>.partial`.
    pub partial: bool,
    /// Look-up: no stderr line for a name not found (its record and exit 66 still say it).
    pub quiet_missing: bool,
    /// Look-up: first remove killed restores' temps from `temp_dir`.
    pub sweep_temps: bool,
    /// Where to.
    pub to: &'a GetDestination,
    /// Where cloud downloads go without a destination.
    pub temp_dir: &'a Path,
    /// Write-out: the directories whose temps are ours ([`wal_core::trust`]).
    pub territory: &'a Territory,
    /// Write-out: check that what is handed to PostgreSQL is WAL of the right shape.
    pub header_check: bool,
}

/// Runs `get`: looks up `names`, or, when there are none, writes out the records of `input`.
pub fn run(
    options: &GetOptions<'_>,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Verdict> {
    let GetOptions {
        target,
        names,
        partial,
        to,
        temp_dir,
        quiet_missing,
        sweep_temps,
        ..
    } = *options;
    if names.is_empty() {
        return write_out(options, input, output);
    }
    if sweep_temps {
        sweep_stale_temps(temp_dir);
    }
    // A look-up that cannot start still hands each name down the pipe, failed, so the
    // write-out decides without a word of its own ([`stage::fail_every_name`]).
    let started = names
        .iter()
        .map(|name| WalName::parse_file_name(name))
        .collect::<Result<Vec<_>>>()
        .and_then(|wals| match target {
            Target::Local(local) => check_archive(&local.layout.wals).map(|()| wals),
            Target::Cloud(_) => Ok(wals),
        });
    let wals = match started {
        Ok(wals) => wals,
        Err(err) => return Err(stage::fail_every_name(STAGE, err, names, output)),
    };
    let (archive, looked_up) = match target {
        Target::Local(local) => (
            local.layout.wals.display().to_string(),
            wals.iter()
                .map(|wal| look_up_local(&local.layout, wal, partial, to))
                .collect(),
        ),
        Target::Cloud(cloud) => {
            let bucket = match Bucket::open(cloud) {
                Ok(bucket) => bucket,
                Err(err) => return Err(stage::fail_every_name(STAGE, err, names, output)),
            };
            let wals_dir = cloud.location.wals_dir(&cloud.server);
            (
                bucket.url(&wals_dir),
                look_up_cloud(&bucket, &wals, partial, to, temp_dir),
            )
        }
    };
    report_looked_up(&archive, looked_up, quiet_missing, output)
}

/// A local archive must be a directory we may search before any name is looked up:
/// without it every name would be "not in the archive" (a mistyped --home, --server or
/// --archive), which PostgreSQL takes for the end of recovery.
fn check_archive(wals: &Path) -> Result<()> {
    let refused = |what: &str| {
        Err(WalError::Config(format!(
            "the archive {} {what} (check --home, --server, --archive)",
            wals.display()
        )))
    };
    match fs::metadata(wals) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => refused("does not exist"),
        Err(e) => Err(WalError::io("cannot search the archive", wals, e)),
        Ok(meta) if !meta.is_dir() => refused("is not a directory"),
        Ok(_) => nix::unistd::access(wals, nix::unistd::AccessFlags::X_OK)
            .map_err(|errno| WalError::io("cannot search the archive", wals, errno.into())),
    }
}

/// Removes from `dir` the temps a killed restore left there: names of the stages' temp
/// grammar ([`wal_core::temp::is_temp_name`]) for any WAL name, with a restore stage's
/// suffix. Failures are ignored:
/// a leftover costs disk space, never a restore.
fn sweep_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let suffix = wal_core::temp::temp_suffix_of(name);
        // A unique temp names its writer: one still running is not stale.
        let writer_runs =
            wal_core::temp::unique_pid(name, None, &wal_core::temp::RESTORE_TEMP_SUFFIXES)
                .is_some_and(wal_core::process::alive);
        if !writer_runs
            && suffix.is_some_and(|suffix| wal_core::temp::RESTORE_TEMP_SUFFIXES.contains(&suffix))
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Look-up of one name in a local archive: its record, or `None` when it is not there.
fn look_up_local(
    layout: &ServerLayout,
    wal: &WalName,
    partial: bool,
    to: &GetDestination,
) -> (WalName, Option<WalRecord>) {
    let mut record = WalRecord::new(wal.as_str());
    record.kind = Some(wal.kind());
    match find(layout, wal, partial) {
        Ok(Some(found)) => {
            if let Err(err) = fetch(&mut record, &found, to) {
                record.fail(STAGE, &err);
            }
        }
        Ok(None) => return (wal.clone(), None),
        Err(err) => record.fail(STAGE, &err),
    }
    (wal.clone(), Some(record))
}

/// Look-up in a cloud archive, `--jobs` names at a time, in the order asked.
fn look_up_cloud(
    bucket: &Bucket<'_>,
    wals: &[WalName],
    partial: bool,
    to: &GetDestination,
    temp_dir: &Path,
) -> Vec<(WalName, Option<WalRecord>)> {
    let work = wals.iter().map(|wal| async move {
        let mut record = WalRecord::new(wal.as_str());
        record.kind = Some(wal.kind());
        let url = bucket.name_url(wal.as_str());
        let fetched = bucket
            .bounded(
                &url,
                fetch_object(bucket, &mut record, wal, partial, to, temp_dir),
            )
            .await;
        match fetched {
            Ok(true) => (wal.clone(), Some(record)),
            Ok(false) => (wal.clone(), None),
            Err(err) => {
                record.fail(STAGE, &err);
                (wal.clone(), Some(record))
            }
        }
    });
    bucket.block_on(
        futures::stream::iter(work)
            .buffered(bucket.jobs())
            .collect(),
    )
}

/// Finds `wal`'s object (or, with `partial`, its `.partial`'s) and downloads it;
/// `false` when there is none.
async fn fetch_object(
    bucket: &Bucket<'_>,
    record: &mut WalRecord,
    wal: &WalName,
    partial: bool,
    to: &GetDestination,
    temp_dir: &Path,
) -> Result<bool> {
    let found = bucket.find_with_partial(wal, partial).await?;
    let Some(object) = pick(&found, wal) else {
        return Ok(false);
    };
    let name = object.info.name.clone();
    record.name = name.as_str().to_string();
    record.kind = Some(name.kind());
    record.time = object.time;
    record.stored_at = Some(PathBuf::from(bucket.url(&object.key)));
    let dest = match to {
        GetDestination::InPlace => {
            let (temp, size) = bucket
                .download_temp(&object.key, temp_dir, name.as_str(), Kind::Download)
                .await?;
            record.size = size;
            record.temps.push(temp.clone());
            record.path = Some(temp);
            identify(record)?;
            return Ok(true);
        }
        GetDestination::File(path) => path.clone(),
        GetDestination::Dir(dir) => dir.join(name.as_str()),
    };
    record.size = bucket.download_durably(&object.key, &dest).await?;
    record.path = Some(dest);
    record.outcome = Some(Outcome::Fetched);
    identify(record)?;
    Ok(true)
}

/// The object to restore for `wal`: the WAL itself before its `.partial` (as
/// barman-cloud-wal-restore prefers), and among several extensions the first by key.
fn pick<'o>(found: &'o [StoredObject], wal: &WalName) -> Option<&'o StoredObject> {
    found
        .iter()
        .find(|object| object.info.name.as_str() == wal.as_str())
        .or_else(|| found.first())
}

/// Sets the record's compression and encryption from the file's first bytes.
fn identify(record: &mut WalRecord) -> Result<()> {
    let path = record.require_path()?;
    let (compression, encryption) = crate::list::identify(path).context("cannot read", path)?;
    record.compression = compression;
    record.encryption = encryption;
    Ok(())
}

/// Writes the records looked up, in the order asked. A name not in the archive gets a
/// failed record too (kind `not_found`, so the verdict travels down the pipe to the
/// write-out) and, unless `quiet_missing`, one stderr line; then the exit status is 66.
fn report_looked_up(
    archive: &str,
    looked_up: Vec<(WalName, Option<WalRecord>)>,
    quiet_missing: bool,
    output: impl Write,
) -> Result<Verdict> {
    let mut writer = RecordWriter::new(STAGE, output);
    let mut missing = false;
    for (wal, record) in looked_up {
        if let Some(record) = record {
            writer.write(&record, false)?;
            continue;
        }
        missing = true;
        let err = not_in_archive(archive, wal.as_str());
        if !quiet_missing {
            stage::report_error(STAGE, &err);
        }
        let mut record = WalRecord::new(wal.as_str());
        record.kind = Some(wal.kind());
        record.fail(STAGE, &err);
        // Reported above (or silent by request): the writer must not say it again.
        writer.write(&record, true)?;
    }
    writer.flush()?;
    Ok(Verdict {
        summary: writer.summary(),
        status: missing.then_some(ExitCode::NoInput),
    })
}

/// The not-found error: kind `not_found`, exit 66 (EX_NOINPUT).
fn not_in_archive(archive: &str, name: &str) -> WalError {
    WalError::io(
        "not in the archive",
        archive,
        io::Error::new(io::ErrorKind::NotFound, name.to_string()),
    )
}

/// A file found for a requested name.
#[derive(Debug)]
struct Found {
    /// Its name: the requested one, or `<segment>.partial`.
    name: WalName,
    /// Where it is.
    path: PathBuf,
    /// Its metadata.
    meta: fs::Metadata,
}

/// The first candidate that exists, or `None`. A candidate that exists but is not a
/// regular file is an error (it cannot be WAL: a directory, a fifo, a dangling link), as
/// is one we may not look at: only where there is no entry at all is the WAL "not in the
/// archive" (exit 66, which PostgreSQL takes for the end of the archive). A symbolic link
/// to a regular file is followed (early walpipe archives stored some).
fn find(layout: &ServerLayout, wal: &WalName, partial: bool) -> Result<Option<Found>> {
    for (name, path) in layout.candidates(wal, partial) {
        match fs::symlink_metadata(&path) {
            Ok(entry) => {
                let meta = if entry.file_type().is_symlink() {
                    fs::metadata(&path).map_err(|e| WalError::Corrupt {
                        path: path.clone(),
                        message: format!("a symbolic link to nothing usable: {e}"),
                    })?
                } else {
                    entry
                };
                if !meta.is_file() {
                    return Err(WalError::Corrupt {
                        message: format!(
                            "{}, not a regular file",
                            durable::describe_type(meta.file_type())
                        ),
                        path,
                    });
                }
                return Ok(Some(Found { name, path, meta }));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("cannot stat", &path, e)),
        }
    }
    Ok(None)
}

/// Fills `record` for `found`, copying the file as stored when a destination is given.
fn fetch(record: &mut WalRecord, found: &Found, to: &GetDestination) -> Result<()> {
    record.name = found.name.as_str().to_string();
    record.kind = Some(found.name.kind());
    record.time = mtime_seconds(&found.meta);
    record.stored_at = Some(found.path.clone());
    record.path = Some(found.path.clone());
    identify(record)?;
    let dest = match to {
        GetDestination::InPlace => {
            record.size = found.meta.len();
            return Ok(());
        }
        GetDestination::File(path) => path.clone(),
        GetDestination::Dir(dir) => dir.join(found.name.as_str()),
    };
    record.size = durable::copy_durably(&found.path, &dest)?;
    record.path = Some(dest);
    record.outcome = Some(Outcome::Fetched);
    Ok(())
}

/// Write-out: each healthy record's file to its destination; failed records pass through
/// (their temps removed: this is the end of the pipeline). As the last stage it decides
/// the pipeline's exit status ([`write_out_status`]).
fn write_out(
    options: &GetOptions<'_>,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Verdict> {
    let to = options.to;
    let territory = options.territory;
    if let GetDestination::File(path) = to {
        // A killed write-out's half-written copy of `%p`.
        durable::sweep_dead_temps_for(path);
    }
    let mut writer = RecordWriter::new(STAGE, output);
    let mut seen = 0u64;
    let mut worst = None;
    let progress = wal_core::progress::Progress::on_terminal(STAGE, "files written out");
    stage::with_reader(STAGE, input, |reader| {
        while let Some(mut record) = reader.next_record() {
            seen += 1;
            let was_failed = record.failed();
            if !was_failed
                && let Err(err) = still_encrypted(&record)
                    .and_then(|()| destination(&record, to, seen))
                    .and_then(|dest| place(&mut record, &dest, options))
            {
                record.fail(STAGE, &err);
            }
            if let Some(error) = &record.error {
                worst = Some(worse(worst, verdict_kind(error, was_failed)));
                remove_temps(territory, &record, None);
            } else {
                progress.tick(record.size);
            }
            writer.write(&record, was_failed)?;
            writer.flush()?;
        }
        Ok(())
    })?;
    drop(progress);
    let status = write_out_status(seen, worst);
    if seen == 0
        && let GetDestination::File(dest) | GetDestination::Dir(dest) = to
    {
        wal_core::log::error!(
            "{STAGE}: nothing written to {}: the pipeline ended without a record \
             (a stage before this one failed)",
            dest.display()
        );
    }
    Ok(Verdict {
        summary: writer.summary(),
        status,
    })
}

/// A write-out whose own settings were refused: when the records it gets arrived failed
/// (the look-up refused the same settings and said so, or failed otherwise), their
/// verdict is the status, silently; when none did, `err` is reported as this stage's.
pub fn refused_write_out(err: WalError, input: impl BufRead + Send) -> Result<Verdict> {
    let mut worst = None;
    let read = stage::with_reader(STAGE, input, |reader| {
        while let Some(record) = reader.next_record() {
            match &record.error {
                Some(error) => worst = Some(worse(worst, verdict_kind(error, true))),
                None => return Ok(false),
            }
        }
        Ok(true)
    });
    match (read, worst) {
        (Ok(true), Some(kind)) => Ok(Verdict {
            summary: stage::Summary::default(),
            status: Some(ExitCode::for_kind(kind)),
        }),
        _ => Err(err),
    }
}

/// The write-out's exit status, the whole restore's: none chosen (0) when every record
/// was written; else [`ExitCode::for_kind`] of the `worst` failure ([`worse`]), whether
/// this stage failed the record or one before it did (`not_found` from the look-up: 66);
/// 70 (EX_SOFTWARE) when no record came at all: a stage before this one died or failed
/// without passing anything on. 66 thus only ever comes from a look-up's record saying
/// the archive has no such file, which PostgreSQL takes for the end of the archive.
fn write_out_status(seen: u64, worst: Option<ErrorKind>) -> Option<ExitCode> {
    if seen == 0 {
        return Some(ExitCode::for_kind(ErrorKind::Internal));
    }
    worst.map(ExitCode::for_kind)
}

/// The kind a failed record counts as for the exit status. `not_found` (66, the end of
/// the archive for PostgreSQL) only as the look-up said it, in a record that arrived
/// failed by this stage's name: any other stage's "not found" (a key file, a temp
/// directory that is not there) or this write-out's own (a file gone while it was being
/// restored) is an I/O failure, never "not archived".
fn verdict_kind(error: &wal_core::record::RecordError, arrived_failed: bool) -> ErrorKind {
    match error.kind {
        ErrorKind::NotFound if !(arrived_failed && error.stage == STAGE) => ErrorKind::Io,
        kind => kind,
    }
}

/// The failure that decides the exit status, `worst` so far or `next`: any failure
/// outranks `not_found` (a WAL not archived must not hide one that cannot be restored);
/// among the others, the first one seen.
fn worse(worst: Option<ErrorKind>, next: ErrorKind) -> ErrorKind {
    match worst {
        None | Some(ErrorKind::NotFound) => next,
        Some(kind) => kind,
    }
}

/// Write-out ends a restore: what it writes must be WAL, never ciphertext handed to
/// PostgreSQL because no key was configured.
fn still_encrypted(record: &WalRecord) -> Result<()> {
    match record.encryption {
        Some(_) => Err(WalError::Usage(format!(
            "{}: the archived file is encrypted: give restore-wal --key KEY (or a passphrase)",
            record.name
        ))),
        None => Ok(()),
    }
}

/// Where the `nth` record (1-based) goes.
fn destination(record: &WalRecord, to: &GetDestination, nth: u64) -> Result<PathBuf> {
    match to {
        GetDestination::File(path) if nth == 1 => Ok(path.clone()),
        GetDestination::File(path) => Err(WalError::Usage(format!(
            "{}: --to {} takes one record; use --to-dir DIR for several",
            record.name,
            path.display()
        ))),
        // The name becomes a file name: it must be a WAL name, never `../x`.
        GetDestination::Dir(dir) => Ok(dir.join(WalName::parse_file_name(&record.name)?.as_str())),
        GetDestination::InPlace => {
            Err(WalError::Internal("write-out without a destination".into()))
        }
    }
}

/// Puts the record's file at `dest` durably and points the record there: moved when it
/// is a temp of ours, else copied (and left as it is); checked first, unless told not to,
/// to be WAL of the right shape for its name.
fn place(record: &mut WalRecord, dest: &Path, options: &GetOptions<'_>) -> Result<()> {
    let src = record.require_path()?.clone();
    let file = durable::open_wal(&src)?;
    if options.header_check {
        crate::shape::check_plain(&WalName::parse_file_name(&record.name)?, &src, file)?;
    }
    let ours =
        record.temps.contains(&src) && options.territory.temp_file(&src, &record.name).is_ok();
    let size = if ours {
        move_into_place(&src, dest)?
    } else {
        durable::copy_durably(&src, dest)?
    };
    remove_temps(options.territory, record, Some(&src));
    record.temps.clear();
    record.path = Some(dest.to_path_buf());
    record.size = size;
    record.outcome = Some(Outcome::Fetched);
    Ok(())
}

/// Moves a temp file of ours to `dest`: fsync it, rename without replacing (a durable
/// copy when `dest` is on another filesystem), fsync `dest`'s directory. Returns its size.
fn move_into_place(src: &Path, dest: &Path) -> Result<u64> {
    durable::fsync_file(src)?;
    match durable::rename_no_replace(src, dest) {
        Ok(()) => {
            durable::fsync_dir(durable::parent_of(dest))?;
            fs::metadata(dest)
                .map(|meta| meta.len())
                .context("cannot stat", dest)
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let size = durable::copy_durably(src, dest)?;
            durable::remove_files([src])?;
            Ok(size)
        }
        Err(e) => Err(WalError::io("cannot create", dest, e)),
    }
}

/// Removes a record's temps (except `keep`), reporting but not failing on errors: the
/// record's fate is decided already. Only temps of ours ([`Territory::temp_file`]) go: a
/// record may list any path.
fn remove_temps(territory: &Territory, record: &WalRecord, keep: Option<&Path>) {
    for temp in record.temps.iter().filter(|t| Some(t.as_path()) != keep) {
        let removed = territory
            .temp_file(temp, &record.name)
            .and_then(|()| durable::remove_files([temp.as_path()]));
        if let Err(err) = removed
            && !matches!(err.kind(), wal_core::ErrorKind::NotFound)
        {
            stage::report_error(STAGE, &err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[(WalName, PathBuf)]) -> Vec<String> {
        list.iter()
            .map(|(name, path)| format!("{name} {}", path.display()))
            .collect()
    }

    #[test]
    fn looks_where_barman_get_wal_looks() {
        let layout = ServerLayout::barman(Path::new("/b"), "pg");
        let seg = WalName::parse("000000010000000A00000042").unwrap();
        assert_eq!(
            names(&layout.candidates(&seg, false)),
            [
                "000000010000000A00000042 /b/pg/wals/000000010000000A/000000010000000A00000042",
                "000000010000000A00000042 /b/pg/incoming/000000010000000A00000042",
                "000000010000000A00000042 /b/pg/streaming/000000010000000A00000042",
                "000000010000000A00000042 /b/pg/wals/000000010000000A/000000010000000A00000042",
            ]
        );
        let with_partial = names(&layout.candidates(&seg, true));
        assert_eq!(
            with_partial[3..7],
            [
                "000000010000000A00000042.partial /b/pg/streaming/000000010000000A00000042.partial",
                "000000010000000A00000042 /b/pg/streaming/000000010000000A00000042",
                "000000010000000A00000042.partial /b/pg/wals/000000010000000A/000000010000000A00000042.partial",
                "000000010000000A00000042.partial /b/pg/incoming/000000010000000A00000042.partial",
            ]
        );
        // History files live in the archive root, and have no .partial.
        let history = WalName::parse("00000002.history").unwrap();
        let list = names(&layout.candidates(&history, true));
        assert_eq!(list.len(), 4);
        assert_eq!(list[0], "00000002.history /b/pg/wals/00000002.history");
    }

    #[test]
    fn the_worst_failure_decides_and_not_found_is_the_least() {
        let fold = |kinds: &[ErrorKind]| kinds.iter().fold(None, |w, k| Some(worse(w, *k)));
        assert_eq!(fold(&[]), None);
        assert_eq!(fold(&[ErrorKind::NotFound]), Some(ErrorKind::NotFound));
        assert_eq!(
            fold(&[
                ErrorKind::NotFound,
                ErrorKind::Corrupt,
                ErrorKind::Temporary
            ]),
            Some(ErrorKind::Corrupt)
        );
        assert_eq!(
            fold(&[ErrorKind::Temporary, ErrorKind::NotFound, ErrorKind::Io]),
            Some(ErrorKind::Temporary)
        );
        assert_eq!(write_out_status(2, None), None);
        assert_eq!(
            write_out_status(1, Some(ErrorKind::NotFound)),
            Some(ExitCode::NoInput)
        );
        assert_eq!(
            write_out_status(1, Some(ErrorKind::Temporary)),
            Some(ExitCode::TempFail)
        );
        assert_eq!(write_out_status(0, None), Some(ExitCode::Software));
    }

    #[test]
    fn write_out_names_must_be_wal_names() {
        let mut record = WalRecord::new("../../etc/passwd");
        record.path = Some("/tmp/x".into());
        let to = GetDestination::Dir("/spool".into());
        assert!(destination(&record, &to, 1).is_err());
        record.name = "000000010000000000000001".into();
        assert_eq!(
            destination(&record, &to, 1).unwrap(),
            Path::new("/spool/000000010000000000000001")
        );
        let one = GetDestination::File("/p".into());
        assert!(destination(&record, &one, 1).is_ok());
        assert_eq!(
            destination(&record, &one, 2).unwrap_err().kind(),
            wal_core::ErrorKind::Usage
        );
    }
}
