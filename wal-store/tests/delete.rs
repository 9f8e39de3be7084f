//! `wal-store delete`: per-file deletion, empty hash directories pruned, xlog.db kept true.

use serde_json::json;

use crate::common::*;

#[test]
fn deletes_files_prunes_empty_dirs_and_updates_xlog_db() {
    let home = Home::new();
    let names = [SEG1, SEG2, "000000010000000100000001", "00000002.history"];
    let records: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| record_for(&home.queue_file(n, i as u8)))
        .collect();
    let (code, _, _) = put(&home, &[], &records);
    assert_eq!(code, 0);
    // Not archived yet: it waits in the incoming queue.
    let queued = home.queue_file(SEG3, 7);
    let doomed = [
        json!({"name": SEG1}),
        json!({"name": "000000010000000100000001"}),
        json!({"name": SEG3}),
    ];
    let out = wal_store()
        .args(["delete", "--server", "pg", "--archive"])
        .arg(home.wals())
        .write_stdin(ndjson(&doomed))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = parse(&out.stdout);
    assert!(
        records.iter().all(|r| r["outcome"] == "deleted"),
        "already-gone files count as deleted"
    );
    // Counted as deleted (not in the archive), but said: the next archive-wal stores it.
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with(&format!(
            "wal-store: {SEG3}: not in the archive; it waits in "
        )) && said.contains(queued.to_str().unwrap()),
        "{said}"
    );
    assert!(queued.exists(), "a queue is not delete's to touch");
    assert!(!home.archived(SEG1).exists());
    assert!(home.archived(SEG2).exists());
    assert!(
        !home.wals().join("0000000100000001").exists(),
        "empty hash dir removed"
    );
    assert!(home.wals().join("0000000100000000").exists());
    let catalogue = home.xlogdb_text();
    assert_eq!(catalogue.lines().count(), 2, "{catalogue}");
    assert!(catalogue.contains(SEG2) && catalogue.contains("00000002.history"));
}
