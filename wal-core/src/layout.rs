//! Barman's on-disk layout of a server, shared by the tools that read or write it.
//!
//! `<home>/<server>/{incoming,streaming,wals,errors}`, xlog.db in `wals/`, locks in
//! `<home>` (Barman's defaults: `docs/barman-formats.md#archive-layout`). Archived files sit
//! in upper-case hash directories under their plain name; history files in the archive root
//! (same section).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result};

use crate::names::{WalKind, WalName, decode_hash_dir};
use crate::xlogdb::Xlogdb;

/// Where a server's queues, archive, errors and locks are.
#[derive(Debug, Clone)]
pub struct ServerLayout {
    /// Server name (Barman's section name).
    pub server: String,
    /// The archive (`wals_directory`).
    pub wals: PathBuf,
    /// archive_command drop queue (`incoming_wals_directory`).
    pub incoming: PathBuf,
    /// pg_receivewal queue (`streaming_wals_directory`).
    pub streaming: PathBuf,
    /// Where conflicting and unknown files go (`errors_directory`).
    pub errors: PathBuf,
    /// Where lock files live (`barman_lock_directory`).
    pub lock_dir: PathBuf,
}

impl ServerLayout {
    /// Barman's defaults under `home` (`barman_home`).
    #[must_use]
    pub fn barman(home: &Path, server: &str) -> ServerLayout {
        let base = home.join(server);
        ServerLayout {
            server: server.to_string(),
            wals: base.join("wals"),
            incoming: base.join("incoming"),
            streaming: base.join("streaming"),
            errors: base.join("errors"),
            lock_dir: home.to_path_buf(),
        }
    }

    /// The layout implied by an archive directory alone: errors beside it, and locks in
    /// Barman's home when the archive is `<home>/<server>/wals`, else in the archive.
    #[must_use]
    pub fn from_archive(wals: &Path, server: &str) -> ServerLayout {
        let server_dir = wals.parent().unwrap_or(wals);
        let barman_home = (wals.file_name() == Some("wals".as_ref())
            && server_dir.file_name() == Some(server.as_ref()))
        .then(|| server_dir.parent())
        .flatten();
        ServerLayout {
            server: server.to_string(),
            wals: wals.to_path_buf(),
            incoming: server_dir.join("incoming"),
            streaming: server_dir.join("streaming"),
            errors: server_dir.join("errors"),
            lock_dir: barman_home.unwrap_or(wals).to_path_buf(),
        }
    }

    /// [`ServerLayout::from_archive`] with the directories given explicitly put in
    /// place of the derived ones: how every binary resolves a local archive's layout
    /// from its flags.
    #[must_use]
    pub fn from_archive_with(wals: &Path, server: &str, given: &GivenDirs) -> ServerLayout {
        let mut layout = ServerLayout::from_archive(wals, server);
        let dirs = [
            (&given.incoming, &mut layout.incoming),
            (&given.streaming, &mut layout.streaming),
            (&given.errors, &mut layout.errors),
            (&given.lock_dir, &mut layout.lock_dir),
        ];
        for (given, derived) in dirs {
            if let Some(dir) = given {
                derived.clone_from(dir);
            }
        }
        layout
    }

    /// The server's xlog.db (`<wals>/<server>-xlog.db`).
    #[must_use]
    pub fn xlogdb(&self) -> Xlogdb {
        Xlogdb::for_server(&self.wals, &self.server, &self.lock_dir)
    }

    /// Where `name` is stored in the archive.
    #[must_use]
    pub fn archived_path(&self, name: &WalName) -> PathBuf {
        self.wals.join(name.relpath())
    }

