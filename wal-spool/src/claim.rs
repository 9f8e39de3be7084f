//! A prefetch's claim on a segment: `.<segment>.claim` in the spool, the line
//! `PID START EPOCH`.
//!
//! PID and START (the process's start time, [`wal_core::process`]) name the worker that
//! fetches the segment: while it runs, a restore asking for the segment waits for it
//! rather than fetch it twice, and no other worker claims it. EPOCH (seconds) is when
//! the claim was made: for a cloud archive, whose objects no `stat` sees, it is how long
//! the spooled copy is trusted. A claim is written under the spool's lock, so no two live
//! workers ever hold one segment; a torn or foreign line reads as no claim.

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
        })
    }

    /// Reads `PID START EPOCH`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Claim> {
        let mut fields = text.split_ascii_whitespace();
        let claim = Claim {
            pid: fields.next()?.parse().ok()?,
            start: fields.next()?.parse().ok()?,
            epoch: fields.next()?.parse().ok()?,
        };
        (claim.pid > 0 && fields.next().is_none()).then_some(claim)
    }

    /// The line written to the claim file.
    #[must_use]
    pub fn line(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start, self.epoch)
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
        for garbage in [
            "",
            "12",
            "12 34",
            "x 1 2",
            "-5 1 2",
            "0 1 2",
            "1 2 3 4",
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
