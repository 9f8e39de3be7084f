//! The hidden temp files wal-store downloads objects into, and their removal when the
//! process that made one was killed.
//!
//! Two kinds, told apart by their last extension: `.download`, a `get --temp-dir` output
//! that outlives its process (the next stage of the pipeline reads it, and lists it in
//! `temps`; scripts/restore-wal sweeps the ones left in %p's directory), and `.compare`,
//! the copy `put` downloads to compare with a source whose name is taken, which lives and
//! dies with its process. Both are named `.<name>.<pid>-<random>.<kind>`
//! ([`wal_core::temp::create_unique`]): unique, so two processes fetching the same WAL
//! into one directory never share one (nor unlink each other's), the pid saying whose it
//! is. The leading dot keeps them out of queue listings.
//!
//! A killed put leaves its `.compare` copy beside the source (16 MiB for a segment, in the
//! queue or in pg_wal), and since the name is unique no later run would replace it:
//! [`sweep_dead_compares`] removes those of a WAL before its next comparison, which a
//! killed put always leaves to do (its source is still there).

use std::fs::File;
use std::path::Path;

use wal_core::error::Result;
use wal_core::temp::TempFile;

/// What a download is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `get --temp-dir` output, handed to the next stage.
    Download,
    /// put's copy of a taken name, compared and removed by the same process.
    Compare,
}

impl Kind {
    fn extension(self) -> &'static str {
        match self {
            Kind::Download => "download",
            Kind::Compare => "compare",
        }
    }
}

/// Creates `.<name>.<pid>-<random>.<kind>` in `dir`, exclusively, mode 0600
/// ([`wal_core::temp::create_unique`]); removed when the returned [`TempFile`] is dropped
/// unless kept.
pub fn create(dir: &Path, name: &str, kind: Kind) -> Result<(TempFile, File)> {
    wal_core::temp::create_unique(dir, name, kind.extension())
}

/// Removes the `.<name>.<pid>-<random>.compare` copies in `dir` whose process is gone
/// ([`wal_core::temp::sweep_dead`]). A process of another pid namespace sharing the
/// directory may have a pid that is free here: its copy is then removed, and its
/// comparison fails as `temporary` and is retried; nothing stored is touched.
pub fn sweep_dead_compares(dir: &Path, name: &str) {
    wal_core::temp::sweep_dead(dir, name, Kind::Compare.extension());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn temps_are_unique_hidden_and_never_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000001";
        // Another process's download under the name every temp once had.
        let theirs = dir.path().join(format!(".{name}.download"));
        std::fs::write(&theirs, "theirs").unwrap();
        let (first, _) = create(dir.path(), name, Kind::Download).unwrap();
        let (second, _) = create(dir.path(), name, Kind::Download).unwrap();
        let (third, _) = create(dir.path(), name, Kind::Compare).unwrap();
        assert_ne!(first.path(), second.path());
        for (temp, ext) in [
            (&first, ".download"),
            (&second, ".download"),
            (&third, ".compare"),
        ] {
            let file = temp.path().file_name().unwrap().to_str().unwrap();
            // What scripts/restore-wal sweeps: "$DEST_DIR"/.*.download.
            assert!(
                file.starts_with(&format!(".{name}.{}-", std::process::id()))
                    && file.ends_with(ext),
                "{file}"
            );
            let mode = std::fs::metadata(temp.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
        let path = third.path().to_path_buf();
        drop(third);
        assert!(!path.exists(), "a temp not kept is removed");
    }

    #[test]
    fn compare_copies_of_dead_processes_are_swept_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000001";
        let at = |file: String| dir.path().join(file);
        // pid_max is at most 2^22: this pid is nobody's.
        let dead = at(format!(".{name}.4999999-0badf00d.compare"));
        // A get's output of a process gone is handed on, never swept here.
        let handed_on = at(format!(".{name}.4999999-0badf00d.download"));
        let live = at(format!(".{name}.{}-1234abcd.compare", std::process::id()));
        let parent = at(format!(
            ".{name}.{}-1234abcd.compare",
            std::os::unix::process::parent_id()
        ));
        let other_wal = at(".000000010000000000000002.4999999-0badf00d.compare".to_owned());
        // A child that exited and is not waited for yet: a zombie, dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let zombie_pid = child.id();
        while wal_core::process::start_time(i32::try_from(zombie_pid).unwrap()).is_some() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let zombie = at(format!(".{name}.{zombie_pid}-0badf00d.compare"));
        for path in [&dead, &zombie, &handed_on, &live, &parent, &other_wal] {
            std::fs::write(path, "left").unwrap();
        }
        sweep_dead_compares(dir.path(), name);
        child.wait().unwrap();
        assert!(!dead.exists(), "a dead process's copy is swept");
        assert!(!zombie.exists(), "a zombie's copy is swept");
        for path in [&handed_on, &live, &parent, &other_wal] {
            assert!(path.exists(), "{} is kept", path.display());
        }
    }
}
