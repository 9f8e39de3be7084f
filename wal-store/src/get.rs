//! `wal-store get`: finds archived WAL files, and writes restored ones out durably.
//!
//! It is both ends of `scripts/restore-wal`'s pipeline (PostgreSQL's `restore_command`):
//!
//! ```text
//! wal-store get NAME | wal-compress --decompress --temp-dir DIR | wal-store get --to %p
//! ```
//!
//! * **Look-up** (NAMEs given): each name is searched where Barman's `get-wal` searches
//!   (spec §8.4): `wals/<hash>/NAME`, then the `incoming` and `streaming` queues (a WAL
//!   not archived yet is still restorable), with `--partial` also `NAME.partial`, then the
//!   archive once more (archive-wal may have moved the file meanwhile). A few `stat`s per
//!   name, never a listing of the archive, and no read of xlog.db: a local archive stores
//!   files under their plain names whatever Barman or walpipe compressed them with, and
//!   the first bytes (magic) say which compression, so Barman-written archives restore as
//!   they are. The record points at the file where it is (nothing copied; the next stage
//!   reads it from there) or, with `--to`/`--to-dir`, at a durable copy as stored. A name
//!   not found gives no record, one stderr line, and exit 66 ("not in the archive").
//! * **Write-out** (no NAMEs): the records on stdin are written to `--to PATH` (one
//!   record) or into `--to-dir DIR` under their names: temp file in the destination
//!   directory, fsync, rename without replacing, fsync the directory, so a killed run never
//!   leaves a partial file under the destination name. A record whose file is one of its
//!   own `temps` (a decompressed copy, a prefetched spool file) is moved there rather than
//!   copied; the record's other temps are removed, as `put` removes them once stored.
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
use wal_core::stage::{self, RecordWriter, Summary};
use wal_core::trust::Territory;
use wal_core::{WalError, WalKind, WalName, WalRecord};

use futures::StreamExt;

use crate::STAGE;
use crate::cli::{GetDestination, Target};
use crate::cloud::download::Kind;
use crate::cloud::{Bucket, StoredObject};

/// What `get` was asked to do.
#[derive(Debug)]
pub struct GetOptions<'a> {
    /// Where from.
    pub target: &'a Target,
    /// The names to look up; none: write out the records on stdin.
    pub names: &'a [String],
    /// Also look for `<segment>.partial`.
    pub partial: bool,
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
) -> Result<Summary> {
    let GetOptions {
        target,
        names,
        partial,
        to,
        temp_dir,
        ..
    } = *options;
    if names.is_empty() {
        return write_out(options, input, output);
    }
    let wals = names
        .iter()
        .map(|name| WalName::parse_file_name(name))
        .collect::<Result<Vec<_>>>()?;
    let (archive, looked_up) = match target {
        Target::Local(local) => (
            local.layout.wals.display().to_string(),
            wals.iter()
                .map(|wal| look_up_local(&local.layout, wal, partial, to))
                .collect(),
        ),
        Target::Cloud(cloud) => {
            let bucket = Bucket::open(cloud)?;
            let wals_dir = cloud.location.wals_dir(&cloud.server);
            (
                bucket.url(&wals_dir),
                look_up_cloud(&bucket, &wals, partial, to, temp_dir),
            )
        }
    };
    report_looked_up(&archive, looked_up, output)
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

/// Writes the records looked up; exit 66 (the last missing name's error) if any name is
/// not in the archive, after one stderr line for each of the others.
fn report_looked_up(
    archive: &str,
    looked_up: Vec<(WalName, Option<WalRecord>)>,
    output: impl Write,
) -> Result<Summary> {
    let mut writer = RecordWriter::new(STAGE, output);
    let mut missing = Vec::new();
    for (wal, record) in looked_up {
        match record {
            Some(record) => writer.write(&record, false)?,
            None => missing.push(not_in_archive(archive, wal.as_str())),
        }
    }
    writer.flush()?;
    match missing.pop() {
        Some(last) => {
            for err in &missing {
                stage::report_error(STAGE, err);
            }
            Err(last)
        }
        None => Ok(writer.summary()),
    }
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

/// Where Barman's `get-wal` looks for `wal`, in its order (spec §8.4).
fn candidates(layout: &ServerLayout, wal: &WalName, partial: bool) -> Vec<(WalName, PathBuf)> {
    let name = wal.as_str();
    let archived = (wal.clone(), layout.archived_path(wal));
    let mut list = vec![
        archived.clone(),
        (wal.clone(), layout.incoming.join(name)),
        (wal.clone(), layout.streaming.join(name)),
    ];
    if partial
        && wal.kind() == WalKind::Segment
        && let Ok(partial) = WalName::parse(&format!("{name}.partial"))
    {
        list.extend([
            (partial.clone(), layout.streaming.join(partial.as_str())),
            (wal.clone(), layout.streaming.join(name)),
            (partial.clone(), layout.archived_path(&partial)),
            (partial.clone(), layout.incoming.join(partial.as_str())),
        ]);
    }
    // archive-wal may have moved the file from a queue into the archive meanwhile.
    list.push(archived);
    list
}

/// The first candidate that exists, or `None`. A candidate that exists but is not a
/// regular file is an error (it cannot be WAL: a directory, a fifo, a dangling link), as
/// is one we may not look at: only where there is no entry at all is the WAL "not in the
/// archive" (exit 66, which PostgreSQL takes for the end of the archive). A symbolic link
/// to a regular file is followed (early walpipe archives stored some).
fn find(layout: &ServerLayout, wal: &WalName, partial: bool) -> Result<Option<Found>> {
    for (name, path) in candidates(layout, wal, partial) {
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
/// (their temps removed: this is the end of the pipeline). `--to PATH` with no record at
/// all is an error of kind `not_found` (exit 66): nothing came down the pipe.
fn write_out(
    options: &GetOptions<'_>,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Summary> {
    let to = options.to;
    let territory = options.territory;
    let mut writer = RecordWriter::new(STAGE, output);
    let mut seen = 0u64;
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
            if record.failed() {
                remove_temps(territory, &record, None);
            }
            writer.write(&record, was_failed)?;
            writer.flush()?;
        }
        Ok(())
    })?;
    if let (GetDestination::File(path), 0) = (to, seen) {
        return Err(WalError::io(
            "nothing written to",
            path,
            io::Error::new(io::ErrorKind::NotFound, "no record on stdin"),
        ));
    }
    Ok(writer.summary())
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
            names(&candidates(&layout, &seg, false)),
            [
                "000000010000000A00000042 /b/pg/wals/000000010000000A/000000010000000A00000042",
                "000000010000000A00000042 /b/pg/incoming/000000010000000A00000042",
                "000000010000000A00000042 /b/pg/streaming/000000010000000A00000042",
                "000000010000000A00000042 /b/pg/wals/000000010000000A/000000010000000A00000042",
            ]
        );
        let with_partial = names(&candidates(&layout, &seg, true));
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
        let list = names(&candidates(&layout, &history, true));
        assert_eq!(list.len(), 4);
        assert_eq!(list[0], "00000002.history /b/pg/wals/00000002.history");
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
