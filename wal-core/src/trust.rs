//! The trust boundary: which files a stage may change.
//!
//! A record stream is input like any file a user hands us: hand-written, replayed from a
//! log, or made by someone else's script. Its `source`, `path` and `temps` are claims,
//! not facts. A stage that removes, moves, links, renames or changes a file therefore asks
//! its [`Territory`] first: the directories it was configured to own (the queues, its
//! temp directories, the archive, `errors/`) and the names it could have made itself.
//!
//! * A **source** may be removed, moved to `errors/` or linked into the archive only when
//!   it is an entry directly inside one of the queues, and never inside the archive or
//!   `errors/` (a queue that is the archive would otherwise be "archived" by deleting it).
//! * A **temp** may be removed, linked or renamed only when it lies in a temp directory or
//!   a queue and carries a hidden temporary name made for the record's WAL name
//!   ([`crate::temp::is_temp_name`]).
//! * Anything else may at most be read (and copied from); the record fails with a
//!   `usage` error naming the path when the stage's job needs more.
//!
//! Directories are compared resolved (absolute, `..` removed, symbolic links of the
//! existing part followed), so `queue/../wals` or a symlink to the archive is seen for
//! what it is. [`Territory::check_disjoint`] refuses, before any work, queues, archive and
//! `errors/` that are the same directory or lie one inside another.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, WalError};
use crate::temp::is_temp_name;

/// What a directory is to the stage that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A queue (`incoming`, `streaming`): its entries are sources the stage may remove.
    Queue,
    /// Where the stages of a pipeline write their temporary copies.
    Temp,
    /// A spool of complete files under their WAL names (restore's prefetch), also a temp
    /// directory: files there under the record's own name are the stage's too.
    Spool,
    /// The archive: never a source, never a temp.
    Archive,
    /// `errors/`: never a source, never a temp.
    Errors,
}

/// One directory a stage owns.
#[derive(Debug, Clone)]
struct Owned {
    role: Role,
    /// The flag that configured it, for messages (`--incoming`).
    label: String,
    /// As configured, for messages.
    given: PathBuf,
    /// Resolved, for comparisons.
    resolved: PathBuf,
}

/// A server's directories as a stage was given them, for [`Territory::of_server`]; each
/// `None` (or left out of `queues`) where the stage has none.
#[derive(Debug, Clone, Default)]
pub struct ServerDirs<'a> {
    /// The local archive (`wals/`).
    pub archive: Option<&'a Path>,
    /// The queues, each with the flag that names it (`--incoming`, `--streaming`).
    pub queues: Vec<(&'static str, &'a Path)>,
    /// `errors/`.
    pub errors: Option<&'a Path>,
    /// The stages' temp directory.
    pub temp: Option<&'a Path>,
    /// The catalogue file.
    pub xlogdb: Option<&'a Path>,
    /// The directory of the lock files (and the receiver's status).
    pub lock_dir: Option<&'a Path>,
}

/// The directories a stage was configured to own, and the rules for acting on files.
#[derive(Debug, Clone, Default)]
pub struct Territory {
    owned: Vec<Owned>,
}

impl Territory {
    /// An empty territory: the stage owns nothing (it may only read).
    #[must_use]
    pub fn new() -> Self {
        Territory::default()
    }

    /// The territory of a server's directories ([`ServerDirs`]): refused before any work
    /// when its queues, archive and `errors/` overlap, or when the catalogue or the lock
    /// directory lies in a queue or `errors/` (where a queue scan would move it away).
    pub fn of_server(dirs: &ServerDirs<'_>) -> Result<Territory> {
        let mut territory = Territory::new();
        if let Some(archive) = dirs.archive {
            territory.add(Role::Archive, "--archive", archive)?;
        }
        for (flag, dir) in &dirs.queues {
            territory.add(Role::Queue, flag, dir)?;
        }
        if let Some(errors) = dirs.errors {
            territory.add(Role::Errors, "--errors-dir", errors)?;
        }
        if let Some(dir) = dirs.temp {
            territory.add(Role::Temp, "--temp-dir", dir)?;
        }
        territory.check_disjoint()?;
        if let Some(xlogdb) = dirs.xlogdb {
            if xlogdb.is_dir() {
                return Err(WalError::Config(format!(
                    "--xlogdb {}: a directory, not a catalogue file",
                    xlogdb.display()
                )));
            }
            territory.keep_out("--xlogdb", xlogdb)?;
        }
        if let Some(lock_dir) = dirs.lock_dir {
            territory.keep_out("--lock-dir", lock_dir)?;
        }
        Ok(territory)
    }

