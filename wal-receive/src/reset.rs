//! `wal-receive reset` and the truncation before each start: the two places where the
//! receiver itself touches the streaming queue (Barman's `_reset_streaming_status` and
//! `_truncate_partial_file_if_needed`).
//!
//! pg_receivewal finds where to resume from the newest file in its directory. After the
//! server lost the WAL it needs (no slot, and the segment recycled) it cannot go on;
//! `reset` realigns the directory with the server by replacing the newest `.partial` with
//! an empty `<restart segment>.partial`, the position the slot (or the server) can serve.
//! Complete segments are never touched: they still wait to be archived.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use wal_core::error::{IoContext, Result};
use wal_core::names::{WalKind, WalName};
use wal_core::{WalError, durable};

/// What `reset` decided, from the queue and the server's positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reset {
    /// The newest file is already the restart position (or there is none).
    Aligned,
    /// The queue holds WAL the server has not written: refuse (another server's, or a
    /// server restored from a backup). Names the newest file and the current segment.
    Ahead {
        /// The newest WAL file of the queue.
        newest: String,
        /// The server's current segment.
        current: String,
    },
    /// Remove `remove` (the newest file, when it is a `.partial`) and create the empty
    /// `create` (`<restart segment>.partial`).
    Realign {
        /// The stale `.partial` to remove.
        remove: Option<String>,
        /// The status file to create.
        create: String,
    },
}

/// Decides the reset from the queue's entry names, the server's current segment and the
/// segment of the slot's restart LSN (the current one without a slot). Barman's rule:
/// the newest WAL or `.partial` name decides; names are compared as text, as Barman does
/// (timeline first, then position).
#[must_use]
pub fn plan(entries: &[String], current: &str, restart: &str) -> Reset {
    let newest = entries
        .iter()
        .filter(|name| {
            WalName::parse_file_name(name)
                .is_ok_and(|wal| matches!(wal.kind(), WalKind::Segment | WalKind::Partial))
        })
        .max();
    let restart_partial = format!("{restart}.partial");
    let Some(newest) = newest else {
        return Reset::Aligned;
    };
    if *newest == restart || *newest == restart_partial {
        return Reset::Aligned;
    }
    if newest.as_str() > current {
        return Reset::Ahead {
            newest: newest.clone(),
            current: current.to_owned(),
        };
    }
    Reset::Realign {
        remove: newest.ends_with(".partial").then(|| newest.clone()),
        create: restart_partial,
    }
}

/// Carries out a [`Reset::Realign`] in `dir`, durably: the new status file exists, the
/// stale one is gone, and the directory is fsynced. Prints Barman's lines on `say`.
pub fn realign(
    dir: &Path,
    remove: Option<&str>,
    create: &str,
    say: &mut dyn FnMut(String),
) -> Result<()> {
    say("Resetting receive-wal directory status".into());
    if let Some(stale) = remove {
        let path = dir.join(stale);
        say(format!("Removing status file {}", path.display()));
        fs::remove_file(&path).context("cannot remove", &path)?;
    }
    let path = dir.join(create);
    say(format!("Creating status file {}", path.display()));
    // Never through a link someone put there: the file is ours, in the queue.
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .context("cannot create", &path)?;
    durable::fsync_dir(dir)
}

/// The `.partial` that pg_receivewal would resume from, if its size says it was being
/// written when pg_receivewal stopped before padding it: neither empty nor a whole
/// segment. pg_receivewal pads a new `.partial` to the full size before writing into it,
/// so such a file holds nothing that was acknowledged; truncated to 0 bytes, it is
/// padded again and streamed into from its start.
pub fn partial_to_truncate(dir: &Path, segment_size: u64) -> Result<Option<(PathBuf, u64)>> {
    let mut newest: Option<String> = None;
    for entry in fs::read_dir(dir).context("cannot list", dir)? {
        let entry = entry.context("cannot list", dir)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let partial = WalName::parse_file_name(&name).is_ok_and(|w| w.kind() == WalKind::Partial);
        if partial && newest.as_ref().is_none_or(|n| name > *n) {
            newest = Some(name);
        }
    }
    let Some(name) = newest else {
        return Ok(None);
    };
    let path = dir.join(name);
    let meta = fs::symlink_metadata(&path).context("cannot stat", &path)?;
    if !meta.file_type().is_file() {
        return Err(WalError::Config(format!(
            "{}: the streaming queue's newest .partial is not a regular file",
            path.display()
        )));
    }
    let size = meta.len();
    if size == 0 || size == segment_size {
        return Ok(None);
    }
    // Truncating it would empty its other names too (a copy someone linked elsewhere).
    if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
        return Err(WalError::Config(format!(
            "{}: the streaming queue's newest .partial has other names (hard links); \
             left untouched",
            path.display()
        )));
    }
    Ok(Some((path, size)))
}

