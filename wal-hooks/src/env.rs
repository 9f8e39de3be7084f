//! Barman's hook environment for one record (`docs/barman-formats.md#hook-environment`),
//! plus `WALPIPE_RECORD`.
//!
//! Scripts written for Barman read these variables, so names and value formats are
//! Barman's exactly: `BARMAN_SIZE` is a decimal integer, `BARMAN_TIMESTAMP` is Python's
//! `str(float)` of the mtime (`1700000000.25`, `1700000000.0`), `BARMAN_COMPRESSION` and
//! `BARMAN_ERROR` are empty strings when there is none, `BARMAN_RETRY` is `1` or `0`.
//!
//! `BARMAN_FILE` follows Barman: the source (queue) file before archiving; the archived
//! file after; the archived file for delete hooks. Where a record does not name that file,
//! Barman's `<archive>/<hash dir>/<name>` is used when `--archive` is known.
//!
//! One deliberate difference: Barman 3.20 passes the error to `post_archive_retry_script`
//! only (the plain post script's environment is reset to `BARMAN_ERROR=""`); here every
//! post hook sees it.

use std::path::{Path, PathBuf};

use wal_core::WalName;
use wal_core::WalRecord;
use wal_core::record::Outcome;
use wal_core::xlogdb::python_float_repr;

use crate::config::{Config, Event, Phase};

/// walpipe's version, given as BARMAN_VERSION.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The variables set for a run of the hook on `record`, in a fixed order.
#[must_use]
pub fn hook_env(config: &Config, record: &WalRecord) -> Vec<(&'static str, String)> {
    let error = match config.phase {
        // A pre hook only runs for healthy records.
        Phase::Pre => String::new(),
        Phase::Post => record
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
    };
    vec![
        ("BARMAN_VERSION", VERSION.to_string()),
        ("BARMAN_SERVER", config.server.clone()),
        (
            "BARMAN_CONFIGURATION",
            config
                .configuration
                .as_deref()
                .map(display)
                .unwrap_or_default(),
        ),
        ("BARMAN_HOOK", config.hook().to_string()),
        ("BARMAN_PHASE", config.phase_name().to_string()),
        ("BARMAN_RETRY", u8::from(config.retry).to_string()),
        ("BARMAN_SEGMENT", record.name.clone()),
        (
            "BARMAN_FILE",
            barman_file(config, record)
                .map(|p| display(&p))
                .unwrap_or_default(),
        ),
        ("BARMAN_SIZE", record.size.to_string()),
        ("BARMAN_TIMESTAMP", python_float_repr(record.time)),
        (
            "BARMAN_COMPRESSION",
            record
                .compression
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
        ),
        ("BARMAN_ERROR", error),
        (
            "WALPIPE_RECORD",
            serde_json::to_string(record).unwrap_or_default(),
        ),
    ]
}