    /// Adds `dir` in `role`, configured by `label` (a flag name, for messages). A queue
    /// that is PostgreSQL's own `pg_wal` (it has `archive_status/`) is refused: a queue's
    /// files are moved away once archived, and the server's must stay where they are.
    pub fn add(&mut self, role: Role, label: &str, dir: &Path) -> Result<&mut Self> {
        let resolved = resolve(dir).map_err(|e| WalError::io("cannot resolve", dir, e))?;
        if role == Role::Queue && resolved.join("archive_status").is_dir() {
            return Err(WalError::Config(format!(
                "{label} {}: is PostgreSQL's pg_wal (it has archive_status/), not a queue: \
                 a queue's files are moved away once archived",
                dir.display()
            )));
        }
        self.owned.push(Owned {
            role,
            label: label.to_string(),
            given: dir.to_path_buf(),
            resolved,
        });
        Ok(self)
    }

    /// Refuses queues, archive, `errors/` and a spool that are the same directory or lie
    /// one inside another, and a spool that is one of the temp directories (restore's
    /// `%p` directory: pg_wal). Temp directories may be anywhere else: the archive root
    /// is a good one, a link away from the hash directories. A spool is emptied of
    /// whatever carries a WAL name, so it must share nothing with WAL that must stay.
    pub fn check_disjoint(&self) -> Result<()> {
        let fixed: Vec<&Owned> = self
            .owned
            .iter()
            .filter(|o| {
                matches!(
                    o.role,
                    Role::Queue | Role::Archive | Role::Errors | Role::Spool
                )
            })
            .collect();
        for spool in self.owned.iter().filter(|o| o.role == Role::Spool) {
            if let Some(temp) = self
                .owned
                .iter()
                .find(|o| o.role == Role::Temp && o.resolved == spool.resolved)
            {
                return Err(WalError::Config(format!(
                    "{} {} is the same directory as {} {}: a spool is emptied of WAL, \
                     it must be a directory of its own",
                    spool.label,
                    spool.given.display(),
                    temp.label,
                    temp.given.display()
                )));
            }
        }
        for (i, a) in fixed.iter().enumerate() {
            // One spool may be named twice (`--to-dir` and `--temp-dir` of a prefetch).
            for b in fixed[i + 1..]
                .iter()
                .filter(|b| !(a.role == Role::Spool && b.role == Role::Spool))
            {
                let relation = if a.resolved == b.resolved {
                    "is the same directory as"
                } else if a.resolved.starts_with(&b.resolved) {
                    "is inside"
                } else if b.resolved.starts_with(&a.resolved) {
                    "contains"
                } else {
                    continue;
                };
                return Err(WalError::Config(format!(
                    "{} {} {relation} {} {}: the queues, the archive, the errors \
                     directory and a spool must not overlap",
                    a.label,
                    a.given.display(),
                    b.label,
                    b.given.display()
                )));
            }
        }
        Ok(())
    }

    /// Refuses a file of ours that is no WAL (the catalogue, a lock file: `label` names
    /// its setting) at `path` inside a queue, `errors/` or a spool: a queue scan would
    /// take it for a stray entry and move it away, or a spool sweep remove it. A
    /// directory where the file should be is refused too.
    pub fn keep_out(&self, label: &str, path: &Path) -> Result<()> {
        let resolved = resolve(path).map_err(|e| WalError::io("cannot resolve", path, e))?;
        if let Some(owned) = self.owned.iter().find(|o| {
            matches!(o.role, Role::Queue | Role::Errors | Role::Spool)
                && resolved.starts_with(&o.resolved)
        }) {
            return Err(WalError::Config(format!(
                "{label} {} is inside {} {}: the catalogue and the locks must not be in a \
                 queue, errors/ or a spool",
                path.display(),
                owned.label,
                owned.given.display()
            )));
        }
        Ok(())
    }