/// Truncates `path` to 0 bytes, durably; never through a symbolic link (one swapped in
/// since the size was read).
pub fn truncate(path: &Path) -> Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .context("cannot open", path)?;
    file.set_len(0).context("cannot truncate", path)?;
    file.sync_all().context("cannot fsync", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Barman's own test case: a stale `.partial` far behind, the server at `F/A12D687`.
    #[test]
    fn barmans_case_leaves_the_servers_segment() {
        let (current, _) = wal_core::names::lsn_to_segment(
            0xF_0A12_D687,
            1,
            wal_core::names::SegmentSize::DEFAULT,
        );
        assert_eq!(current, "000000010000000F0000000A");
        let entries = names(&["000000010000000100000001.partial"]);
        assert_eq!(
            plan(&entries, &current, &current),
            Reset::Realign {
                remove: Some("000000010000000100000001.partial".into()),
                create: "000000010000000F0000000A.partial".into(),
            }
        );
    }

    #[test]
    fn aligned_ahead_and_complete_segments() {
        let current = "000000010000000000000010";
        // Nothing, or already at the restart position.
        assert_eq!(plan(&[], current, current), Reset::Aligned);
        let at = names(&[
            "000000010000000000000008",
            "000000010000000000000009.partial",
        ]);
        assert_eq!(
            plan(&at, current, "000000010000000000000009"),
            Reset::Aligned
        );
        // Ahead of the server: refused.
        let ahead = names(&["000000010000000000000011.partial"]);
        assert!(matches!(
            plan(&ahead, current, current),
            Reset::Ahead { .. }
        ));
        // A complete newest segment stays (it waits to be archived); only a status file
        // is created. Other names (history, backup labels, junk) do not count.
        let complete = names(&["000000010000000000000005", "00000001.history", "junk"]);
        assert_eq!(
            plan(&complete, current, "000000010000000000000007"),
            Reset::Realign {
                remove: None,
                create: "000000010000000000000007.partial".into(),
            }
        );
    }

    #[test]
    fn only_a_partial_of_a_wrong_size_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let size = 1 << 20;
        assert_eq!(partial_to_truncate(dir.path(), size).unwrap(), None);
        let older = dir.path().join("000000010000000000000001.partial");
        fs::write(&older, b"x").unwrap();
        let newest = dir.path().join("000000010000000000000002.partial");
        fs::write(&newest, vec![0; size as usize]).unwrap();
        // The newest is whole: nothing to do (the older one is not pg_receivewal's).
        assert_eq!(partial_to_truncate(dir.path(), size).unwrap(), None);
        fs::write(&newest, b"half").unwrap();
        assert_eq!(
            partial_to_truncate(dir.path(), size).unwrap(),
            Some((newest.clone(), 4))
        );
        truncate(&newest).unwrap();
        assert_eq!(fs::metadata(&newest).unwrap().len(), 0);
        assert_eq!(partial_to_truncate(dir.path(), size).unwrap(), None);
    }

    /// A newest `.partial` that is a link, a fifo, a directory or a file with other names
    /// is refused naming it, and nothing it leads to changes.
    #[test]
    fn a_partial_that_is_not_a_plain_file_of_ours_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("streaming");
        fs::create_dir(&queue).unwrap();
        let outside = dir.path().join("precious");
        fs::write(&outside, b"half").unwrap();
        let partial = queue.join("000000010000000000000002.partial");
        let size = 1 << 20;
        let refused = |why: &str| {
            let err = partial_to_truncate(&queue, size).unwrap_err();
            assert!(matches!(err, WalError::Config(_)), "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&partial.display().to_string()) && text.contains(why),
                "{text}"
            );
            assert_eq!(fs::read(&outside).unwrap(), b"half");
        };
        std::os::unix::fs::symlink(&outside, &partial).unwrap();
        refused("not a regular file");
        fs::remove_file(&partial).unwrap();
        nix::unistd::mkfifo(&partial, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        refused("not a regular file");
        fs::remove_file(&partial).unwrap();
        fs::create_dir(&partial).unwrap();
        refused("not a regular file");
        fs::remove_dir(&partial).unwrap();
        fs::hard_link(&outside, &partial).unwrap();
        refused("hard links");
        fs::remove_file(&partial).unwrap();
        // A link swapped in after the size was read is not followed.
        std::os::unix::fs::symlink(&outside, &partial).unwrap();
        assert!(truncate(&partial).is_err());
        assert!(realign(&queue, None, "000000010000000000000002.partial", &mut drop).is_err());
        assert_eq!(fs::read(&outside).unwrap(), b"half");
    }
}
