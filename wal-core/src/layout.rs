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

/// The places of a server's files other than its archive, each where one is: as given,
/// or once resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// The archive_command queue (`incoming_wals_directory`).
    pub incoming: Option<PathBuf>,
    /// The pg_receivewal queue (`streaming_wals_directory`).
    pub streaming: Option<PathBuf>,
    /// Where conflicting and unknown files go (`errors_directory`).
    pub errors: Option<PathBuf>,
    /// Where the lock files are (`barman_lock_directory`).
    pub lock_dir: Option<PathBuf>,
    /// The catalogue.
    pub xlogdb: Option<PathBuf>,
}

/// Where a server's files are, as given (flags or `WALPIPE_*` variables); every other
/// place follows from these by [`LayoutSettings::resolve`], the one resolver of walpipe's
/// layout (the binaries use it through their flags, the wrappers through
/// `wal-store layout --shell`).
#[derive(Debug, Clone, Default)]
pub struct LayoutSettings {
    /// Barman's home (`barman_home`): the server's directories are `<home>/<server>/…`.
    pub home: Option<PathBuf>,
    /// The server name.
    pub server: String,
    /// The archive: a directory, or a cloud URL (`s3://`, `az://`, `gs://`).
    pub archive: Option<String>,
    /// The places named explicitly.
    pub given: Places,
}

/// A server's layout once defaults are applied: a local archive has every place; a cloud
/// archive has the local ones only under a home, or when named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLayout {
    /// The server name (checked: a plain name).
    pub server: String,
    /// The archive as given or derived: a directory, or a cloud URL.
    pub archive: String,
    /// Whether the archive is a cloud URL.
    pub cloud: bool,
    /// Everything else.
    pub places: Places,
}