    /// Whether `path` is a queue entry this stage may remove or move: directly inside one
    /// of its queues, not inside the archive or `errors/`. (A symbolic link there is an
    /// entry like any other: removing or moving it touches the link, never its target.)
    pub fn queue_entry(&self, path: &Path) -> Result<()> {
        let (dir, name) = split(path)?;
        let dir = resolve(dir).map_err(|e| WalError::io("cannot resolve", path, e))?;
        self.outside_guarded_dir(&dir.join(name), path)?;
        if !self.has(&dir, &[Role::Queue]) {
            return Err(refusal(path, "is not an entry of a queue of this server"));
        }
        Ok(())
    }

    /// Whether `path` is a temporary file this stage may remove, link or rename: in one of
    /// its temp directories (or a queue, where temps sit next to their source), under a
    /// temporary name made for `wal_name` (or, in a spool, `wal_name` itself), and a
    /// regular file.
    pub fn temp_file(&self, path: &Path, wal_name: &str) -> Result<()> {
        let (dir, name) = split(path)?;
        let dir = resolve(dir).map_err(|e| WalError::io("cannot resolve", path, e))?;
        let name = name.to_str().unwrap_or_default();
        let ours = (is_temp_name(name, wal_name)
            && self.has(&dir, &[Role::Temp, Role::Spool, Role::Queue]))
            || (name == wal_name && self.has(&dir, &[Role::Spool]));
        if !ours {
            return Err(refusal(
                path,
                &format!("is not a temporary file of {wal_name} in a directory of ours"),
            ));
        }
        let meta = fs::symlink_metadata(path).map_err(|e| WalError::io("cannot stat", path, e))?;
        if !meta.file_type().is_file() {
            return Err(refusal(path, "is not a regular file"));
        }
        // A temp we made has one name: a second one is someone else's file, which
        // changing the temp (its mode, its mtime) would change too.
        if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            return Err(refusal(path, "has other names (hard links)"));
        }
        Ok(())
    }

    /// Refuses a path inside the archive or `errors/`: what is stored is never a source.
    pub fn outside_guarded(&self, path: &Path) -> Result<()> {
        let (dir, name) = split(path)?;
        let dir = resolve(dir).map_err(|e| WalError::io("cannot resolve", path, e))?;
        self.outside_guarded_dir(&dir.join(name), path)
    }

    fn outside_guarded_dir(&self, resolved: &Path, shown: &Path) -> Result<()> {
        match self.owned.iter().find(|o| {
            matches!(o.role, Role::Archive | Role::Errors) && resolved.starts_with(&o.resolved)
        }) {
            Some(owned) => Err(WalError::Usage(format!(
                "{}: is inside {} {}: a stored file is never a source; left untouched",
                shown.display(),
                owned.label,
                owned.given.display()
            ))),
            None => Ok(()),
        }
    }

    fn has(&self, dir: &Path, roles: &[Role]) -> bool {
        self.owned
            .iter()
            .any(|o| roles.contains(&o.role) && o.resolved == dir)
    }
}

/// The error of a refused path: `usage`, naming it.
fn refusal(path: &Path, why: &str) -> WalError {
    WalError::Usage(format!("{}: {why}; left untouched", path.display()))
}

/// The directory and the file name of `path`; a path without a file name (`/`, `..`) is
/// no file of ours.
fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.file_name(), path.components().next_back()) {
        (Some(name), Some(Component::Normal(_))) => Ok((crate::durable::parent_of(path), name)),
        _ => Err(WalError::Usage(format!(
            "{}: not a file name; left untouched",
            path.display()
        ))),
    }
}

