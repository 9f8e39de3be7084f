//! wal-verify along real timelines: a PostgreSQL 15 archives into walpipe, a base backup
//! of it is recovered (through restore-wal) to a restore point and promoted to timeline
//! 2, still archiving into the same archive. The archive then holds timeline 1 (beyond
//! the switch too: the primary went on writing), the `.backup` label, `00000002.history`
//! and timeline 2: it verifies clean, deep. Then
//! a segment of timeline 2 stored under timeline 1's name is found, and so is a timeline
//! whose history file is missing.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use walpipe_tests::pitr::Primary;
use walpipe_tests::wrappers::output_text;
use walpipe_tests::wrappers::{archived_path, bin_dir, tool};
use walpipe_tests::{WorkDir, script};

/// `wal-scan archive WALS --server pg | wal-verify --deep --json`: the summary.
fn verify(wals: &Path) -> (Option<i32>, Value, String) {
    let scan = tool("wal-scan")
        .arg("archive")
        .arg(wals)
        .args(["--server", "pg"])
        .output()
        .unwrap();
    assert!(scan.status.success(), "{}", output_text(&scan));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wal-verify"))
        .args(["--deep", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &scan.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    (
        out.status.code(),
        summary,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_timelines_after_a_recovery_verify_clean() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let archive_command = format!(
        "WALPIPE_BIN_DIR={} {} --direct --home {} --server pg --compression zstd %p",
        bin_dir().display(),
        script("archive-command").display(),
        home.display()
    );
    let restore_command = format!(
        "WALPIPE_BIN_DIR={} {} --home {} --server pg %f %p",
        bin_dir().display(),
        script("restore-wal").display(),
        home.display()
    );
    let primary = Primary::run(&work, &archive_command);
    let mut recovered = primary.recover_archiving("recovered", &restore_command, &archive_command);
    recovered
        .psql("CREATE TABLE after AS SELECT generate_series(1, 50000)")
        .unwrap();
    let last = recovered.switch_wal().unwrap();
    recovered
        .wait_archived(&last, Duration::from_secs(120))
        .unwrap();
    recovered.stop().unwrap();
    let wals = home.join("pg/wals");
    let names: Vec<String> = fs::read_to_string(wals.join("pg-xlog.db"))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".backup")), "{names:?}");
    assert!(names.iter().any(|n| n == "00000002.history"), "{names:?}");

    let (code, summary, said) = verify(&wals);
    assert_eq!(code, Some(0), "{summary}\n{said}");
    let timelines = summary["timelines"].as_array().unwrap();
    assert_eq!(timelines.len(), 2, "{summary}");
    assert!(
        timelines.iter().all(|t| t["gaps"] == serde_json::json!([])),
        "{summary}"
    );
    // Timeline 2 starts in the segment where it branched off, which timeline 1 reaches.
    let position = |name: &Value| name.as_str().unwrap()[8..].to_owned();
    assert!(
        position(&timelines[0]["last"]) >= position(&timelines[1]["first"]),
        "{summary}"
    );
    assert_eq!(timelines[1]["last"], last.as_str(), "{summary}");

    // A segment of timeline 2 stored under timeline 1's name: its pages say timeline 2.
    let t2_segment = timelines[1]["last"].as_str().unwrap().to_owned();
    let renamed = format!("00000001{}", &t2_segment[8..]);
    let renamed_path = archived_path(&wals, &renamed);
    let had = fs::read(&renamed_path).ok();
    fs::copy(archived_path(&wals, &t2_segment), &renamed_path).unwrap();
    let (code, summary, said) = verify(&wals);
    assert_eq!(code, Some(65), "{summary}\n{said}");
    assert!(
        said.contains(&renamed) && said.contains("timeline"),
        "{said}"
    );
    match had {
        Some(bytes) => fs::write(&renamed_path, bytes).unwrap(),
        None => fs::remove_file(&renamed_path).unwrap(),
    }

    // Without its history file, timeline 2 cannot be followed.
    let history = wals.join("00000002.history");
    let kept = fs::read(&history).unwrap();
    fs::remove_file(&history).unwrap();
    let (code, summary, _) = verify(&wals);
    assert_eq!(code, Some(65), "{summary}");
    assert!(
        summary["problems"][0]
            .as_str()
            .unwrap()
            .contains("timeline 2 has no history file"),
        "{summary}"
    );
    fs::write(&history, kept).unwrap();
    assert_eq!(verify(&wals).0, Some(0));
}
