//! `plan`: what a prefetch worker fetches next, decided under the spool's lock.
//!
//! The window of a restored segment S is S and the N segments after it on S's timeline
//! (named with the cluster's segment size, read from the restored file's page header and
//! remembered in `.segment-size`). Under an exclusive lock on `.lock`, so that two
//! restores, or a restore and a worker, never claim one segment twice:
//! 1. everything WAL-named outside the window goes (other timelines, older segments,
//!    claims and temps of killed workers), as do spooled files inside it that no longer
//!    stand for the archive's ([`Spool::is_current`]);
//! 2. when at least half of S+1..S+N are neither spooled nor claimed by a live worker,
//!    each of those is claimed for the worker and printed; otherwise nothing is (the
//!    spool is full enough, and a worker per call would compete with recovery for CPU).
//!
//! Taking a segment removes it, so a spool holds at most N segments (and, for a moment,
//! one still in flight when recovery jumps).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use wal_core::error::{IoContext, Result};
use wal_core::names::{SegmentSize, segment_names};
use wal_core::{WalError, WalName, shape};

use crate::claim::Claim;
use crate::spool::{Spool, now};

/// The file that remembers the cluster's segment size between calls.
const SEGMENT_SIZE_FILE: &str = ".segment-size";

/// Sweeps the spool and claims the part of `name`'s window that needs fetching, for
/// `worker`; returns the names claimed (none when the window is full enough, or the
/// worker is already gone).
pub fn plan(
    spool: &Spool,
    name: &WalName,
    n: u16,
    worker: i32,
    restored: Option<&Path>,
) -> Result<Vec<String>> {
    let _lock = lock(spool)?;
    let size = segment_size(spool, name, restored);
    let window = window(name, n, size);
    sweep(spool, &window);
    let missing: Vec<String> = window
        .into_iter()
        .skip(1)
        .filter(|next| !spool.file(next).exists() && !spool.in_flight(next))
        .collect();
    if n == 0 || missing.len() * 2 < usize::from(n) {
        return Ok(Vec::new());
    }
    let Some(claim) = Claim::for_worker(worker, now()) else {
        return Ok(Vec::new());
    };
    let mut claimed = Vec::with_capacity(missing.len());
    for next in missing {
        let archived = WalName::parse_file_name(&next)
            .ok()
            .and_then(|wal| spool.archived_id(&wal));
        if write_claim(&spool.claim_path(&next), &Claim { archived, ..claim }).is_ok() {
            claimed.push(next);
        }
    }
    Ok(claimed)
}

/// `name` and the `n` segments after it (fewer at the end of the timeline's address
/// space).
#[must_use]
pub fn window(name: &WalName, n: u16, size: SegmentSize) -> Vec<String> {
    match segment_names(name.as_str(), None, Some(size)) {
        Ok(names) => names.take(usize::from(n) + 1).collect(),
        Err(_) => vec![name.as_str().to_string()],
    }
}

/// Writes a claim afresh: whatever was under its name goes first (a stale claim, or a
/// fifo planted there, which a plain write would block on); a name that cannot be
/// cleared (a directory) is not claimed.
fn write_claim(path: &Path, claim: &Claim) -> std::io::Result<()> {
    use std::io::Write as _;
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(claim.line().as_bytes())
}

/// The spool's lock, held until dropped.
fn lock(spool: &Spool) -> Result<Flock<File>> {
    let path = spool.dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        .context("cannot open the lock", &path)?;
    // A fifo opened for writing without a reader fails above (ENXIO); anything else that
    // is no regular file is no lock of ours.
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        return Err(WalError::io(
            "cannot use the lock",
            &path,
            std::io::Error::other("not a regular file"),
        ));
    }
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| WalError::io("cannot lock", &path, errno.into()))
}

/// The segment size the spool remembers, else PostgreSQL's default.
#[must_use]
pub fn remembered_size(spool: &Spool) -> SegmentSize {
    remembered(spool).unwrap_or_default()
}

