//! NDJSON in and out of a stage, for tests: records to feed, records read back.
//!
//! Every stage's tests write records to stdin and parse stdout, so the two conversions
//! live here once.

use std::fmt::Write as _;

use serde_json::Value;

/// NDJSON text for `records`, one line each.
pub fn ndjson<'a>(records: impl IntoIterator<Item = &'a Value>) -> String {
    records.into_iter().fold(String::new(), |mut text, record| {
        let _ = writeln!(text, "{record}");
        text
    })
}

/// The records of a stage's stdout; panics on a line that is not JSON (stdout must carry
/// records and nothing else).
#[must_use]
pub fn parse_records(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8(stdout.to_vec())
        .expect("stdout is UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip() {
        let records = [json!({"name": "a"}), json!({"name": "b", "size": 2})];
        let text = ndjson(&records);
        assert_eq!(text.lines().count(), 2);
        assert_eq!(parse_records(text.as_bytes()), records);
    }
}
