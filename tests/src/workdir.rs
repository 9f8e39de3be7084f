//! A short temporary directory that the `postgres` user can use.
//!
//! PostgreSQL runs `archive_command`/`restore_command` as its own OS user, and refuses to
//! run as root; tests usually run as root on the project's machines. So the directory a
//! test works in must be traversable by `postgres`, and everything the server writes to
//! must be owned by it, or archiving fails with "Permission denied" and PostgreSQL retries
//! forever. The path must also stay short: a unix socket path is limited to about 100
//! bytes, and deep `target/tmp/...` directories exceed it. Hence `/tmp/wpt.XXXXXX`.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::unistd::{Gid, Uid, User, chown, geteuid};
use tempfile::TempDir;

/// Set this variable to keep work directories after the test (their paths go to stderr).
const KEEP_VAR: &str = "WALPIPE_TEST_KEEP";

/// A temporary directory under `/tmp`, mode 0755, owned by `postgres` when running as root.
///
/// Removed when the last clone is dropped: a [`crate::PgCluster`] holds a clone, so the
/// directory outlives the server that uses it whatever order values are dropped in. Set
/// `WALPIPE_TEST_KEEP=1` to keep it for inspection.
#[derive(Debug, Clone)]
pub struct WorkDir {
    dir: Arc<TempDir>,
}

impl WorkDir {
    /// Creates a fresh work directory.
    ///
    /// # Panics
    /// When `/tmp` is not writable or the `postgres` user does not exist while running as
    /// root (run `scripts/install-test-deps`).
    #[must_use]
    pub fn new() -> Self {
        let keep = std::env::var_os(KEEP_VAR).is_some_and(|v| !v.is_empty());
        let dir = tempfile::Builder::new()
            .prefix("wpt.")
            .permissions(Permissions::from_mode(0o755))
            .disable_cleanup(keep)
            .tempdir_in("/tmp")
            .expect("cannot create a work directory in /tmp");
        if keep {
            eprintln!(
                "walpipe-tests: keeping work directory {}",
                dir.path().display()
            );
        }
        if let Some((uid, gid)) = postgres_owner() {
            chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("cannot chown {}: {e}", dir.path().display()));
        }
        Self { dir: Arc::new(dir) }
    }

    /// The directory's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `self.path().join(rel)`.
    #[must_use]
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    /// Creates `rel` (and missing parents) inside the work directory, mode 0755, owned by
    /// `postgres` when running as root, and returns its path. Existing directories are
    /// left as they are.
    ///
    /// # Panics
    /// When `rel` is absolute or contains `..`, or on an I/O error.
    pub fn mkdir_owned(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        assert!(
            rel.components().all(|c| matches!(c, Component::Normal(_))),
            "mkdir_owned wants a plain relative path, got {}",
            rel.display()
        );
        let owner = postgres_owner();
        let mut path = self.path().to_path_buf();
        for component in rel.components() {
            path.push(component);
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, Permissions::from_mode(0o755))
                        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
                    if let Some((uid, gid)) = owner {
                        chown(&path, Some(uid), Some(gid))
                            .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Default for WorkDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether this process runs as root (and so must hand files and commands to `postgres`).
#[must_use]
pub fn running_as_root() -> bool {
    geteuid().is_root()
}

/// The `postgres` user's uid and gid when running as root; `None` otherwise (then the
/// server runs as the current user, who owns everything already).
///
/// # Panics
/// When running as root and there is no `postgres` user.
#[must_use]
pub fn postgres_owner() -> Option<(Uid, Gid)> {
    if !running_as_root() {
        return None;
    }
    let user = User::from_name("postgres")
        .expect("cannot read the user database")
        .expect("running as root but there is no `postgres` user: run scripts/install-test-deps");
    Some((user.uid, user.gid))
}
