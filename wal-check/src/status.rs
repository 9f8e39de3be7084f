//! `wal-check status`: what a DBA reads to see how archiving goes (Barman's `status`
//! lines for the WAL side, and what Barman does not say: the receiver, its lag, the WAL
//! its slot keeps, the archive's WAL per timeline), as console lines, Barman's `-f json`
//! shape, or Prometheus gauges.

use serde_json::{Map, Value, json};

use crate::facts::{ArchiveFacts, ServerStatus};
use crate::prometheus::Metrics;
use crate::units::{human_duration, pretty_size};

/// One status line: Barman's key, its description, the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The JSON key (`last_archived_wal`).
    pub key: String,
    /// What it is (`Last archived WAL`).
    pub description: String,
    /// Its value.
    pub message: String,
}

fn line(key: &str, description: &str, message: impl Into<String>) -> Line {
    Line {
        key: key.to_owned(),
        description: description.to_owned(),
        message: message.into(),
    }
}

/// What the status shows.
#[derive(Debug, Clone)]
pub struct StatusFacts {
    /// The server name.
    pub server: String,
    /// The archive's files.
    pub archive: ArchiveFacts,
    /// The server, or why it could not be asked.
    pub server_status: Result<ServerStatus, String>,
    /// archive_command feeds the archive.
    pub archiver: bool,
    /// wal-receive feeds it.
    pub streaming: bool,
    /// The slot the receiver streams from.
    pub slot: Option<String>,
    /// Now, seconds since the epoch.
    pub now: f64,
}

/// The status lines, Barman's first (version, cluster state, current WAL, the archiver's
/// lines), then walpipe's.
#[must_use]
pub fn lines(facts: &StatusFacts) -> Vec<Line> {
    let mut lines = Vec::new();
    match &facts.server_status {
        Err(why) => lines.push(line(
            "pg_version",
            "PostgreSQL version",
            format!("FAILED trying to get PostgreSQL version ({why})"),
        )),
        Ok(server) => {
            lines.push(line(
                "pg_version",
                "PostgreSQL version",
                server.version.clone(),
            ));
            lines.push(line(
                "is_in_recovery",
                "Cluster state",
                if server.in_recovery {
                    "in archive recovery"
                } else {
                    "in production"
                },
            ));
            if let Some(wal) = &server.current_wal {
                lines.push(line("current_xlog", "Current WAL segment", wal.clone()));
            }
            if facts.archiver {
                archiver_lines(server, &mut lines);
            }
        }
    }
    if facts.streaming {
        receiver_lines(facts, &mut lines);
    }
    archive_lines(facts, &mut lines);
    lines
}

fn archiver_lines(server: &ServerStatus, lines: &mut Vec<Line>) {
    lines.push(line(
        "archive_command",
        "PostgreSQL 'archive_command' setting",
        if server.archive_command.is_empty() {
            "FAILED (please set it accordingly to documentation)".to_owned()
        } else {
            server.archive_command.clone()
        },
    ));
    lines.push(line(
        "last_archived_wal",
        "Last archived WAL",
        server.last_archived.as_ref().map_or_else(
            || "No WAL segment shipped yet".to_owned(),
            |(wal, at, _)| format!("{wal}, at {at}"),
        ),
    ));
    let failures = match &server.last_failed {
        Some((wal, at, _)) if server.failed_count > 0 => {
            format!("{} ({wal} at {at})", server.failed_count)
        }
        _ => server.failed_count.to_string(),
    };
    lines.push(line("failed_count", "Failures of WAL archiver", failures));
    if let Some(rate) = server.archived_per_second.filter(|rate| *rate > 0.0) {
        lines.push(line(
            "server_archived_wals_per_hour",
            "Server WAL archiving rate",
            format!("{:.2}/hour", rate * 3600.0),
        ));
    }
}

