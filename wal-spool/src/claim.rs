//! A prefetch's claim on a segment: `.<segment>.claim` in the spool, the line
//! `PID START EPOCH [DEV INO SIZE MTIME_NS]`.
//!
//! PID and START (the process's start time, [`wal_core::process`]) name the worker that
//! fetches the segment: while it runs, a restore asking for the segment waits for it
//! rather than fetch it twice, and no other worker claims it. EPOCH (seconds) is when
//! the claim was made: for a cloud archive, whose objects no `stat` sees, it is how long
//! the spooled copy is trusted. For a local archive the claim also records which archived
//! file the worker fetched (device, inode, size, mtime in nanoseconds): the spooled copy
//! stands for the archive's only while that file is still the one a restore would find,
//! so an archive replaced since (restored from a backup with old timestamps, another
//! cluster's at the same path) is never answered from the spool. A claim is written
//! under the spool's lock, so no two live workers ever hold one segment; a torn or
//! foreign line reads as no claim.

use wal_core::process;

/// A parsed claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The worker's pid.
    pub pid: i32,
    /// The worker's start time.
    pub start: u64,
    /// When the claim was made, seconds since the epoch.
    pub epoch: u64,
    /// The archived file the worker fetches (a local archive).
    pub archived: Option<FileId>,
}

/// Which file: device, inode, size and mtime (nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds.
    pub mtime_ns: i128,
}

impl FileId {
    /// The identity of the file `meta` describes.
    #[must_use]
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

impl Claim {
    /// The claim of `worker` made at `epoch`; `None` when `worker` does not run (a claim
    /// for a process that is gone would be stale at once).
    #[must_use]
    pub fn for_worker(worker: i32, epoch: u64) -> Option<Claim> {
        Some(Claim {
            pid: worker,
            start: process::start_time(worker)?,
            epoch,
            archived: None,
        })
    }

    /// Reads `PID START EPOCH [DEV INO SIZE MTIME_NS]`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Claim> {
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let archived = match fields.len() {
            3 => None,
            7 => Some(FileId {
                dev: fields[3].parse().ok()?,
                ino: fields[4].parse().ok()?,
                size: fields[5].parse().ok()?,
                mtime_ns: fields[6].parse().ok()?,
            }),
            _ => return None,
        };
        let claim = Claim {
            pid: fields[0].parse().ok()?,
            start: fields[1].parse().ok()?,
            epoch: fields[2].parse().ok()?,
            archived,
        };
        (claim.pid > 0).then_some(claim)
    }

    /// The line written to the claim file.
    #[must_use]
    pub fn line(&self) -> String {
        match self.archived {
            None => format!("{} {} {}\n", self.pid, self.start, self.epoch),
            Some(id) => format!(
                "{} {} {} {} {} {} {}\n",
                self.pid, self.start, self.epoch, id.dev, id.ino, id.size, id.mtime_ns
            ),
        }
    }

    /// Whether the worker that made the claim still runs.
    #[must_use]
    pub fn worker_runs(&self) -> bool {
        process::is_running(self.pid, self.start)
    }

    /// Seconds since the claim was made (0 for a claim from the future: a clock set back).
    #[must_use]
    pub fn age_seconds(&self, now: u64) -> u64 {
        now.saturating_sub(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_garbage_is_no_claim() {
        let me = i32::try_from(std::process::id()).unwrap();
        let claim = Claim::for_worker(me, 1_700_000_000).expect("we run");
        assert_eq!(Claim::parse(&claim.line()), Some(claim));
        assert!(claim.worker_runs());
        let meta = std::fs::metadata("/").unwrap();
        let with_file = Claim {
            archived: Some(FileId::of(&meta)),
            ..claim
        };
        assert_eq!(Claim::parse(&with_file.line()), Some(with_file));
        for garbage in [
            "",
            "12",
            "12 34",
            "x 1 2",
            "-5 1 2",
            "0 1 2",
            "1 2 3 4",
            "1 2 3 4 5 6",
            "1 2 3 4 5 6 x",
            "99999999999999999999 1 2",
            "1 2 -3",
        ] {
            assert_eq!(Claim::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_claim_of_a_process_started_later_is_not_alive() {
        let me = i32::try_from(std::process::id()).unwrap();
        let mut claim = Claim::for_worker(me, 0).unwrap();
        claim.start += 1;
        assert!(!claim.worker_runs(), "same pid, another process");
        assert_eq!(claim.age_seconds(10), 10);
        assert_eq!(claim.age_seconds(0), 0);
        let later = Claim { epoch: 20, ..claim };
        assert_eq!(later.age_seconds(10), 0, "a clock set back");
    }
}
