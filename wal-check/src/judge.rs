//! The verdicts: Barman's WAL-side check items, in Barman's order and with its names and
//! hints, judged from the facts gathered (pure, so every branch is tested without a
//! server). Where walpipe says more than Barman it is in a hint, never a different name.

use std::time::Duration;

use crate::facts::{ArchiveFacts, PgReceivewal, ServerFacts};
use crate::units::{human_duration, pretty_size};

/// One check item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Barman's name (`WAL archive`, `archive_mode`, …).
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// What to do, or a detail.
    pub hint: Option<String>,
    /// A figure for Nagios (`wal size` in bytes).
    pub perfdata: Option<u64>,
}

impl Item {
    fn new(name: &str, ok: bool, hint: Option<String>) -> Item {
        Item {
            name: name.to_owned(),
            ok,
            hint,
            perfdata: None,
        }
    }
}

/// What the server's configuration says the check should expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The server name.
    pub server: String,
    /// archive_command feeds the archive (Barman's `archiver`).
    pub archiver: bool,
    /// wal-receive feeds it (Barman's `streaming_archiver`).
    pub streaming: bool,
    /// The slot the receiver streams from.
    pub slot: Option<String>,
    /// `last_wal_maximum_age`.
    pub max_age: Option<Duration>,
    /// `max_incoming_wals_queue`.
    pub max_queue: Option<u64>,
    /// Report the last archive verification.
    pub verify: bool,
}

/// Everything the judgement reads.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The archive's files.
    pub archive: ArchiveFacts,
    /// The server, or why it could not be asked.
    pub server: Result<ServerFacts, String>,
    /// Why switching WAL failed, when the check had to try.
    pub switch_error: Option<String>,
    /// pg_receivewal, if found (looked for only with the streaming archiver).
    pub pg_receivewal: Option<PgReceivewal>,
    /// The last verification's verdict (`None`: never verified), or why it cannot be read.
    pub verified: Result<Option<wal_core::verified::LastRun>, String>,
    /// Now, seconds since the epoch.
    pub now: f64,
}

/// The items, in Barman's order.
#[must_use]
pub fn judge(expect: &Expect, facts: &Facts) -> Vec<Item> {
    let mut items = Vec::new();
    wal_archive(facts, &mut items);
    queues(expect, &facts.archive, &mut items);
    let server = facts.server.as_ref().ok();
    items.push(Item::new(
        "PostgreSQL",
        server.is_some(),
        facts.server.as_ref().err().cloned(),
    ));
    if let Some(server) = server {
        items.push(Item::new(
            "wal_level",
            server.wal_level != "minimal",
            (server.wal_level == "minimal")
                .then(|| "please set it to a higher level than 'minimal'".into()),
        ));
        if let Some(slot) = &expect.slot {
            replication_slot(expect, server, slot, &mut items);
        }
    }
    wal_age_and_size(expect, facts, &mut items);
    if expect.verify {
        items.push(archive_verify(facts));
    }
    items.push(systemid(facts));
    if expect.archiver
        && let Some(server) = server
    {
        archiving(server, &mut items);
    }
    if expect.streaming {
        streaming(expect, facts, &mut items);
    }
    let errors = &facts.archive.errors;
    items.push(Item::new(
        "archiver errors",
        errors.is_empty(),
        summarise_error_files(errors),
    ));
    items
}

fn wal_archive(facts: &Facts, items: &mut Vec<Item>) {
    let archive = &facts.archive;
    let failed = |hint: String| Item::new("WAL archive", false, Some(hint));
    let item = match &archive.catalogue {
        // A catalogue that cannot be read says nothing about what was archived: never OK.
        Err(why) => failed(why.clone()),
        Ok(catalogue) if catalogue.count > 0 => Item::new("WAL archive", true, None),
        _ if archive.wal_arrived() => {
            let waiting: u64 = [&archive.incoming, &archive.streaming]
                .into_iter()
                .flatten()
                .map(|q| q.waiting)
                .sum();
            Item::new(
                "WAL archive",
                true,
                Some(format!(
                    "nothing archived yet; {waiting} WAL file(s) wait in the queues for archive-wal"
                )),
            )
        }
        _ => match (&archive.missing_archive, &facts.switch_error) {
            (Some(dir), _) => failed(format!(
                "{} does not exist: is --home right?",
                dir.display()
            )),
            (None, Some(why)) => failed(format!("please make sure WAL shipping is setup ({why})")),
            (None, None) => failed("please make sure WAL shipping is setup".into()),
        },
    };
    items.push(item);
}

