//! The temporary files a transforming stage writes (wal-compress, wal-encrypt): their
//! names, and their removal when a record fails.
//!
//! A transformed copy lives under a hidden, predictable name, `.<name>.<suffix>`
//! (`.compressed`, `.decompressed`, `.gpg`, `.decrypted`): hidden because queue listings skip
//! dot-files (as Barman's glob does), so a copy left by a killed run is never taken for
//! WAL; predictable because the next run then unlinks and replaces it
//! ([`crate::durable::create_temp`]) instead of leaving one more behind.
//!
//! Predictable names can collide within one run: the same WAL name queued both by
//! `pg_receivewal` and by `archive_command` gives two records whose copies would share a
//! name, and the second would replace the first before wal-store reads it. [`TempNames`]
//! hands each name out once per run and numbers the next ones.
//!
//! Predictable names are only safe where one run at a time writes: beside a record's file,
//! in a queue that the run holds the lock of. A `--temp-dir` may be shared by runs that
//! hold no common lock (concurrent `archive-command --direct` calls write into the
//! archive's root, from one host or several; two servers may be given one
//! `WALPIPE_TEMP_DIR`), and a second run replacing `.<name>.compressed` while the first
//! one's wal-store is about to store it would hand the first one a half-written file.
//! There a copy gets a name no other process makes, `.<name>.<pid>-<random>.<suffix>`,
//! created exclusively ([`create_unique`]).
//!
//! Such a name is never reused, so a killed run's copy is never replaced either. Whether
//! its run is over cannot be told from the name: the stage that wrote it exits as soon as
//! it hands its record on while the next stages still read the copy, and a run on another
//! host or in another pid namespace has pids that mean nothing here. Its age can: a copy
//! whose inode has not changed for [`STALE_COPY_AGE`] (a day) belongs to no run still
//! going, and wal-store put sweeps those from the directories it works in, once a run
//! ([`sweep_stale_copies`]); a restore sweeps `%p`'s directory.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::WalError;
use crate::durable;

/// The temporary names given out during one run.
#[derive(Debug, Default)]
pub struct TempNames {
    claimed: Mutex<HashSet<PathBuf>>,
}

impl TempNames {
    /// A fresh name `<dir>/.<name>.<suffix>` (then `.<name>.1.<suffix>`, ... when this run
    /// already gave that one out, or when it is one of `avoid`: the files the record
    /// points at, which creating the temporary file would unlink).
    pub fn claim(&self, dir: &Path, name: &str, suffix: &str, avoid: &[&Path]) -> PathBuf {
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut path = dir.join(format!(".{name}.{suffix}"));
        let mut n = 0u64;
        while claimed.contains(&path) || avoid.contains(&path.as_path()) {
            n += 1;
            path = dir.join(format!(".{name}.{n}.{suffix}"));
        }
        claimed.insert(path.clone());
        path
    }
}

impl TempNames {
    /// Creates the temporary copy of `path` (the file `record` points at) with `suffix`,
    /// in `temp_dir` under a name unique to this process ([`create_unique`]), or next to
    /// `path` under a predictable name never equal to `path` or the record's source.
    pub fn create_for(
        &self,
        temp_dir: Option<&Path>,
        record: &crate::WalRecord,
        path: &Path,
        suffix: &str,
    ) -> Result<(TempFile, File), WalError> {
        let base = base_name(&record.name, path);
        if let Some(dir) = temp_dir {
            return create_unique(dir, &base, suffix);
        }
        let mut avoid = vec![path];
        avoid.extend(record.source.as_deref());
        let temp_path = self.claim(dir_for(temp_dir, path), &base, suffix, &avoid);
        TempFile::create(temp_path)
    }
}

/// A pid as walpipe writes one: digits, no leading zero, above 0.
fn parse_pid(text: &str) -> Option<i32> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    (digits && !text.starts_with('0'))
        .then(|| text.parse::<i32>().ok())
        .flatten()
}

