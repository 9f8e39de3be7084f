//! wal-verify over archives that archive-wal made from real PostgreSQL 15 WAL (the cached
//! set: 20 consecutive segments of pgbench and a bulk load): everything holds; then each
//! defect, introduced one at a time, is found, named, and changes the exit status.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use walpipe_tests::wrappers::output_text;
use walpipe_tests::wrappers::{archived_path, scan_archive, tool, wrapper};
use walpipe_tests::{WorkDir, wal_fixture_segments};

/// A walpipe home whose archive holds the cached segments, archived by archive-wal with
/// `compression` (`none` keeps them plain).
fn archive(work: &WorkDir, compression: &str) -> PathBuf {
    archive_with(work, compression, &[])
}

/// [`archive`] with more archive-wal flags (`--recipient CERT`).
fn archive_with(work: &WorkDir, compression: &str, extra: &[&Path]) -> PathBuf {
    let home = work.mkdir_owned(format!("home-{compression}-{}", extra.len()));
    let incoming = home.join("pg/incoming");
    fs::create_dir_all(&incoming).unwrap();
    for segment in wal_fixture_segments() {
        fs::copy(&segment, incoming.join(segment.file_name().unwrap())).unwrap();
    }
    let out = wrapper("archive-wal")
        .arg("--home")
        .arg(&home)
        .args(["--server", "pg", "--compression", compression])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    home
}

/// `wal-scan archive HOME/pg/wals --server pg | wal-verify ARGS`.
fn verify(home: &Path, args: &[&str]) -> Output {
    verify_records(&scan_archive(home, "pg"), args)
}

fn verify_records(records: &[u8], args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wal-verify"))
        .args(args)
        .env_remove("WALPIPE_JOBS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A verifier that refuses its settings exits before reading: a broken pipe here is
    // its answer, which the exit status and stderr tell.
    let _ = child.stdin.take().unwrap().write_all(records);
    child.wait_with_output().unwrap()
}

fn records(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The record of `name` in the output.
fn record_of(out: &Output, name: &str) -> Value {
    records(out)
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no record of {name}: {}", output_text(out)))
}

/// Everything holds, shallow and deep, compressed and plain; the JSON summary says so.
#[test]
fn real_wal_archives_verify_clean() {
    let work = WorkDir::new();
    for compression in ["zstd", "none"] {
        let home = archive(&work, compression);
        for args in [&[][..], &["--deep"][..]] {
            let out = verify(&home, args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{compression} {args:?}: {}",
                output_text(&out)
            );
            let all = records(&out);
            assert_eq!(all.len(), 20);
            assert!(
                all.iter().all(|r| r["outcome"] == "verified"),
                "{}",
                output_text(&out)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(
                    "timeline 1: 000000010000000000000001 to 000000010000000000000014, 20 segments, no gap"
                ),
                "{stderr}"
            );
            assert!(stderr.trim_end().ends_with("wal-verify: OK"), "{stderr}");
        }
        let out = verify(&home, &["--json"]);
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["status"], "OK", "{summary}");
        assert_eq!(summary["verified"], 20);
        assert_eq!(summary["timelines"][0]["segments"], 20);
        assert_eq!(summary["timelines"][0]["gaps"], serde_json::json!([]));
    }
}

/// Each defect alone: a missing segment, a truncated file, a segment of another cluster; a record
/// naming a fifo or a symlink fails alone while the stream goes on.
#[test]
fn each_defect_is_found_and_named() {
    let work = WorkDir::new();
    let home = archive(&work, "none");
    let wals = home.join("pg/wals");
    let path = |name: &str| archived_path(&wals, name);

    // A segment missing in the middle.
    let missing = "000000010000000000000007";
    let kept = fs::read(path(missing)).unwrap();
    fs::remove_file(path(missing)).unwrap();
    let out = verify(&home, &[]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "timeline 1: missing {missing} to {missing} (1 segments)"
        )),
        "{}",
        output_text(&out)
    );
    fs::write(path(missing), &kept).unwrap();

    // A truncated file.
    let cut = "00000001000000000000000A";
    let whole = fs::read(path(cut)).unwrap();
    fs::write(path(cut), &whole[..whole.len() / 2]).unwrap();
    let out = verify(&home, &[]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    let record = record_of(&out, cut);
    assert_eq!(record["error"]["kind"], "corrupt", "{record}");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("size"),
        "{record}"
    );
    fs::write(path(cut), &whole).unwrap();

    // A segment of another cluster: its system identifier (long header bytes 24..32).
    let stranger = "000000010000000000000010";
    let mut bytes = fs::read(path(stranger)).unwrap();
    bytes[24] ^= 0xFF;
    fs::write(path(stranger), &bytes).unwrap();
    let out = verify(&home, &["--json"]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "FAILED");
    let problem = summary["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with("1 segment(s) of another cluster") && problem.ends_with(stranger),
        "{problem}"
    );
    bytes[24] ^= 0xFF;
    fs::write(path(stranger), &bytes).unwrap();

    // Records naming a fifo, a symlink and nothing: each fails alone, the rest verify.
    let fifo = work.join("000000010000000000000015");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let link = work.join("000000010000000000000016");
    std::os::unix::fs::symlink(path("000000010000000000000001"), &link).unwrap();
    let mut input = Vec::new();
    for (name, at) in [
        ("000000010000000000000001", path("000000010000000000000001")),
        ("000000010000000000000015", fifo.clone()),
        ("000000010000000000000016", link.clone()),
        ("000000010000000000000017", work.join("absent")),
    ] {
        input.extend(format!("{{\"name\": \"{name}\", \"path\": {at:?}}}\n").into_bytes());
    }
    input.extend(b"not a record\n");
    let out = verify_records(&input, &[]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    assert_eq!(
        record_of(&out, "000000010000000000000001")["outcome"],
        "verified"
    );
    for name in ["000000010000000000000015", "000000010000000000000016"] {
        let record = record_of(&out, name);
        assert_eq!(record["error"]["kind"], "corrupt", "{record}");
    }
    assert!(record_of(&out, "000000010000000000000017")["error"].is_object());
    // Every line comes out, the bad one as a record, and counts as failed.
    assert_eq!(records(&out).len(), 5);
    let said = String::from_utf8_lossy(&out.stderr);
    let summary = "5 files: 1 verified, 4 failed";
    assert!(
        said.contains(summary) && said.trim_end().ends_with("FAILED"),
        "{said}"
    );
}