/// Barman prints these only when they fail.
fn queues(expect: &Expect, archive: &ArchiveFacts, items: &mut Vec<Item>) {
    for (label, option, enabled, queue) in [
        ("incoming", "archiver", expect.archiver, &archive.incoming),
        (
            "streaming",
            "streaming_archiver",
            expect.streaming,
            &archive.streaming,
        ),
    ] {
        let Some(queue) = queue else { continue };
        if !enabled {
            if queue.waiting > 0 {
                items.push(Item::new(
                    &format!("empty {label} directory"),
                    false,
                    Some(format!(
                        "'{}' must be empty when {option}=off",
                        queue.dir.display()
                    )),
                ));
            }
            continue;
        }
        if let Some(max) = expect.max_queue
            && queue.waiting > max
        {
            items.push(Item::new(
                &format!("{label} WALs directory"),
                false,
                Some(format!(
                    "there are too many WALs in queue: {}, max {max}",
                    queue.waiting
                )),
            ));
        }
    }
}

fn replication_slot(expect: &Expect, server: &ServerFacts, slot: &str, items: &mut Vec<Item>) {
    let name = "replication slot";
    let found = server.slot.as_ref();
    let item = if expect.streaming {
        match found {
            None => Item::new(
                name,
                false,
                Some(format!(
                    "replication slot '{slot}' doesn't exist. Please execute 'wal-receive \
                     create-slot --server {} --slot {slot}'",
                    expect.server
                )),
            ),
            Some(found) if found.restart_lsn.is_none() => Item::new(
                name,
                false,
                Some(format!(
                    "slot '{slot}' not initialised: is 'wal-receive stream' running?"
                )),
            ),
            Some(found) if !found.active => Item::new(
                name,
                false,
                Some(format!(
                    "slot '{slot}' not active: is 'wal-receive stream' running?"
                )),
            ),
            Some(_) => Item::new(name, true, None),
        }
    } else {
        // Not a failure: a slot that holds WAL for nobody is worth a warning.
        match found {
            Some(found) if found.restart_lsn.is_some() => Item::new(
                name,
                true,
                Some(format!(
                    "WARNING: slot '{slot}' is {} but not required by the current config",
                    if found.active {
                        "active"
                    } else {
                        "initialised"
                    }
                )),
            ),
            _ => return,
        }
    };
    items.push(item);
}

fn wal_age_and_size(expect: &Expect, facts: &Facts, items: &mut Vec<Item>) {
    let catalogue = facts.archive.catalogue.as_ref().ok();
    let newest = catalogue.and_then(|c| c.newest_time);
    items.push(match (expect.max_age, newest) {
        (None, _) => Item::new(
            "wal maximum age",
            true,
            Some("no last_wal_maximum_age provided".into()),
        ),
        (Some(_), None) => Item::new(
            "wal maximum age",
            false,
            Some("No WAL files archived".into()),
        ),
        (Some(max), Some(newest)) => {
            // A catalogue is input: a time of NaN, infinity or far in the past is an age
            // too great to tell, never a panic; one in the future is no age.
            let seconds = facts.now - newest;
            let age = if seconds.is_nan() {
                Duration::MAX
            } else {
                Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
            };
            Item::new(
                "wal maximum age",
                age <= max,
                Some(format!(
                    "interval provided: {}, latest wal age: {}",
                    human_duration(max),
                    human_duration(age)
                )),
            )
        }
    });
    // Unknown when the catalogue cannot be read: no figure rather than a false 0.
    let mut item = Item::new(
        "wal size",
        true,
        Some(catalogue.map_or_else(|| "unknown".to_owned(), |c| pretty_size(c.total_size))),
    );
    item.perfdata = catalogue.map(|c| c.total_size);
    items.push(item);
}

