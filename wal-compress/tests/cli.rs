//! The command line: exit codes of help, version and bad flags; levels; environment
//! variables standing in for flags.

use std::fs;

use predicates::prelude::*;
use tempfile::tempdir;
use wal_core::Compression;
use walpipe_tests::ndjson::parse_records;

use crate::util::{
    cli_decompress, ndjson, path_of, record, run_ok, sample, segment_name, wal_compress, write_file,
};

#[test]
fn help_and_version_exit_0_on_stdout() {
    wal_compress()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Usage: wal-compress"))
        .stdout(predicate::str::contains("WALPIPE_COMPRESSION_LEVEL"));
    wal_compress()
        .arg("--version")
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("wal-compress "));
}

#[test]
fn bad_flags_exit_64_not_2() {
    for args in [
        &["--level", "fast"][..],
        &["--level", ""],
        &["--algorithm", "rar"],
        &["--algorithm", "custom"],
        &["--jobs", "many"],
        &["--jobs", "-1"],
        &["--no-such-flag"],
        &["extra-argument"],
    ] {
        wal_compress()
            .args(args)
            .write_stdin("")
            .assert()
            .code(64)
            .stdout("")
            .stderr(
                predicate::str::starts_with("wal-compress: ")
                    .and(predicate::str::contains("\n").count(1)),
            );
    }
}

#[test]
fn a_bad_level_in_the_environment_exits_64() {
    wal_compress()
        .env("WALPIPE_COMPRESSION_LEVEL", "strong")
        .write_stdin("")
        .assert()
        .code(64)
        .stderr(predicate::str::contains("strong"));
}

/// A stage that cannot start still passes every record on, failed with kind `config`
/// (so the last stage of a restore decides from them, and never reads "not archived"),
/// says why once, and exits with its own code.
#[test]
fn a_missing_temp_dir_fails_every_record_with_73() {
    let dir = tempdir().unwrap();
    let file = write_file(dir.path(), &segment_name(1), b"wal");
    let input = ndjson([
        &record(&segment_name(1), &file),
        &record(&segment_name(2), &file),
    ]);
    for temp_dir in [dir.path().join("nope"), file.clone()] {
        let out = wal_compress()
            .args(["--temp-dir", temp_dir.to_str().unwrap()])
            .write_stdin(input.clone())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(73), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(temp_dir.to_str().unwrap()), "{stderr}");
        let records = parse_records(&out.stdout);
        assert_eq!(records.len(), 2, "every record passed on");
        for (n, record) in records.iter().enumerate() {
            assert_eq!(record["name"], segment_name(u32::try_from(n).unwrap() + 1));
            assert_eq!(record["error"]["kind"], "config", "{record}");
            assert_eq!(record["error"]["stage"], "wal-compress");
            assert!(
                record
                    .get("compression")
                    .is_none_or(serde_json::Value::is_null)
            );
        }
        assert_eq!(fs::read(&file).unwrap(), b"wal", "the file is untouched");
    }
}

/// Compresses `data` with `--algorithm alg --level level` (or the environment) and returns
/// the compressed bytes.
fn compressed_with(alg: &str, level: &str, data: &[u8]) -> Vec<u8> {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let file = write_file(dir.path(), &name, data);
    let out = run_ok(
        &["--algorithm", alg, "--level", level],
        &ndjson([&record(&name, &file)]),
        0,
    );
    assert_eq!(out[0]["compression"], alg);
    fs::read(path_of(&out[0])).unwrap()
}