/// One damage to a segment: what it is, how it is done, what --deep says of it.
type Damage = (&'static str, fn(&mut Vec<u8>), &'static str);

/// A flipped byte in a page header past the first, one inside a record, the last pages
/// zeroed where no WAL switch ended the records: each found by --deep only, named by
/// page or by the record's LSN.
#[test]
fn deep_finds_damage_past_the_first_page() {
    let work = WorkDir::new();
    let home = archive(&work, "none");
    let damaged = archived_path(&home.join("pg/wals"), "00000001000000000000000C");
    let whole = fs::read(&damaged).unwrap();
    let cases: [Damage; 3] = [
        // Page 3's header: its page address.
        (
            "page address",
            |b| b[3 * 8192 + 9] ^= 0x01,
            "page 3 (offset 24576): page address",
        ),
        // A byte inside a record, in the middle of the segment: its CRC.
        ("a record", |b| b[(8 << 20) + 4000] ^= 0x10, ": CRC "),
        // Recovery would stop where the WAL is gone.
        (
            "a zeroed tail",
            |b| b[1000 * 8192..].fill(0),
            "yet the WAL before it goes on into it",
        ),
    ];
    for (what, damage, said) in cases {
        let mut bytes = whole.clone();
        damage(&mut bytes);
        fs::write(&damaged, &bytes).unwrap();
        let shallow = verify(&home, &[]);
        assert_eq!(
            shallow.status.code(),
            Some(0),
            "{what}: shallow reads the first page"
        );
        let out = verify(&home, &["--deep"]);
        assert_eq!(out.status.code(), Some(65), "{what}: {}", output_text(&out));
        let message = record_of(&out, "00000001000000000000000C")["error"]["message"].to_string();
        assert!(message.contains(said), "{what}: {message}");
    }
    fs::write(&damaged, &whole).unwrap();
}

