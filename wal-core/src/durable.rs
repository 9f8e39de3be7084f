//! Durable file operations: the only way walpipe puts a file anywhere.
//!
//! Atomic is not enough for PostgreSQL: a WAL file must survive a power loss once we say
//! it is archived, so every placement is temp file → fsync → move into place *without
//! replacing* → fsync the directory (`docs/durability.md#placing-a-file`). Nothing in walpipe
//! calls `std::fs::rename` directly (clippy.toml bans it): a rename that replaces could
//! overwrite an archived WAL, and one that is not followed by a directory fsync can vanish.
//!
//! New files are written unnamed (`O_TMPFILE`) and linked to their final name only once
//! complete and fsynced, so a writer killed half-way leaves nothing at all. Where the
//! filesystem cannot do that, temporary names start with a dot, so queue listings (which
//! skip dot-files, like Barman's glob) never mistake them for WAL, and carry the writer's
//! pid so two writers never share one.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, RenameFlags, renameat2};
use nix::unistd::linkat;

use crate::error::{IoContext, Result, WalError};

const COPY_BUFFER: usize = 256 * 1024;

/// fsyncs a directory, so the names created or removed in it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context("cannot fsync directory", dir)
}

/// fsyncs a file's content and metadata.
pub fn fsync_file(path: &Path) -> Result<()> {
    open_regular(path)
        .and_then(|f| f.sync_all())
        .context("cannot fsync", path)
}

/// Opens `path` for reading only if it is a regular file: never through a symbolic link
/// (`O_NOFOLLOW`), and never waiting on a fifo or a device (`O_NONBLOCK`, which regular
/// files ignore). A record's `path` is input: a fifo there must fail at once, not hang a
/// stage forever, and only regular files are WAL.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symbolic link, not a regular file",
            ),
            _ => e,
        })?;
    let file_type = file.metadata()?.file_type();
    if file_type.is_file() {
        return Ok(file);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}, not a regular file", describe_type(file_type)),
    ))
}

/// [`open_regular`] for a file that must be WAL: one that is not a regular file is
/// `corrupt` (it cannot be WAL), any other failure an I/O error naming the file.
pub fn open_wal(path: &Path) -> Result<File> {
    open_regular(path).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidInput {
            WalError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        } else {
            WalError::io("cannot open", path, e)
        }
    })
}

/// What a file that is not a regular file is, in a word or two.
#[must_use]
pub fn describe_type(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a fifo"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// fsyncs each distinct parent directory of `paths`, once.
pub fn fsync_parents<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    let dirs: BTreeSet<&Path> = paths.into_iter().filter_map(Path::parent).collect();
    for dir in dirs {
        fsync_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?;
    }
    Ok(())
}