fn receiver_lines(facts: &StatusFacts, lines: &mut Vec<Line>) {
    let receiver = &facts.archive.receiver;
    let state = match (&receiver.status, receiver.running) {
        (None, _) => "not running (it never ran for this server)".to_owned(),
        (Some(status), true) => format!(
            "{} (pid {}{}{}, {} restart(s))",
            status.state,
            status.pid,
            status
                .slot
                .as_ref()
                .map_or(String::new(), |s| format!(", slot {s}")),
            if status.synchronous {
                ", synchronous"
            } else {
                ""
            },
            status.restarts
        ),
        (Some(status), false) => match &status.last_error {
            Some(why) => format!("not running (pid {} ended; last error: {why})", status.pid),
            None => format!("not running (pid {} ended)", status.pid),
        },
    };
    lines.push(line("receive_wal", "WAL streaming receiver", state));
    if let Some(status) = &receiver.status
        && let Some(segment) = &status.last_segment
    {
        lines.push(line(
            "last_received_wal",
            "Last received WAL",
            match &status.last_lsn {
                Some(lsn) => format!("{segment} (to {lsn})"),
                None => segment.clone(),
            },
        ));
    }
    if let Ok(server) = &facts.server_status {
        lines.push(line(
            "replication_lag",
            "Replication lag",
            server.receiver_lag.map_or_else(
                || "not connected".to_owned(),
                |(bytes, seconds)| {
                    format!(
                        "{} behind, {}",
                        pretty_size(u64::try_from(bytes).unwrap_or(0)),
                        human_duration(std::time::Duration::from_secs_f64(seconds.max(0.0)))
                    )
                },
            ),
        ));
        if let Some(slot) = &facts.slot {
            lines.push(line(
                "slot_retained_wal",
                "WAL kept by the slot",
                server.slot_retained.map_or_else(
                    || format!("slot '{slot}' does not exist or reserves nothing"),
                    |bytes| {
                        format!(
                            "{} (slot '{slot}')",
                            pretty_size(u64::try_from(bytes).unwrap_or(0))
                        )
                    },
                ),
            ));
        }
    }
}

fn archive_lines(facts: &StatusFacts, lines: &mut Vec<Line>) {
    match &facts.archive.catalogue {
        Err(why) => lines.push(line(
            "archived_wals",
            "Archived WAL",
            format!("unknown ({why})"),
        )),
        Ok(catalogue) if catalogue.timelines.is_empty() => {
            lines.push(line("archived_wals", "Archived WAL", "none"));
        }
        Ok(catalogue) => {
            let spans: Vec<String> = catalogue
                .timelines
                .iter()
                .map(|(timeline, span)| {
                    format!(
                        "timeline {timeline}: {} to {} ({} files)",
                        span.first, span.last, span.count
                    )
                })
                .collect();
            lines.push(line("archived_wals", "Archived WAL", spans.join("; ")));
            lines.push(line(
                "archive_size",
                "Archive size",
                format!(
                    "{} in {} files",
                    pretty_size(catalogue.total_size),
                    catalogue.count
                ),
            ));
        }
    }
    for (key, description, queue) in [
        (
            "incoming_wals",
            "WAL files in incoming",
            &facts.archive.incoming,
        ),
        (
            "streaming_wals",
            "WAL files in streaming",
            &facts.archive.streaming,
        ),
    ] {
        if let Some(queue) = queue {
            lines.push(line(key, description, queue.waiting.to_string()));
        }
    }
}

/// Barman's console form: `Server NAME:` then `\tdescription: message`.
#[must_use]
pub fn console(server: &str, lines: &[Line]) -> String {
    let mut out = vec![format!("Server {server}:")];
    out.extend(
        lines
            .iter()
            .map(|l| format!("\t{}: {}", l.description, l.message)),
    );
    out.join("\n") + "\n"
}

/// Barman's `-f json` form of status: `{"SERVER": {"key": {"description": …, "message": …}}}`.
#[must_use]
pub fn json_report(server: &str, lines: &[Line]) -> String {
    let mut entries = Map::new();
    for l in lines {
        entries.insert(
            l.key.clone(),
            json!({"description": l.description, "message": l.message}),
        );
    }
    let mut top = Map::new();
    top.insert(server.to_owned(), Value::Object(entries));
    serde_json::to_string_pretty(&Value::Object(top)).unwrap_or_default() + "\n"
}