/// The last verification's verdict, and how long ago it was.
fn archive_verify(facts: &Facts) -> Item {
    let name = "archive verify";
    match &facts.verified {
        Err(why) => Item::new(name, false, Some(why.clone())),
        Ok(None) => Item::new(
            name,
            false,
            Some("never verified: run 'verify-wal --state FILE' (from cron)".into()),
        ),
        Ok(Some(last)) => {
            let age = Duration::try_from_secs_f64((facts.now - last.time).max(0.0))
                .unwrap_or(Duration::MAX);
            let when = format!("{} ago", human_duration(age));
            if last.ok {
                Item::new(name, true, Some(format!("{} files, {when}", last.files)))
            } else {
                let first = last.problems.first().map_or(String::new(), |p| {
                    let more = last.problems.len() - 1;
                    if more > 0 {
                        format!("; {p} (+{more} more)")
                    } else {
                        format!("; {p}")
                    }
                });
                Item::new(
                    name,
                    false,
                    Some(format!(
                        "{} of {} files failed{first}, {when}",
                        last.failed, last.files
                    )),
                )
            }
        }
    }
}

fn systemid(facts: &Facts) -> Item {
    let name = "systemid coherence";
    let Ok(server) = &facts.server else {
        return Item::new(name, true, Some("no system Id available".into()));
    };
    match &facts.archive.identity {
        Err(why) => Item::new(name, false, Some(why.clone())),
        Ok(None) => Item::new(name, true, Some("no system Id stored on disk".into())),
        Ok(Some((path, identity))) if identity.system_identifier != server.system_identifier => {
            Item::new(
                name,
                false,
                Some(format!(
                    "the system Id of the connected PostgreSQL server changed, stored in \
                     \"{}\" (the server's is {}, the archive's {})",
                    path.display(),
                    server.system_identifier,
                    identity.system_identifier
                )),
            )
        }
        Ok(Some((path, identity)))
            if !identity.version.is_empty() && identity.version != major_text(server.version) =>
        {
            Item::new(
                name,
                false,
                Some(format!(
                    "the archive holds PostgreSQL {} WAL (\"{}\"), the server is PostgreSQL {}",
                    identity.version,
                    path.display(),
                    major_text(server.version)
                )),
            )
        }
        Ok(Some(_)) => Item::new(name, true, None),
    }
}

/// The major release as PostgreSQL names it in WAL (`15`, `9.6`).
fn major_text(version: u32) -> String {
    if version >= 100_000 {
        (version / 10_000).to_string()
    } else {
        format!("{}.{}", version / 10_000, version / 100 % 100)
    }
}

fn archiving(server: &ServerFacts, items: &mut Vec<Item>) {
    let mode_ok = matches!(server.archive_mode.as_str(), "on" | "always");
    items.push(Item::new(
        "archive_mode",
        mode_ok,
        (!mode_ok).then(|| "please set it to 'on' or 'always'".into()),
    ));
    let command_set = !server.archive_command.is_empty() && server.archive_command != "(disabled)";
    if !command_set {
        items.push(Item::new(
            "archive_command",
            false,
            Some("please set it accordingly to documentation".into()),
        ));
        return;
    }
    items.push(Item::new("archive_command", true, None));
    let stats = &server.archiver;
    let failure = || {
        stats.last_failed_wal.as_ref().map(|wal| {
            format!(
                "{} failure(s) since the statistics were reset, the last on {wal}",
                stats.failed_count
            )
        })
    };
    match stats.is_archiving {
        Some(true) => items.push(Item::new("continuous archiving", true, None)),
        Some(false) => items.push(Item::new("continuous archiving", false, failure())),
        // Failed and never archived: Barman says nothing here; it is the worst case.
        None if stats.failed_count > 0 => items.push(Item::new(
            "continuous archiving",
            false,
            failure().map(|f| format!("{f}, and nothing archived")),
        )),
        None => {}
    }
}