/// The directory of `path` (`.` for a bare name): the one to fsync after naming `path`.
#[must_use]
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temporary name next to `target`, unique to this writer:
/// `.<name>.<pid>.<n>.tmp`. Used where a named temp is needed (replacing xlog.db under its
/// lock, and filesystems without `O_TMPFILE`); two writers never share one, so neither can
/// rename the other's half-written file into place.
#[must_use]
pub fn temp_name_for(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map_or_else(|| "walpipe".into(), |n| n.to_string_lossy().into_owned());
    parent_of(target).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Removes the temps of [`temp_name_for`] `target` that writers since gone left (killed
/// half-way): `.<name>.<pid>.<n>.tmp` whose pid no longer runs. A live writer's is never
/// touched. Failures are ignored: a leftover costs disk space, nothing else.
pub fn sweep_dead_temps_for(target: &Path) {
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(parent_of(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let dead = rest.split_once('.').is_some_and(|(pid, n)| {
            digits(pid) && digits(n) && pid.parse().is_ok_and(|pid| !crate::process::alive(pid))
        });
        if dead && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), or `None` where the filesystem (or a missing
/// `/proc`) does not allow one. It has no name until [`link_unnamed`] gives it its final
/// one, so a writer killed half-way leaves nothing behind, and nobody else can touch it.
fn create_unnamed(dir: &Path) -> Result<Option<File>> {
    if !Path::new("/proc/self/fd").is_dir() {
        return Ok(None);
    }
    match OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_TMPFILE.bits())
        .mode(0o600)
        .open(dir)
    {
        Ok(file) => Ok(Some(file)),
        Err(e)
            if matches!(
                e.raw_os_error().map(Errno::from_raw),
                Some(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL | Errno::ENOENT)
            ) && dir.is_dir() =>
        {
            Ok(None)
        }
        Err(e) => Err(WalError::io("cannot create a file in", dir, e)),
    }
}

/// Gives the unnamed `file` its name `dest` with `linkat(2)`, which never replaces:
/// `AlreadyExists` if `dest` exists. The name is for exactly this inode, whatever other
/// writers do meanwhile.
fn link_unnamed(file: &File, dest: &Path) -> io::Result<()> {
    let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    linkat(
        AT_FDCWD,
        by_fd.as_str(),
        AT_FDCWD,
        dest,
        AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

/// Creates `path` fresh for writing, mode 0600. A leftover file of that name (from a killed
/// run) is unlinked first, never truncated: it may be hard-linked into an archive.
pub fn create_temp(path: &Path) -> Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::io("cannot remove stale temp", path, e)),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .context("cannot create", path)
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
/// Does not fsync: the caller fsyncs the directory (possibly once for many files).
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_NOREPLACE: link() never replaces either.
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// How [`place`] brought the bytes to their destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A hard link to the same inode (same filesystem): no bytes copied.
    Linked,
    /// A copy through a temporary name (another filesystem, or links not supported).
    Copied,
}

/// Makes the content of `src` appear at `dest`, never replacing an existing `dest`
/// (`AlreadyExists` then) and never leaving a partial file under `dest`. `src` stays.
/// `src` must be a regular file with no other name (else it is copied, never linked).
///
/// `src` is fsynced first; the new name is durable only after the caller fsyncs
/// `dest`'s directory (batched by wal-store).
pub fn place(src: &Path, dest: &Path) -> Result<Placement> {
    let file = open_regular(src).context("cannot open", src)?;
    file.sync_all().context("cannot fsync", src)?;
    // A file with other names can change under the archive: PostgreSQL recycles a
    // segment by renaming and overwriting it in place, and any other name may be written.
    // Only a file whose one name is ours is linked.
    if std::os::unix::fs::MetadataExt::nlink(&file.metadata().context("cannot stat", src)?) > 1 {
        copy_no_replace(src, dest)?;
        return Ok(Placement::Copied);
    }
    match fs::hard_link(src, dest) {
        Ok(()) => Ok(Placement::Linked),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(WalError::io("cannot store", dest, e))
        }
        Err(e) if links_unsupported(&e) => {
            copy_no_replace(src, dest)?;
            Ok(Placement::Copied)
        }
        Err(e) => Err(WalError::io("cannot link", dest, e)),
    }
}

fn links_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EXDEV | Errno::EPERM | Errno::EOPNOTSUPP | Errno::EMLINK)
    )
}

/// Copies `src` next to `dest`, fsyncs it, keeps `src`'s mode and mtime, and gives it the
/// name `dest` without replacing (`AlreadyExists` then). Never leaves a partial file under
/// `dest`. Does not fsync `dest`'s directory.
pub fn copy_no_replace(src: &Path, dest: &Path) -> Result<u64> {
    if let Some(mut unnamed) = create_unnamed(parent_of(dest))? {
        let copied = fill_copy(src, &mut unnamed, dest)?;
        link_unnamed(&unnamed, dest).context("cannot store", dest)?;
        return Ok(copied);
    }
    let temp = temp_name_for(dest);
    let result = create_temp(&temp)
        .and_then(|mut output| fill_copy(src, &mut output, &temp))
        .and_then(|copied| {
            rename_no_replace(&temp, dest)
                .context("cannot store", dest)
                .map(|()| copied)
        });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Copies `src` into `output` with its mode and mtime, and fsyncs it.
fn fill_copy(src: &Path, output: &mut File, shown_as: &Path) -> Result<u64> {
    let mut input = open_regular(src).context("cannot open", src)?;
    let meta = input.metadata().context("cannot stat", src)?;
    let copied = copy_chunks(&mut input, output, src, shown_as)?;
    output
        .set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))
        .context("cannot chmod", shown_as)?;
    if let Ok(modified) = meta.modified() {
        output
            .set_modified(modified)
            .context("cannot set mtime of", shown_as)?;
    }
    output.sync_all().context("cannot fsync", shown_as)?;
    Ok(copied)
}

