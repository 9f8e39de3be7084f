//! One logger for every binary: each diagnostic line on stderr has a level, and the DBA
//! chooses how much to see.
//!
//! A cron job wants silence unless something failed; a DBA chasing a WAL that never
//! reached the bucket wants every file each stage touched. Every line walpipe writes to
//! stderr goes through here, with one of four levels:
//!
//! - `error`: a file or a run failed. Always shown: a failing exit code always comes with
//!   the line that says why.
//! - `warn`: something was off and walpipe carried on (an unexpected file in the archive,
//!   a compression level out of range, a temp it could not remove).
//! - `info`: what a run did, as Barman reports it (the files archived, a slot created,
//!   a verdict). The default.
//! - `debug`: every record each stage passed on, and what it did with it.
//!
//! The level is `WALPIPE_LOG` (`error`, `warn`, `info`, `debug`), else `info`; the flags
//! every binary takes win over it: `-v` is `debug`, `-q` is `warn`, `-qq` is `error`. The
//! wrappers hand their own `-v`/`-q` to every stage as the letters of `WALPIPE_LOG_FLAGS`
//! (`v`, `qq`), counted as if given to the binary: what the flags mean is decided here
//! only.
//! The lines themselves are as they always were, one per event (`<tool>: <what>`), never
//! prefixed with their level: a script matching them keeps working, and stdout, the
//! records, is the same whatever the level.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::WalError;

/// How much a line matters; a line is shown when its level is at most the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A file or a run failed (always shown).
    Error = 0,
    /// Something was off and the run carried on.
    Warn = 1,
    /// What the run did (the default threshold).
    Info = 2,
    /// Every record and what became of it.
    Debug = 3,
}

impl Level {
    /// Every level, from the quietest.
    pub const ALL: [Level; 4] = [Level::Error, Level::Warn, Level::Info, Level::Debug];

    /// The name `WALPIPE_LOG` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn from_u8(value: u8) -> Level {
        Level::ALL
            .get(usize::from(value))
            .copied()
            .unwrap_or(Level::Debug)
    }
}

/// The threshold of this process (a `Level` as `u8`).
static THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// The threshold for `WALPIPE_LOG`'s value (`env`, if set) and the flags' counts: any
/// flag wins over the variable (`-v`: debug; `-q`: warn; `-qq`: error); neither: info.
/// A value of `WALPIPE_LOG` that names no level is a configuration error (78), even when
/// a flag overrides it: a typo in a settings file should not wait for the day the flag
/// is dropped.
pub fn threshold(env: Option<&str>, verbose: u8, quiet: u8) -> Result<Level, WalError> {
    let from_env = match env.map(str::trim) {
        None | Some("") => Level::Info,
        Some(value) => Level::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(value))
            .ok_or_else(|| {
                WalError::Config(format!(
                    "WALPIPE_LOG={}: not a log level (error, warn, info or debug)",
                    shown(value)
                ))
            })?,
    };
    if verbose > 0 && quiet > 0 {
        return Err(WalError::Usage(
            "-v and -q together: choose one (-v shows more, -q less)".into(),
        ));
    }
    Ok(match (verbose, quiet) {
        (0, 0) => from_env,
        (_, 0) => Level::Debug,
        (0, 1) => Level::Warn,
        _ => Level::Error,
    })
}

/// The threshold for this process's environment (`WALPIPE_LOG`, and the wrappers'
/// flags in `WALPIPE_LOG_FLAGS`) and the counts of its own `-v` and `-q`: see
/// [`threshold`]. A value that is not text, or letters other than `v` and `q`, are
/// refused as [`threshold`] refuses a level that does not exist.
pub fn threshold_from_env(verbose: u8, quiet: u8) -> Result<Level, WalError> {
    let text = |name: &str| match std::env::var_os(name) {
        None => Ok(None),
        Some(value) => value.into_string().map(Some).map_err(|value| {
            WalError::Config(format!(
                "{name}={}: not text",
                shown(&value.to_string_lossy())
            ))
        }),
    };
    let level = text("WALPIPE_LOG")?;
    let (mut verbose, mut quiet) = (verbose, quiet);
    for letter in text("WALPIPE_LOG_FLAGS")?.unwrap_or_default().chars() {
        match letter {
            'v' => verbose = verbose.saturating_add(1),
            'q' => quiet = quiet.saturating_add(1),
            _ => {
                return Err(WalError::Config(format!(
                    "WALPIPE_LOG_FLAGS: {letter:?} is not a log flag (the wrappers set it: v \
                     for each -v, q for each -q)"
                )));
            }
        }
    }
    threshold(level.as_deref(), verbose, quiet)
}