fn remembered(spool: &Spool) -> Option<SegmentSize> {
    crate::spool::read_small(&spool.dir.join(SEGMENT_SIZE_FILE))
        .and_then(|text| text.trim().parse::<u64>().ok())
        .and_then(|bytes| SegmentSize::new(bytes).ok())
}

/// The cluster's segment size: from the page header of the file just restored (and then
/// remembered), else as remembered, else PostgreSQL's default.
fn segment_size(spool: &Spool, name: &WalName, restored: Option<&Path>) -> SegmentSize {
    let remembered_path = spool.dir.join(SEGMENT_SIZE_FILE);
    let remembered = remembered(spool);
    let from_header = restored.and_then(|path| {
        let mut file = File::open(path).ok()?;
        let head = shape::read_head(name, &mut file).ok()?;
        shape::check_head(name, &head).ok().flatten()
    });
    match (from_header, remembered) {
        (Some(header), remembered) => {
            if remembered != Some(header.segment_size) {
                // Only a hint: a spool that cannot keep it still works at the default.
                let _ = wal_core::durable::replace_durably(&remembered_path, |file| {
                    use std::io::Write as _;
                    writeln!(file, "{}", header.segment_size.bytes())
                });
            }
            header.segment_size
        }
        (None, Some(size)) => size,
        (None, None) => SegmentSize::default(),
    }
}

/// Removes the WAL-named entries outside `window`, and spooled files inside it that no
/// longer stand for the archive's. WAL-named: `<segment>`, `.<segment>.<anything>`
/// (claims, the stages' temps) or `<segment>.<anything>`. Other entries (the lock, the
/// segment size, files of other tools) stay.
fn sweep(spool: &Spool, window: &[String]) {
    let Ok(entries) = fs::read_dir(&spool.dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(entry_name) = file_name.to_str() else {
            continue;
        };
        let Some(segment) = segment_of(entry_name) else {
            continue;
        };
        let stale = match window.iter().find(|w| w.as_str() == segment) {
            None => true,
            Some(_) if entry_name == segment => {
                WalName::parse_file_name(segment).map_or(true, |wal| !spool.is_current(&wal))
            }
            Some(_) => false,
        };
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The segment name an entry of the spool belongs to, if it is WAL-named.
fn segment_of(entry: &str) -> Option<&str> {
    let base = entry.strip_prefix('.').unwrap_or(entry);
    let segment = base.get(..24)?;
    let rest = &base[24..];
    let named = segment.bytes().all(|b| b.is_ascii_hexdigit())
        && (rest.is_empty() || rest.starts_with('.'))
        && !(rest.is_empty() && entry.starts_with('.'));
    named.then_some(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_belong_to_their_segment() {
        let seg = "000000010000000000000002";
        for entry in [
            seg.to_string(),
            format!(".{seg}.claim"),
            format!(".{seg}.decompressed"),
            format!(".{seg}.123-abc.download"),
            format!("{seg}.partial"),
        ] {
            assert_eq!(segment_of(&entry), Some(seg), "{entry}");
        }
        for entry in [
            ".lock",
            ".segment-size",
            ".tick",
            "00000001000000000000000",
            "00000001000000000000000Z",
            "000000010000000000000002x",
            "notes.txt",
        ] {
            assert_eq!(segment_of(entry), None, "{entry}");
        }
    }

    #[test]
    fn windows_cross_logs_with_the_segment_size() {
        let name = WalName::parse("0000000200000001000000FE").unwrap();
        assert_eq!(
            window(&name, 3, SegmentSize::default()),
            [
                "0000000200000001000000FE",
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001",
            ]
        );
        let big = SegmentSize::new(1 << 30).unwrap();
        let name = WalName::parse("000000010000000100000003").unwrap();
        assert_eq!(
            window(&name, 1, big),
            ["000000010000000100000003", "000000010000000200000000"]
        );
        assert_eq!(window(&name, 0, big), ["000000010000000100000003"]);
    }
}