fn copy_chunks(input: &mut File, output: &mut File, src: &Path, dest: &Path) -> Result<u64> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buffer).context("cannot read", src)?;
        if n == 0 {
            return Ok(total);
        }
        output
            .write_all(&buffer[..n])
            .context("cannot write", dest)?;
        total += n as u64;
    }
}

/// Copies `src` to `dest` durably: temp, fsync, move without replacing, fsync directory.
pub fn copy_durably(src: &Path, dest: &Path) -> Result<u64> {
    let copied = copy_no_replace(src, dest)?;
    fsync_dir(parent_of(dest))?;
    Ok(copied)
}

/// Writes a new file `dest` durably with `fill`, without replacing an existing one.
pub fn write_new_durably(
    dest: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    if let Some(mut unnamed) = create_unnamed(parent_of(dest))? {
        fill(&mut unnamed).context("cannot write", dest)?;
        unnamed.sync_all().context("cannot fsync", dest)?;
        link_unnamed(&unnamed, dest).context("cannot create", dest)?;
        return fsync_dir(parent_of(dest));
    }
    let temp = temp_name_for(dest);
    let result = (|| {
        let mut output = create_temp(&temp)?;
        fill(&mut output).context("cannot write", &temp)?;
        output.sync_all().context("cannot fsync", &temp)?;
        rename_no_replace(&temp, dest).context("cannot create", dest)?;
        fsync_dir(parent_of(dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Replaces `dest` with new content atomically and durably (for catalogues such as
/// xlog.db, whose writers all hold its lock; never for WAL files).
pub fn replace_durably(dest: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
    let temp = temp_name_for(dest);
    let result = (|| {
        let mut output = create_temp(&temp)?;
        fill(&mut output).context("cannot write", &temp)?;
        output.sync_all().context("cannot fsync", &temp)?;
        #[allow(clippy::disallowed_methods)] // replacing is the point here, under the lock
        fs::rename(&temp, dest).context("cannot replace", dest)?;
        fsync_dir(parent_of(dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Moves `src` to `dest` durably without replacing: a rename on one filesystem, else a
/// durable copy followed by removing `src`. Both directories are fsynced.
pub fn move_durably(src: &Path, dest: &Path) -> Result<()> {
    match rename_no_replace(src, dest) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::EXDEV as i32) => {
            copy_no_replace(src, dest)?;
            fsync_dir(parent_of(dest))?;
            fs::remove_file(src).context("cannot remove", src)?;
        }
        Err(e) => return Err(WalError::io("cannot move to", dest, e)),
    }
    fsync_dir(parent_of(dest))?;
    fsync_dir(parent_of(src))
}

/// Removes files, tolerating those already gone, then fsyncs their directories once each.
pub fn remove_durably<'a>(paths: impl IntoIterator<Item = &'a Path> + Clone) -> Result<()> {
    remove_files(paths.clone())?;
    fsync_parents(paths)
}

/// Removes files, tolerating those already gone, without fsyncing (for temporary files,
/// whose reappearance after a crash is harmless).
pub fn remove_files<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("cannot remove", path, e)),
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents, fsyncing each parent whose entries changed, so
/// a new hash directory survives a crash together with the WAL placed in it.
pub fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(parent_of(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(WalError::io("cannot create directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn only_regular_files_open_and_nothing_waits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file).is_ok());
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for (path, what) in [
            (&fifo, "a fifo"),
            (&link, "a symbolic link"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            let err = open_regular(path).unwrap_err();
            assert!(
                err.to_string().starts_with(what),
                "{}: {err}",
                path.display()
            );
        }
        let err = place(&fifo, &dir.path().join("dest")).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
        assert!(fsync_file(&fifo).is_err());
    }

    #[test]
    fn a_file_with_other_names_is_copied_never_linked() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("000000010000000000000001");
        fs::write(&src, b"wal bytes").unwrap();
        fs::hard_link(&src, dir.path().join("other-name")).unwrap();
        let dest = dir.path().join("archived");
        assert_eq!(place(&src, &dest).unwrap(), Placement::Copied);
        fs::write(dir.path().join("other-name"), b"recycled").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"wal bytes");
        assert_eq!(fs::metadata(&dest).unwrap().nlink(), 1);
    }

    #[test]
    fn place_links_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("000000010000000000000001");
        fs::write(&src, b"wal bytes").unwrap();
        let dest = dir.path().join("archived");
        assert_eq!(place(&src, &dest).unwrap(), Placement::Linked);
        assert_eq!(fs::read(&dest).unwrap(), b"wal bytes");
        assert!(src.exists(), "the source stays until the caller removes it");

        let other = dir.path().join("other");
        fs::write(&other, b"different").unwrap();
        let err = place(&other, &dest).unwrap_err();
        assert!(err.to_string().contains("cannot store"), "{err}");
        assert_eq!(fs::read(&dest).unwrap(), b"wal bytes");
    }

    #[test]
    fn copies_keep_mode_and_mtime_and_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, vec![7u8; 300_000]).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
        let mtime =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let dest = dir.path().join("dest");
        assert_eq!(copy_durably(&src, &dest).unwrap(), 300_000);
        let meta = fs::metadata(&dest).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_eq!(meta.mtime(), 1_700_000_000);
        assert!(copy_durably(&src, &dest).is_err());
        // No temp left behind by the refused copy.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn create_temp_unlinks_instead_of_truncating() {
        let dir = tempfile::tempdir().unwrap();
        let archived = dir.path().join("archived");
        fs::write(&archived, b"keep me").unwrap();
        let stale = dir.path().join(".stale.tmp");
        fs::hard_link(&archived, &stale).unwrap();
        let mut file = create_temp(&stale).unwrap();
        file.write_all(b"new").unwrap();
        assert_eq!(fs::read(&archived).unwrap(), b"keep me");
    }

    #[test]
    fn rename_no_replace_refuses_existing_targets() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let err = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"b");
        move_durably(&a, &dir.path().join("c")).unwrap();
        assert!(!a.exists());
    }

    #[test]
    fn copies_leave_nothing_but_the_destination_and_temps_are_per_writer() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, vec![1u8; 10_000]).unwrap();
        fs::create_dir(dir.path().join("q")).unwrap();
        let dest = dir.path().join("q/000000010000000000000001");
        copy_durably(&src, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap().len(), 10_000);
        let names: Vec<_> = fs::read_dir(dir.path().join("q"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["000000010000000000000001"], "no temp left behind");
        assert_ne!(temp_name_for(&dest), temp_name_for(&dest), "never shared");
        assert!(
            create_unnamed(dir.path()).unwrap().is_some(),
            "O_TMPFILE works here"
        );
    }

    #[test]
    fn an_unnamed_file_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x");
        fs::write(&dest, b"first").unwrap();
        let mut unnamed = create_unnamed(dir.path()).unwrap().unwrap();
        unnamed.write_all(b"second").unwrap();
        let err = link_unnamed(&unnamed, &dest).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&dest).unwrap(), b"first");
    }

    #[test]
    fn write_new_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        write_new_durably(&path, |f| f.write_all(b"one")).unwrap();
        assert!(write_new_durably(&path, |f| f.write_all(b"two")).is_err());
        replace_durably(&path, |f| f.write_all(b"three")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        remove_durably([path.as_path(), dir.path().join("gone").as_path()]).unwrap();
        assert!(!path.exists());
        create_dir_durably(&dir.path().join("a/b/c")).unwrap();
        assert!(dir.path().join("a/b/c").is_dir());
    }
}