/// `path` made absolute, with `.` and `..` resolved and the symbolic links of the part
/// that exists followed (the rest, which does not exist yet, cannot be a link).
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut existing = absolute.as_path();
    loop {
        match fs::canonicalize(existing) {
            Ok(mut resolved) => {
                let rest = absolute.strip_prefix(existing).unwrap_or(Path::new(""));
                for component in rest.components() {
                    match component {
                        Component::ParentDir => {
                            resolved.pop();
                        }
                        Component::Normal(part) => resolved.push(part),
                        Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                    }
                }
                return Ok(resolved);
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                match existing.parent() {
                    Some(parent) => existing = parent,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn territory(root: &Path) -> Territory {
        let mut t = Territory::new();
        t.add(Role::Queue, "--incoming", &root.join("pg/incoming"))
            .unwrap()
            .add(Role::Queue, "--streaming", &root.join("pg/streaming"))
            .unwrap()
            .add(Role::Archive, "--archive", &root.join("pg/wals"))
            .unwrap()
            .add(Role::Errors, "--errors-dir", &root.join("pg/errors"))
            .unwrap()
            .add(Role::Temp, "--temp-dir", &root.join("tmp"))
            .unwrap();
        t
    }

    #[test]
    fn resolves_what_exists_and_what_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(root.join("a")).unwrap();
        symlink(root.join("a"), root.join("link")).unwrap();
        assert_eq!(
            resolve(&root.join("link/x/../y")).unwrap(),
            root.join("a/y")
        );
        assert_eq!(resolve(&root.join("a/./b/c")).unwrap(), root.join("a/b/c"));
        assert_eq!(resolve(&root.join("missing/../a")).unwrap(), root.join("a"));
    }

    /// PostgreSQL's pg_wal (it has `archive_status/`) is never a queue, whatever names it.
    #[test]
    fn pg_wal_is_no_queue() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("data/pg_wal");
        fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
        symlink(&pg_wal, dir.path().join("link")).unwrap();
        for queue in [
            pg_wal.clone(),
            dir.path().join("link"),
            pg_wal.join("../pg_wal"),
        ] {
            let err = Territory::new()
                .add(Role::Queue, "--streaming", &queue)
                .unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "--streaming {}: is PostgreSQL's pg_wal",
                    queue.display()
                )),
                "{text}"
            );
        }
        // As a temp directory (restore's %p directory) it is fine.
        assert!(Territory::new().add(Role::Temp, "--to", &pg_wal).is_ok());
    }

    /// A server's directories as a stage is given them: overlaps refused, the catalogue
    /// and the locks kept out of the queues, a catalogue that is a directory refused.
    #[test]
    fn a_servers_directories_are_checked_together() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let wals = root.join("pg/wals");
        let incoming = root.join("pg/incoming");
        let streaming = root.join("pg/streaming");
        let errors = root.join("pg/errors");
        let xlogdb = wals.join("pg-xlog.db");
        let good = ServerDirs {
            archive: Some(&wals),
            queues: vec![("--incoming", &incoming), ("--streaming", &streaming)],
            errors: Some(&errors),
            temp: None,
            xlogdb: Some(&xlogdb),
            lock_dir: Some(root),
        };
        assert!(Territory::of_server(&good).is_ok());
        let cases: [(&str, ServerDirs<'_>); 4] = [
            (
                "must not overlap",
                ServerDirs {
                    queues: vec![("--streaming", &wals)],
                    ..good.clone()
                },
            ),
            (
                "--lock-dir",
                ServerDirs {
                    lock_dir: Some(&streaming),
                    ..good.clone()
                },
            ),
            (
                "--xlogdb",
                ServerDirs {
                    xlogdb: Some(&errors),
                    ..good.clone()
                },
            ),
            (
                "a directory, not a catalogue",
                ServerDirs {
                    xlogdb: Some(root),
                    ..good.clone()
                },
            ),
        ];
        for (said, dirs) in cases {
            let err = Territory::of_server(&dirs).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
            assert!(err.to_string().contains(said), "{said}: {err}");
        }
    }

    #[test]
    fn overlapping_directories_are_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(territory(root).check_disjoint().is_ok());
        for (label, bad) in [
            ("inside", root.join("pg/wals/0000000100000000")),
            ("same", root.join("pg/wals")),
            ("same after ..", root.join("pg/incoming/../wals")),
            ("contains", root.join("pg")),
            ("errors", root.join("pg/errors")),
        ] {
            let mut t = territory(root);
            t.add(Role::Queue, "--incoming", &bad).unwrap();
            let err = t.check_disjoint().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{label}: {err}");
            assert!(err.to_string().contains("must not overlap"), "{err}");
        }
        // A link to the archive is the archive.
        fs::create_dir_all(root.join("pg/wals")).unwrap();
        symlink(root.join("pg/wals"), root.join("q")).unwrap();
        let mut t = territory(root);
        t.add(Role::Queue, "--incoming", &root.join("q")).unwrap();
        assert!(t.check_disjoint().is_err());
        // A temp directory may be the archive root; a spool may not, nor a queue, nor
        // the directory restore writes %p into.
        let mut t = territory(root);
        t.add(Role::Temp, "--temp-dir", &root.join("pg/wals"))
            .unwrap();
        assert!(t.check_disjoint().is_ok());
        for spool in ["pg/wals", "pg/wals/0000000100000000", "pg/incoming", "tmp"] {
            let mut t = territory(root);
            t.add(Role::Spool, "--spool-dir", &root.join(spool))
                .unwrap();
            assert_eq!(
                t.check_disjoint().unwrap_err().kind(),
                crate::ErrorKind::Config,
                "{spool}"
            );
        }
        let mut t = territory(root);
        t.add(Role::Spool, "--spool-dir", &root.join("spool"))
            .unwrap();
        assert!(t.check_disjoint().is_ok());
    }

    #[test]
    fn only_queue_entries_are_sources() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "pg/incoming",
            "pg/wals/0000000100000000",
            "elsewhere",
            "tmp",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let t = territory(root);
        let name = "000000010000000000000001";
        let queued = root.join("pg/incoming").join(name);
        fs::write(&queued, b"x").unwrap();
        assert!(t.queue_entry(&queued).is_ok());
        assert!(
            t.queue_entry(&root.join("pg/incoming/../incoming").join(name))
                .is_ok()
        );
        for foreign in [
            root.join("elsewhere").join(name),
            root.join("pg/wals/0000000100000000").join(name),
            root.join("pg/incoming/sub").join(name),
            root.join("pg/incoming/.."),
            PathBuf::from("/"),
        ] {
            let err = t.queue_entry(&foreign).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Usage, "{}", foreign.display());
            assert!(err.to_string().contains("left untouched"), "{err}");
        }
        let link = root.join("pg/incoming/000000010000000000000002");
        symlink(root.join("elsewhere"), &link).unwrap();
        assert!(t.queue_entry(&link).is_ok(), "the link itself is the entry");
    }

    #[test]
    fn only_our_temp_names_in_our_directories_are_temps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["pg/incoming", "elsewhere", "tmp"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let t = territory(root);
        let name = "000000010000000000000001";
        let ok = [
            root.join("tmp/.000000010000000000000001.compressed"),
            root.join("pg/incoming/.000000010000000000000001.1.gpg"),
        ];
        for path in &ok {
            fs::write(path, b"x").unwrap();
            assert!(t.temp_file(path, name).is_ok(), "{}", path.display());
        }
        let bad = [
            root.join("elsewhere/.000000010000000000000001.compressed"),
            root.join("tmp/000000010000000000000001"),
            root.join("tmp/.000000010000000000000002.compressed"),
            root.join("tmp/.000000010000000000000001.bashrc"),
        ];
        for path in &bad {
            fs::write(path, b"x").unwrap();
            assert!(t.temp_file(path, name).is_err(), "{}", path.display());
        }
        let mut spool = Territory::new();
        spool
            .add(Role::Spool, "--temp-dir", &root.join("tmp"))
            .unwrap();
        assert!(
            spool
                .temp_file(&root.join("tmp/000000010000000000000001"), name)
                .is_ok()
        );
    }
}
