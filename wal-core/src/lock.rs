//! flock(2) locks, compatible with Barman's lock files.
//!
//! Barman serialises xlog.db writers with a blocking exclusive flock on
//! `<lock_dir>/.<server>-xlogdb.lock` and archive-wal runs with a non-blocking one on
//! `.<server>-archive-wal.lock`, writing the holder's pid into the file
//! (`docs/barman-formats.md#lock-files`).
//! Using the same files and the same kind of lock means walpipe and Barman exclude each
//! other when they share a server directory.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{IoContext, Result, WalError};

/// A held lock; released when dropped (or when the process dies, whatever the cause).
#[derive(Debug)]
pub struct LockFile {
    _lock: Flock<File>,
    path: PathBuf,
}

impl LockFile {
    /// Waits for the exclusive lock on `path` (created 0600 if missing).
    pub fn acquire(path: &Path) -> Result<LockFile> {
        Self::lock(path, FlockArg::LockExclusive)?.ok_or_else(|| {
            WalError::Internal(format!("blocking lock on {} failed", path.display()))
        })
    }

    /// Takes the exclusive lock on `path` if it is free; `None` if another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<LockFile>> {
        Self::lock(path, FlockArg::LockExclusiveNonblock)
    }

    fn lock(path: &Path, how: FlockArg) -> Result<Option<LockFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // A lock file planted as a link must not make us write through it.
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path)
            .context("cannot open lock file", path)?;
        let mut lock = match Flock::lock(file, how) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, errno)) => {
                return Err(WalError::io("cannot lock", path, errno.into()));
            }
        };
        // Barman writes the holder's pid, for humans looking at a stuck lock.
        lock.set_len(0).context("cannot write lock file", path)?;
        lock.rewind().context("cannot write lock file", path)?;
        writeln!(lock, "{}", std::process::id()).context("cannot write lock file", path)?;
        Ok(Some(LockFile {
            _lock: lock,
            path: path.to_path_buf(),
        }))
    }

    /// The lock file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether some process holds a flock on the file at `path`, seen in `/proc/locks` (by
/// device and inode), without opening or locking it: a reader (a check) must neither
/// create the file nor, by taking the lock a moment, make its owner's start fail.
/// No such file is a lock nobody holds; `None` when /proc does not tell.
#[must_use]
pub fn is_held(path: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Some(false);
    };
    if !meta.file_type().is_file() {
        return Some(false);
    }
    let device = meta.dev();
    // As the kernel prints it: MAJOR:MINOR (hex) and the inode (decimal).
    let wanted = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(device),
        nix::sys::stat::minor(device),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    Some(locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:123456 0 EOF`; a blocked waiter's line
        // has `->` after the number.
        let fields: Vec<&str> = fields.into_iter().filter(|f| *f != "->").collect();
        fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str())
    }))
}

/// Barman's xlog.db lock file for `server`.
#[must_use]
pub fn xlogdb_lock_path(lock_dir: &Path, server: &str) -> PathBuf {
    lock_dir.join(format!(".{server}-xlogdb.lock"))
}

/// Barman's archive-wal run lock file for `server`.
#[must_use]
pub fn archive_wal_lock_path(lock_dir: &Path, server: &str) -> PathBuf {
    lock_dir.join(format!(".{server}-archive-wal.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_busy_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = archive_wal_lock_path(dir.path(), "pg");
        assert!(path.ends_with(".pg-archive-wal.lock"));
        let held = LockFile::try_acquire(&path).unwrap().expect("free");
        // flock locks belong to the open file description: a second open conflicts.
        assert!(LockFile::try_acquire(&path).unwrap().is_none());
        let pid = std::fs::read_to_string(held.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        assert_eq!(is_held(&path), Some(true));
        drop(held);
        assert_eq!(is_held(&path), Some(false));
        assert!(LockFile::acquire(&path).is_ok());
        assert_eq!(is_held(&dir.path().join("missing")), Some(false));
    }
}