fn streaming(expect: &Expect, facts: &Facts, items: &mut Vec<Item>) {
    let found = facts.pg_receivewal.as_ref();
    items.push(Item::new("pg_receivexlog", found.is_some(), None));
    let server_major = facts.server.as_ref().ok().map(|s| s.version / 10_000);
    let client_major = found.and_then(|f| f.major);
    let compatible =
        matches!((server_major, client_major), (Some(s), Some(c)) if s >= 10 && c >= s);
    items.push(Item::new(
        "pg_receivexlog compatible",
        compatible,
        (!compatible).then(|| {
            format!(
                "PostgreSQL version: {}, pg_receivexlog version: {}",
                facts
                    .server
                    .as_ref()
                    .map_or_else(|_| "Unknown".to_owned(), |s| version_text(s.version)),
                client_major.map_or_else(|| "None".to_owned(), |c| c.to_string())
            )
        }),
    ));
    let receiver = &facts.archive.receiver;
    let waiting = receiver
        .status
        .as_ref()
        .is_some_and(|status| status.state == "waiting");
    let ok = receiver.running && !waiting;
    let hint = (!ok).then(|| match (&receiver.unreadable, &receiver.status) {
        (Some(why), _) => why.clone(),
        (None, None) => format!(
            "no wal-receive has streamed for server {}: start 'wal-receive stream'",
            expect.server
        ),
        (None, Some(status)) => {
            let error = status
                .last_error
                .as_ref()
                .map_or(String::new(), |why| format!("; its last error: {why}"));
            if receiver.running {
                format!(
                    "wal-receive (pid {}) waits to restart pg_receivewal{error}",
                    status.pid
                )
            } else {
                format!("wal-receive (pid {}) is not running{error}", status.pid)
            }
        }
    });
    items.push(Item::new("receive-wal running", ok, hint));
}

/// `15.4` for 150004, `9.6.24` for 90624.
fn version_text(version: u32) -> String {
    if version >= 100_000 {
        format!("{}.{}", version / 10_000, version % 10_000)
    } else {
        format!(
            "{}.{}.{}",
            version / 10_000,
            version / 100 % 100,
            version % 100
        )
    }
}

