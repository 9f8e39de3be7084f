//! The command line: help, version, usage errors and their exit codes, environment
//! variables standing in for flags.

use predicates::prelude::*;

use crate::util::{HookDir, wal_hooks};

#[test]
fn help_and_version_exit_0_on_stdout() {
    wal_hooks()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Usage: wal-hooks"))
        .stdout(predicate::str::contains("WALPIPE_HOOK_TIMEOUT"))
        .stdout(predicate::str::contains("retry-sleep-scale").not());
    wal_hooks()
        .arg("--version")
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("wal-hooks "));
}

#[test]
fn bad_flags_exit_64_not_2() {
    let base = ["--phase", "pre", "--event", "archive", "--script", "true"];
    for args in [
        &["--phase", "pre", "--event", "archive", "--script", "true"][..],
        &[
            "--server", "pg", "--phase", "during", "--event", "archive", "--script", "true",
        ],
        &[
            "--server", "pg", "--phase", "pre", "--event", "backup", "--script", "true",
        ],
        &["--server", "pg", "--phase", "pre", "--event", "archive"],
        &[
            "--server", "pg", "--phase", "pre", "--event", "archive", "--script", "",
        ],
        &[
            "--server",
            "pg",
            "--phase",
            "pre",
            "--event",
            "archive",
            "--script",
            "true",
            "--timeout",
            "-1",
        ],
        &["--server", "pg", "extra"],
    ] {
        wal_hooks()
            .args(args)
            .write_stdin("")
            .assert()
            .code(64)
            .stdout("");
    }
    wal_hooks()
        .args(base)
        .env("WALPIPE_SERVER", "pg")
        .env("WALPIPE_HOOK_TIMEOUT", "soon")
        .write_stdin("")
        .assert()
        .code(64)
        .stderr(predicate::str::contains("soon"));
}

#[test]
fn settings_come_from_the_environment_too() {
    let hooks = HookDir::new();
    wal_hooks()
        .args([
            "--phase",
            "pre",
            "--event",
            "archive",
            "--script",
            &hooks.recorder(0),
        ])
        .env("WALPIPE_SERVER", "main")
        .env("WALPIPE_CONFIG", "/etc/walpipe/main.conf")
        .write_stdin("{\"name\":\"000000010000000000000001\",\"size\":1,\"time\":2.0}\n")
        .assert()
        .code(0);
    let runs = hooks.runs();
    assert_eq!(runs[0]["BARMAN_SERVER"], "main");
    assert_eq!(runs[0]["BARMAN_CONFIGURATION"], "/etc/walpipe/main.conf");
    assert_eq!(runs[0]["BARMAN_TIMESTAMP"], "2.0");
}

/// Issue 11: seconds and factors from flags or variables are refused in one line (64)
/// when no `Duration` holds them, or when they would silently mean "no timeout"; none
/// panics or exits above 125.
#[test]
fn extreme_seconds_and_factors_are_refused_never_a_panic() {
    let base = [
        "--server", "pg", "--phase", "pre", "--event", "archive", "--script", "true",
    ];
    for (flag, value) in [
        ("--timeout", "1e300"),
        ("--timeout", "inf"),
        ("--timeout", "NaN"),
        ("--timeout", "1e-12"),
        ("--timeout", ""),
        ("--retry-sleep-scale", "1e300"),
        ("--retry-sleep-scale", "-0.5"),
        ("--retry-sleep-scale", "NaN"),
    ] {
        let output = wal_hooks()
            .args(base)
            .arg(format!("{flag}={value}"))
            .write_stdin("")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{flag}={value}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.lines().next().unwrap_or("").contains(flag),
            "{stderr}"
        );
    }
    for (var, value) in [
        ("WALPIPE_HOOK_TIMEOUT", "1e300"),
        ("WALPIPE_HOOK_RETRY_SLEEP_SCALE", "1e300"),
    ] {
        wal_hooks()
            .args(base)
            .env(var, value)
            .write_stdin("")
            .assert()
            .code(64);
    }
    // A timeout no clock reaches is no timeout: the hook runs and the record goes on.
    let hooks = HookDir::new();
    wal_hooks()
        .args([
            "--server",
            "pg",
            "--phase",
            "pre",
            "--event",
            "archive",
            "--timeout",
            "1e18",
            "--script",
            &hooks.recorder(0),
        ])
        .write_stdin("{\"name\":\"000000010000000000000001\",\"size\":1,\"time\":2.0}\n")
        .assert()
        .code(0);
    assert_eq!(hooks.runs().len(), 1);
}
