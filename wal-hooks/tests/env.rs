//! Barman's environment, every variable and its exact value, for segments,
//! history and backup files, compressed and not, in each phase of archiving and deletion.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::util::{HookDir, ndjson, parse, run_hooks};

const SEG: &str = "000000010000000A00000042";
const HASH: &str = "000000010000000A";
const HISTORY: &str = "00000002.history";
const BACKUP: &str = "000000010000000A00000042.00000028.backup";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A queue record as wal-scan writes it.
fn queued(name: &str, kind: &str, size: u64, time: f64, compression: Option<&str>) -> Value {
    json!({
        "name": name,
        "kind": kind,
        "path": format!("/h/pg/incoming/{name}"),
        "source": format!("/h/pg/incoming/{name}"),
        "size": size,
        "time": time,
        "compression": compression,
        "encryption": null,
    })
}

/// The same record after wal-compress and `wal-store put`.
fn stored(record: &Value, stored_at: &str, size: u64, compression: Option<&str>) -> Value {
    let mut record = record.clone();
    let name = record["name"].as_str().unwrap().to_owned();
    if compression != record["compression"].as_str() {
        let temp = format!("/h/pg/incoming/.{name}.compressed");
        record["path"] = json!(temp);
        record["temps"] = json!([temp]);
    }
    record["size"] = json!(size);
    record["compression"] = json!(compression);
    record["outcome"] = json!("stored");
    record["stored_at"] = json!(stored_at);
    record
}

/// What a hook must see: the common variables plus `specific`, and the record itself.
fn expected(
    hook: &str,
    phase: &str,
    retry: &str,
    configuration: &str,
    record: &Value,
    specific: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("BARMAN_VERSION", VERSION),
        ("BARMAN_SERVER", "pg"),
        ("BARMAN_CONFIGURATION", configuration),
        ("BARMAN_HOOK", hook),
        ("BARMAN_PHASE", phase),
        ("BARMAN_RETRY", retry),
        ("BARMAN_ERROR", ""),
    ]
    .into_iter()
    .chain(specific.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("WALPIPE_RECORD".into(), record.to_string());
    env
}

/// Checks every run against what was expected, comparing WALPIPE_RECORD as JSON.
fn assert_runs(seen: &[BTreeMap<String, String>], expected: &[BTreeMap<String, String>]) {
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (seen, expected) in seen.iter().zip(expected) {
        let parse_record = |env: &BTreeMap<String, String>| -> Value {
            serde_json::from_str(&env["WALPIPE_RECORD"]).unwrap()
        };
        assert_eq!(parse_record(seen), parse_record(expected), "WALPIPE_RECORD");
        let strip = |env: &BTreeMap<String, String>| {
            let mut env = env.clone();
            env.remove("WALPIPE_RECORD");
            env
        };
        assert_eq!(strip(seen), strip(expected));
    }
}