impl LayoutSettings {
    /// Barman's layout, filled in:
    /// * with a home, `<home>/<server>/{wals,incoming,streaming,errors}`, locks in the
    ///   home; xlog.db in the archive (`<wals>/<server>-xlog.db`), or for a cloud archive in
    ///   the server's meta directory (`<home>/<server>/meta/<server>-xlog.db`), as Barman
    ///   keeps it;
    /// * a local archive without a home: the queues and errors/ beside it (`<archive>/..`),
    ///   locks in Barman's home when the archive is `<home>/<server>/wals`, else in the
    ///   archive;
    /// * a cloud archive without a home: no queue, errors/, lock directory or catalogue
    ///   unless named (as barman-cloud-wal-archive: conflicts fail the record).
    ///
    /// Each place named explicitly wins. A missing archive (and home) is a usage error;
    /// a server name that is not plain, an empty archive or a catalogue named like a WAL
    /// file are configuration errors.
    pub fn resolve(&self) -> Result<ResolvedLayout> {
        let server = self.server.clone();
        check_server_name(&server)?;
        let base = self.home.as_ref().map(|home| home.join(&server));
        let archive = match (&self.archive, &base) {
            (Some(archive), _) if archive.is_empty() => {
                return Err(crate::WalError::Config(
                    "--archive \"\": no archive given".into(),
                ));
            }
            (Some(archive), _) => archive.clone(),
            (None, Some(base)) => path_text(&base.join("wals"))?,
            (None, None) => {
                return Err(crate::WalError::Usage(
                    "--home DIR or --archive DIR|URL is required (or WALPIPE_HOME, WALPIPE_ARCHIVE)"
                        .into(),
                ));
            }
        };
        if let Some(xlogdb) = &self.given.xlogdb
            && xlogdb
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| WalName::parse_file_name(name).is_ok())
        {
            return Err(crate::WalError::Config(format!(
                "--xlogdb {}: a WAL file name, not a catalogue's",
                xlogdb.display()
            )));
        }
        let cloud = archive.contains("://");
        let beside = |dir: &str| base.as_ref().map(|base| base.join(dir));
        let derived = if cloud {
            Places {
                incoming: beside("incoming"),
                streaming: beside("streaming"),
                errors: beside("errors"),
                lock_dir: self.home.clone(),
                xlogdb: base
                    .as_ref()
                    .map(|base| base.join("meta").join(format!("{server}-xlog.db"))),
            }
        } else {
            let derived = ServerLayout::from_archive(Path::new(&archive), &server);
            Places {
                incoming: Some(beside("incoming").unwrap_or(derived.incoming)),
                streaming: Some(beside("streaming").unwrap_or(derived.streaming)),
                errors: Some(beside("errors").unwrap_or(derived.errors)),
                lock_dir: Some(self.home.clone().unwrap_or(derived.lock_dir)),
                xlogdb: Some(derived.wals.join(format!("{server}-xlog.db"))),
            }
        };
        let given = &self.given;
        // Records carry paths as JSON text: a place that is not UTF-8 could never be named
        // in one. A relative place would be another directory for each caller
        // ([`must_be_absolute`]).
        let local_archive = (!cloud).then(|| PathBuf::from(&archive));
        for (flag, place) in [
            ("--home", self.home.as_ref()),
            ("--archive", local_archive.as_ref()),
            ("--incoming", given.incoming.as_ref()),
            ("--streaming", given.streaming.as_ref()),
            ("--errors-dir", given.errors.as_ref()),
            ("--lock-dir", given.lock_dir.as_ref()),
            ("--xlogdb", given.xlogdb.as_ref()),
        ] {
            let Some(path) = place else { continue };
            if path.to_str().is_none() {
                return Err(crate::WalError::Config(format!(
                    "{flag} {}: not a UTF-8 path",
                    path.display()
                )));
            }
            must_be_absolute(flag, path)?;
        }
        let or = |given: &Option<PathBuf>, derived: Option<PathBuf>| given.clone().or(derived);
        let places = Places {
            incoming: or(&given.incoming, derived.incoming),
            streaming: or(&given.streaming, derived.streaming),
            errors: or(&given.errors, derived.errors),
            lock_dir: or(&given.lock_dir, derived.lock_dir),
            xlogdb: or(&given.xlogdb, derived.xlogdb),
        };
        let resolved = ResolvedLayout {
            server,
            archive,
            cloud,
            places,
        };
        Ok(resolved)
    }
}

/// Refuses (a configuration error) a directory or file given by `flag` as a relative
/// path: PostgreSQL runs archive_command and restore_command in its data directory,
/// systemd runs the units in `/`, a DBA runs a wrapper anywhere, so a relative path names
/// another place for each (a queue that archive-wal never empties, temps or a spool
/// inside the data directory, where base backups copy them).
pub fn must_be_absolute(flag: &str, path: &Path) -> Result<()> {
    if path.is_absolute() {
        return Ok(());
    }
    Err(crate::WalError::Config(format!(
        "{flag} {:?}: not an absolute path (archive_command runs in the data directory, the \
         units in /: a relative path names another place for each)",
        path.display().to_string()
    )))
}

/// A path as the text of an archive location (which may also be a URL).
fn path_text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| crate::WalError::Config(format!("{}: not a UTF-8 path", path.display())))
}

impl ResolvedLayout {
    /// A local archive's directories (`None` for a cloud archive).
    #[must_use]
    pub fn local(&self) -> Option<ServerLayout> {
        if self.cloud {
            return None;
        }
        let derived = ServerLayout::from_archive(Path::new(&self.archive), &self.server);
        let or = |place: &Option<PathBuf>, default: PathBuf| place.clone().unwrap_or(default);
        let places = &self.places;
        Some(ServerLayout {
            incoming: or(&places.incoming, derived.incoming),
            streaming: or(&places.streaming, derived.streaming),
            errors: or(&places.errors, derived.errors),
            lock_dir: or(&places.lock_dir, derived.lock_dir),
            server: derived.server,
            wals: derived.wals,
        })
    }