/// The file BARMAN_FILE names (see the module docs); `None` when nothing says.
fn barman_file(config: &Config, record: &WalRecord) -> Option<PathBuf> {
    let archived = || {
        let archive = config.archive.as_ref()?;
        let name = WalName::parse(&record.name).ok()?;
        Some(archive.join(name.relpath()))
    };
    match (config.event, config.phase) {
        // The queue file, before compression or anything else.
        (Event::Archive, Phase::Pre) => record.source.clone().or_else(|| record.path.clone()),
        (Event::Archive, Phase::Post) => {
            let stored = matches!(record.outcome, Some(Outcome::Stored | Outcome::Duplicate));
            if stored && record.stored_at.is_some() {
                return record.stored_at.clone();
            }
            // Not stored (failed, or a conflict moved to errors/): Barman still names the
            // destination in the archive.
            archived()
                .or_else(|| record.stored_at.clone())
                .or_else(|| record.source.clone())
                .or_else(|| record.path.clone())
        }
        // Exactly what `wal-store delete` removes.
        (Event::Delete, _) => archived()
            .or_else(|| record.stored_at.clone())
            .or_else(|| record.path.clone()),
    }
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wal_core::Compression;
    use wal_core::ErrorKind;
    use wal_core::record::RecordError;

    fn get<'a>(env: &'a [(&'static str, String)], key: &str) -> &'a str {
        env.iter()
            .find(|(k, _)| *k == key)
            .map_or_else(|| panic!("{key} missing"), |(_, v)| v.as_str())
    }

    fn queued(name: &str) -> WalRecord {
        let mut record = WalRecord::new(name);
        record.path = Some(PathBuf::from(format!("/h/pg/incoming/{name}")));
        record.source = record.path.clone();
        record.size = 16_777_216;
        record.time = 1_700_000_000.0;
        record
    }

    #[test]
    fn pre_archive_names_the_source_and_has_no_error() {
        let config = Config::new(Phase::Pre, Event::Archive, "true", false, "pg");
        let env = hook_env(&config, &queued("000000010000000A00000042"));
        assert_eq!(
            get(&env, "BARMAN_FILE"),
            "/h/pg/incoming/000000010000000A00000042"
        );
        assert_eq!(get(&env, "BARMAN_SIZE"), "16777216");
        assert_eq!(get(&env, "BARMAN_TIMESTAMP"), "1700000000.0");
        assert_eq!(get(&env, "BARMAN_COMPRESSION"), "");
        assert_eq!(get(&env, "BARMAN_ERROR"), "");
        assert_eq!(get(&env, "BARMAN_CONFIGURATION"), "");
        assert_eq!(get(&env, "BARMAN_HOOK"), "archive_script");
        assert_eq!(get(&env, "BARMAN_RETRY"), "0");
        assert_eq!(get(&env, "BARMAN_VERSION"), VERSION);
    }

    #[test]
    fn post_archive_names_the_stored_file_or_barmans_destination() {
        let mut config = Config::new(Phase::Post, Event::Archive, "true", true, "pg");
        config.archive = Some(PathBuf::from("/h/pg/wals"));
        let mut record = queued("000000010000000A00000042");
        record.outcome = Some(Outcome::Stored);
        record.stored_at = Some(PathBuf::from("/elsewhere/000000010000000A00000042"));
        record.compression = Some(Compression::Zstd);
        let env = hook_env(&config, &record);
        assert_eq!(
            get(&env, "BARMAN_FILE"),
            "/elsewhere/000000010000000A00000042"
        );
        assert_eq!(get(&env, "BARMAN_COMPRESSION"), "zstd");
        assert_eq!(get(&env, "BARMAN_HOOK"), "archive_retry_script");

        record.outcome = Some(Outcome::Conflict);
        record.stored_at = Some(PathBuf::from("/h/pg/errors/x.duplicate"));
        record.error = Some(RecordError {
            stage: "wal-store".into(),
            kind: ErrorKind::Conflict,
            message: "already present".into(),
        });
        let env = hook_env(&config, &record);
        assert_eq!(
            get(&env, "BARMAN_FILE"),
            "/h/pg/wals/000000010000000A/000000010000000A00000042"
        );
        assert_eq!(get(&env, "BARMAN_ERROR"), "already present");
    }

    #[test]
    fn delete_hooks_name_the_archived_file() {
        let mut config = Config::new(Phase::Pre, Event::Delete, "true", false, "pg");
        let mut record = WalRecord::new("00000002.history");
        record.path = Some(PathBuf::from("/a/00000002.history"));
        assert_eq!(
            get(&hook_env(&config, &record), "BARMAN_FILE"),
            "/a/00000002.history"
        );
        config.archive = Some(PathBuf::from("/h/pg/wals"));
        assert_eq!(
            get(&hook_env(&config, &record), "BARMAN_FILE"),
            "/h/pg/wals/00000002.history"
        );
        assert_eq!(
            get(&hook_env(&config, &record), "BARMAN_HOOK"),
            "wal_delete_script"
        );
    }

    #[test]
    fn the_record_travels_as_json() {
        let config = Config::new(Phase::Pre, Event::Archive, "true", false, "pg");
        let record = queued("000000010000000A00000042");
        let env = hook_env(&config, &record);
        let parsed = WalRecord::from_line(get(&env, "WALPIPE_RECORD"), 1).unwrap();
        assert_eq!(parsed, record);
    }
}