#[test]
fn named_levels_map_to_barmans_numbers() {
    let data = sample(11, 200_000);
    // gzip: low = 1, medium = 6, high = 9 (Barman's table); our gzip output is deterministic.
    assert_eq!(
        compressed_with("gzip", "low", &data),
        compressed_with("gzip", "1", &data)
    );
    assert_eq!(
        compressed_with("gzip", "medium", &data),
        compressed_with("gzip", "6", &data)
    );
    assert_eq!(
        compressed_with("gzip", "high", &data),
        compressed_with("gzip", "9", &data)
    );
    // zstd: low = 1, high = 9.
    assert_eq!(
        compressed_with("zstd", "low", &data),
        compressed_with("zstd", "1", &data)
    );
    assert_eq!(
        compressed_with("zstd", "high", &data),
        compressed_with("zstd", "9", &data)
    );
    // A higher level never makes this input bigger.
    assert!(
        compressed_with("gzip", "high", &data).len() < compressed_with("gzip", "low", &data).len()
    );
}

#[test]
fn out_of_range_levels_are_clamped() {
    let data = sample(12, 150_000);
    assert_eq!(
        compressed_with("gzip", "10", &data),
        compressed_with("gzip", "9", &data)
    );
    assert_eq!(
        compressed_with("gzip", "0", &data),
        compressed_with("gzip", "1", &data)
    );
    assert_eq!(
        compressed_with("bzip2", "-3", &data),
        compressed_with("bzip2", "1", &data)
    );
    assert_eq!(
        compressed_with("xz", "99", &data),
        compressed_with("xz", "9", &data)
    );
    assert_eq!(
        compressed_with("zstd", "1000000000000", &data),
        compressed_with("zstd", "22", &data)
    );
}

#[test]
fn clamping_is_reported_on_stderr() {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let file = write_file(dir.path(), &name, &sample(13, 1000));
    wal_compress()
        .args(["--algorithm", "gzip", "--level", "10"])
        .write_stdin(ndjson([&record(&name, &file)]))
        .assert()
        .code(0)
        .stderr(predicate::str::contains(
            "compression level 10 out of range for gzip, using 9",
        ));
}

#[test]
fn every_level_form_produces_a_stream_the_cli_reads() {
    let data = sample(14, 100_000);
    for (alg, level) in [
        (Compression::Zstd, "-7"),
        (Compression::Zstd, "22"),
        (Compression::Xz, "low"),
        (Compression::Bzip2, "high"),
        (Compression::Lz4, "16"),
        (Compression::Gzip, "medium"),
    ] {
        let dir = tempdir().unwrap();
        let stream = compressed_with(alg.name(), level, &data);
        let file = write_file(dir.path(), "stream", &stream);
        assert!(cli_decompress(alg, &file) == data, "{alg} --level {level}");
    }
}

