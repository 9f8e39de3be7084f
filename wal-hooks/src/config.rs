//! The resolved configuration: which Barman hook this process is, decided once from the
//! command line.
//!
//! [`crate::cli::Args`] mirrors what was typed; this is what it means: the hook's Barman
//! names (`archive_retry_script`, `pre_archive_retry_script`), the retry schedule, and
//! "no timeout" for 0, checked so the per-record code never looks at flags.

use std::path::PathBuf;
use std::time::Duration;

use wal_core::WalError;

use crate::cli::Args;
pub use crate::cli::{Event, Phase};
use crate::retry::Schedule;

/// Everything [`crate::run`] needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Before or after the work.
    pub phase: Phase,
    /// Archive or delete.
    pub event: Event,
    /// The shell command line.
    pub script: String,
    /// Barman's retry hook semantics.
    pub retry: bool,
    /// Longest a single run may take; `None`: forever (Barman).
    pub timeout: Option<Duration>,
    /// BARMAN_SERVER.
    pub server: String,
    /// BARMAN_CONFIGURATION; `None`: empty.
    pub configuration: Option<PathBuf>,
    /// The archive, to name archived files records do not name.
    pub archive: Option<PathBuf>,
    /// Pauses between the runs of a retry hook.
    pub schedule: Schedule,
}

impl Config {
    /// A hook with no timeout, no configuration file, no archive, Barman's retry pauses.
    #[must_use]
    pub fn new(
        phase: Phase,
        event: Event,
        script: impl Into<String>,
        retry: bool,
        server: impl Into<String>,
    ) -> Self {
        Config {
            phase,
            event,
            script: script.into(),
            retry,
            timeout: None,
            server: server.into(),
            configuration: None,
            archive: None,
            schedule: Schedule::barman(),
        }
    }

    /// Resolves the command line.
    pub fn from_args(args: Args) -> Result<Self, WalError> {
        if args.script.trim().is_empty() {
            return Err(WalError::Usage("--script: empty command".into()));
        }
        if args.server.is_empty() {
            return Err(WalError::Usage("--server: empty name".into()));
        }
        let mut config = Config::new(args.phase, args.event, args.script, args.retry, args.server);
        config.timeout = args.timeout.filter(|t| !t.is_zero());
        config.configuration = args
            .configuration
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        // A cloud archive is no directory to join names to: BARMAN_FILE is then the
        // object URL the record carries (`stored_at`).
        config.archive = args
            .archive
            .filter(|p| !p.is_empty() && !p.as_encoded_bytes().windows(3).any(|w| w == b"://"))
            .map(PathBuf::from);
        if let Some(scale) = args.retry_sleep_scale {
            config.schedule = Schedule::scaled(scale);
        }
        Ok(config)
    }

    /// BARMAN_HOOK: the hook's name without its phase (`archive_retry_script`).
    #[must_use]
    pub fn hook(&self) -> &'static str {
        match (self.event, self.retry) {
            (Event::Archive, false) => "archive_script",
            (Event::Archive, true) => "archive_retry_script",
            (Event::Delete, false) => "wal_delete_script",
            (Event::Delete, true) => "wal_delete_retry_script",
        }
    }

    /// BARMAN_PHASE.
    #[must_use]
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }

    /// Barman's configuration option for this hook (`pre_archive_retry_script`), which
    /// names it in messages.
    #[must_use]
    pub fn option_name(&self) -> String {
        format!("{}_{}", self.phase_name(), self.hook())
    }

    /// What the work is, for messages: "archived" or "deleted".
    #[must_use]
    pub fn work_done(&self) -> &'static str {
        match self.event {
            Event::Archive => "archived",
            Event::Delete => "deleted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, WalError> {
        let mut argv = vec!["wal-hooks", "--server", "pg"];
        argv.extend_from_slice(args);
        Config::from_args(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn barman_names_every_hook() {
        let names: Vec<String> = [
            ["--phase", "pre", "--event", "archive"],
            ["--phase", "post", "--event", "archive"],
            ["--phase", "pre", "--event", "delete"],
            ["--phase", "post", "--event", "delete"],
        ]
        .iter()
        .flat_map(|flags| {
            let plain = parse(&[flags[0], flags[1], flags[2], flags[3], "--script", "true"]);
            let retry = parse(&[
                flags[0], flags[1], flags[2], flags[3], "--script", "true", "--retry",
            ]);
            [plain.unwrap().option_name(), retry.unwrap().option_name()]
        })
        .collect();
        // Barman's eight option names.
        assert_eq!(
            names,
            [
                "pre_archive_script",
                "pre_archive_retry_script",
                "post_archive_script",
                "post_archive_retry_script",
                "pre_wal_delete_script",
                "pre_wal_delete_retry_script",
                "post_wal_delete_script",
                "post_wal_delete_retry_script",
            ]
        );
    }

    #[test]
    fn zero_timeout_and_empty_paths_mean_none() {
        let config = parse(&[
            "--phase",
            "pre",
            "--event",
            "archive",
            "--script",
            "true",
            "--timeout",
            "0",
            "--configuration",
            "",
            "--archive",
            "",
        ])
        .unwrap();
        assert_eq!(
            (config.timeout, config.configuration, config.archive),
            (None, None, None)
        );
    }

    #[test]
    fn a_cloud_archive_names_no_directory() {
        let hook = ["--phase", "post", "--event", "delete", "--script", "true"];
        for url in ["s3://bucket/prefix", "az://container", "gs://b"] {
            let config = parse(&[&hook[..], &["--archive", url]].concat()).unwrap();
            assert_eq!(config.archive, None, "{url}");
        }
        let config = parse(&[&hook[..], &["--archive", "/srv/wals"]].concat()).unwrap();
        assert_eq!(config.archive, Some(PathBuf::from("/srv/wals")));
    }

    #[test]
    fn an_empty_script_is_a_usage_error() {
        let err = parse(&["--phase", "pre", "--event", "archive", "--script", " "]).unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Usage);
    }
}