    /// Where a restore looks for `wal`, in Barman's `get-wal` order: the archive, the
    /// incoming and streaming queues (a WAL not archived yet is still restorable); with
    /// `partial`, also `<segment>.partial` (the end of a streamed timeline); then the
    /// archive once more, since archive-wal may have moved the file from a queue into it
    /// meanwhile. Each candidate is the name found there and its path.
    #[must_use]
    pub fn candidates(&self, wal: &WalName, partial: bool) -> Vec<(WalName, PathBuf)> {
        let name = wal.as_str();
        let archived = (wal.clone(), self.archived_path(wal));
        let mut list = vec![
            archived.clone(),
            (wal.clone(), self.incoming.join(name)),
            (wal.clone(), self.streaming.join(name)),
        ];
        if partial
            && wal.kind() == WalKind::Segment
            && let Ok(partial) = WalName::parse(&format!("{name}.partial"))
        {
            list.extend([
                (partial.clone(), self.streaming.join(partial.as_str())),
                (wal.clone(), self.streaming.join(name)),
                (partial.clone(), self.archived_path(&partial)),
                (partial.clone(), self.incoming.join(partial.as_str())),
            ]);
        }
        list.push(archived);
        list
    }
}

/// A server name is a plain name: it becomes a directory (`<home>/<server>`), lock and
/// catalogue file names, and a key prefix, so `..`, `/` or a leading dot or dash could
/// reach outside the home or hide the files. A name that is not is a configuration error
/// (exit 78).
pub fn check_server_name(server: &str) -> Result<()> {
    let plain = !server.is_empty()
        && server.len() <= 128
        && !server.starts_with(['.', '-'])
        && server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        return Ok(());
    }
    Err(crate::WalError::Config(format!(
        "--server {server:?}: a server name is letters, digits, '.', '_' and '-' \
         (not starting with '.' or '-'), at most 128 characters"
    )))
}

/// The directories of a layout given explicitly (flags or `WALPIPE_*` variables); the
/// others are derived from the archive ([`ServerLayout::from_archive_with`]).
#[derive(Debug, Clone, Default)]
pub struct GivenDirs {
    /// `--incoming`.
    pub incoming: Option<PathBuf>,
    /// `--streaming`.
    pub streaming: Option<PathBuf>,
    /// `--errors-dir`.
    pub errors: Option<PathBuf>,
    /// `--lock-dir`.
    pub lock_dir: Option<PathBuf>,
}

/// A file found in a local archive.
#[derive(Debug, Clone)]
pub struct ArchivedFile {
    /// Its WAL name.
    pub name: WalName,
    /// Where it is.
    pub path: PathBuf,
    /// Bytes as stored.
    pub size: u64,
    /// mtime, seconds since the epoch.
    pub time: f64,
}

/// What a local archive holds, sorted by name, and the entries that do not belong.
#[derive(Debug, Default)]
pub struct ArchiveListing {
    /// WAL files, history files, backup labels and partials, sorted by name bytes.
    pub files: Vec<ArchivedFile>,
    /// Entries that are neither (temp files, strays), for warnings.
    pub unexpected: Vec<PathBuf>,
}

/// Lists a local archive as Barman's rebuild-xlogdb walks it
/// (`docs/barman-formats.md#xlogdb`): history files in
/// the root, everything else in hash directories; dot-files (our temps) skipped silently.
pub fn list_archive(wals: &Path) -> Result<ArchiveListing> {
    let mut listing = ArchiveListing::default();
    for entry in sorted_entries(wals)? {
        let Some(name) = entry
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            listing.unexpected.push(entry);
            continue;
        };
        if name.starts_with('.') || name.ends_with("-xlog.db") || name == "xlog.db" {
            continue;
        }
        let Some(meta) = stat_unless_vanished(&entry)? else {
            continue;
        };
        if meta.is_dir() && decode_hash_dir(&name).is_some() {
            for file in sorted_entries(&entry)? {
                push_file(&mut listing, file, |kind| kind != WalKind::History)?;
            }
        } else if meta.is_file() {
            push_file(&mut listing, entry, |kind| kind == WalKind::History)?;
        } else {
            listing.unexpected.push(entry);
        }
    }
    listing.files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