/// Creates `.<name>.<pid>-<random>.<suffix>` in `dir`, exclusively, mode 0600: a name no
/// other process makes, so two runs writing copies of one WAL into one directory never
/// share one nor unlink each other's. The pid is this process's; the random part (8
/// lowercase hex digits) covers processes of other pid namespaces or hosts sharing the
/// directory. Removed when the returned [`TempFile`] is dropped unless kept.
pub fn create_unique(dir: &Path, name: &str, suffix: &str) -> Result<(TempFile, File), WalError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    loop {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let path = dir.join(format!(
            ".{name}.{}-{:08x}.{suffix}",
            std::process::id(),
            hasher.finish() >> 32,
        ));
        match TempFile::create_new(path) {
            Err(WalError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists && attempts < 16 =>
            {
                attempts += 1;
            }
            created => return created,
        }
    }
}

/// The pid in `file_name` when it is exactly a name [`create_unique`] makes for WAL
/// `name` (any WAL name when `None`) with one of `suffixes`: `.<name>.<pid>-<8 lowercase
/// hex>.<suffix>`, the pid without a leading zero. Anything else is not ours to sweep.
#[must_use]
pub fn unique_pid(file_name: &str, name: Option<&str>, suffixes: &[&str]) -> Option<i32> {
    let rest = file_name.strip_prefix('.')?;
    let (rest, suffix) = rest.rsplit_once('.')?;
    let (wal_name, unique) = rest.rsplit_once('.')?;
    let (pid, random) = unique.split_once('-')?;
    let named = match name {
        Some(name) => wal_name == name,
        None => crate::WalName::parse_file_name(wal_name).is_ok(),
    };
    let random_ours = random.len() == 8
        && random
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (named && random_ours && suffixes.contains(&suffix))
        .then(|| parse_pid(pid))
        .flatten()
}

/// Removes the `.<name>.<pid>-<random>.<suffix>` files in `dir` ([`create_unique`])
/// whose process is gone (dead, or a zombie): for copies that live and die with the
/// process that made them (wal-store's comparison downloads), never for copies handed
/// to a next stage. A live process's copy stays, and so does one whose pid was reused. A
/// process of another pid namespace sharing the directory may have a pid that is free
/// here: its copy is then removed and that run fails and is retried; nothing stored is
/// ever touched. Failures are ignored: a leftover costs disk space, never a WAL.
pub fn sweep_dead(dir: &Path, name: &str, suffix: &str) {
    sweep(dir, Some(name), &[suffix], |pid, _| {
        u32::try_from(pid).ok() != Some(std::process::id()) && !crate::process::alive(pid)
    });
}

/// How long a copy in a shared temp directory must have stayed unchanged before it is
/// taken for a killed run's: a copy is usually read within seconds of being written, but
/// may wait behind a batch of slow uploads, a lock, a suspended machine, or be judged by
/// a clock that differs from the file server's; a leftover only costs disk space, a copy
/// swept too early fails its record (retried, never lost).
pub const STALE_COPY_AGE: Duration = Duration::from_secs(24 * 3600);

/// The suffixes of the copies archiving makes under unique names (wal-compress,
/// wal-encrypt, and the decrypted copies wal-store put compares), which put sweeps.
pub const ARCHIVE_TEMP_SUFFIXES: [&str; 4] = ["compressed", "gpg", "decrypted", "decompressed"];

/// Removes from `dir` the copies of any WAL under a name [`create_unique`] makes, with a
/// suffix of [`ARCHIVE_TEMP_SUFFIXES`], whose inode changed last (ctime: writing,
/// `chmod`, `utime` and linking all set it, nothing sets it back) more than `age` ago:
/// copies of killed runs. One reading of `dir`; only regular files; failures ignored.
pub fn sweep_stale_copies(dir: &Path, age: Duration) {
    let now = SystemTime::now();
    sweep(dir, None, &ARCHIVE_TEMP_SUFFIXES, |_, meta| {
        use std::os::unix::fs::MetadataExt;
        let changed = UNIX_EPOCH + Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(0));
        now.duration_since(changed).is_ok_and(|old| old >= age)
    });
}

