//! Progress for a DBA at a terminal, and nowhere else.
//!
//! wal-verify, wal-store put, a write-out and rebuild-xlogdb draw a counter of the files
//! done on stderr when stderr is a terminal (here a pseudo-terminal made by `script`), and
//! never when it is a pipe or a file; either way stdout, the records, is the same byte for byte, and the summary lines
//! on stderr are those of a run without a terminal.
//!
//! Needs `cargo build --workspace --bins` first and `script` (util-linux).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use walpipe_tests::convergence::copy_with_mtime;
use walpipe_tests::wrappers::{bin_dir, output_text, scan_archive, wrapper};
use walpipe_tests::{WorkDir, wal_fixture_segments};

/// Runs `shell_command` (a `sh -c` line) with stderr on a pseudo-terminal and returns
/// what the terminal showed.
fn on_a_terminal(work: &WorkDir, shell_command: &str) -> String {
    let transcript = work.join("typescript");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", shell_command])
        .arg(&transcript)
        .env_remove("WALPIPE_PROGRESS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell_command}: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&fs::read(&transcript).unwrap()).into_owned()
}

/// A queue of the cached real segments in `home/pg/incoming`.
fn queue(home: &Path) {
    let incoming = home.join("pg/incoming");
    fs::create_dir_all(&incoming).unwrap();
    for segment in wal_fixture_segments().iter().take(6) {
        // One modification time for every copy: the records carry it.
        copy_with_mtime(
            segment,
            &incoming.join(segment.file_name().unwrap()),
            1_700_000_000,
        );
    }
}

/// A home whose archive holds the six queued segments, archived by archive-wal.
fn archived(work: &WorkDir) -> std::path::PathBuf {
    let home = work.join("home");
    queue(&home);
    let out = wrapper("archive-wal")
        .arg("--home")
        .arg(&home)
        .args(["--server", "pg"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    home
}

#[test]
fn wal_verify_draws_progress_on_a_terminal_only_and_writes_the_same_records() {
    let work = WorkDir::new();
    let home = archived(&work);
    let records = work.join("records");
    fs::write(&records, scan_archive(&home, "pg")).unwrap();

    let verify = bin_dir().join("wal-verify");
    let piped = Command::new(&verify)
        .args(["--deep", "--jobs", "1"])
        .stdin(fs::File::open(&records).unwrap())
        .env_remove("WALPIPE_PROGRESS")
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", output_text(&piped));
    let piped_stderr = String::from_utf8(piped.stderr).unwrap();
    assert!(!piped_stderr.contains("files verified"), "{piped_stderr}");

    let tty_stdout = work.join("stdout");
    let shown = on_a_terminal(
        &work,
        &format!(
            "{} --deep --jobs 1 < {} > {}",
            verify.display(),
            records.display(),
            tty_stdout.display()
        ),
    );
    assert!(shown.contains("6 files verified"), "{shown}");
    assert!(
        fs::read(&tty_stdout).unwrap() == piped.stdout,
        "the same records"
    );
    // Once the run ends the counter is cleared; the summary is what the pipe got.
    for line in piped_stderr.lines() {
        assert!(shown.contains(line), "{line} in {shown}");
    }
}

#[test]
fn wal_store_put_draws_progress_on_a_terminal_only() {
    let work = WorkDir::new();
    let scan_and_put = |home: &Path| {
        format!(
            "{bin}/wal-scan incoming {home}/pg/incoming --server pg \
             | {bin}/wal-store put --home {home} --server pg",
            bin = bin_dir().display(),
            home = home.display()
        )
    };
    let piped_home = work.join("piped");
    queue(&piped_home);
    let piped = Command::new("sh")
        .args(["-c", &scan_and_put(&piped_home)])
        .env_remove("WALPIPE_PROGRESS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", output_text(&piped));
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("files stored"));

    let tty_home = work.join("tty");
    queue(&tty_home);
    let tty_stdout = work.join("stdout");
    let shown = on_a_terminal(
        &work,
        &format!("{} > {}", scan_and_put(&tty_home), tty_stdout.display()),
    );
    assert!(shown.contains("6 files stored"), "{shown}");
    // The same records but for where each archive is.
    let tty_records = fs::read_to_string(&tty_stdout)
        .unwrap()
        .replace(tty_home.to_str().unwrap(), "HOME");
    let piped_records = String::from_utf8(piped.stdout)
        .unwrap()
        .replace(piped_home.to_str().unwrap(), "HOME");
    assert_eq!(tty_records, piped_records);
    assert_eq!(tty_records.lines().count(), 6);
}

#[test]
fn rebuild_xlogdb_and_a_write_out_draw_progress_on_a_terminal_only() {
    let work = WorkDir::new();
    let home = archived(&work);
    let bin = bin_dir();
    let xlogdb = home.join("pg/wals/pg-xlog.db");
    let catalogued = fs::read(&xlogdb).unwrap();
    let rebuild = format!(
        "{}/wal-store rebuild-xlogdb --home {} --server pg",
        bin.display(),
        home.display()
    );
    let piped = Command::new("sh")
        .args(["-c", &rebuild])
        .env_remove("WALPIPE_PROGRESS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", output_text(&piped));
    let piped_stderr = String::from_utf8(piped.stderr).unwrap();
    assert!(!piped_stderr.contains("files read"), "{piped_stderr}");
    let shown = on_a_terminal(&work, &rebuild);
    assert!(shown.contains("files read"), "{shown}");
    assert!(
        shown.contains("Done rebuilding xlogdb for server pg"),
        "{shown}"
    );
    assert_eq!(fs::read(&xlogdb).unwrap(), catalogued, "the same catalogue");

    // A restore of many files: get, decompress, write out into a directory.
    let names: Vec<String> = wal_fixture_segments()
        .iter()
        .take(6)
        .map(|s| s.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let restore = |dir: &Path| {
        format!(
            "{bin}/wal-store get --home {home} --server pg {names} \
             | {bin}/wal-compress --decompress --temp-dir {dir} \
             | {bin}/wal-store place --home {home} --server pg --to-dir {dir}",
            bin = bin.display(),
            home = home.display(),
            names = names.join(" "),
            dir = dir.display()
        )
    };
    let piped_dir = work.join("piped");
    fs::create_dir_all(&piped_dir).unwrap();
    let piped = Command::new("sh")
        .args(["-c", &restore(&piped_dir)])
        .env_remove("WALPIPE_PROGRESS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", output_text(&piped));
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("files written out"));
    let tty_dir = work.join("tty");
    fs::create_dir_all(&tty_dir).unwrap();
    let shown = on_a_terminal(&work, &restore(&tty_dir));
    assert!(shown.contains("files written out"), "{shown}");
    for (name, segment) in names.iter().zip(wal_fixture_segments()) {
        let original = fs::read(segment).unwrap();
        assert_eq!(fs::read(piped_dir.join(name)).unwrap(), original, "{name}");
        assert_eq!(fs::read(tty_dir.join(name)).unwrap(), original, "{name}");
    }
}
