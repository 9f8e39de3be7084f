//! How much walpipe says on stderr, chosen by the DBA: `-v`, `-q`, `WALPIPE_LOG`.
//!
//! Every binary and wrapper filters its stderr lines through one logger: `-q` keeps a
//! clean run silent (a cron job's mail, PostgreSQL's log), `-v` names every WAL each stage
//! handled, and an error is shown at every level. Whatever the level, stdout (the records,
//! or Barman's lines) is the same byte for byte, and a level that does not exist stops the
//! run with 78 before anything is touched.
//!
//! Needs `cargo build --workspace --bins` first.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use walpipe_tests::convergence::copy_with_mtime;
use walpipe_tests::wrappers::{BINARIES, bin_dir, output_text, wrapper};
use walpipe_tests::{WorkDir, wal_fixture_segments};

/// A queue of the first `n` cached real segments in `dir`, one modification time for all
/// (the records carry it).
fn queue(dir: &Path, n: usize) -> Vec<String> {
    fs::create_dir_all(dir).unwrap();
    wal_fixture_segments()
        .iter()
        .take(n)
        .map(|segment| {
            let name = segment.file_name().unwrap().to_str().unwrap().to_owned();
            copy_with_mtime(segment, &dir.join(&name), 1_700_000_000);
            name
        })
        .collect()
}

/// `binary ARGS` with `log` (flags, and `WALPIPE_LOG` if any), stdin from `input`.
fn run(binary: &str, args: &[&str], log: &[&str], env: Option<&str>, input: &[u8]) -> Output {
    let mut cmd = Command::new(bin_dir().join(binary));
    // Before the subcommand and its `--`: the log flags are global.
    cmd.args(log)
        .args(args)
        .env_remove("WALPIPE_LOG")
        .env_remove("WALPIPE_PROGRESS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(level) = env {
        cmd.env("WALPIPE_LOG", level);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Scans a fresh copy of a 3-segment queue and stores it into a fresh archive, both at
/// `log`: the two stages' outputs (the archive's path is the same on every call).
fn scan_and_store(
    work: &WorkDir,
    log: &[&str],
    env: Option<&str>,
) -> (Output, Output, Vec<String>) {
    let home = work.join("home");
    let _ = fs::remove_dir_all(&home);
    let names = queue(&home.join("pg/incoming"), 3);
    let home_arg = home.to_str().unwrap();
    let layout = ["--home", home_arg, "--server", "pg"];
    let scan = run(
        "wal-scan",
        &[
            "incoming",
            "--server",
            "pg",
            "--",
            &format!("{home_arg}/pg/incoming"),
        ],
        log,
        env,
        b"",
    );
    assert!(scan.status.success(), "{}", output_text(&scan));
    let store = run(
        "wal-store",
        &[&["put"][..], &layout].concat(),
        log,
        env,
        &scan.stdout,
    );
    assert!(store.status.success(), "{}", output_text(&store));
    (scan, store, names)
}

#[test]
fn each_level_shows_its_lines_and_the_records_are_the_same() {
    let work = WorkDir::new();
    let (scan, store, names) = scan_and_store(&work, &[], None);
    // info, the default: what the scan found, nothing per file.
    let info = stderr_lines(&scan);
    assert!(info.iter().any(|l| l.starts_with("wal-scan: ")), "{info:?}");
    assert!(stderr_lines(&store).is_empty(), "{}", output_text(&store));
    for name in &names {
        assert!(!info.iter().any(|l| l.contains(name.as_str())), "{info:?}");
    }

    // debug (-v, or the variable): every file, and what became of it.
    for (log, env) in [(&["-v"][..], None), (&[][..], Some("debug"))] {
        let (v_scan, v_store, _) = scan_and_store(&work, log, env);
        assert_eq!(v_scan.stdout, scan.stdout, "{log:?} {env:?}");
        assert_eq!(v_store.stdout, store.stdout, "{log:?} {env:?}");
        let scanned = stderr_lines(&v_scan);
        let stored = stderr_lines(&v_store);
        for name in &names {
            assert!(
                scanned
                    .iter()
                    .any(|l| l.starts_with(&format!("wal-scan: {name}: passed on"))),
                "{scanned:?}"
            );
            assert!(
                stored
                    .iter()
                    .any(|l| l.starts_with(&format!("wal-store: {name}: stored, "))
                        && l.contains("stored at ")),
                "{stored:?}"
            );
        }
        // The info lines are still there.
        for line in &info {
            assert!(scanned.contains(line), "{line} in {scanned:?}");
        }
    }

    // warn (-q, or the variable) and error (-qq): a clean run says nothing.
    for (log, env) in [
        (&["-q"][..], None),
        (&["--quiet", "--quiet"][..], None),
        (&[][..], Some("warn")),
        (&["-q"][..], Some("debug")),
    ] {
        let (q_scan, q_store, _) = scan_and_store(&work, log, env);
        assert_eq!(q_scan.stdout, scan.stdout);
        assert_eq!(q_store.stdout, store.stdout);
        assert!(
            q_scan.stderr.is_empty(),
            "{log:?} {env:?}: {}",
            output_text(&q_scan)
        );
        assert!(
            q_store.stderr.is_empty(),
            "{log:?} {env:?}: {}",
            output_text(&q_store)
        );
    }
}

#[test]
fn an_error_is_shown_at_every_level() {
    let work = WorkDir::new();
    let archive = work.join("archive");
    fs::create_dir_all(&archive).unwrap();
    let missing = work.join("gone/000000010000000000000001");
    let record = format!(
        "{{\"name\":\"000000010000000000000001\",\"path\":{:?},\"size\":16777216,\"time\":0}}\n",
        missing.to_str().unwrap()
    );
    let archive_arg = archive.to_str().unwrap();
    for (log, env) in [
        (&["-qq"][..], None),
        (&[][..], Some("error")),
        (&["-v"][..], None),
    ] {
        let out = run(
            "wal-store",
            &["put", "--server", "pg", "--archive", archive_arg],
            log,
            env,
            record.as_bytes(),
        );
        assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
        let lines = stderr_lines(&out);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("wal-store: ") && l.contains("000000010000000000000001")),
            "{log:?} {env:?}: {lines:?}"
        );
    }
}

