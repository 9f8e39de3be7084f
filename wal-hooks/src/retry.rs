//! Barman's retry rules for `*_retry_script` hooks (`RetryHookScriptRunner`;
//! `docs/barman-formats.md#retry-hooks`).
//!
//! A retry hook runs until it exits 0 (done), 62 (ABORT_CONTINUE: give up on the hook,
//! the work goes on) or 63 (ABORT_STOP: the caller decides; in the pre phase archiving
//! stops). Any other status, a kill by a signal, a timeout or a script that cannot be
//! started is a failure and the hook runs again after a pause: 3 s after each of 5
//! consecutive failures, then 60 s, and the pattern starts over. The pauses are kept
//! separate from the loop so tests can scale them down.

use std::time::Duration;

/// Success.
pub const EXIT_SUCCESS: i32 = 0;
/// ABORT_CONTINUE: give up on the hook, carry on with the work.
pub const EXIT_ABORT_CONTINUE: i32 = 62;
/// ABORT_STOP: give up on the hook and, before the work, stop it.
pub const EXIT_ABORT_STOP: i32 = 63;

/// Barman's `ATTEMPTS_BEFORE_NAP`: short breaks before a long one.
const ATTEMPTS_BEFORE_NAP: u32 = 5;
/// Barman's `BREAK_TIME`.
const BREAK_TIME: Duration = Duration::from_secs(3);
/// Barman's `NAP_TIME`.
const NAP_TIME: Duration = Duration::from_secs(60);

/// The pauses between runs of a retry hook.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    scale: f64,
}

impl Schedule {
    /// Barman's: 5 × 3 s, 60 s, repeated.
    #[must_use]
    pub fn barman() -> Self {
        Schedule { scale: 1.0 }
    }

    /// Barman's pauses multiplied by `scale` (tests: `0.001` makes 3 s into 3 ms).
    #[must_use]
    pub fn scaled(scale: f64) -> Self {
        Schedule {
            scale: if scale.is_finite() {
                scale.max(0.0)
            } else {
                1.0
            },
        }
    }

    /// The pause after the `failures`-th consecutive failure (1-based): Barman sleeps
    /// `NAP_TIME` after every sixth failure and `BREAK_TIME` after the others.
    #[must_use]
    pub fn pause_after(&self, failures: u32) -> Duration {
        let base = if failures > 0 && failures.is_multiple_of(ATTEMPTS_BEFORE_NAP + 1) {
            NAP_TIME
        } else {
            BREAK_TIME
        };
        base.mul_f64(self.scale)
    }
}

/// How a retry hook ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Exit 0.
    Success,
    /// Exit 62.
    AbortContinue,
    /// Exit 63.
    AbortStop,
}

impl Verdict {
    /// The verdict for an exit code, `None` for codes that mean "run again".
    #[must_use]
    pub fn of_exit_code(code: Option<i32>) -> Option<Verdict> {
        match code {
            Some(EXIT_SUCCESS) => Some(Verdict::Success),
            Some(EXIT_ABORT_CONTINUE) => Some(Verdict::AbortContinue),
            Some(EXIT_ABORT_STOP) => Some(Verdict::AbortStop),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_short_breaks_then_a_nap_then_again() {
        let schedule = Schedule::barman();
        let pauses: Vec<u64> = (1..=13)
            .map(|n| schedule.pause_after(n).as_secs())
            .collect();
        assert_eq!(pauses, [3, 3, 3, 3, 3, 60, 3, 3, 3, 3, 3, 60, 3]);
    }

    #[test]
    fn scaling_shortens_every_pause() {
        let schedule = Schedule::scaled(0.001);
        assert_eq!(schedule.pause_after(1), Duration::from_millis(3));
        assert_eq!(schedule.pause_after(6), Duration::from_millis(60));
        assert_eq!(Schedule::scaled(0.0).pause_after(6), Duration::ZERO);
    }

    #[test]
    fn only_0_62_and_63_end_the_loop() {
        assert_eq!(Verdict::of_exit_code(Some(0)), Some(Verdict::Success));
        assert_eq!(
            Verdict::of_exit_code(Some(62)),
            Some(Verdict::AbortContinue)
        );
        assert_eq!(Verdict::of_exit_code(Some(63)), Some(Verdict::AbortStop));
        for code in [Some(1), Some(2), Some(61), Some(64), Some(127), None] {
            assert_eq!(Verdict::of_exit_code(code), None, "{code:?}");
        }
    }
}