fn push_file(
    listing: &mut ArchiveListing,
    path: PathBuf,
    belongs: impl Fn(WalKind) -> bool,
) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file_name.starts_with('.') {
        return Ok(());
    }
    let Some(meta) = stat_unless_vanished(&path)? else {
        return Ok(());
    };
    match WalName::parse(&file_name) {
        Ok(name) if meta.is_file() && belongs(name.kind()) => listing.files.push(ArchivedFile {
            name,
            size: meta.len(),
            time: mtime_seconds(&meta),
            path,
        }),
        _ => listing.unexpected.push(path),
    }
    Ok(())
}

/// `lstat`, or `None` when the file vanished since it was listed (retention may be
/// deleting while we list).
fn stat_unless_vanished(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::WalError::io("cannot stat", path, e)),
    }
}

/// Directory entries sorted by name bytes; a missing directory is empty.
pub fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::WalError::io("cannot list", dir, e)),
    };
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()
        .context("cannot list", dir)?;
    paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(paths)
}

/// A file's mtime as Barman's `time`: float seconds since the epoch.
#[must_use]
pub fn mtime_seconds(meta: &fs::Metadata) -> f64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Barman's errors/ destination: `<errors>/<name>.<YYYYmmddTHHMMSSZ>.<suffix>`
/// (`docs/barman-formats.md#errors-directory`).
#[must_use]
pub fn errors_path(errors_dir: &Path, name: &str, suffix: &str, now: SystemTime) -> PathBuf {
    errors_dir.join(format!("{name}.{}.{suffix}", utc_stamp(now)))
}

/// `%Y%m%dT%H%M%SZ` in UTC.
#[must_use]
pub fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_barmans() {
        let t = UNIX_EPOCH + Duration::from_secs(1_749_723_300); // 2025-06-12 10:15:00 UTC
        assert_eq!(utc_stamp(t), "20250612T101500Z");
        assert_eq!(
            errors_path(Path::new("/e"), "000000010000000000000005", "duplicate", t),
            PathBuf::from("/e/000000010000000000000005.20250612T101500Z.duplicate")
        );
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
    }

    #[test]
    fn barman_layout_and_lock_dir() {
        let layout = ServerLayout::barman(Path::new("/var/lib/barman"), "pg");
        assert_eq!(layout.wals, PathBuf::from("/var/lib/barman/pg/wals"));
        assert_eq!(
            layout.xlogdb().path(),
            Path::new("/var/lib/barman/pg/wals/pg-xlog.db")
        );
        let implied = ServerLayout::from_archive(Path::new("/var/lib/barman/pg/wals"), "pg");
        assert_eq!(implied.lock_dir, PathBuf::from("/var/lib/barman"));
        assert_eq!(implied.errors, PathBuf::from("/var/lib/barman/pg/errors"));
        let other = ServerLayout::from_archive(Path::new("/srv/archive"), "pg");
        assert_eq!(other.lock_dir, PathBuf::from("/srv/archive"));
    }

    #[test]
    fn lists_an_archive_like_rebuild_xlogdb() {
        let dir = tempfile::tempdir().unwrap();
        let wals = dir.path();
        fs::create_dir(wals.join("0000000100000000")).unwrap();
        for name in [
            "0000000100000000/000000010000000000000002",
            "0000000100000000/000000010000000000000001",
            "0000000100000000/000000010000000000000001.00000028.backup",
            "0000000100000000/.000000010000000000000003.1.0.tmp",
            "0000000100000000/junk",
            "00000002.history",
            "pg-xlog.db",
            "stray",
        ] {
            fs::write(wals.join(name), b"x").unwrap();
        }
        let listing = list_archive(wals).unwrap();
        let names: Vec<&str> = listing.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "000000010000000000000001",
                "000000010000000000000001.00000028.backup",
                "000000010000000000000002",
                "00000002.history"
            ]
        );
        assert_eq!(listing.unexpected.len(), 2);
        assert!(
            list_archive(&wals.join("missing"))
                .unwrap()
                .files
                .is_empty()
        );
    }
}
