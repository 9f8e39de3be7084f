//! The spool directory: where it is, that it is ours and shares no file with WAL that
//! must stay, and whether a file in it still stands for what the archive holds.
//!
//! Files are removed from the spool and moved out of it under WAL names, so a spool that
//! is `%p`'s directory (pg_wal) or its archive_status, or that is, holds or lies inside
//! the archive, a queue or errors/, is refused (exit 78) before anything is created in it
//! ([`wal_core::trust`]). The default spool is private to the user
//! (`/var/tmp/walpipe-restore-<uid>`, mode 0700, owned, not a link) and names the archive
//! (a hash of its path, or of a cloud archive's endpoint and URL): a spool must never hand
//! one archive's segment to a restore from another that shares the server name.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use wal_core::error::{IoContext, Result};
use wal_core::layout::ServerLayout;
use wal_core::trust::{Role, Territory};
use wal_core::{WalError, WalName, durable, private};

use crate::claim::{Claim, FileId};
use crate::cli::SpoolArgs;

/// How long a prefetched file of a cloud archive stands for its object: no `stat` sees
/// the object, so a spool file is trusted only while the claim its worker wrote when it
/// took the name is this recent (a spool left by an earlier restore is never used).
pub const CLOUD_TRUST_SECONDS: u64 = 600;

/// A spool, checked and created.
#[derive(Debug)]
pub struct Spool {
    /// The directory.
    pub dir: PathBuf,
    /// The local archive's layout, `None` for a cloud archive.
    layout: Option<ServerLayout>,
}

impl Spool {
    /// Resolves, checks and (if missing) creates the spool of `args` for a restore into
    /// `dest` (`%p`).
    pub fn open(args: &SpoolArgs, dest: &Path) -> Result<Spool> {
        let resolved = args.layout.settings().resolve()?;
        let layout = resolved.local();
        let dir = if let Some(dir) = &args.spool_dir {
            wal_core::layout::must_be_absolute("--spool-dir", dir)?;
            dir.clone()
        } else {
            let key = private::archive_key(&resolved.archive, args.endpoint_url.as_deref())?;
            private::dir_for(
                Path::new("/var/tmp"),
                "walpipe-restore",
                &resolved.server,
                &key,
            )?
        };
        if dir.as_os_str().as_encoded_bytes().contains(&b'\n') {
            // `plan` prints it on a line of its own.
            return Err(WalError::Config(format!(
                "--spool-dir {}: a path with a line break",
                dir.to_string_lossy().escape_debug()
            )));
        }
        check_not_pg_wal(&dir, durable::parent_of(dest))?;
        if let Some(layout) = &layout {
            let mut territory = Territory::new();
            territory.add(Role::Archive, "--archive", &layout.wals)?;
            territory.add(Role::Queue, "--incoming", &layout.incoming)?;
            territory.add(Role::Queue, "--streaming", &layout.streaming)?;
            territory.add(Role::Errors, "--errors-dir", &layout.errors)?;
            territory.add(Role::Spool, "--spool-dir", &dir)?;
            territory.check_disjoint()?;
        }
        if !dir.is_dir() {
            // Only the spool itself is made private; missing parents get the usual mode.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).context("cannot create the spool directory", parent)?;
            }
        }
        private::create_private(&dir)?;
        Ok(Spool { dir, layout })
    }

    /// Where the spooled `name` is (whether or not it is there).
    #[must_use]
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The claim a prefetch wrote for `name`.
    #[must_use]
    pub fn claim_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.claim"))
    }

    /// The claim for `name`, if there is a readable one.
    #[must_use]
    pub fn claim(&self, name: &str) -> Option<Claim> {
        read_small(&self.claim_path(name)).and_then(|text| Claim::parse(&text))
    }

    /// Whether a live prefetch is fetching `name`.
    #[must_use]
    pub fn in_flight(&self, name: &str) -> bool {
        self.claim(name).is_some_and(|claim| claim.worker_runs())
    }

    /// Whether a local archive holds `name` where a restore finds it (a cloud archive:
    /// unknown, `false`).
    #[must_use]
    pub fn is_archived(&self, name: &WalName) -> bool {
        self.archived_id(name).is_some()
    }

    /// The archived file a restore of `name` would read now (a local archive), as a
    /// claim records it.
    #[must_use]
    pub fn archived_id(&self, name: &WalName) -> Option<FileId> {
        let layout = self.layout.as_ref()?;
        layout
            .candidates(name, false)
            .iter()
            .find_map(|(_, path)| fs::metadata(path).ok())
            .map(|meta| FileId::of(&meta))
    }

    /// Whether the spooled `name` is a copy of what the archive holds now. Local: the
    /// claim of the worker that fetched it names the very file a restore would read now
    /// (device, inode, size, mtime): an archive replaced since, whatever its timestamps,
    /// or another archive sharing the spool, never passes. Cloud: the claim is recent
    /// ([`CLOUD_TRUST_SECONDS`]) and not from the future.
    #[must_use]
    pub fn is_current(&self, name: &WalName) -> bool {
        let Ok(spooled) = fs::symlink_metadata(self.file(name.as_str())) else {
            return false;
        };
        let Some(claim) = self.claim(name.as_str()) else {
            return false;
        };
        if !spooled.is_file() {
            return false;
        }
        match &self.layout {
            None => claim.epoch <= now() + 60 && claim.age_seconds(now()) < CLOUD_TRUST_SECONDS,
            Some(_) => claim.archived.is_some() && claim.archived == self.archived_id(name),
        }
    }
}

/// Seconds since the epoch.
#[must_use]
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refuses a spool that is `dest_dir` (pg_wal) or its archive_status: the spool is
/// emptied of WAL.
fn check_not_pg_wal(spool: &Path, dest_dir: &Path) -> Result<()> {
    let Ok(spool_meta) = fs::metadata(spool) else {
        return Ok(());
    };
    for dir in [dest_dir.to_path_buf(), dest_dir.join("archive_status")] {
        if let Ok(meta) = fs::metadata(&dir)
            && meta.dev() == spool_meta.dev()
            && meta.ino() == spool_meta.ino()
        {
            return Err(WalError::Config(format!(
                "--spool-dir {} is the directory of %p ({}) or its archive_status: the \
                 spool is emptied of WAL, it must be a directory of its own",
                spool.display(),
                dest_dir.display()
            )));
        }
    }
    Ok(())
}

/// The text of a small regular file of the spool (a claim, the remembered segment size);
/// `None` for anything else: a fifo, a link or a directory planted under the name never
/// blocks or misleads a restore.
#[must_use]
pub fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = durable::open_regular(path).ok()?;
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    Some(text)
}
