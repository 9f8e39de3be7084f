//! The facts as Prometheus' text exposition format, for node_exporter's textfile
//! collector: gauges with stable names, HELP and TYPE lines, the server as a label, the
//! file replaced whole (written beside, fsynced, renamed) so the collector never reads
//! half of it.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wal_core::durable;
use wal_core::error::Result;

/// Metric families, in the order written.
#[derive(Debug, Default)]
pub struct Metrics {
    text: String,
    family: Option<String>,
}

impl Metrics {
    /// A gauge sample of family `name` (HELP and TYPE are written with its first sample;
    /// a family's samples must be given together).
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if self.family.as_deref() != Some(name) {
            let _ = writeln!(self.text, "# HELP {name} {help}");
            let _ = writeln!(self.text, "# TYPE {name} gauge");
            self.family = Some(name.to_owned());
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
            .collect();
        let value = if value.is_nan() {
            "NaN".to_owned()
        } else if value.is_infinite() {
            if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
        } else {
            format!("{value}")
        };
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{}}} {value}", labels.join(","));
        }
    }

    /// The exposition text.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Replaces `path` with the exposition, durably, readable by the collector's user.
    /// Only a regular file is replaced: a link, a device (`/dev/null`) or a directory
    /// there is refused, untouched.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && !meta.file_type().is_file()
        {
            return Err(wal_core::WalError::Config(format!(
                "{}: not a regular file: the metrics file is replaced whole, so it must be \
                 one (or not exist yet)",
                path.display()
            )));
        }
        durable::replace_durably(path, |file| {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            std::io::Write::write_all(file, self.text.as_bytes())
        })
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines() {
        let mut metrics = Metrics::default();
        metrics.gauge(
            "walpipe_up",
            "PostgreSQL answered.",
            &[("server", "p\"g\\\n")],
            1.0,
        );
        metrics.gauge(
            "walpipe_queue_wal_files",
            "Waiting.",
            &[("server", "pg"), ("queue", "incoming")],
            3.0,
        );
        metrics.gauge(
            "walpipe_queue_wal_files",
            "Waiting.",
            &[("server", "pg"), ("queue", "streaming")],
            0.5,
        );
        metrics.gauge("walpipe_x", "X.", &[], f64::NAN);
        assert_eq!(
            metrics.text(),
            "# HELP walpipe_up PostgreSQL answered.\n# TYPE walpipe_up gauge\n\
             walpipe_up{server=\"p\\\"g\\\\\\n\"} 1\n\
             # HELP walpipe_queue_wal_files Waiting.\n# TYPE walpipe_queue_wal_files gauge\n\
             walpipe_queue_wal_files{server=\"pg\",queue=\"incoming\"} 3\n\
             walpipe_queue_wal_files{server=\"pg\",queue=\"streaming\"} 0.5\n\
             # HELP walpipe_x X.\n# TYPE walpipe_x gauge\nwalpipe_x NaN\n"
        );
    }
}