/// Barman's `summarise_error_files`: `duplicates: 8, unknown: 2`, kinds in the order
/// first met; `None` for no files.
#[must_use]
#[allow(clippy::case_sensitive_file_extension_comparisons)] // Barman's suffixes, as it matches them
pub fn summarise_error_files(names: &[String]) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for name in names {
        let kind = if name.ends_with(".error") {
            "not relevant"
        } else if name.ends_with(".duplicate") {
            "duplicates"
        } else if name.ends_with(".unknown") {
            "unknown"
        } else {
            "unknown failure"
        };
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    (!counts.is_empty()).then(|| {
        counts
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{ArchiverStats, Catalogue, Queue, ReceiverFacts};
    use wal_core::pg::server::Slot;

    fn expect() -> Expect {
        Expect {
            server: "pg".into(),
            archiver: true,
            streaming: false,
            slot: None,
            max_age: Some(Duration::from_secs(3600)),
            max_queue: None,
            verify: false,
        }
    }

    fn server() -> ServerFacts {
        ServerFacts {
            version: 150_004,
            in_recovery: false,
            wal_level: "replica".into(),
            archive_mode: "on".into(),
            archive_command: "archive-command %p".into(),
            system_identifier: 7,
            archiver: ArchiverStats {
                archived_count: 3,
                is_archiving: Some(true),
                ..ArchiverStats::default()
            },
            slot: None,
        }
    }

    fn facts(newest: f64) -> Facts {
        Facts {
            archive: ArchiveFacts {
                catalogue: Ok(Catalogue {
                    count: 1,
                    total_size: 100,
                    newest_time: Some(newest).filter(|t| t.is_finite()),
                    ..Catalogue::default()
                }),
                incoming: Some(Queue {
                    dir: "/q".into(),
                    waiting: 0,
                }),
                streaming: None,
                errors: Vec::new(),
                identity: Ok(None),
                receiver: ReceiverFacts::default(),
                missing_archive: None,
            },
            server: Ok(server()),
            switch_error: None,
            pg_receivewal: None,
            verified: Ok(None),
            now: 1_000_000.0,
        }
    }

    fn find<'a>(items: &'a [Item], name: &str) -> &'a Item {
        items.iter().find(|i| i.name == name).unwrap()
    }

    /// A catalogue is input: times that are no time never pass, never panic.
    #[test]
    fn catalogue_times_that_are_no_time_fail_the_age() {
        let ok = judge(&expect(), &facts(1_000_000.0 - 60.0));
        assert!(find(&ok, "wal maximum age").ok);
        for newest in [f64::NAN, f64::NEG_INFINITY, -1e300, 0.0] {
            let items = judge(&expect(), &facts(newest));
            assert!(!find(&items, "wal maximum age").ok, "{newest}");
        }
        assert!(!find(&judge(&expect(), &facts(f64::INFINITY)), "wal maximum age").ok);
        // In the future (a clock set wrong): no age.
        assert!(
            find(
                &judge(&expect(), &facts(1_000_000.0 + 1000.0)),
                "wal maximum age"
            )
            .ok
        );
    }

    /// The archive's identity against the server's: another system, another release.
    #[test]
    fn the_archives_identity_against_the_servers() {
        let with = |systemid: u64, version: &str| {
            let mut f = facts(1_000_000.0);
            f.archive.identity = Ok(Some((
                "/h/pg/identity.json".into(),
                wal_core::identity::Identity {
                    system_identifier: systemid,
                    version: version.into(),
                },
            )));
            judge(&expect(), &f)
        };
        assert!(find(&with(7, "15"), "systemid coherence").ok);
        assert!(find(&with(7, ""), "systemid coherence").ok);
        let other = with(8, "15");
        assert!(
            find(&other, "systemid coherence")
                .hint
                .as_deref()
                .unwrap()
                .contains("changed")
        );
        let older = with(7, "14");
        let item = find(&older, "systemid coherence");
        assert!(!item.ok);
        assert_eq!(
            item.hint.as_deref(),
            Some(
                "the archive holds PostgreSQL 14 WAL (\"/h/pg/identity.json\"), the server is PostgreSQL 15"
            )
        );
        assert_eq!(major_text(90_624), "9.6");
    }

    /// Failed and never archived: Barman is silent; walpipe fails the item, naming the
    /// failures.
    #[test]
    fn archiving_that_never_worked_fails() {
        let mut broken = facts(1_000_000.0);
        let stats = &mut broken.server.as_mut().unwrap().archiver;
        *stats = ArchiverStats {
            archived_count: 0,
            last_archived_wal: None,
            failed_count: 4,
            last_failed_wal: Some("000000010000000000000001".into()),
            is_archiving: None,
        };
        let items = judge(&expect(), &broken);
        let item = find(&items, "continuous archiving");
        assert!(!item.ok);
        assert_eq!(
            item.hint.as_deref(),
            Some(
                "4 failure(s) since the statistics were reset, the last on \
                 000000010000000000000001, and nothing archived"
            )
        );
    }

    /// The order is Barman's, items Barman prints only on failure stay out when they
    /// pass, and the streaming items come only with the streaming archiver.
    #[test]
    fn barmans_order_and_items() {
        let mut with_slot = expect();
        with_slot.slot = Some("walpipe".into());
        with_slot.streaming = true;
        let mut seen = facts(1_000_000.0);
        seen.server.as_mut().unwrap().slot = Some(Slot {
            active: true,
            restart_lsn: Some(1),
        });
        let names: Vec<String> = judge(&with_slot, &seen)
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(
            names,
            [
                "WAL archive",
                "PostgreSQL",
                "wal_level",
                "replication slot",
                "wal maximum age",
                "wal size",
                "systemid coherence",
                "archive_mode",
                "archive_command",
                "continuous archiving",
                "pg_receivexlog",
                "pg_receivexlog compatible",
                "receive-wal running",
                "archiver errors",
            ]
        );
        assert_eq!(
            summarise_error_files(&[
                "a.unknown".into(),
                "b.duplicate".into(),
                "c.duplicate".into(),
                "d.error".into(),
                "e.strange".into(),
            ])
            .as_deref(),
            Some("unknown: 1, duplicates: 2, not relevant: 1, unknown failure: 1")
        );
        assert_eq!(summarise_error_files(&[]), None);
    }
}
