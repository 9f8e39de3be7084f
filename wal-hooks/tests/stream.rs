//! The record stream around the hooks: stdout carries records only, whatever a script
//! prints or reads; failed records pass through (and get their post hooks, except unknown
//! queue entries); a wal-hooks stopped by a signal stops its hook too.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::retry::process_alive;
use crate::util::{HookDir, ndjson, parse, run_hooks, stderr_of};

fn records() -> Vec<Value> {
    (1..=3)
        .map(|n| {
            json!({
                "name": format!("00000001000000000000000{n}"),
                "kind": "segment",
                "path": format!("/q/00000001000000000000000{n}"),
                "source": format!("/q/00000001000000000000000{n}"),
                "size": 16_777_216,
                "time": 1_700_000_000.5,
                "compression": null,
                "encryption": null,
                "ticket": n,
            })
        })
        .collect()
}

#[test]
fn a_script_writing_to_stdout_does_not_corrupt_the_stream() {
    let hooks = HookDir::new();
    let script = hooks.script(
        "noisy.sh",
        "echo '{\"name\":\"000000010000000000000099\",\"size\":1,\"time\":1.0}'\n\
         printf 'no newline at the end'\n\
         echo 'and stderr too' >&2\n\
         seq 1 100000",
    );
    // In the wire order of fields, unknown ones last, so the text must come back as is.
    let input = (1..=3).fold(String::new(), |mut text, n| {
        let _ = writeln!(
            text,
            "{{\"name\":\"00000001000000000000000{n}\",\"kind\":\"segment\",\
                 \"path\":\"/q/{n}\",\"source\":\"/q/{n}\",\"size\":16777216,\
                 \"time\":1700000000.5,\"compression\":null,\"encryption\":null,\"ticket\":{n}}}"
        );
        text
    });
    for (phase, retry) in [("pre", false), ("post", true)] {
        let mut args = vec!["--phase", phase, "--event", "archive", "--script", &script];
        if retry {
            args.push("--retry");
        }
        let output = run_hooks(&args, &input);
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(
            String::from_utf8(output.stdout.clone()).unwrap(),
            input,
            "exactly the records, unknown fields included"
        );
        assert_eq!(stderr_of(&output), "", "a hook that succeeds is silent");
    }
}

#[test]
fn a_script_reading_stdin_does_not_eat_records() {
    let input = records();
    let output = run_hooks(
        &[
            "--phase",
            "pre",
            "--event",
            "archive",
            "--script",
            "cat; read -r line; exit 0",
        ],
        &ndjson(&input),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(parse(&output.stdout), input);
}

#[test]
fn pre_hooks_skip_failed_records_and_post_hooks_skip_unknown_ones() {
    let mut input = records();
    input[0]["error"] =
        json!({"stage": "wal-compress", "kind": "io", "message": "cannot read /q/1"});
    input[1]["error"] =
        json!({"stage": "wal-scan", "kind": "unknown", "message": "/q/junk: not a WAL file"});
    input[1]["name"] = json!("junk");
    let pre = HookDir::new();
    let output = run_hooks(
        &[
            "--phase",
            "pre",
            "--event",
            "archive",
            "--script",
            &pre.recorder(0),
        ],
        &ndjson(&input),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "failed upstream: not counted here"
    );
    assert_eq!(parse(&output.stdout), input);
    let segments: Vec<String> = pre
        .runs()
        .iter()
        .map(|e| e["BARMAN_SEGMENT"].clone())
        .collect();
    assert_eq!(segments, ["000000010000000000000003"]);

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
        &ndjson(&input),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(parse(&output.stdout), input);
    let seen: Vec<(String, String)> = post
        .runs()
        .iter()
        .map(|e| (e["BARMAN_SEGMENT"].clone(), e["BARMAN_ERROR"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "000000010000000000000001".to_owned(),
                "cannot read /q/1".to_owned()
            ),
            ("000000010000000000000003".to_owned(), String::new()),
        ]
    );
}

#[test]
fn lines_that_are_not_records_exit_65_and_run_no_hook() {
    let hooks = HookDir::new();
    let input = format!("{}not json\n", ndjson(&records()[..1]));
    let output = run_hooks(
        &[
            "--phase",
            "post",
            "--event",
            "archive",
            "--script",
            &hooks.recorder(0),
        ],
        &input,
    );
    assert_eq!(output.status.code(), Some(65));
    let out = parse(&output.stdout);
    assert_eq!(out[1]["error"]["kind"], "bad_record");
    assert_eq!(hooks.runs().len(), 1);
}

#[test]
fn hooks_start_with_an_empty_signal_mask() {
    let hooks = HookDir::new();
    let out = hooks.path().join("mask");
    let output = run_hooks(
        &[
            "--phase",
            "pre",
            "--event",
            "archive",
            "--script",
            &format!(
                "grep -E '^Sig(Blk|Ign)' /proc/self/status > '{}'",
                out.display()
            ),
        ],
        &ndjson(&records()[..1]),
    );
    assert_eq!(output.status.code(), Some(0));
    let mask = fs::read_to_string(&out).unwrap();
    assert!(mask.contains("SigBlk:\t0000000000000000"), "{mask}");
    // SIGPIPE (bit 13) is not ignored either: Rust's own SIG_IGN is not inherited.
    let ignored = mask
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .unwrap();
    assert_eq!(ignored & (1 << 12), 0, "{mask}");
}

#[test]
fn a_terminated_wal_hooks_takes_its_running_hook_down() {
    let hooks = HookDir::new();
    let pid_file = hooks.path().join("sleep.pid");
    let script = hooks.script(
        "hang.sh",
        &format!(
            "sleep 100 & echo $! > '{}'; echo started >&2; wait",
            pid_file.display()
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-hooks"));
    walpipe_tests::clean_command(&mut cmd);
    let mut child = cmd
        .args([
            "--server", "pg", "--phase", "pre", "--event", "archive", "--script", &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(ndjson(&records()[..1]).as_bytes()).unwrap();
    // Keep stdin open: wal-hooks is busy with the hook, not at the end of its input.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() || fs::read_to_string(&pid_file).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the hook did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sleep_pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    assert!(process_alive(&sleep_pid));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(exit.signal(), Some(15), "dies by the signal it got: {exit}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(&sleep_pid) {
        assert!(
            Instant::now() < deadline,
            "the hook's sleep {sleep_pid} survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing half-written on stdout.
    let mut stdout = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut stdout)
        .unwrap();
    assert_eq!(stdout, "");
    drop(stdin);
}