/// `text` as it may appear inside a line: control characters (a newline, a TAB, an
/// escape) written as Rust escapes, so a file name cannot end a line early or forge the
/// next one (a TAB-led line is one of Barman's report lines on archive-wal's stdout).
#[must_use]
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// `value` for an error line: quoted, control characters escaped, at most 40 characters.
fn shown(value: &str) -> String {
    let head: String = value.chars().take(40).collect();
    if head.len() < value.len() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

/// Sets this process's threshold.
pub fn set_threshold(level: Level) {
    THRESHOLD.store(level as u8, Ordering::Relaxed);
}

/// The flags that give a child walpipe binary this process's threshold, so that it says
/// as much as its parent would: none at `info`, else `-v`, `-q` or `-qq` ([`threshold`]
/// read backwards).
#[must_use]
pub fn flags_for_child() -> &'static [&'static str] {
    match Level::from_u8(THRESHOLD.load(Ordering::Relaxed)) {
        Level::Error => &["-qq"],
        Level::Warn => &["-q"],
        Level::Info => &[],
        Level::Debug => &["-v"],
    }
}

/// Whether a line of `level` is shown.
#[must_use]
pub fn enabled(level: Level) -> bool {
    level == Level::Error || level <= Level::from_u8(THRESHOLD.load(Ordering::Relaxed))
}

/// Writes `line` on stderr, with its newline, if `level` is shown: in one write, so that
/// lines of threads and of the stages sharing a stderr never interleave; above a progress
/// counter, when one is drawn.
pub fn emit(level: Level, line: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut text = line.to_string();
    text.push('\n');
    let write = || {
        // stderr gone: nowhere left to say anything.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    };
    #[cfg(feature = "progress")]
    crate::progress::suspend(write);
    #[cfg(not(feature = "progress"))]
    write();
}

/// A line at `error` level (always shown), formatted as `format!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// A line at `warn` level, formatted as `format!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// A line at `info` level, formatted as `format!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// A line at `debug` level, formatted as `format!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Debug, format_args!($($arg)*)) };
}

pub use crate::__log_debug as debug;
pub use crate::__log_error as error;
pub use crate::__log_info as info;
pub use crate::__log_warn as warn;

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests that move the process's threshold (each puts it back).
    static THRESHOLD_MOVED: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn without_flags_the_variable_chooses_and_info_is_the_default() {
        assert_eq!(threshold(None, 0, 0).unwrap(), Level::Info);
        assert_eq!(threshold(Some(""), 0, 0).unwrap(), Level::Info);
        for level in Level::ALL {
            assert_eq!(threshold(Some(level.name()), 0, 0).unwrap(), level);
        }
        assert_eq!(threshold(Some(" DEBUG "), 0, 0).unwrap(), Level::Debug);
    }

    #[test]
    fn a_flag_wins_over_the_variable() {
        assert_eq!(threshold(Some("error"), 1, 0).unwrap(), Level::Debug);
        assert_eq!(threshold(Some("debug"), 0, 1).unwrap(), Level::Warn);
        assert_eq!(threshold(Some("debug"), 0, 2).unwrap(), Level::Error);
        assert_eq!(threshold(None, 3, 0).unwrap(), Level::Debug);
        assert_eq!(threshold(None, 0, 200).unwrap(), Level::Error);
    }

    #[test]
    fn a_level_that_does_not_exist_is_a_configuration_error_naming_it() {
        for bad in ["verbose", "3", "warning", "info,debug", "\u{0}"] {
            let err = threshold(Some(bad), 0, 0).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{bad:?}");
            assert!(err.to_string().contains("WALPIPE_LOG"), "{err}");
            // Even with a flag that would override it.
            assert!(threshold(Some(bad), 1, 0).is_err());
        }
    }

    #[test]
    fn one_line_escapes_what_would_break_a_line_and_keeps_the_rest() {
        assert_eq!(
            one_line("000000010000000000000001"),
            "000000010000000000000001"
        );
        assert_eq!(one_line("x\n\tINJECT"), "x\\n\\tINJECT");
        assert_eq!(one_line("é\u{1b}[31m"), "é\\u{1b}[31m");
    }

    #[test]
    fn a_childs_flags_give_it_the_parents_threshold() {
        let _serial = THRESHOLD_MOVED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for level in Level::ALL {
            set_threshold(level);
            let flags = flags_for_child();
            let count = |flag: &str| flags.iter().map(|f| f.matches(flag).count()).sum::<usize>();
            let child = threshold(None, count("v") as u8, count("q") as u8).unwrap();
            assert_eq!(child, level, "{flags:?}");
        }
        set_threshold(Level::Info);
    }

    #[test]
    fn a_long_value_is_cut_in_the_error_line() {
        let long = "x".repeat(100_000);
        let err = threshold(Some(&long), 0, 0).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains('…'), "{err}");
        let err = threshold(Some("de\nbug"), 0, 0).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn more_and_less_at_once_is_a_usage_error() {
        let err = threshold(None, 1, 1).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
    }

    #[test]
    fn errors_are_shown_at_every_threshold_and_debug_only_at_debug() {
        let _serial = THRESHOLD_MOVED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for level in Level::ALL {
            set_threshold(level);
            assert!(enabled(Level::Error));
            assert_eq!(enabled(Level::Warn), level >= Level::Warn);
            assert_eq!(enabled(Level::Info), level >= Level::Info);
            assert_eq!(enabled(Level::Debug), level == Level::Debug);
        }
        set_threshold(Level::Info);
    }
}
