//! Compression: every algorithm writes what its reference CLI reads, and the record that
//! comes out points at the copy and says what was done.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use tempfile::tempdir;
use wal_core::Compression;

use crate::util::{
    cli_decompress, cli_of, content_of, dot_files, ndjson, path_of, record, run_ok, sample,
    segment_name, write_file,
};

#[test]
fn every_algorithm_is_read_back_by_its_cli() {
    // Cover odd sizes and an empty file, which is still a stream in every format.
    let inputs = [sample(1, 300_001), sample(2, 1), Vec::new()];
    for algorithm in Compression::ALL {
        let dir = tempdir().unwrap();
        let records: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(n, data)| {
                // Not segment names: these sizes are not a segment's (see decompress.rs for
                // why that matters to snappy).
                let name = format!("sample-{n}");
                record(&name, &write_file(dir.path(), &name, data))
            })
            .collect();
        let out = run_ok(&["--algorithm", algorithm.name()], &ndjson(&records), 0);
        assert_eq!(out.len(), inputs.len());
        for (record, data) in out.iter().zip(&inputs) {
            assert_eq!(record["compression"], algorithm.name());
            let stream = content_of(record);
            assert!(
                stream.starts_with(algorithm.magic()),
                "{algorithm} stream starts with its magic"
            );
            if let Some(cli) = cli_of(algorithm) {
                assert!(
                    cli_decompress(algorithm, &path_of(record)) == *data,
                    "{cli} reads {algorithm} output of {} bytes back",
                    data.len()
                );
            } else {
                // No snappy CLI: our own decoder (Barman reads the framing format with
                // python-snappy, which is what wal-compress writes).
                let back = run_ok(&["--decompress"], &ndjson([record]), 0);
                assert!(content_of(&back[0]) == *data, "snappy round trip");
            }
        }
    }
}

#[test]
fn the_record_points_at_the_copy_and_keeps_the_rest() {
    let dir = tempdir().unwrap();
    let name = segment_name(0x42);
    let data = sample(3, 100_000);
    let file = write_file(dir.path(), &name, &data);
    let mut input = record(&name, &file);
    input["temps"] = json!(["/elsewhere/.earlier.tmp"]);
    input["ticket"] = json!({"id": 42, "tags": ["a", "b"]});
    let out = run_ok(&["--algorithm", "zstd"], &ndjson([&input]), 0);
    let output = &out[0];

    let temp = dir.path().join(format!(".{name}.compressed"));
    assert_eq!(path_of(output), temp);
    assert_eq!(output["temps"], json!(["/elsewhere/.earlier.tmp", temp]));
    assert_eq!(output["compression"], "zstd");
    assert_eq!(output["size"], fs::metadata(&temp).unwrap().len());
    assert_eq!(
        output["source"], input["source"],
        "the source is left alone"
    );
    assert_eq!(
        fs::read(&file).unwrap(),
        data,
        "the source file is untouched"
    );
    assert_eq!(
        output["ticket"], input["ticket"],
        "unknown fields are forwarded"
    );
    for field in ["name", "kind", "time", "encryption"] {
        assert_eq!(output[field], input[field], "{field}");
    }
    assert_eq!(
        fs::metadata(&temp).unwrap().permissions().mode() & 0o777,
        0o600,
        "temporary files are private"
    );
    assert_eq!(cli_decompress(Compression::Zstd, &temp), data);
}

#[test]
fn compressed_or_encrypted_records_pass_unchanged() {
    let dir = tempdir().unwrap();
    let mut records = Vec::new();
    for (n, (compression, encryption)) in [
        (json!("gzip"), json!(null)),
        (json!(null), json!("gpg")),
        (json!("lz4"), json!("gpg")),
    ]
    .into_iter()
    .enumerate()
    {
        let name = segment_name(n as u32 + 1);
        let file = write_file(dir.path(), &name, b"opaque bytes");
        let mut rec = record(&name, &file);
        rec["compression"] = compression;
        rec["encryption"] = encryption;
        records.push(rec);
    }
    let out = run_ok(&["--algorithm", "xz"], &ndjson(&records), 0);
    assert_eq!(out, records);
    assert!(dot_files(dir.path()).is_empty(), "no copy was made");
}

