//! The record stream: what passes through untouched, order with parallel jobs, the
//! temporary files and the fields a record gains.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use tempfile::tempdir;

use crate::args;
use crate::util::{
    Gpg, content_of, dot_files, encrypted_record, ndjson, path_of, record, run_ok, sample,
    segment_name, write_file,
};

#[test]
fn records_with_nothing_to_do_pass_through_untouched() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let plain = write_file(dir.path(), &segment_name(1), &sample(51, 2000));
    let failed = json!({
        "name": segment_name(2), "size": 1, "time": 1.0, "ticket": 7,
        "compression": null, "encryption": null,
        "error": {"stage": "wal-compress", "kind": "io", "message": "earlier"},
    });
    let already = encrypted_record(&segment_name(3), &plain);
    // Encrypting: a record already encrypted, and one an earlier stage failed.
    let input = [already.clone(), failed.clone()];
    let out = run_ok(
        args!["--recipient", gpg.file("pub.asc").as_os_str()],
        &ndjson(&input),
        0,
    );
    assert_eq!(out, input);
    // Decrypting with plain files allowed: a plain record, and the failed one.
    let input = [record(&segment_name(1), &plain), failed];
    let out = run_ok(
        args![
            "--decrypt",
            "--key",
            gpg.file("sec.gpg").as_os_str(),
            "--allow-unencrypted"
        ],
        &ndjson(&input),
        0,
    );
    assert_eq!(out, input);
    assert!(dot_files(dir.path()).is_empty());
}

#[test]
fn many_records_keep_their_order_and_their_fields() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let temps = dir.path().join("t");
    fs::create_dir(&temps).unwrap();
    let records: Vec<Value> = (0..12u32)
        .map(|n| {
            let name = segment_name(n);
            let size = [0, 10, 300_000, 5000][n as usize % 4];
            let path = write_file(dir.path(), &name, &sample(u64::from(n), size));
            let mut record = record(&name, &path);
            record["compression"] = json!("zstd");
            record["temps"] = json!(["/elsewhere/.x.compressed"]);
            record["note"] = json!({"kept": n});
            record
        })
        .collect();
    let encrypted = run_ok(
        args![
            "--recipient",
            gpg.file("pub.gpg").as_os_str(),
            "--jobs",
            "4",
            "--temp-dir",
            temps.as_os_str()
        ],
        &ndjson(&records),
        0,
    );
    assert_eq!(encrypted.len(), records.len());
    for (before, after) in records.iter().zip(&encrypted) {
        let name = before["name"].as_str().unwrap();
        // In a temp dir, a name no other run makes: .<name>.<pid>-<random>.gpg.
        let temp = path_of(after);
        assert_eq!(temp.parent(), Some(temps.as_path()));
        assert!(
            temp.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .strip_prefix(&format!(".{name}."))
                .and_then(|rest| rest.strip_suffix(".gpg"))
                .is_some_and(|unique| unique.contains('-')),
            "{}",
            temp.display()
        );
        assert_eq!(after["name"], before["name"]);
        assert_eq!(after["compression"], "zstd", "compression is kept");
        assert_eq!(after["encryption"], "gpg");
        assert_eq!(after["note"], before["note"], "unknown fields are kept");
        assert_eq!(after["temps"], json!(["/elsewhere/.x.compressed", temp]));
        assert_eq!(path_of(after), temp);
        assert_eq!(after["size"], fs::metadata(&temp).unwrap().len());
        let mode = fs::metadata(&temp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let decrypted = run_ok(
        args![
            "--decrypt",
            "--key",
            gpg.file("sec.gpg").as_os_str(),
            "--jobs",
            "3"
        ],
        &ndjson(&encrypted),
        0,
    );
    for (before, after) in records.iter().zip(&decrypted) {
        let name = before["name"].as_str().unwrap();
        assert_eq!(after["encryption"], Value::Null);
        assert_eq!(after["compression"], "zstd");
        assert_eq!(path_of(after), temps.join(format!(".{name}.decrypted")));
        assert!(content_of(after) == fs::read(path_of(before)).unwrap());
        assert_eq!(after["size"], before["size"]);
        assert_eq!(after["temps"].as_array().unwrap().len(), 3);
        let mode = fs::metadata(path_of(after)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn a_leftover_temp_of_a_killed_run_is_replaced_not_appended() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let data = sample(52, 30_000);
    let file = write_file(dir.path(), &name, &data);
    let stale = write_file(dir.path(), &format!(".{name}.gpg"), &sample(53, 90_000));
    let out = run_ok(
        args!["--recipient", gpg.file("pub.asc").as_os_str()],
        &ndjson([&record(&name, &file)]),
        0,
    );
    assert_eq!(path_of(&out[0]), stale);
    assert!(gpg.decrypt(&stale) == data);
}
