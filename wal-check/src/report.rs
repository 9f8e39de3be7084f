//! The report in Barman's three forms: the console's `Server NAME:` block, Nagios'
//! status line with perfdata and a line per failure, and `-f json`'s object; and the
//! exit status each form means.

use serde_json::{Map, Value, json};

use crate::judge::Item;
use crate::prometheus::Metrics;

/// Nagios' CRITICAL: an item failed.
pub const NAGIOS_CRITICAL: u8 = 2;
/// Nagios' UNKNOWN: the check could not run.
pub const NAGIOS_UNKNOWN: u8 = 3;

/// The output forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `Server NAME:` then `\tname: OK|FAILED (hint)`.
    Console,
    /// Barman's `--nagios`.
    Nagios,
    /// Barman's `-f json`.
    Json,
}

/// The report of `items` for `server` in `form`, and the exit status: 0 when every item
/// passed; else 1, or Nagios' 2.
#[must_use]
pub fn render(server: &str, items: &[Item], form: Form) -> (String, u8) {
    let failed = items.iter().any(|item| !item.ok);
    match form {
        Form::Console => (console(server, items), u8::from(failed)),
        Form::Json => (json_report(server, items), u8::from(failed)),
        Form::Nagios => (
            nagios(server, items),
            if failed { NAGIOS_CRITICAL } else { 0 },
        ),
    }
}

/// `text` on one line: a hint may quote a path or an error with line breaks in it, and
/// each report line is one item.
#[must_use]
pub fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn console(server: &str, items: &[Item]) -> String {
    let mut lines = vec![format!("Server {}:", one_line(server))];
    for item in items {
        let verdict = if item.ok { "OK" } else { "FAILED" };
        lines.push(match &item.hint {
            Some(hint) => format!("\t{}: {verdict} ({})", item.name, one_line(hint)),
            None => format!("\t{}: {verdict}", item.name),
        });
    }
    lines.join("\n") + "\n"
}

/// Barman's key for an item name: lower case, spaces and dashes to `_`, dots dropped.
#[must_use]
pub fn json_key(name: &str) -> String {
    name.to_lowercase()
        .replace([' ', '-'], "_")
        .replace('.', "")
}

fn json_report(server: &str, items: &[Item]) -> String {
    let mut checks = Map::new();
    for item in items {
        checks.insert(
            json_key(&item.name),
            json!({
                "status": if item.ok { "OK" } else { "FAILED" },
                "hint": item.hint.clone().unwrap_or_default(),
            }),
        );
    }
    let mut top = Map::new();
    top.insert(server.to_owned(), Value::Object(checks));
    let mut text = serde_json::to_string_pretty(&Value::Object(top)).unwrap_or_default();
    text.push('\n');
    text
}

/// For Nagios, also without `|`, which starts performance data.
fn nagios_text(text: &str) -> String {
    one_line(text).replace('|', "/")
}

fn nagios(server: &str, items: &[Item]) -> String {
    let server = &nagios_text(server);
    let perfdata: Vec<String> = items
        .iter()
        .filter(|item| item.name == "wal size")
        .filter_map(|item| item.perfdata)
        .map(|bytes| format!("{server}_wals={bytes}B"))
        .collect();
    let perf = if perfdata.is_empty() {
        String::new()
    } else {
        format!("|{}", perfdata.join(" "))
    };
    let failed: Vec<&Item> = items.iter().filter(|item| !item.ok).collect();
    if failed.is_empty() {
        return format!("BARMAN OK - Ready to serve the Espresso backup for {server}{perf}\n");
    }
    let names: Vec<&str> = failed.iter().map(|item| item.name.as_str()).collect();
    let mut lines = vec![format!(
        "BARMAN CRITICAL - server {server} has issues * {server} FAILED: {}{perf}",
        names.join(", ")
    )];
    for item in failed {
        lines.push(match &item.hint {
            Some(hint) => format!("{server}.{}: FAILED ({})", item.name, nagios_text(hint)),
            None => format!("{server}.{}: FAILED", item.name),
        });
    }
    lines.join("\n") + "\n"
}

/// Each item's verdict as a gauge, and whether all passed.
#[must_use]
pub fn metrics(server: &str, items: &[Item]) -> Metrics {
    let mut m = Metrics::default();
    for item in items {
        m.gauge(
            "walpipe_check_ok",
            "Whether a check item passed (1) or failed (0); item is its name as the console shows it.",
            &[("server", server), ("item", &item.name)],
            if item.ok { 1.0 } else { 0.0 },
        );
    }
    m.gauge(
        "walpipe_check_success",
        "Whether every check item passed (1) or not (0).",
        &[("server", server)],
        if items.iter().all(|item| item.ok) {
            1.0
        } else {
            0.0
        },
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, ok: bool, hint: Option<&str>) -> Item {
        Item {
            name: name.into(),
            ok,
            hint: hint.map(str::to_owned),
            perfdata: None,
        }
    }

    #[test]
    fn the_three_forms_as_barman_prints_them() {
        let mut size = item("wal size", true, Some("16.0 MiB"));
        size.perfdata = Some(16 << 20);
        let good = vec![item("WAL archive", true, None), size.clone()];
        let (text, code) = render("pg", &good, Form::Console);
        assert_eq!(
            text,
            "Server pg:\n\tWAL archive: OK\n\twal size: OK (16.0 MiB)\n"
        );
        assert_eq!(code, 0);
        let (text, code) = render("pg", &good, Form::Nagios);
        assert_eq!(
            text,
            "BARMAN OK - Ready to serve the Espresso backup for pg|pg_wals=16777216B\n"
        );
        assert_eq!(code, 0);

        let bad = vec![
            item(
                "archive_mode",
                false,
                Some("please set it to 'on' or 'always'"),
            ),
            size,
            item("receive-wal running", false, None),
        ];
        let (text, code) = render("pg", &bad, Form::Nagios);
        assert_eq!(
            text,
            "BARMAN CRITICAL - server pg has issues * pg FAILED: archive_mode, receive-wal \
             running|pg_wals=16777216B\npg.archive_mode: FAILED (please set it to 'on' or \
             'always')\npg.receive-wal running: FAILED\n"
        );
        assert_eq!(code, NAGIOS_CRITICAL);
        let odd = vec![item("archiver errors", false, Some("a|b\nc"))];
        let (text, _) = render("pg", &odd, Form::Nagios);
        assert_eq!(
            text,
            "BARMAN CRITICAL - server pg has issues * pg FAILED: archiver errors\n\
             pg.archiver errors: FAILED (a/b c)\n"
        );
        let (text, _) = render("pg", &odd, Form::Console);
        assert_eq!(text, "Server pg:\n\tarchiver errors: FAILED (a|b c)\n");
        let (text, code) = render("pg", &bad, Form::Json);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["pg"]["archive_mode"]["status"], "FAILED");
        assert_eq!(value["pg"]["receive_wal_running"]["hint"], "");
        assert_eq!(value["pg"]["wal_size"]["hint"], "16.0 MiB");
        assert_eq!(code, 1);
        assert_eq!(
            json_key("pg_receivexlog compatible"),
            "pg_receivexlog_compatible"
        );
        assert_eq!(json_key("WAL archive"), "wal_archive");
    }
}