#[test]
fn pre_archive_sees_the_queue_file_for_every_kind_compressed_or_not() {
    let hooks = HookDir::new();
    let records = [
        queued(SEG, "segment", 16_777_216, 1_700_000_000.25, None),
        // Compressed by the client: Barman's pre hook sees the sniffed compression.
        queued(
            SEG,
            "segment",
            1_479_083,
            1_795_313_864.672_685_9,
            Some("gzip"),
        ),
        queued(HISTORY, "history", 41, 1_700_000_000.0, None),
        queued(BACKUP, "backup", 374, 1_700_000_060.5, Some("bzip2")),
    ];
    let output = run_hooks(
        &[
            "--phase",
            "pre",
            "--event",
            "archive",
            "--configuration",
            "/etc/walpipe/pg.conf",
            "--script",
            &hooks.recorder(0),
        ],
        &ndjson(&records),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(parse(&output.stdout), records, "records go on unchanged");
    let conf = "/etc/walpipe/pg.conf";
    let pre = |record: &Value, file: &str, size: &str, time: &str, compression: &str| {
        let segment = record["name"].as_str().unwrap();
        expected(
            "archive_script",
            "pre",
            "0",
            conf,
            record,
            &[
                ("BARMAN_SEGMENT", segment),
                ("BARMAN_FILE", file),
                ("BARMAN_SIZE", size),
                ("BARMAN_TIMESTAMP", time),
                ("BARMAN_COMPRESSION", compression),
            ],
        )
    };
    assert_runs(
        &hooks.runs(),
        &[
            pre(
                &records[0],
                "/h/pg/incoming/000000010000000A00000042",
                "16777216",
                "1700000000.25",
                "",
            ),
            pre(
                &records[1],
                "/h/pg/incoming/000000010000000A00000042",
                "1479083",
                "1795313864.6726859",
                "gzip",
            ),
            pre(
                &records[2],
                "/h/pg/incoming/00000002.history",
                "41",
                "1700000000.0",
                "",
            ),
            pre(
                &records[3],
                &format!("/h/pg/incoming/{BACKUP}"),
                "374",
                "1700000060.5",
                "bzip2",
            ),
        ],
    );
}

#[test]
fn post_archive_sees_the_stored_file_its_size_and_compression() {
    let hooks = HookDir::new();
    let seg_at = format!("/h/pg/wals/{HASH}/{SEG}");
    let backup_at = format!("/h/pg/wals/{HASH}/{BACKUP}");
    let records = [
        stored(
            &queued(SEG, "segment", 16_777_216, 1_700_000_000.25, None),
            &seg_at,
            1_479_083,
            Some("zstd"),
        ),
        stored(
            &queued(SEG, "segment", 16_777_216, 1_700_000_000.25, None),
            &seg_at,
            16_777_216,
            None,
        ),
        stored(
            &queued(HISTORY, "history", 41, 1_700_000_000.0, None),
            "/h/pg/wals/00000002.history",
            41,
            None,
        ),
        stored(
            &queued(BACKUP, "backup", 374, 1e9, None),
            &backup_at,
            260,
            Some("xz"),
        ),
    ];
    let output = run_hooks(
        &[
            "--phase",
            "post",
            "--event",
            "archive",
            "--retry",
            "--script",
            &hooks.recorder(0),
        ],
        &ndjson(&records),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(parse(&output.stdout), records);
    let post = |record: &Value, file: &str, size: &str, time: &str, compression: &str| {
        let segment = record["name"].as_str().unwrap();
        expected(
            "archive_retry_script",
            "post",
            "1",
            "",
            record,
            &[
                ("BARMAN_SEGMENT", segment),
                ("BARMAN_FILE", file),
                ("BARMAN_SIZE", size),
                ("BARMAN_TIMESTAMP", time),
                ("BARMAN_COMPRESSION", compression),
            ],
        )
    };
    assert_runs(
        &hooks.runs(),
        &[
            post(&records[0], &seg_at, "1479083", "1700000000.25", "zstd"),
            post(&records[1], &seg_at, "16777216", "1700000000.25", ""),
            post(
                &records[2],
                "/h/pg/wals/00000002.history",
                "41",
                "1700000000.0",
                "",
            ),
            post(&records[3], &backup_at, "260", "1000000000.0", "xz"),
        ],
    );
}

#[test]
fn post_archive_of_a_failed_store_gets_the_error_and_barmans_destination() {
    let hooks = HookDir::new();
    let mut conflict = queued(SEG, "segment", 16_777_216, 1_700_000_000.25, None);
    conflict["outcome"] = json!("conflict");
    conflict["stored_at"] = json!(format!("/h/pg/errors/{SEG}.20250612T101500Z.duplicate"));
    conflict["error"] = json!({
        "stage": "wal-store",
        "kind": "conflict",
        "message": format!("{SEG} is already present in server pg (different content)"),
    });
    // Both the plain and the retry post script see BARMAN_ERROR (Barman 3.20: retry only).
    for retry in [false, true] {
        let script = hooks.recorder(0);
        let mut args = vec![
            "--phase",
            "post",
            "--event",
            "archive",
            "--archive",
            "/h/pg/wals",
        ];
        if retry {
            args.push("--retry");
        }
        args.extend(["--script", &script]);
        let output = run_hooks(&args, &ndjson([&conflict]));
        assert_eq!(
            output.status.code(),
            Some(0),
            "the record failed upstream, not here"
        );
        assert_eq!(parse(&output.stdout), [conflict.clone()]);
    }
    let runs = hooks.runs();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(
            run["BARMAN_ERROR"],
            format!("{SEG} is already present in server pg (different content)")
        );
        assert_eq!(run["BARMAN_FILE"], format!("/h/pg/wals/{HASH}/{SEG}"));
    }
    assert_eq!(runs[0]["BARMAN_HOOK"], "archive_script");
    assert_eq!(runs[1]["BARMAN_HOOK"], "archive_retry_script");
}

#[test]
fn delete_hooks_see_the_archived_file() {
    let hooks = HookDir::new();
    // As `wal-scan archive` lists them.
    let listed = |name: &str, path: &str, size: u64, compression: Option<&str>| {
        json!({"name": name, "kind": "segment", "path": path, "size": size,
               "time": 1_700_000_000.5, "compression": compression, "encryption": null})
    };
    let seg_at = format!("/h/pg/wals/{HASH}/{SEG}");
    let pre = [listed(SEG, &seg_at, 1_479_083, Some("zstd"))];
    let mut deleted = pre[0].clone();
    deleted["outcome"] = json!("deleted");
    deleted["stored_at"] = json!(seg_at);
    let name_only = json!({"name": "000000010000000A00000043"});
    for (phase, records, retry) in [
        ("pre", vec![pre[0].clone(), name_only.clone()], false),
        ("post", vec![deleted.clone()], true),
    ] {
        let script = hooks.recorder(0);
        let mut args = vec![
            "--phase",
            phase,
            "--event",
            "delete",
            "--archive",
            "/h/pg/wals",
        ];
        if retry {
            args.push("--retry");
        }
        args.extend(["--script", &script]);
        let output = run_hooks(&args, &ndjson(&records));
        assert_eq!(output.status.code(), Some(0));
    }
    let runs = hooks.runs();
    assert_eq!(runs.len(), 3);
    // (hook, phase, retry, record, size, time, compression, file)
    let check = |run: &BTreeMap<String, String>,
                 (hook, phase, retry): (&str, &str, &str),
                 record: &Value,
                 (size, time, compression, file): (&str, &str, &str, &str)| {
        let segment = record["name"].as_str().unwrap();
        let env = expected(
            hook,
            phase,
            retry,
            "",
            record,
            &[
                ("BARMAN_SEGMENT", segment),
                ("BARMAN_FILE", file),
                ("BARMAN_SIZE", size),
                ("BARMAN_TIMESTAMP", time),
                ("BARMAN_COMPRESSION", compression),
            ],
        );
        assert_runs(std::slice::from_ref(run), &[env]);
    };
    check(
        &runs[0],
        ("wal_delete_script", "pre", "0"),
        &pre[0],
        ("1479083", "1700000000.5", "zstd", &seg_at),
    );
    // A bare name: Barman's place in the archive, defaults for the rest.
    let bare = json!({"name": "000000010000000A00000043", "size": 0, "time": 0.0, "compression": null, "encryption": null});
    check(
        &runs[1],
        ("wal_delete_script", "pre", "0"),
        &bare,
        (
            "0",
            "0.0",
            "",
            &format!("/h/pg/wals/{HASH}/000000010000000A00000043"),
        ),
    );
    check(
        &runs[2],
        ("wal_delete_retry_script", "post", "1"),
        &deleted,
        ("1479083", "1700000000.5", "zstd", &seg_at),
    );
}