#[test]
fn the_environment_stands_in_for_flags() {
    let dir = tempdir().unwrap();
    let temps = dir.path().join("temps");
    fs::create_dir(&temps).unwrap();
    let name = segment_name(1);
    let data = sample(15, 50_000);
    let file = write_file(dir.path(), &name, &data);
    let output = wal_compress()
        .env("WALPIPE_COMPRESSION", "bzip2")
        .env("WALPIPE_COMPRESSION_LEVEL", "low")
        .env("WALPIPE_JOBS", "3")
        .env("WALPIPE_TEMP_DIR", &temps)
        .write_stdin(ndjson([&record(&name, &file)]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let out = crate::util::parse(&output.stdout);
    assert_eq!(out[0]["compression"], "bzip2");
    let temp = path_of(&out[0]);
    // In a temp dir, a name no other run makes (.<name>.<pid>-<random>.compressed).
    assert_eq!(temp.parent(), Some(temps.as_path()));
    assert!(
        wal_core::temp::is_temp_name(temp.file_name().unwrap().to_str().unwrap(), &name)
            && temp.to_str().unwrap().ends_with(".compressed")
            && temp != temps.join(format!(".{name}.compressed")),
        "{}",
        temp.display()
    );
    assert_eq!(cli_decompress(Compression::Bzip2, &temp), data);
    // A flag beats its variable.
    let out = wal_compress()
        .env("WALPIPE_COMPRESSION", "bzip2")
        .args(["--algorithm", "lz4"])
        .write_stdin(ndjson([&record(&name, &file)]))
        .output()
        .unwrap();
    assert_eq!(crate::util::parse(&out.stdout)[0]["compression"], "lz4");
}

#[test]
fn decompress_ignores_compression_settings_from_the_environment() {
    // Wrappers export one set of WALPIPE_* variables for archiving and restoring.
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let data = sample(16, 30_000);
    let file = write_file(dir.path(), &name, &data);
    let compressed = run_ok(&["--algorithm", "xz"], &ndjson([&record(&name, &file)]), 0);
    let output = wal_compress()
        .env("WALPIPE_COMPRESSION", "gzip")
        .env("WALPIPE_COMPRESSION_LEVEL", "high")
        .arg("--decompress")
        .write_stdin(ndjson(&compressed))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let out = crate::util::parse(&output.stdout);
    assert_eq!(fs::read(path_of(&out[0])).unwrap(), data);
}

/// Issue 11: `--jobs 100000` started threads until memory ran out and aborted (exit 134).
/// Above 256 it is a usage error, in one line, before any record is read or file written;
/// from the environment too (WALPIPE_JOBS is shared with wal-store and wal-encrypt).
#[test]
fn too_many_jobs_are_a_usage_error_never_an_abort() {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let file = write_file(dir.path(), &name, &sample(3, 50_000));
    let input = ndjson([&record(&name, &file)]);
    for jobs in ["257", "100000", "18446744073709551615"] {
        let output = wal_compress()
            .args(["--jobs", jobs])
            .write_stdin(input.clone())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "--jobs {jobs}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            stderr,
            format!("wal-compress: --jobs {jobs}: at most 256 files at once (0: one per core)\n")
        );
        let output = wal_compress()
            .env("WALPIPE_JOBS", jobs)
            .write_stdin(input.clone())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "WALPIPE_JOBS={jobs}");
    }
    // One past what a usize holds is clap's own usage error.
    wal_compress()
        .args(["--jobs", "18446744073709551616"])
        .write_stdin(input.clone())
        .assert()
        .code(64)
        .stderr(predicate::str::contains("--jobs"));
    assert_eq!(
        crate::util::dot_files(dir.path()),
        Vec::<String>::new(),
        "nothing written"
    );
    // The bound itself works.
    let out = run_ok(&["--jobs", "256"], &input, 0);
    assert_eq!(out[0]["compression"], "zstd");
}

/// Issue 11: every other value a flag or variable can take ends in a usage line or is
/// used as documented; none panics or exits above 125.
#[test]
fn extreme_values_never_panic() {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let file = write_file(dir.path(), &name, &sample(4, 50_000));
    let input = ndjson([&record(&name, &file)]);
    for args in [
        &["--level", "NaN"][..],
        &["--level", "1e3"],
        &["--temp-dir", ""],
        &["--algorithm", ""],
    ] {
        let output = wal_compress()
            .args(args)
            .write_stdin(input.clone())
            .output()
            .unwrap();
        let code = output.status.code();
        assert_eq!(code, Some(64), "{args:?}: {output:?}");
    }
    // Integer levels of any size are clamped, as documented, with Barman's one-line note.
    for (level, used) in [
        (
            "-2147483648",
            "-2147483648 out of range for zstd, using -22",
        ),
        (
            "-99999999999999999999",
            "-2147483648 out of range for zstd, using -22",
        ),
        (
            "99999999999999999999",
            "2147483647 out of range for zstd, using 22",
        ),
    ] {
        let output = wal_compress()
            .args(["--algorithm", "zstd", "--level", level])
            .write_stdin(input.clone())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        assert_eq!(
            String::from_utf8(output.stderr).unwrap(),
            format!("wal-compress: compression level {used}\n")
        );
    }
    // A temp dir whose path is not UTF-8 (and does not exist): 73, not a panic.
    let odd = dir
        .path()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"t\xffmp"));
    let output = wal_compress()
        .arg("--temp-dir")
        .arg(&odd)
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(73), "{output:?}");
}