    /// The directories of this layout as a [`Territory`](crate::trust::Territory):
    /// refused when the queues, the archive and errors/ overlap, a queue is PostgreSQL's
    /// pg_wal, or the catalogue or the lock directory lies in a queue or errors/. For the
    /// tools that take the layout whole (the receiver, the check).
    pub fn territory(&self) -> Result<crate::trust::Territory> {
        let local = self.local();
        let places = &self.places;
        let queues = [
            ("--incoming", &places.incoming),
            ("--streaming", &places.streaming),
        ]
        .into_iter()
        .filter_map(|(flag, dir)| dir.as_deref().map(|dir| (flag, dir)))
        .collect();
        crate::trust::Territory::of_server(&crate::trust::ServerDirs {
            archive: local.as_ref().map(|local| local.wals.as_path()),
            queues,
            errors: places.errors.as_deref(),
            temp: None,
            xlogdb: places.xlogdb.as_deref(),
            lock_dir: places.lock_dir.as_deref(),
        })
    }

    /// The catalogue with its lock (Barman's `.<server>-xlogdb.lock` in the lock
    /// directory, else beside the catalogue), if there is one.
    #[must_use]
    pub fn xlogdb(&self) -> Option<Xlogdb> {
        let path = self.places.xlogdb.clone()?;
        let lock_dir = self
            .places
            .lock_dir
            .clone()
            .unwrap_or_else(|| crate::durable::parent_of(&path).to_path_buf());
        let lock = crate::lock::xlogdb_lock_path(&lock_dir, &self.server);
        Some(Xlogdb::at(path, lock))
    }

    /// The layout as shell assignments, one a line, each value single-quoted (byte for
    /// byte, so any path survives `eval`): `SERVER`, `ARCHIVE`, `CLOUD` (0 or 1),
    /// `INCOMING`, `STREAMING`, `ERRORS`, `LOCK_DIR`, `XLOGDB` and `ARCHIVE_WAL_LOCK`
    /// (archive-wal's run lock), empty where there is none.
    #[must_use]
    pub fn shell_assignments(&self) -> Vec<u8> {
        let places = &self.places;
        let run_lock = places
            .lock_dir
            .as_ref()
            .map(|dir| crate::lock::archive_wal_lock_path(dir, &self.server));
        let mut out = Vec::new();
        let text = |value: &str| value.as_bytes().to_vec();
        let path = |value: &Option<PathBuf>| {
            value
                .as_ref()
                .map(|path| path.as_os_str().as_encoded_bytes().to_vec())
                .unwrap_or_default()
        };
        let assignments = [
            ("SERVER", text(&self.server)),
            ("ARCHIVE", text(&self.archive)),
            ("CLOUD", text(if self.cloud { "1" } else { "0" })),
            ("INCOMING", path(&places.incoming)),
            ("STREAMING", path(&places.streaming)),
            ("ERRORS", path(&places.errors)),
            ("LOCK_DIR", path(&places.lock_dir)),
            ("XLOGDB", path(&places.xlogdb)),
            ("ARCHIVE_WAL_LOCK", path(&run_lock)),
        ];
        for (name, value) in assignments {
            shell_assignment(&mut out, name, &value);
        }
        out
    }
}