/// The status as gauges (names documented in the README; one `server` label).
#[must_use]
pub fn metrics(facts: &StatusFacts) -> Metrics {
    let mut m = Metrics::default();
    let server = facts.server.as_str();
    let label = [("server", server)];
    let bool_value = |b: bool| if b { 1.0 } else { 0.0 };
    m.gauge(
        "walpipe_postgres_up",
        "Whether PostgreSQL answered the status queries (1) or not (0).",
        &label,
        bool_value(facts.server_status.is_ok()),
    );
    if let Ok(status) = &facts.server_status {
        server_metrics(&mut m, status, &label);
    }
    m.gauge(
        "walpipe_archive_catalogue_ok",
        "Whether the archive's catalogue could be read (1) or not (0): without it the archive gauges are absent.",
        &label,
        bool_value(facts.archive.catalogue.is_ok()),
    );
    if let Ok(catalogue) = &facts.archive.catalogue {
        #[allow(clippy::cast_precision_loss)]
        let files = catalogue.count as f64;
        m.gauge(
            "walpipe_archive_wal_files",
            "WAL files in the archive's catalogue.",
            &label,
            files,
        );
        #[allow(clippy::cast_precision_loss)]
        let bytes = catalogue.total_size as f64;
        m.gauge(
            "walpipe_archive_size_bytes",
            "Bytes the catalogued WAL files take in the archive.",
            &label,
            bytes,
        );
        if let Some(newest) = catalogue.newest_time.filter(|t| t.is_finite()) {
            m.gauge(
                "walpipe_archive_newest_wal_timestamp_seconds",
                "The newest archived WAL file's time (Unix time).",
                &label,
                newest,
            );
        }
    }
    for (name, queue) in [
        ("incoming", &facts.archive.incoming),
        ("streaming", &facts.archive.streaming),
    ] {
        if let Some(queue) = queue {
            #[allow(clippy::cast_precision_loss)]
            let waiting = queue.waiting as f64;
            m.gauge(
                "walpipe_queue_wal_files",
                "WAL files waiting in a queue for archive-wal.",
                &[("server", server), ("queue", name)],
                waiting,
            );
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let errors = facts.archive.errors.len() as f64;
    m.gauge(
        "walpipe_errors_files",
        "Files archive-wal set aside in errors/ (duplicates, unknown).",
        &label,
        errors,
    );
    if facts.streaming {
        let receiver = &facts.archive.receiver;
        m.gauge(
            "walpipe_receiver_running",
            "Whether the streaming receiver (wal-receive) runs (1) or not (0).",
            &label,
            bool_value(receiver.running),
        );
        if let Some(status) = &receiver.status {
            #[allow(clippy::cast_precision_loss)]
            let restarts = status.restarts as f64;
            m.gauge(
                "walpipe_receiver_restarts",
                "How many times the receiver restarted pg_receivewal since it started.",
                &label,
                restarts,
            );
        }
    }
    m.gauge(
        "walpipe_status_timestamp_seconds",
        "When these figures were taken (Unix time).",
        &label,
        facts.now,
    );
    m
}

/// The server's figures as gauges.
fn server_metrics(m: &mut Metrics, status: &ServerStatus, label: &[(&str, &str)]) {
    #[allow(clippy::cast_precision_loss)] // counts and byte sizes as gauges
    let count = |n: i64| n as f64;
    m.gauge("walpipe_postgres_archived_count", "pg_stat_archiver.archived_count: WAL files PostgreSQL's archiver archived since the statistics were reset.", label, count(status.archived_count));
    m.gauge("walpipe_postgres_failed_count", "pg_stat_archiver.failed_count: failed archive_command calls since the statistics were reset.", label, count(status.failed_count));
    if let Some((_, _, at)) = &status.last_archived {
        m.gauge(
            "walpipe_postgres_last_archived_timestamp_seconds",
            "When PostgreSQL's archiver last archived a WAL file (Unix time).",
            label,
            *at,
        );
    }
    if let Some((_, _, at)) = &status.last_failed {
        m.gauge(
            "walpipe_postgres_last_failed_timestamp_seconds",
            "When archive_command last failed (Unix time).",
            label,
            *at,
        );
    }
    if let Some((bytes, seconds)) = status.receiver_lag {
        m.gauge(
            "walpipe_receiver_lag_bytes",
            "How far the receiver's flushed WAL is behind the server's, in bytes.",
            label,
            count(bytes),
        );
        m.gauge(
            "walpipe_receiver_lag_seconds",
            "pg_stat_replication.flush_lag of the receiver, in seconds.",
            label,
            seconds,
        );
    }
    if let Some(bytes) = status.slot_retained {
        m.gauge(
            "walpipe_slot_retained_bytes",
            "WAL the receiver's slot keeps on the server, in bytes.",
            label,
            count(bytes),
        );
    }
}