/// Removes the regular files of `dir` named by [`create_unique`] for WAL `name` (any WAL
/// name when `None`) with one of `suffixes` that `stale` (given the pid in the name and
/// the file's metadata) says are left over. One reading of `dir`.
fn sweep(
    dir: &Path,
    name: Option<&str>,
    suffixes: &[&str],
    stale: impl Fn(i32, &fs::Metadata) -> bool,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|f| unique_pid(f, name, suffixes))
        else {
            continue;
        };
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
            && stale(pid, &meta)
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The suffixes of the temporary copies walpipe's stages make: wal-compress
/// (`compressed`, `decompressed`), wal-encrypt (`gpg`, `decrypted`), wal-store's cloud
/// downloads (`download`, `compare`).
pub const TEMP_SUFFIXES: [&str; 6] = [
    "compressed",
    "decompressed",
    "gpg",
    "decrypted",
    "download",
    "compare",
];

/// Whether `file_name` is a name a stage could have given a temporary copy of `wal_name`:
/// `.<wal_name>.<suffix>`, `.<wal_name>.<n>.<suffix>` ([`TempNames::claim`]) or
/// `.<wal_name>.<pid>-<8 hex>.<suffix>` ([`create_unique`]), with a suffix of
/// [`TEMP_SUFFIXES`]. Anything else a record lists in `temps` is not ours to remove.
#[must_use]
pub fn is_temp_name(file_name: &str, wal_name: &str) -> bool {
    let plain =
        !wal_name.is_empty() && !wal_name.contains('/') && wal_name != "." && wal_name != "..";
    let Some(rest) = file_name
        .strip_prefix('.')
        .and_then(|r| r.strip_prefix(wal_name))
        .and_then(|r| r.strip_prefix('.'))
    else {
        return false;
    };
    if !plain {
        return false;
    }
    let (middle, suffix) = match rest.rsplit_once('.') {
        Some((middle, suffix)) => (Some(middle), suffix),
        None => (None, rest),
    };
    let counter = |m: &str| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit());
    // Exactly what create_unique writes.
    let unique = |m: &str| {
        m.split_once('-').is_some_and(|(pid, random)| {
            parse_pid(pid).is_some()
                && random.len() == 8
                && random
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    };
    TEMP_SUFFIXES.contains(&suffix) && middle.is_none_or(|m| counter(m) || unique(m))
}

/// The suffix of `file_name` when it is a temp name of ours ([`is_temp_name`]) for some
/// WAL file name: `decompressed` for `.000000010000000000000002.decompressed`.
#[must_use]
pub fn temp_suffix_of(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?;
    // The WAL name ends at one of the dots that follow it.
    let ours = rest.match_indices('.').any(|(end, _)| {
        let wal_name = &rest[..end];
        crate::WalName::parse_file_name(wal_name).is_ok() && is_temp_name(file_name, wal_name)
    });
    ours.then(|| file_name.rsplit_once('.').map_or("", |(_, suffix)| suffix))
}

/// The suffixes of the temps a restore's stages make beside `%p` (decryption,
/// decompression, a cloud download); the others are made by archiving.
pub const RESTORE_TEMP_SUFFIXES: [&str; 3] = ["decompressed", "decrypted", "download"];

/// The file name the temporary copy of a record is named after: the record's WAL name
/// when it is a plain file name, else the last component of `path`.
pub fn base_name(record_name: &str, path: &Path) -> String {
    let plain = !record_name.is_empty()
        && record_name != "."
        && record_name != ".."
        && !record_name.contains('/');
    if plain {
        return record_name.to_string();
    }
    path.file_name()
        .map_or_else(|| OsString::from("wal"), ToOwned::to_owned)
        .to_string_lossy()
        .into_owned()
}

/// The directory a temporary copy of `path` goes to: `temp_dir`, else `path`'s own
/// directory (so the later move into the archive is a rename on the same filesystem
/// whenever the queue is on it).
#[must_use]
pub fn dir_for<'a>(temp_dir: Option<&'a Path>, path: &'a Path) -> &'a Path {
    match temp_dir {
        Some(dir) => dir,
        None => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        },
    }
}