/// Appends `NAME='VALUE'` and a line break; a `'` in the value becomes `'\''`.
pub fn shell_assignment(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    for &byte in value {
        if byte == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(b"'\n");
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

    fn settings(home: Option<&str>, archive: Option<&str>) -> LayoutSettings {
        LayoutSettings {
            home: home.map(PathBuf::from),
            server: "pg".into(),
            archive: archive.map(str::to_owned),
            ..LayoutSettings::default()
        }
    }

    fn place(path: Option<&PathBuf>) -> Option<&str> {
        path.map(|p| p.to_str().unwrap())
    }

    /// One row per rule of [`LayoutSettings::resolve`]: what each place becomes.
    #[test]
    fn every_place_resolves_as_documented() {
        type Row<'a> = (Option<&'a str>, Option<&'a str>, [Option<&'a str>; 6]);
        let rows: [Row; 5] = [
            // A home: Barman's layout under it, xlog.db in the archive.
            (
                Some("/h"),
                None,
                [
                    Some("/h/pg/incoming"),
                    Some("/h/pg/streaming"),
                    Some("/h/pg/errors"),
                    Some("/h"),
                    Some("/h/pg/wals/pg-xlog.db"),
                    Some("/h/pg/wals"),
                ],
            ),
            // An archive inside a Barman home: the same places, locks in that home.
            (
                None,
                Some("/h/pg/wals"),
                [
                    Some("/h/pg/incoming"),
                    Some("/h/pg/streaming"),
                    Some("/h/pg/errors"),
                    Some("/h"),
                    Some("/h/pg/wals/pg-xlog.db"),
                    Some("/h/pg/wals"),
                ],
            ),
            // Any other archive: its neighbours beside it, locks in it.
            (
                None,
                Some("/srv/archive"),
                [
                    Some("/srv/incoming"),
                    Some("/srv/streaming"),
                    Some("/srv/errors"),
                    Some("/srv/archive"),
                    Some("/srv/archive/pg-xlog.db"),
                    Some("/srv/archive"),
                ],
            ),
            // A cloud archive under a home: everything else local, xlog.db in meta/.
            (
                Some("/h"),
                Some("s3://bucket/prefix"),
                [
                    Some("/h/pg/incoming"),
                    Some("/h/pg/streaming"),
                    Some("/h/pg/errors"),
                    Some("/h"),
                    Some("/h/pg/meta/pg-xlog.db"),
                    Some("s3://bucket/prefix"),
                ],
            ),
            // A cloud archive alone: nothing local unless named.
            (
                None,
                Some("az://container"),
                [None, None, None, None, None, Some("az://container")],
            ),
        ];
        for (home, archive, expected) in rows {
            let resolved = settings(home, archive).resolve().unwrap();
            let got = [
                place(resolved.places.incoming.as_ref()),
                place(resolved.places.streaming.as_ref()),
                place(resolved.places.errors.as_ref()),
                place(resolved.places.lock_dir.as_ref()),
                place(resolved.places.xlogdb.as_ref()),
                Some(resolved.archive.as_str()),
            ];
            assert_eq!(got, expected, "home {home:?}, archive {archive:?}");
            assert_eq!(resolved.cloud, resolved.archive.contains("://"));
            assert_eq!(resolved.local().is_none(), resolved.cloud);
        }
    }

    #[test]
    fn a_place_named_wins_over_the_derived_one() {
        let mut given = settings(Some("/h"), Some("s3://b"));
        given.given = Places {
            incoming: Some("/q/in".into()),
            streaming: Some("/q/st".into()),
            errors: Some("/e".into()),
            lock_dir: Some("/l".into()),
            xlogdb: Some("/c/x.db".into()),
        };
        let resolved = given.resolve().unwrap();
        assert_eq!(place(resolved.places.incoming.as_ref()), Some("/q/in"));
        assert_eq!(place(resolved.places.streaming.as_ref()), Some("/q/st"));
        assert_eq!(place(resolved.places.errors.as_ref()), Some("/e"));
        assert_eq!(place(resolved.places.lock_dir.as_ref()), Some("/l"));
        let xlogdb = resolved.xlogdb().unwrap();
        assert_eq!(xlogdb.path(), Path::new("/c/x.db"));
        // The catalogue's lock is Barman's, in the lock directory.
        given.archive = Some("/a/wals".into());
        let local = given.resolve().unwrap().local().unwrap();
        assert_eq!(local.wals, PathBuf::from("/a/wals"));
        assert_eq!(local.incoming, PathBuf::from("/q/in"));
        assert_eq!(local.lock_dir, PathBuf::from("/l"));
    }

    #[test]
    fn settings_that_place_nothing_or_reach_out_are_refused() {
        let usage = settings(None, None).resolve().unwrap_err();
        assert_eq!(usage.kind(), crate::ErrorKind::Usage, "{usage}");
        assert!(
            usage.to_string().contains("--home DIR or --archive"),
            "{usage}"
        );
        let empty = settings(None, Some("")).resolve().unwrap_err();
        assert_eq!(empty.kind(), crate::ErrorKind::Config, "{empty}");
        for server in ["", "..", "a/b", "-x", ".hidden", "a b"] {
            let mut bad = settings(Some("/h"), None);
            bad.server = server.into();
            let err = bad.resolve().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{server:?}: {err}");
        }
        let mut wal_named = settings(Some("/h"), None);
        wal_named.given.xlogdb = Some("/h/000000010000000000000001".into());
        let err = wal_named.resolve().unwrap_err();
        assert!(err.to_string().contains("not a catalogue"), "{err}");
    }

    /// A relative place would be another directory for PostgreSQL's archive_command (run
    /// in the data directory) and for the units (run in `/`).
    #[test]
    fn every_place_must_be_absolute() {
        let relative = |edit: fn(&mut LayoutSettings)| {
            let mut layout = settings(Some("/h"), None);
            edit(&mut layout);
            let err = layout.resolve().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
            assert!(err.to_string().contains("not an absolute path"), "{err}");
            err.to_string()
        };
        assert!(relative(|l| l.home = Some("barman".into())).starts_with("--home \"barman\""));
        relative(|l| l.archive = Some("wals".into()));
        relative(|l| l.archive = Some("./wals".into()));
        relative(|l| l.given.incoming = Some("incoming".into()));
        relative(|l| l.given.streaming = Some("s".into()));
        relative(|l| l.given.errors = Some("e".into()));
        relative(|l| l.given.lock_dir = Some("l".into()));
        relative(|l| l.given.xlogdb = Some("pg-xlog.db".into()));
        // A cloud archive is a URL, not a path.
        assert!(settings(Some("/h"), Some("s3://b/p")).resolve().is_ok());
    }

    /// What the wrappers `eval` must give back every byte of every path: quotes, `$`,
    /// spaces, line breaks and bytes that are not UTF-8.
    #[test]
    fn shell_assignments_survive_eval() {
        use std::os::unix::ffi::OsStrExt;
        // Any text (records carry paths as JSON text: bytes that are not UTF-8 are
        // refused).
        let odd = std::ffi::OsStr::new("/h/it's $HOME `id` \\n\n\u{e9}");
        let incoming = std::ffi::OsStr::new("/q/'\u{ff}'$(touch /tmp/x)");
        let resolved = LayoutSettings {
            home: Some(odd.into()),
            given: Places {
                incoming: Some(incoming.into()),
                ..Places::default()
            },
            ..settings(None, None)
        }
        .resolve()
        .unwrap();
        let mut script = resolved.shell_assignments();
        script.extend_from_slice(
            b"printf '%s\\0' \"$SERVER\" \"$ARCHIVE\" \"$CLOUD\" \"$INCOMING\" \"$LOCK_DIR\" \"$ARCHIVE_WAL_LOCK\"",
        );
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(std::ffi::OsStr::from_bytes(&script))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let values: Vec<&[u8]> = output.stdout.split(|&b| b == 0).collect();
        let lock = crate::lock::archive_wal_lock_path(odd.as_ref(), "pg");
        let expected: [&[u8]; 6] = [
            b"pg",
            resolved.archive.as_bytes(),
            b"0",
            incoming.as_bytes(),
            odd.as_bytes(),
            lock.as_os_str().as_bytes(),
        ];
        assert_eq!(&values[..6], &expected[..]);
        let not_text = LayoutSettings {
            given: Places {
                incoming: Some(std::ffi::OsStr::from_bytes(b"/q/\xff").into()),
                ..Places::default()
            },
            ..settings(Some("/h"), None)
        };
        let err = not_text.resolve().unwrap_err();
        assert!(err.to_string().starts_with("--incoming /q/"), "{err}");
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
