//! Barman #1087: a backlog of 100 000 files with a batch size costs a listing and a sort,
//! not a stat or an open per file. Checked for correctness at scale, not timed.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::support::{Server, WAL_SIZE, scan, wal_content};

const FILES: u32 = 100_000;

/// The batch size of the scans: only these first files are ever looked at.
const BATCH: u32 = 100;

/// `FILES` names, of which the first `BATCH` are 1 MiB segments of the right shape, each
/// a sparse file holding only its page header (all wal-scan reads of a segment), so the
/// batch costs no memory. The backlog beyond the batch is empty files, never looked at.
fn fill(dir: &Path) {
    for i in 0..FILES {
        let name = format!("00000001{:08X}{:08X}", i >> 8, i & 0xFF);
        let mut file = File::create(dir.join(&name)).unwrap();
        if i < BATCH {
            let header = &wal_content(&name, 0)[..40];
            file.write_all(header).unwrap();
            file.set_len(WAL_SIZE as u64).unwrap();
        }
    }
}

#[test]
fn issue_1087_a_huge_queue_costs_only_its_batch() {
    let server = Server::in_memory();
    fill(&server.incoming);
    let run = scan(&[
        "incoming",
        server.incoming.to_str().unwrap(),
        "--batch-size",
        &BATCH.to_string(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.records.len(), BATCH as usize);
    assert_eq!(run.records[0]["name"], "000000010000000000000000");
    assert_eq!(run.records[99]["name"], "000000010000000000000063");
    assert_eq!(
        run.stderr_lines(),
        [
            "wal-scan: Found 100000 xlog segments from file archival for pg. Archive a batch of 100 segments in this run."
        ]
    );

    // The same backlog scanned as a streaming queue, pg_receivewal's .partial at the end.
    let queue = &server.incoming;
    File::create(queue.join("0000000100000187000000FF.partial")).unwrap();
    let batch = BATCH.to_string();
    let run = scan(&["streaming", queue.to_str().unwrap(), "--batch-size", &batch]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.records.len(),
        BATCH as usize,
        "nothing held back: the .partial is beyond the batch"
    );
    assert!(
        run.stderr
            .contains("Found 100001 xlog segments from streaming"),
        "{}",
        run.stderr
    );
}
