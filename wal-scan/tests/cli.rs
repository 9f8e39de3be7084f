//! The command line: usage errors are EX_USAGE (64), help and version succeed.

use crate::support::{scan, wal_scan};

#[test]
fn a_bad_flag_is_a_usage_error() {
    let run = scan(&["incoming", "/tmp", "--no-such-flag"]);
    assert_eq!(run.code, 64);
    assert!(run.records.is_empty());
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);
}

#[test]
fn bad_values_and_missing_subcommands_are_usage_errors() {
    assert_eq!(scan(&["incoming", "/tmp", "--batch-size", "-1"]).code, 64);
    assert_eq!(scan(&["incoming", "/tmp", "--batch-size", "many"]).code, 64);
    assert_eq!(scan(&["incoming"]).code, 64);
    assert_eq!(scan::<&str>(&[]).code, 64);
    assert_eq!(scan(&["sideways", "/tmp"]).code, 64);
    // Config validation (not clap) also says 64.
    let run = scan(&["incoming", "/tmp", "--server", ""]);
    assert_eq!(run.code, 64, "{}", run.stderr);
}

#[test]
fn a_bad_environment_value_is_a_usage_error() {
    let mut cmd = wal_scan();
    cmd.env("WALPIPE_BATCH_SIZE", "lots");
    let run = crate::support::run(cmd, &["incoming".as_ref(), "/tmp".as_ref()]);
    assert_eq!(run.code, 64);
}

#[test]
fn help_and_version_succeed() {
    for args in [&["--help"][..], &["--version"], &["streaming", "--help"]] {
        let output = wal_scan().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(!output.stdout.is_empty());
    }
    let help = wal_scan().arg("incoming").arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("WALPIPE_BATCH_SIZE") && help.contains("WALPIPE_SERVER"),
        "{help}"
    );
}

/// Issue 11: no flag or variable value makes wal-scan panic or exit above 125; each bad
/// one is refused in a line naming it, exit 64.
#[test]
fn extreme_values_are_refused_or_handled_never_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let queue = tempfile::tempdir().unwrap();
    let dir = queue.path().join("pg").join("incoming");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_str().unwrap();
    for (args, says) in [
        (
            &["incoming", dir, "--batch-size", "18446744073709551616"][..],
            "--batch-size",
        ),
        (&["incoming", dir, "--batch-size", "1e3"], "--batch-size"),
        (&["incoming", dir, "--batch-size", ""], "--batch-size"),
        (
            &["archive", "s3://b", "--server", "pg", "--timeout", "later"],
            "--timeout",
        ),
        (
            &[
                "archive",
                "s3://b",
                "--server",
                "pg",
                "--request-timeout",
                "",
            ],
            "--request-timeout",
        ),
    ] {
        let run = scan(args);
        assert_eq!(run.code, 64, "{args:?}: {run:?}");
        assert!(
            run.stderr.lines().next().unwrap_or("").contains(says),
            "{args:?}: {run:?}"
        );
    }
    // The largest batch is all of the queue.
    let run = scan(&["incoming", dir, "--batch-size", "18446744073709551615"]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut cmd = wal_scan();
    cmd.env("WALPIPE_BATCH_SIZE", "");
    let run = crate::support::run(cmd, &["incoming".as_ref(), dir.as_ref()]);
    assert_eq!(run.code, 64, "{run:?}");
    // Names that are not UTF-8: refused as flag values, reported as files.
    let bad = OsStr::from_bytes(b"p\xffg");
    let run = crate::support::run(
        wal_scan(),
        &["incoming".as_ref(), dir.as_ref(), "--server".as_ref(), bad],
    );
    assert_eq!(run.code, 64, "{run:?}");
    let missing = queue
        .path()
        .join(OsStr::from_bytes(b"\xff000000010000000000000001"));
    let run = crate::support::run(wal_scan(), &["file".as_ref(), missing.as_os_str()]);
    assert_eq!(run.code, 66, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}

/// Issue 11: a directory whose path is not UTF-8 cannot be named in a record: refused up
/// front (78), where it used to end the stream in the middle of a record (74).
#[test]
fn a_directory_whose_path_is_not_utf8_is_a_configuration_error() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp
        .path()
        .join(OsStr::from_bytes(b"p\xffg"))
        .join("incoming");
    std::fs::create_dir_all(&queue).unwrap();
    crate::support::put_wal(&queue, "000000010000000000000001");
    for sub in ["incoming", "streaming", "archive"] {
        let run = crate::support::run(
            wal_scan(),
            &[
                sub.as_ref(),
                queue.as_os_str(),
                "--server".as_ref(),
                "pg".as_ref(),
            ],
        );
        assert_eq!(run.code, 78, "{sub}: {run:?}");
        assert!(run.records.is_empty(), "{sub}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{sub}: {run:?}");
    }
    let wal = queue.join("000000010000000000000001");
    let run = crate::support::run(wal_scan(), &["file".as_ref(), wal.as_os_str()]);
    assert_eq!(run.code, 65, "{run:?}");
    assert!(run.records[0].get("path").is_none(), "{run:?}");
    assert!(run.stderr.contains("not UTF-8"), "{run:?}");
}