/// A temporary file being written: removed on drop unless [`TempFile::keep`] was called,
/// so that a failed record (or a panic) leaves nothing behind.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Creates `path` fresh, mode 0600, replacing a leftover of a killed run.
    pub fn create(path: PathBuf) -> Result<(Self, File), WalError> {
        let file = durable::create_temp(&path)?;
        Ok((TempFile { path, keep: false }, file))
    }

    /// Creates `path`, which must not exist yet, mode 0600: for a name unique to this
    /// writer, where a file already there is somebody else's and must be left alone.
    pub fn create_new(path: PathBuf) -> Result<(Self, File), WalError> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| WalError::io("cannot create", &path, e))?;
        Ok((TempFile { path, keep: false }, file))
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the finished copy to `record`: it becomes the record's `path` and is listed in
    /// its `temps`, for wal-store to remove once the record is stored.
    pub fn hand_to(self, record: &mut crate::WalRecord) {
        let path = self.keep();
        record.temps.push(path.clone());
        record.path = Some(path);
    }

    /// Keeps the file (it now belongs to the record) and returns its path.
    #[must_use]
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // The record fails anyway; say what is left so someone can remove it.
            Err(e) => crate::log::warn!(
                "walpipe: cannot remove temporary file {}: {e}",
                crate::log::one_line(&self.path.to_string_lossy())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_handed_out_once_per_run() {
        let names = TempNames::default();
        let dir = Path::new("/t");
        let name = "000000010000000000000001";
        assert_eq!(
            names.claim(dir, name, "compressed", &[]),
            Path::new("/t/.000000010000000000000001.compressed")
        );
        assert_eq!(
            names.claim(dir, name, "compressed", &[]),
            Path::new("/t/.000000010000000000000001.1.compressed")
        );
        assert_eq!(
            names.claim(Path::new("/u"), name, "compressed", &[]),
            Path::new("/u/.000000010000000000000001.compressed")
        );
    }

    #[test]
    fn copies_in_a_temp_dir_are_unique_and_never_replace_another_runs() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000001";
        let at = |file: String| dir.path().join(file);
        // Another run's copy under the predictable name: never unlinked or replaced.
        let theirs = at(format!(".{name}.compressed"));
        fs::write(&theirs, "theirs").unwrap();
        let source = dir.path().join(name);
        let mut record = crate::WalRecord::new(name);
        record.source = Some(source.clone());
        let names = TempNames::default();
        let (first, _) = names
            .create_for(Some(dir.path()), &record, &source, "compressed")
            .unwrap();
        let (second, _) = names
            .create_for(Some(dir.path()), &record, &source, "compressed")
            .unwrap();
        assert_ne!(first.path(), second.path());
        for temp in [&first, &second] {
            let file = temp.path().file_name().unwrap().to_str().unwrap();
            assert_eq!(
                unique_pid(file, Some(name), &["compressed"]),
                i32::try_from(std::process::id()).ok(),
                "{file}"
            );
            assert!(is_temp_name(file, name), "{file}");
            assert_eq!(temp.path().parent(), Some(dir.path()));
        }
        assert_eq!(fs::read_to_string(&theirs).unwrap(), "theirs");
        // Fresh copies are no killed run's, whoever made them.
        sweep_stale_copies(dir.path(), STALE_COPY_AGE);
        assert!(first.path().exists() && second.path().exists());
        // Beside the file (a queue the run holds the lock of): the predictable name.
        let (beside, _) = names.create_for(None, &record, &source, "gpg").unwrap();
        assert_eq!(beside.path(), at(format!(".{name}.gpg")));
    }

    #[test]
    fn stale_copies_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000001";
        let at = |file: &str| dir.path().join(file);
        let ours = [
            format!(".{name}.4999999-0badf00d.compressed"),
            format!(".{name}.1-0badf00d.gpg"),
            format!(".{name}.42-0badf00d.decrypted"),
            ".000000010000000000000002.00000028.backup.7-0badf00d.gpg".to_owned(),
            ".00000002.history.7-0badf00d.compressed".to_owned(),
        ];
        let kept = [
            // A restore's and a comparison's (theirs to sweep), names walpipe never
            // writes (pid 0, a leading zero, uppercase or short hex, no WAL name), the
            // predictable name.
            format!(".{name}.4999999-0badf00d.download"),
            format!(".{name}.4999999-0badf00d.compare"),
            format!(".{name}.0-0badf00d.compressed"),
            format!(".{name}.07-0badf00d.compressed"),
            format!(".{name}.7-0BADF00D.compressed"),
            format!(".{name}.7-0badf0.compressed"),
            ".notes.7-0badf00d.compressed".to_owned(),
            format!(".{name}.compressed"),
        ];
        for file in ours.iter().chain(&kept) {
            fs::write(at(file), "left").unwrap();
        }
        // A directory and a link under such a name: not files of ours.
        let directory = at(&format!(".{name}.8-0badf00d.compressed"));
        fs::create_dir(&directory).unwrap();
        let target = at("target");
        fs::write(&target, "target").unwrap();
        let link = at(&format!(".{name}.9-0badf00d.gpg"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // Younger than the age: kept.
        sweep_stale_copies(dir.path(), STALE_COPY_AGE);
        for file in ours.iter().chain(&kept) {
            assert!(at(file).exists(), "{file} kept while young");
        }
        // As old as the age (0 here): swept, and only they.
        sweep_stale_copies(dir.path(), Duration::ZERO);
        for file in &ours {
            assert!(!at(file).exists(), "{file} swept");
        }
        for file in &kept {
            assert!(at(file).exists(), "{file} kept");
        }
        assert!(directory.is_dir() && link.is_symlink() && target.exists());
        // A comparison's copy goes with its process (pid_max is at most 2^22: 4999999 is
        // nobody's).
        sweep_dead(dir.path(), name, "compare");
        assert!(!at(&format!(".{name}.4999999-0badf00d.compare")).exists());
        assert!(at(&format!(".{name}.4999999-0badf00d.download")).exists());
    }

    #[test]
    fn a_name_never_replaces_the_file_it_copies() {
        let names = TempNames::default();
        let source = Path::new("/q/.a.compressed");
        assert_eq!(
            names.claim(Path::new("/q"), "a", "compressed", &[source]),
            Path::new("/q/.a.1.compressed")
        );
    }

    #[test]
    fn the_base_name_is_the_wal_name_when_it_is_plain() {
        let path = Path::new("/q/.x.decrypted");
        assert_eq!(base_name("00000002.history", path), "00000002.history");
        assert_eq!(base_name("", path), ".x.decrypted");
        assert_eq!(base_name("../evil", path), ".x.decrypted");
        assert_eq!(base_name("..", Path::new("/")), "wal");
    }

    #[test]
    fn temp_names_are_recognised_and_nothing_else() {
        let wal = "000000010000000000000001";
        for ours in [
            ".000000010000000000000001.compressed",
            ".000000010000000000000001.3.gpg",
            ".000000010000000000000001.1234-0badcafe.download",
            ".000000010000000000000001.decrypted",
        ] {
            assert!(is_temp_name(ours, wal), "{ours}");
        }
        for foreign in [
            "000000010000000000000001",
            ".000000010000000000000001",
            ".000000010000000000000001.tmp",
            ".000000010000000000000001.x.compressed",
            ".000000010000000000000001.-1.compressed",
            ".000000010000000000000002.compressed",
            ".000000010000000000000001.12-zz.download",
            ".bashrc",
        ] {
            assert!(!is_temp_name(foreign, wal), "{foreign}");
        }
        assert!(!is_temp_name("...compressed", ".."));
        assert!(!is_temp_name("..compressed", ""));
        // Every name TempNames hands out is recognised.
        let names = TempNames::default();
        for _ in 0..3 {
            let path = names.claim(Path::new("/t"), wal, "gpg", &[]);
            assert!(is_temp_name(
                path.file_name().unwrap().to_str().unwrap(),
                wal
            ));
        }
    }

    #[test]
    fn temps_go_next_to_the_file_by_default() {
        assert_eq!(dir_for(None, Path::new("/q/a")), Path::new("/q"));
        assert_eq!(dir_for(None, Path::new("a")), Path::new("."));
        assert_eq!(
            dir_for(Some(Path::new("/t")), Path::new("/q/a")),
            Path::new("/t")
        );
    }

    #[test]
    fn an_unkept_temp_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (temp, _file) = TempFile::create(dir.path().join(".a.compressed")).unwrap();
        let path = temp.path().to_path_buf();
        assert!(path.exists());
        drop(temp);
        assert!(!path.exists());
        let (temp, _file) = TempFile::create(dir.path().join(".b.compressed")).unwrap();
        let kept = temp.keep();
        assert!(kept.exists());
    }
}