#[test]
fn temp_dir_is_honoured() {
    let queue = tempdir().unwrap();
    let temps = tempdir().unwrap();
    let name = "00000002.history";
    let data = b"1\t0/3000000\tno recovery target specified\n";
    let file = write_file(queue.path(), name, data);
    let out = run_ok(
        &[
            "--algorithm",
            "gzip",
            "--temp-dir",
            temps.path().to_str().unwrap(),
        ],
        &ndjson([&record(name, &file)]),
        0,
    );
    let temp = path_of(&out[0]);
    assert_eq!(temp.parent(), Some(temps.path()));
    let file = temp.file_name().unwrap().to_str().unwrap();
    assert!(
        // .<name>.<pid>-<random>.compressed: a name no other run sharing the dir makes.
        file.strip_prefix(&format!(".{name}."))
            .and_then(|rest| rest.strip_suffix(".compressed"))
            .is_some_and(|unique| unique.contains('-'))
            && wal_core::temp::is_temp_name(file, name),
        "{file}"
    );
    assert_eq!(out[0]["temps"], json!([temp]));
    assert!(
        dot_files(queue.path()).is_empty(),
        "nothing written next to the source"
    );
    assert_eq!(cli_decompress(Compression::Gzip, &temp), data);
}

#[test]
fn a_leftover_temp_of_a_killed_run_is_replaced() {
    let dir = tempdir().unwrap();
    let name = segment_name(7);
    let data = sample(4, 20_000);
    let file = write_file(dir.path(), &name, &data);
    let leftover = write_file(dir.path(), &format!(".{name}.compressed"), b"half a stream");
    // Someone may hold a link to the leftover: it is unlinked, never overwritten.
    let link = dir.path().join("link");
    fs::hard_link(&leftover, &link).unwrap();
    let out = run_ok(&["--algorithm", "lz4"], &ndjson([&record(&name, &file)]), 0);
    assert_eq!(path_of(&out[0]), leftover);
    assert_eq!(cli_decompress(Compression::Lz4, &leftover), data);
    assert_eq!(fs::read(&link).unwrap(), b"half a stream");
}

/// Two runs sharing a temp dir (concurrent `archive-command --direct` calls for one WAL
/// write into the archive's root): the second run's copy never unlinks or replaces the
/// first run's, which that run's wal-store is about to store.
#[test]
fn a_second_run_never_replaces_the_copy_of_the_first() {
    use std::os::unix::fs::MetadataExt;
    let queue = tempdir().unwrap();
    let temps = tempdir().unwrap();
    let name = segment_name(4);
    let data = sample(8, 60_000);
    let file = write_file(queue.path(), &name, &data);
    let args = [
        "--algorithm",
        "zstd",
        "--temp-dir",
        temps.path().to_str().unwrap(),
    ];
    let first = path_of(&run_ok(&args, &ndjson([&record(&name, &file)]), 0)[0]);
    let before = fs::metadata(&first).unwrap();
    let second = path_of(&run_ok(&args, &ndjson([&record(&name, &file)]), 0)[0]);
    assert_ne!(first, second);
    let after = fs::metadata(&first).unwrap();
    assert_eq!(
        (after.ino(), after.len()),
        (before.ino(), before.len()),
        "the first copy is the same file"
    );
    assert_eq!(cli_decompress(Compression::Zstd, &first), data);
    assert_eq!(cli_decompress(Compression::Zstd, &second), data);
}

#[test]
fn the_same_name_twice_in_one_temp_dir_gets_two_copies() {
    // The same WAL can be queued both by pg_receivewal and by archive_command.
    let streaming = tempdir().unwrap();
    let incoming = tempdir().unwrap();
    let temps = tempdir().unwrap();
    let name = segment_name(9);
    let first = sample(5, 40_000);
    let second = sample(6, 40_000);
    let records = [
        record(&name, &write_file(streaming.path(), &name, &first)),
        record(&name, &write_file(incoming.path(), &name, &second)),
    ];
    let out = run_ok(
        &[
            "--algorithm",
            "zstd",
            "--jobs",
            "2",
            "--temp-dir",
            temps.path().to_str().unwrap(),
        ],
        &ndjson(&records),
        0,
    );
    assert_ne!(path_of(&out[0]), path_of(&out[1]));
    assert_eq!(cli_decompress(Compression::Zstd, &path_of(&out[0])), first);
    assert_eq!(cli_decompress(Compression::Zstd, &path_of(&out[1])), second);
}