/// scripts/verify-wal on an encrypted archive: decrypted on the way (with the key, the
/// plaintext removed once verified), the catalogue compared with the files, errors/
/// looked at; a stale catalogue line and a file of errors/ are each found.
#[test]
fn the_wrapper_verifies_an_encrypted_archive_and_its_catalogue() {
    let work = WorkDir::new();
    let gpg = walpipe_tests::Gpg::in_dir(work.path());
    gpg.stop_agent();
    let home = archive_with(&work, "zstd", &[Path::new("--recipient"), &gpg.cert()]);
    let wals = home.join("pg/wals");
    let run = |extra: &[&str]| {
        wrapper("verify-wal")
            .arg("--home")
            .arg(&home)
            .args(["--server", "pg", "--key"])
            .arg(gpg.key())
            .args(extra)
            .output()
            .unwrap()
    };
    let leftovers = || {
        walpipe_tests::Snapshot::of(&wals)
            .paths()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .map(Path::to_path_buf)
            .collect::<Vec<_>>()
    };
    let out = run(&["--deep"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(records(&out).len(), 20);
    assert!(records(&out).iter().all(|r| r["outcome"] == "verified"));
    assert!(leftovers().is_empty(), "plaintext left: {:?}", leftovers());
    // Without the key, every file fails as encrypted (not corrupt): exit 1.
    let out = wrapper("verify-wal")
        .arg("--home")
        .arg(&home)
        .args(["--server", "pg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("encrypted: decrypt it"));
    // A catalogue line without its file, a file in errors/.
    let xlogdb = wals.join("pg-xlog.db");
    let kept = fs::read(&xlogdb).unwrap();
    let mut stale = kept.clone();
    stale.extend(b"000000010000000000000099\t100\t1.0\tzstd\tgpg\n");
    fs::write(&xlogdb, &stale).unwrap();
    let errors = home.join("pg/errors");
    fs::create_dir_all(&errors).unwrap();
    fs::write(
        errors.join("000000010000000000000003.20260101T000000Z.duplicate"),
        b"x",
    )
    .unwrap();
    let out = run(&["--json"]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems: Vec<&str> = summary["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("1 catalogue line(s) without a file")
                && p.ends_with("000000010000000000000099")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("1 file(s) in ")),
        "{problems:?}"
    );
    assert!(leftovers().is_empty(), "plaintext left: {:?}", leftovers());
}

/// A `.partial` stands for its segment only at the end of its timeline: before a later
/// segment, the segment itself is missing (restore_command asks for it).
#[test]
fn a_partial_before_a_later_segment_leaves_a_gap() {
    let work = WorkDir::new();
    let home = archive(&work, "none");
    let wals = home.join("pg/wals");
    let partial = work.join("000000010000000000000005.partial");
    fs::copy(archived_path(&wals, "000000010000000000000005"), &partial).unwrap();
    let mut input = Vec::new();
    let mut line = |name: &str, path: &Path| {
        input.extend(format!("{{\"name\": \"{name}\", \"path\": {path:?}}}\n").into_bytes());
    };
    for n in [1, 2, 3, 4, 6] {
        let name = format!("00000001000000000000000{n}");
        line(&name, &archived_path(&wals, &name));
    }
    line("000000010000000000000005.partial", &partial);
    let out = verify_records(&input, &[]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("timeline 1: missing 000000010000000000000005 to 000000010000000000000005"),
        "{}",
        output_text(&out)
    );
}

/// An encrypted archive with --state: the re-run decrypts nothing (the state vouches for
/// the stored files, not for the decrypted copies); two runs side by side do not share a
/// copy; the copies go to the run's own directory, which goes at the end; a state that
/// is not one is refused with 78 and one line, every time.
#[test]
fn an_encrypted_archive_reverifies_from_its_state_and_runs_side_by_side() {
    let work = WorkDir::new();
    let gpg = walpipe_tests::Gpg::in_dir(work.path());
    gpg.stop_agent();
    let home = archive_with(&work, "zstd", &[Path::new("--recipient"), &gpg.cert()]);
    let tmp = work.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let state = work.join("verify.state");
    let command = |extra: &[&str]| {
        let mut cmd = wrapper("verify-wal");
        cmd.env("TMPDIR", &tmp)
            .arg("--home")
            .arg(&home)
            .args(["--server", "pg", "--deep", "--key"])
            .arg(gpg.key())
            .args(extra);
        cmd
    };
    let state_arg = state.to_str().unwrap();
    let out = command(&["--state", state_arg]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = command(&["--state", state_arg]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        said.contains("20 of 20 files still as verified")
            && said.contains("20 files taken as verified"),
        "{said}"
    );
    // Side by side, each reading everything.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            command(&["--jobs", "4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    assert!(
        fs::read_dir(&tmp).unwrap().next().is_none(),
        "a run's directory is left"
    );
    // A state that is not one: 78, one line, every time, nothing replaced.
    let garbage = work.join("garbage.state");
    fs::write(&garbage, b"garbage\n").unwrap();
    for _ in 0..4 {
        let out = command(&["--state", garbage.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
    assert_eq!(fs::read(&garbage).unwrap(), b"garbage\n");
}

/// A record whose `stored_at` names a verified file but whose `path` is another file
/// proves nothing: the file read is verified (and found damaged).
#[test]
fn a_record_whose_path_is_not_its_stored_file_is_read() {
    let work = WorkDir::new();
    let home = archive(&work, "none");
    let wals = home.join("pg/wals");
    let good = archived_path(&wals, "000000010000000000000005");
    let state = work.join("verify.state");
    let state_arg = format!("--state={}", state.display());
    let record = |path: &Path| {
        format!(
            "{{\"name\": \"000000010000000000000005\", \"path\": {path:?}, \"stored_at\": {good:?}}}\n"
        )
        .into_bytes()
    };
    let out = verify_records(&record(&good), &["--deep", &state_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let bad = work.join("bad");
    let mut bytes = fs::read(&good).unwrap();
    bytes[(4 << 20) + 4000] ^= 0x10;
    fs::write(&bad, &bytes).unwrap();
    let out = verify_records(&record(&bad), &["--deep", &state_arg]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
}

/// `--state`: a re-run over an unchanged archive reads nothing but takes every file as
/// verified; a changed file is read again (and found); a deeper check, --full or a state
/// that does not read make a full run.
#[test]
fn the_state_makes_a_rerun_read_only_what_changed() {
    let work = WorkDir::new();
    let home = archive(&work, "zstd");
    let state = work.join("verify.state");
    let state_arg = format!("--state={}", state.display());
    let taken = |out: &Output| -> u64 {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains("files taken as verified from"))
            .unwrap_or_else(|| panic!("{}", output_text(out)));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let out = verify(&home, &[&state_arg]);
    assert_eq!(
        (out.status.code(), taken(&out)),
        (Some(0), 0),
        "{}",
        output_text(&out)
    );
    let out = verify(&home, &[&state_arg]);
    assert_eq!(
        (out.status.code(), taken(&out)),
        (Some(0), 20),
        "{}",
        output_text(&out)
    );
    assert!(records(&out).iter().all(|r| r["outcome"] == "verified"));
    // A deeper check than the state's reads everything (and remembers it deep).
    let out = verify(&home, &[&state_arg, "--deep"]);
    assert_eq!(taken(&out), 0);
    let out = verify(&home, &[&state_arg, "--deep"]);
    assert_eq!(taken(&out), 20);
    let out = verify(&home, &[&state_arg, "--full"]);
    assert_eq!(taken(&out), 0);
    // A file changed since: read again, and found.
    let changed = archived_path(&home.join("pg/wals"), "000000010000000000000005");
    let whole = fs::read(&changed).unwrap();
    fs::write(&changed, &whole[..whole.len() - 10]).unwrap();
    let out = verify(&home, &[&state_arg]);
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    assert_eq!(taken(&out), 19);
    assert_eq!(
        record_of(&out, "000000010000000000000005")["error"]["kind"],
        "corrupt"
    );
    // wal-check reports the last verdict as an item.
    let checked = |state: &Path| {
        let out = tool("wal-check")
            .arg("check")
            .arg("--home")
            .arg(&home)
            .args(["--server", "pg", "--dbname", "host=127.0.0.1 port=1"])
            .arg("--verify-state")
            .arg(state)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("\tarchive verify: "))
            .unwrap_or_else(|| panic!("{}", output_text(&out)))
            .to_owned()
    };
    let item = checked(&state);
    assert!(
        item.starts_with("\tarchive verify: FAILED (1 of 20 files failed, "),
        "{item}"
    );
    assert!(checked(&work.join("never")).contains("FAILED (never verified"));
    fs::write(&changed, &whole).unwrap();
    let out = verify(&home, &[&state_arg]);
    assert_eq!((out.status.code(), taken(&out)), (Some(0), 19));
    let item = checked(&state);
    assert!(
        item.starts_with("\tarchive verify: OK (20 files, "),
        "{item}"
    );
    refuses_what_is_not_a_state(&home, &state, &changed);
}

/// A file at `--state` that is not a state (garbage, the catalogue, a segment typed by
/// mistake) is refused before any work, and left as it was, --full or not.
fn refuses_what_is_not_a_state(home: &Path, state: &Path, changed: &Path) {
    // A file that is not a state (garbage, the catalogue, a segment typed by mistake) is
    // refused before any work, and left as it was, --full or not.
    fs::write(state, b"{\"garbage\": true").unwrap();
    let xlogdb = home.join("pg/wals/pg-xlog.db");
    for (path, full) in [
        (state, false),
        (&xlogdb, false),
        (changed, false),
        (&xlogdb, true),
    ] {
        let before = fs::read(path).unwrap();
        let arg = format!("--state={}", path.display());
        let mut args = vec![arg.as_str()];
        if full {
            args.push("--full");
        }
        let out = verify(home, &args);
        assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a wal-verify state: refused"),
            "{}",
            output_text(&out)
        );
        assert!(out.stdout.is_empty());
        assert_eq!(
            fs::read(path).unwrap(),
            before,
            "{} changed",
            path.display()
        );
    }
}

/// An archive Barman 3.19 itself wrote (`barman archive-wal`, zstd, its catalogue)
/// verifies clean through scripts/verify-wal, deep, the catalogue agreeing.
#[test]
fn an_archive_barman_wrote_verifies_clean() {
    let work = WorkDir::new();
    let venv = walpipe_tests::venv::barman_venv();
    let home = work.mkdir_owned("barman");
    let incoming = home.join("pg/incoming");
    fs::create_dir_all(&incoming).unwrap();
    for segment in wal_fixture_segments() {
        fs::copy(&segment, incoming.join(segment.file_name().unwrap())).unwrap();
    }
    let conf = work.join("barman.conf");
    walpipe_tests::venv::barman_conf(
        &conf,
        &home,
        &work.join("barman.log"),
        "pg",
        "conninfo = host=/nonexistent port=5499 user=postgres dbname=postgres\n\
         backup_method = postgres\n\
         archiver = on\n\
         compression = zstd",
    );
    let mut cmd = Command::new(venv.join("bin/barman"));
    walpipe_tests::clean_command(&mut cmd);
    let out = cmd
        .arg("-c")
        .arg(&conf)
        .args(["archive-wal", "pg"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let out = wrapper("verify-wal")
        .arg("--home")
        .arg(&home)
        .args(["--server", "pg", "--deep", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["verified"], 20, "{summary}");
    assert_eq!(summary["problems"], serde_json::json!([]), "{summary}");
}

/// Settings that are none: one line, exit 64 or 78, before any record is read.
#[test]
fn bad_settings_are_refused_in_one_line() {
    let work = WorkDir::new();
    let dir = work.mkdir_owned("a-directory");
    let link = work.join("a-link");
    std::os::unix::fs::symlink(work.join("elsewhere"), &link).unwrap();
    let state_dir = format!("--state={}", dir.display());
    let state_link = format!("--state={}", link.display());
    for (args, code, said) in [
        (vec!["--from=garbage"], 64, "not a WAL segment name"),
        (vec!["--to=00000002.history"], 64, "not a WAL segment name"),
        (vec!["--jobs=100000"], 64, "--jobs 100000"),
        (vec!["--full"], 64, "--state"),
        (vec![state_dir.as_str()], 78, "not a regular file"),
        (vec![state_link.as_str()], 78, "not a regular file"),
    ] {
        let out = verify_records(b"", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            output_text(&out)
        );
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(
        !work.join("elsewhere").exists(),
        "nothing written through the link"
    );
}

/// A record an earlier stage failed (an object not fetched, a file not decrypted) is not
/// verified: it counts as failed, the verdict is FAILED, whatever else holds.
#[test]
fn a_record_failed_upstream_is_never_counted_as_verified() {
    let work = WorkDir::new();
    let home = archive(&work, "none");
    let mut lines: Vec<Value> = String::from_utf8(scan_archive(&home, "pg"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let last = lines.len() - 1;
    lines[last]["error"] = serde_json::json!({
        "stage": "wal-encrypt", "kind": "config", "message": "no key opens it",
    });
    let input: String = lines.iter().map(|r| r.to_string() + "\n").collect();
    let out = verify_records(input.as_bytes(), &["--json"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(summary["status"], "FAILED", "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["verified"], lines.len() - 1, "{summary}");
}

/// A fifo, a directory or a link under an archived WAL's name is no WAL the archive
/// holds: wal-scan fails its record, and the verify fails with it, even at the end of a
/// timeline where no gap would show.
#[test]
fn a_wal_name_that_is_no_regular_file_fails_the_verify() {
    let work = WorkDir::new();
    let home = archive(&work, "none");
    let wals = home.join("pg/wals");
    let last = archived_path(&wals, "000000010000000000000013");
    fs::remove_file(&last).unwrap();
    nix::unistd::mkfifo(&last, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let scan = tool("wal-scan")
        .arg("archive")
        .arg(&wals)
        .args(["--server", "pg"])
        .output()
        .unwrap();
    assert_eq!(scan.status.code(), Some(1), "{}", output_text(&scan));
    assert!(
        String::from_utf8_lossy(&scan.stderr).contains("a fifo, not a regular file"),
        "{}",
        output_text(&scan)
    );
    let out = verify_records(&scan.stdout, &["--json"]);
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "FAILED", "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    // Counted as what it is: an entry of the archive that is not the WAL it claims.
    assert_eq!(summary["corrupt"], 1, "{summary}");
}
