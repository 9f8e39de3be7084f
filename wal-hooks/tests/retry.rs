//! Barman's failure rules: plain scripts are reported and the record goes on;
//! retry scripts run until 0, 62 or 63 with Barman's pauses (shortened here by the
//! test-only `--retry-sleep-scale`); 63 before the work stops the stream, after it is
//! ignored; a timeout kills the run and counts as a failure.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{HookDir, ndjson, parse, run_hooks, stderr_of};

fn segment(n: u32) -> Value {
    json!({
        "name": format!("00000001000000000000000{n}"),
        "kind": "segment",
        "path": format!("/q/00000001000000000000000{n}"),
        "source": format!("/q/00000001000000000000000{n}"),
        "size": 16_777_216,
        "time": 1_700_000_000.5,
        "compression": null,
        "encryption": null,
    })
}

/// A script that counts its runs per segment in `<dir>/<segment>.count`, with the time of
/// each run in `<dir>/<segment>.times`, then runs `then` (which sees the count in `$n`).
fn counting(hooks: &HookDir, name: &str, then: &str) -> String {
    let dir = hooks.path().display().to_string();
    hooks.script(
        name,
        &format!(
            "f='{dir}'/$BARMAN_SEGMENT\n\
             n=$(( $(cat \"$f.count\" 2>/dev/null || echo 0) + 1 ))\n\
             echo $n > \"$f.count\"\n\
             date +%s.%N >> \"$f.times\"\n\
             {then}"
        ),
    )
}

fn count(hooks: &HookDir, segment: &str) -> u32 {
    fs::read_to_string(hooks.path().join(format!("{segment}.count")))
        .map_or(0, |text| text.trim().parse().unwrap())
}

fn run_times(hooks: &HookDir, segment: &str) -> Vec<f64> {
    fs::read_to_string(hooks.path().join(format!("{segment}.times")))
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

#[test]
fn a_failing_plain_script_is_reported_and_the_record_goes_on() {
    let hooks = HookDir::new();
    let script = counting(
        &hooks,
        "fail.sh",
        "echo 'to stdout'; echo 'first problem' >&2; echo 'disk full' >&2; exit 3",
    );
    let records = [segment(1), segment(2)];
    let output = run_hooks(
        &["--phase", "pre", "--event", "archive", "--script", &script],
        &ndjson(&records),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "a hook failure is not a record failure"
    );
    assert_eq!(parse(&output.stdout), records);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!(
            "wal-hooks: 000000010000000000000001: pre_archive_script ({script}) returned 3\n  \
             stderr: first problem\n  stderr: disk full\n  stdout: to stdout"
        )),
        "{stderr}"
    );
    assert_eq!(
        count(&hooks, "000000010000000000000001"),
        1,
        "plain scripts run once"
    );
    assert_eq!(count(&hooks, "000000010000000000000002"), 1);
}