#[test]
fn a_level_that_does_not_exist_stops_every_binary_with_78_before_any_work() {
    let work = WorkDir::new();
    let incoming = work.join("home/pg/incoming");
    let names = queue(&incoming, 1);
    for binary in BINARIES {
        let out = run(binary, &["--help"], &[], Some("loud"), b"");
        // --help is answered before the logger is set up: it works whatever the level.
        assert_eq!(
            out.status.code(),
            Some(0),
            "{binary}: {}",
            output_text(&out)
        );
        let out = run(binary, &["--version"], &[], Some("loud"), b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{binary}: {}",
            output_text(&out)
        );
    }
    let home = work.join("home");
    let home_arg = home.to_str().unwrap();
    let out = run(
        "wal-scan",
        &[
            "incoming",
            "--server",
            "pg",
            "--",
            incoming.to_str().unwrap(),
        ],
        &[],
        Some("loud"),
        b"",
    );
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr_lines(&out),
        ["wal-scan: WALPIPE_LOG=\"loud\": not a log level (error, warn, info or debug)"]
    );
    // -v and -q at once: a usage error.
    let out = run(
        "wal-store",
        &["layout", "--server", "pg", "--home", home_arg],
        &["-v", "-q"],
        None,
        b"",
    );
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    assert_eq!(stderr_lines(&out).len(), 1, "{}", output_text(&out));

    // Through a wrapper, from its settings file: 78 before the queue is touched.
    let config = work.join("pg.conf");
    fs::write(
        &config,
        format!("WALPIPE_HOME={home_arg}\nWALPIPE_LOG=loud\n"),
    )
    .unwrap();
    let out = wrapper("archive-wal")
        .arg("--config")
        .arg(&config)
        .args(["--server", "pg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WALPIPE_LOG"),
        "{}",
        output_text(&out)
    );
    for name in &names {
        assert!(incoming.join(name).is_file(), "{name} left the queue");
    }
    assert!(
        !home.join("pg/wals").exists()
            || fs::read_dir(home.join("pg/wals")).unwrap().next().is_none()
    );
}

