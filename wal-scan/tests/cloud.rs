//! `wal-scan archive URL`: a cloud archive is listed by the `wal-store` beside wal-scan.
//!
//! Here a stand-in `wal-store` (a shell script next to a copy of wal-scan) writes down how
//! it was run and answers as `wal-store list` does, so the hand-over is tested without a
//! server: the flags passed on, our `WALPIPE_*` environment kept from it, its records and
//! warnings passed through, its exit status kept. The real wal-store against real servers
//! is tested by the workspace's `tests/tests/cloud_wrappers.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

const SEG1: &str = "000000010000000000000001";
const KEY1: &str = "s3://wals/prod/pg/wals/0000000100000000/000000010000000000000001.zst";

/// A copy of wal-scan with a stand-in wal-store beside it.
struct Beside {
    dir: TempDir,
}

impl Beside {
    /// `wal-store` is a `sh` script whose body is `script`; it first writes its arguments
    /// to `argv` and its `WALPIPE_*` variables to `env`, one per line.
    fn new(script: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::copy(env!("CARGO_BIN_EXE_wal-scan"), dir.path().join("wal-scan")).unwrap();
        let body = format!(
            "#!/bin/sh\n\
             here=$(dirname \"$0\")\n\
             printf '%s\\n' \"$@\" >\"$here/argv\"\n\
             env | grep '^WALPIPE_' >\"$here/env\"\n\
             {script}\n"
        );
        let store = dir.path().join("wal-store");
        fs::write(&store, body).unwrap();
        fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).unwrap();
        Beside { dir }
    }

    /// Runs the copy of wal-scan with `args`, `env` added to an environment without
    /// `WALPIPE_*` (nor `PG*`).
    fn scan(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(self.dir.path().join("wal-scan"));
        walpipe_tests::clean_command(&mut cmd);
        cmd.args(args).envs(env.iter().copied());
        // A script just written may still be open in a child another test thread forked
        // (ETXTBSY) until that child execs: try again in a moment.
        for _ in 0..50 {
            match cmd.output() {
                Err(e) if e.raw_os_error() == Some(26) => thread::sleep(Duration::from_millis(20)),
                result => return result.unwrap(),
            }
        }
        panic!("{} stays busy", self.dir.path().display());
    }

    fn written(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn records(output: &Output) -> Vec<Value> {
    walpipe_tests::parse_records(&output.stdout)
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn the_listing_is_wal_store_lists_with_the_flags_given() {
    let beside = Beside::new(&format!(
        "echo '{{\"name\":\"{SEG1}\",\"kind\":\"segment\",\"size\":3,\"time\":1.5,\
         \"compression\":\"zstd\",\"stored_at\":\"{KEY1}\"}}'\n\
         echo 'wal-store: unexpected file in the archive, not a WAL file: s3://wals/prod/pg/wals/stray' >&2\n\
         echo '{{\"name\":\"00000002.history\",\"kind\":\"history\",\"size\":4,\"time\":2.5,\
         \"stored_at\":\"s3://wals/prod/pg/wals/00000002.history\"}}'"
    ));
    let output = beside.scan(
        &[
            "archive",
            "s3://wals/prod",
            "--server",
            "pg",
            "--endpoint-url",
            "http://127.0.0.1:3900",
            "--timeout",
            "5",
        ],
        &[("WALPIPE_REGION", "garage"), ("WALPIPE_XLOGDB_UNUSED", "x")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let records = records(&output);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["name"], SEG1);
    assert_eq!(records[0]["compression"], "zstd");
    assert_eq!(records[0]["stored_at"], KEY1);
    assert_eq!(records[1]["kind"], "history");
    assert_eq!(
        stderr(&output),
        "wal-scan: unexpected file in the archive, not a WAL file: s3://wals/prod/pg/wals/stray\n"
    );
    assert_eq!(
        beside.written("argv"),
        [
            "list",
            "--archive",
            "s3://wals/prod",
            "--server",
            "pg",
            "--endpoint-url=http://127.0.0.1:3900",
            "--region=garage",
            "--timeout=5"
        ]
    );
    assert_eq!(
        beside.written("env"),
        Vec::<String>::new(),
        "settings go as flags, once"
    );
}

#[test]
fn a_failed_listing_fails_the_scan_with_wal_stores_status_and_line() {
    let message = "cannot list s3://wals/prod/pg/wals: no answer from the store within 5 s";
    let beside = Beside::new(&format!("echo 'wal-store: {message}' >&2\nexit 75"));
    let output = beside.scan(&["archive", "s3://wals/prod", "--server", "pg"], &[]);
    assert_eq!(output.status.code(), Some(75));
    assert!(output.stdout.is_empty());
    assert_eq!(stderr(&output), format!("wal-scan: {message}\n"));

    let beside = Beside::new("echo 'wal-store: --archive ftp://x: unknown scheme' >&2\nexit 64");
    let output = beside.scan(&["archive", "ftp://x", "--server", "pg"], &[]);
    assert_eq!(output.status.code(), Some(64));
    assert_eq!(
        stderr(&output),
        "wal-scan: --archive ftp://x: unknown scheme\n"
    );

    let beside = Beside::new("echo 'this is not a record'");
    let output = beside.scan(&["archive", "az://wals", "--server", "pg"], &[]);
    assert_eq!(output.status.code(), Some(70), "{}", stderr(&output));
}

/// Issue 11: an endpoint or archive URL wal-store cannot use is a configuration error
/// (78), kept as such, in wal-store's one line.
#[test]
fn a_configuration_error_of_wal_store_stays_78() {
    let message = r#"--endpoint-url "localhost:9000": not a URL"#;
    let beside = Beside::new(&format!("echo 'wal-store: {message}' >&2\nexit 78"));
    let output = beside.scan(
        &[
            "archive",
            "s3://wals",
            "--server",
            "pg",
            "--endpoint-url",
            "localhost:9000",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(stderr(&output), format!("wal-scan: {message}\n"));
}

/// Issue 11: a value that starts with `-` goes to wal-store as that flag's value (which
/// wal-store then judges), not as a flag of its own.
#[test]
fn flag_values_reach_wal_store_whole_even_when_they_look_like_flags() {
    let beside = Beside::new("exit 0");
    let output = beside.scan(
        &[
            "archive",
            "s3://wals",
            "--server",
            "pg",
            "--timeout=-1",
            "--profile=-p",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let argv = beside.written("argv");
    assert!(argv.contains(&"--timeout=-1".to_owned()), "{argv:?}");
    assert!(argv.contains(&"--profile=-p".to_owned()), "{argv:?}");
}

#[test]
fn usage_errors_are_ours_before_anything_runs() {
    let beside = Beside::new("exit 0");
    for (args, says) in [
        (&["archive", "s3://wals/prod"][..], "--server"),
        (
            &[
                "archive",
                "s3://wals/prod",
                "--server",
                "pg",
                "--xlogdb",
                "/x",
            ],
            "--xlogdb",
        ),
        (
            &[
                "archive",
                "s3://wals/prod",
                "--server",
                "pg",
                "--timeout",
                "soon",
            ],
            "--timeout",
        ),
    ] {
        let output = beside.scan(args, &[]);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let first = stderr(&output)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(first.contains(says), "{args:?}: {first}");
    }
    assert!(beside.written("argv").is_empty(), "wal-store never ran");
}

#[test]
fn without_wal_store_beside_it_says_so() {
    let beside = Beside::new("exit 0");
    fs::remove_file(beside.path().join("wal-store")).unwrap();
    let output = beside.scan(&["archive", "gs://wals", "--server", "pg"], &[]);
    assert_eq!(output.status.code(), Some(70));
    let text = stderr(&output);
    let expected: PathBuf = beside.path().join("wal-store");
    assert!(
        text.contains(expected.to_str().unwrap()) && text.lines().count() == 1,
        "{text}"
    );
}