#[test]
fn a_retry_script_runs_until_it_succeeds_with_barmans_pauses() {
    let hooks = HookDir::new();
    // Fails 7 times, succeeds the 8th: pauses 3, 3, 3, 3, 3, 60, 3 (× 0.01 s).
    let script = counting(
        &hooks,
        "flaky.sh",
        "[ $n -ge 8 ] || { echo \"try $n\" >&2; exit 1; }",
    );
    let records = [segment(1)];
    let output = run_hooks(
        &[
            "--phase",
            "pre",
            "--event",
            "archive",
            "--retry",
            "--retry-sleep-scale",
            "0.01",
            "--script",
            &script,
        ],
        &ndjson(&records),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(parse(&output.stdout), records);
    assert_eq!(count(&hooks, "000000010000000000000001"), 8);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("returned 1 (attempt 1); trying again in 0.03 s\n  stderr: try 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(attempt 6); trying again in 0.6 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(attempt 7); trying again in 0.03 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("attempt 8"), "{stderr}");
    // The gaps between runs: at least the pause, and the 6th is the long one.
    let times = run_times(&hooks, "000000010000000000000001");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let pause = if i == 5 { 0.6 } else { 0.03 };
        assert!(
            *gap >= pause,
            "gap {} is {gap} s, less than {pause}: {gaps:?}",
            i + 1
        );
    }
    assert!(gaps[5] > gaps[4] && gaps[5] > gaps[6], "{gaps:?}");
}

#[test]
fn exit_62_gives_up_on_the_hook_and_the_record_goes_on() {
    for phase in ["pre", "post"] {
        let hooks = HookDir::new();
        // As Barman's test: 6 failures, then 62: 7 runs.
        let script = counting(&hooks, "give-up.sh", "[ $n -ge 7 ] && exit 62; exit 1");
        let records = [segment(1), segment(2)];
        let output = run_hooks(
            &[
                "--phase",
                phase,
                "--event",
                "archive",
                "--retry",
                "--retry-sleep-scale",
                "0.001",
                "--script",
                &script,
            ],
            &ndjson(&records),
        );
        assert_eq!(output.status.code(), Some(0), "{phase}");
        assert_eq!(parse(&output.stdout), records, "{phase}");
        assert!(
            stderr_of(&output).contains(&format!(
                "wal-hooks: 000000010000000000000001: {phase}_archive_retry_script ({script}) \
                 was aborted (got exit status 62, walpipe resumes)"
            )),
            "{}",
            stderr_of(&output)
        );
        assert_eq!(count(&hooks, "000000010000000000000001"), 7, "{phase}");
        assert_eq!(count(&hooks, "000000010000000000000002"), 7, "{phase}");
    }
}

#[test]
fn exit_63_before_archiving_stops_this_and_every_later_record() {
    let hooks = HookDir::new();
    let script = counting(
        &hooks,
        "stop.sh",
        "[ \"$BARMAN_SEGMENT\" = 000000010000000000000002 ] && exit 63; exit 0",
    );
    let records = [segment(1), segment(2), segment(3), segment(4)];
    let mut input = records.to_vec();
    // A record failed upstream passes through as it was.
    input[3]["error"] = json!({"stage": "wal-scan", "kind": "io", "message": "cannot stat"});
    let output = run_hooks(
        &[
            "--phase", "pre", "--event", "archive", "--retry", "--script", &script,
        ],
        &ndjson(&input),
    );
    assert_eq!(output.status.code(), Some(1), "records were stopped");
    let out = parse(&output.stdout);
    assert_eq!(out.len(), 4);
    assert_eq!(out[0], records[0], "before the stop: untouched");
    assert_eq!(
        out[1]["error"],
        json!({
            "stage": "wal-hooks",
            "kind": "aborted",
            "message": format!(
                "000000010000000000000002: Abort 'pre_archive_retry_script' retry hook script \
                 ({script}, exit code: 63)"
            ),
        })
    );
    assert_eq!(out[2]["error"]["kind"], "aborted");
    assert_eq!(
        out[2]["error"]["message"],
        "000000010000000000000003: not archived: stopped after pre_archive_retry_script \
         exited 63 on 000000010000000000000002"
    );
    assert_eq!(out[3], input[3]);
    for (i, record) in out.iter().enumerate().take(3) {
        let mut without_error = record.clone();
        without_error.as_object_mut().unwrap().remove("error");
        assert_eq!(without_error, records[i], "only `error` is added");
    }
    // The hook ran for the first two only; one run each (63 ends the loop at once).
    assert_eq!(count(&hooks, "000000010000000000000001"), 1);
    assert_eq!(count(&hooks, "000000010000000000000002"), 1);
    assert_eq!(count(&hooks, "000000010000000000000003"), 0);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("was aborted (got exit status 63, walpipe requested to stop)"),
        "{stderr}"
    );

    // The post stage runs its hooks for the record whose pre hook stopped (as Barman's
    // `finally`), not for the ones stopped after it (Barman never reached them).
    let post = HookDir::new();
    let output = run_hooks(
        &[
            "--phase",
            "post",
            "--event",
            "archive",
            "--script",
            &post.recorder(0),
        ],
        &String::from_utf8(output.stdout).unwrap(),
    );
    assert_eq!(output.status.code(), Some(0), "failed upstream, not here");
    let seen: Vec<(String, String)> = post
        .runs()
        .iter()
        .map(|env| (env["BARMAN_SEGMENT"].clone(), env["BARMAN_ERROR"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("000000010000000000000001".to_owned(), String::new()),
            (
                "000000010000000000000002".to_owned(),
                out[1]["error"]["message"].as_str().unwrap().to_owned()
            ),
            (
                "000000010000000000000004".to_owned(),
                "cannot stat".to_owned()
            ),
        ]
    );
}

#[test]
fn exit_63_after_the_work_is_reported_and_ignored() {
    let hooks = HookDir::new();
    let script = counting(&hooks, "stop.sh", "exit 63");
    let records = [segment(1), segment(2)];
    for event in ["archive", "delete"] {
        let output = run_hooks(
            &[
                "--phase", "post", "--event", event, "--retry", "--script", &script,
            ],
            &ndjson(&records),
        );
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(parse(&output.stdout), records);
        let what = if event == "archive" {
            "post-archive"
        } else {
            "post-wal-delete"
        };
        assert!(
            stderr_of(&output).contains(&format!(
                "wal-hooks: 000000010000000000000002: Ignoring stop request after receiving \
                 abort (exit code 63) from {what} retry hook script: {script}"
            )),
            "{}",
            stderr_of(&output)
        );
    }
    assert_eq!(
        count(&hooks, "000000010000000000000002"),
        2,
        "once per event"
    );
}

#[test]
fn exit_63_before_deleting_stops_the_deletion() {
    let output = run_hooks(
        &[
            "--phase", "pre", "--event", "delete", "--retry", "--script", "exit 63",
        ],
        &ndjson(&[segment(1), segment(2)]),
    );
    assert_eq!(output.status.code(), Some(1));
    let out = parse(&output.stdout);
    assert_eq!(
        out[0]["error"]["message"],
        "000000010000000000000001: Abort 'pre_wal_delete_retry_script' retry hook script \
         (exit 63, exit code: 63)"
    );
    assert_eq!(
        out[1]["error"]["message"],
        "000000010000000000000002: not deleted: stopped after pre_wal_delete_retry_script \
         exited 63 on 000000010000000000000001"
    );
}

#[test]
fn a_plain_script_exiting_63_is_just_a_failure() {
    let records = [segment(1), segment(2)];
    let output = run_hooks(
        &[
            "--phase", "pre", "--event", "archive", "--script", "exit 63",
        ],
        &ndjson(&records),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(parse(&output.stdout), records);
    assert!(stderr_of(&output).contains("pre_archive_script (exit 63) returned 63"));
}

#[test]
fn a_timeout_kills_a_hung_hook_quickly() {
    let hooks = HookDir::new();
    let pid_file = hooks.path().join("sleep.pid");
    // `sleep` in the background: a grandchild of the shell, in the hook's process group.
    let script = hooks.script(
        "hang.sh",
        &format!("sleep 100 & echo $! > '{}'; wait", pid_file.display()),
    );
    let records = [segment(1)];
    let started = Instant::now();
    let output = run_hooks(
        &[
            "--phase",
            "pre",
            "--event",
            "archive",
            "--timeout",
            "0.5",
            "--script",
            &script,
        ],
        &ndjson(&records),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        parse(&output.stdout),
        records,
        "a plain hook's timeout is a failure only"
    );
    assert!(
        stderr_of(&output).contains(&format!(
            "pre_archive_script ({script}) timed out after 0.5 s and was killed"
        )),
        "{}",
        stderr_of(&output)
    );
    let pid = fs::read_to_string(&pid_file).unwrap();
    assert!(
        !process_alive(pid.trim()),
        "sleep {pid} survived the timeout"
    );
}

#[test]
fn a_timed_out_retry_run_counts_as_a_failure_and_runs_again() {
    let hooks = HookDir::new();
    let script = counting(&hooks, "slow-once.sh", "[ $n -ge 2 ] || sleep 100");
    let started = Instant::now();
    let output = run_hooks(
        &[
            "--phase",
            "post",
            "--event",
            "archive",
            "--retry",
            "--timeout",
            "0.3",
            "--retry-sleep-scale",
            "0.001",
            "--script",
            &script,
        ],
        &ndjson(&[segment(1)]),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(count(&hooks, "000000010000000000000001"), 2);
    assert!(
        stderr_of(&output).contains("timed out after 0.3 s and was killed (attempt 1)"),
        "{}",
        stderr_of(&output)
    );
}

/// Whether process PID exists and is not a zombie.
pub fn process_alive(pid: &str) -> bool {
    // A zombie still answers kill -0; look at its state.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