#[test]
fn the_wrappers_take_the_flags_and_the_settings_file_and_flags_win() {
    let work = WorkDir::new();
    let home = work.join("home");
    let home_arg = home.to_str().unwrap().to_owned();
    let archive_wal = |log: &[&str], config: Option<&Path>| {
        let _ = fs::remove_dir_all(&home);
        let names = queue(&home.join("pg/incoming"), 2);
        let mut cmd = wrapper("archive-wal");
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        let out = cmd
            .args(["--home", &home_arg, "--server", "pg"])
            .args(log)
            .output()
            .unwrap();
        assert!(out.status.success(), "{log:?}: {}", output_text(&out));
        (out, names)
    };
    let (plain, names) = archive_wal(&[], None);
    let (verbose, _) = archive_wal(&["-v"], None);
    let (quiet, _) = archive_wal(&["--quiet"], None);
    let text = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    for name in &names {
        assert!(
            !text(&plain).contains(&format!("{name}: ")),
            "{}",
            text(&plain)
        );
        for stage in ["wal-scan", "wal-compress", "wal-store"] {
            assert!(
                text(&verbose).contains(&format!("{stage}: {name}: ")),
                "{stage} {name}: {}",
                text(&verbose)
            );
        }
    }
    assert!(quiet.stderr.is_empty(), "{}", output_text(&quiet));
    // Barman's report, on stdout, comes from wal-store's info lines: -q drops it, -v keeps
    // it as it is.
    assert_eq!(verbose.stdout, plain.stdout, "{}", output_text(&verbose));
    assert!(!plain.stdout.is_empty(), "{}", output_text(&plain));

    // The settings file's WALPIPE_LOG, and a flag winning over it.
    let config = work.join("pg.conf");
    fs::write(&config, "WALPIPE_LOG=debug\n").unwrap();
    let (from_file, _) = archive_wal(&[], Some(&config));
    assert!(
        text(&from_file).contains(&format!("wal-store: {}: stored", names[0])),
        "{}",
        text(&from_file)
    );
    let (flag_wins, _) = archive_wal(&["-q"], Some(&config));
    assert!(flag_wins.stderr.is_empty(), "{}", output_text(&flag_wins));
    // The wrappers' own channel to the stages is no setting.
    fs::write(&config, "WALPIPE_LOG_FLAGS=qq\n").unwrap();
    let out = wrapper("archive-wal")
        .arg("--config")
        .arg(&config)
        .args(["--home", &home_arg, "--server", "pg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1: WALPIPE_LOG_FLAGS is not a setting"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn the_wrappers_check_the_level_whatever_their_flags_and_refuse_more_with_less() {
    let work = WorkDir::new();
    let home = work.join("home");
    let incoming = home.join("pg/incoming");
    let names = queue(&incoming, 1);
    let config = work.join("bad.conf");
    fs::write(&config, "WALPIPE_LOG=bogus\n").unwrap();
    let segment = incoming.join(&names[0]);
    for (wrapper_name, flags) in [
        ("archive-wal", &["-q"][..]),
        ("archive-wal", &["-v"][..]),
        ("archive-command", &["-q", "--direct"][..]),
        ("delete-wal", &["-q"][..]),
        ("verify-wal", &["-qq"][..]),
    ] {
        let mut cmd = wrapper(wrapper_name);
        cmd.arg("--config")
            .arg(&config)
            .arg("--home")
            .arg(&home)
            .args(["--server", "pg"])
            .args(flags);
        if wrapper_name == "archive-command" {
            cmd.arg(&segment);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(78),
            "{wrapper_name} {flags:?}: {}",
            output_text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("WALPIPE_LOG=\"bogus\""),
            "{}",
            output_text(&out)
        );
        assert!(segment.is_file(), "{wrapper_name}: the queued WAL stays");
    }
    // restore-wal turns it into 200, as any failure (PostgreSQL stops recovery).
    let out = wrapper("restore-wal")
        .arg("--config")
        .arg(&config)
        .arg("--home")
        .arg(&home)
        .args(["--server", "pg", "-v", &names[0]])
        .arg(work.join("restored"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(200), "{}", output_text(&out));
    assert!(!work.join("restored").exists());

    // More and less at once: 64, from the stages' one rule.
    let out = wrapper("archive-wal")
        .arg("--home")
        .arg(&home)
        .args(["--server", "pg", "-q", "--verbose"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    assert!(segment.is_file());
    // -qq through a wrapper: a clean run says nothing.
    let out = wrapper("archive-wal")
        .arg("--home")
        .arg(&home)
        .args(["--server", "pg", "-qq"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        output_text(&out)
    );
    assert!(!segment.exists(), "archived");
}

#[test]
fn a_name_with_a_line_break_cannot_forge_a_line_at_any_level() {
    let work = WorkDir::new();
    let home = work.join("home");
    let run = |log: &[&str]| {
        let _ = fs::remove_dir_all(&home);
        let incoming = home.join("pg/incoming");
        queue(&incoming, 1);
        fs::write(incoming.join("x\n\tINJECT"), b"junk").unwrap();
        let out = wrapper("archive-wal")
            .arg("--home")
            .arg(&home)
            .args(["--server", "pg"])
            .args(log)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        out
    };
    let plain = run(&[]);
    let verbose = run(&["-v"]);
    assert_eq!(plain.stdout, verbose.stdout, "{}", output_text(&verbose));
    let stdout = String::from_utf8(plain.stdout).unwrap();
    assert!(
        !stdout
            .lines()
            .any(|l| l == "\tINJECT" || l.starts_with("\tINJECT")),
        "{stdout}"
    );
    assert!(stdout.contains("\tx\\n\\tINJECT"), "{stdout}");
    let stderr = String::from_utf8(verbose.stderr).unwrap();
    assert!(!stderr.lines().any(|l| l.starts_with('\t')), "{stderr}");
}

#[test]
fn a_stderr_that_cannot_be_written_is_no_panic() {
    let full = fs::File::options().write(true).open("/dev/full").unwrap();
    for (env, args, code) in [
        (
            Some("bogus"),
            &["layout", "--server", "pg", "--home", "/nonexistent"][..],
            78,
        ),
        (None, &["layout", "--server", "pg", "-v", "-q"][..], 64),
        (None, &["--no-such-flag"][..], 64),
    ] {
        let mut cmd = Command::new(bin_dir().join("wal-store"));
        cmd.args(args)
            .env_remove("WALPIPE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(full.try_clone().unwrap());
        if let Some(level) = env {
            cmd.env("WALPIPE_LOG", level);
        }
        assert_eq!(cmd.status().unwrap().code(), Some(code), "{args:?}");
    }
}

#[test]
fn report_takes_an_optional_plain_label_and_quiet_silences_the_lock_line() {
    let work = WorkDir::new();
    let home = work.join("home");
    let home_arg = home.to_str().unwrap();
    fs::create_dir_all(&home).unwrap();
    let layout = ["put", "--home", home_arg, "--server", "pg"];
    let out = run(
        "wal-store",
        &[&layout[..], &["--report"]].concat(),
        &[],
        None,
        b"",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Processing xlog segments from file archival for pg\n\tno file found\n"
    );
    for bad in ["--report=", "--report=a\nb", "--report=  "] {
        let out = run("wal-store", &[&layout[..], &[bad]].concat(), &[], None, b"");
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad:?}: {}",
            output_text(&out)
        );
        assert_eq!(stderr_lines(&out).len(), 1, "{}", output_text(&out));
    }

    // archive-wal while another holds the lock: Barman's info line, gone with -q.
    let lock = home.join(".pg-archive-wal.lock");
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let busy = |log: &[&str]| {
        wrapper("archive-wal")
            .arg("--home")
            .arg(&home)
            .args(["--server", "pg"])
            .args(log)
            .output()
            .unwrap()
    };
    let mut plain = busy(&[]);
    while !String::from_utf8_lossy(&plain.stdout).contains("already running")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
        plain = busy(&[]);
    }
    let quiet = busy(&["-q"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(plain.status.success(), "{}", output_text(&plain));
    assert!(
        String::from_utf8_lossy(&plain.stdout)
            .contains("Another archive-wal process is already running on server pg"),
        "{}",
        output_text(&plain)
    );
    assert!(quiet.status.success(), "{}", output_text(&quiet));
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{}",
        output_text(&quiet)
    );
}
