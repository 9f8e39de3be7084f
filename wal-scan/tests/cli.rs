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
