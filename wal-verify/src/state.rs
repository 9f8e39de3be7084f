//! `--state FILE`: what an earlier run verified, so that a re-run over an unchanged
//! archive costs a listing and a `stat` per file, not a re-read.
//!
//! Each file verified whole is remembered with what identifies its stored bytes (a local
//! file's size, modification time to the nanosecond and inode; a cloud object's URL and
//! entity tag, from the listing), what the archive-wide checks need of it (a segment's
//! long header, a history file's switch points), and whether it was verified `--deep`.
//! The identity is the stored file's, never a decrypted or downloaded copy's. A later run
//! takes a file as verified when all of that still holds (and the run asks no deeper
//! check); anything else is read again. A file rewritten in place with the same size and
//! a forged time is not seen: `--full` reads everything.
//! The file is replaced whole at the end of a run (written beside, fsynced, renamed):
//! a first line with the run's verdict (wal-check reads it alone), then a line per file.
//! A file there that is not a state is refused before any work and never replaced (a
//! `--state` typed as the catalogue or a segment must not cost them).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Value, json};
use wal_core::WalRecord;
use wal_core::durable;
use wal_core::error::Result;
use wal_core::names::{SegmentSize, WalName};
use wal_core::shape::{LongHeader, pg_version_of_magic};
use wal_core::trust::Territory;

use crate::file::Verified;

/// The longest line of a state (a file's line is about 300 bytes; the verdict's grows
/// with the problems found, each cut short).
const LINE_MAX: u64 = 16 << 20;

/// The state's format: 3 since `--deep` checks record CRCs (a version 2 state is read,
/// its deep entries taken as shallow).
const VERSION: u64 = 3;

/// What identifies a stored file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A local file: its size, modification time to the nanosecond, inode.
    File {
        size: u64,
        mtime_ns: i128,
        inode: u64,
    },
    /// A cloud object: its URL and entity tag (which changes whenever its bytes do).
    Object { url: String, etag: String },
}

impl Identity {
    /// The identity of the file at `path` (not following a link).
    #[must_use]
    pub fn of(path: &Path) -> Option<Identity> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        meta.file_type().is_file().then(|| Identity::File {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        })
    }

    /// The identity of what `record` was listed from: the stored file (`stored_at`), not
    /// a decrypted or downloaded copy of it; a cloud object by its listing's entity tag.
    /// The stored file stands for what is read only when `path` is that file, or a copy
    /// an earlier stage made of it (one of the record's `temps`, in `territory`'s temp
    /// directory); else the identity is `path`'s own (a record whose `stored_at` and
    /// `path` disagree proves nothing about the stored file).
    #[must_use]
    pub fn of_record(record: &WalRecord, territory: &Territory) -> Option<Identity> {
        let path = record.path.as_deref();
        let stored = record.stored_at.as_deref();
        let a_copy = |path: &Path| {
            record.temps.iter().any(|temp| temp == path)
                && territory.temp_file(path, &record.name).is_ok()
        };
        let stands_for_path = path.is_none_or(|path| Some(path) == stored || a_copy(path));
        match (&record.etag, stored) {
            (Some(etag), Some(url)) if stands_for_path => Some(Identity::Object {
                url: url.to_str()?.to_owned(),
                etag: etag.clone(),
            }),
            (None, Some(stored)) if stored.is_absolute() && stands_for_path => Identity::of(stored),
            _ => path.and_then(Identity::of),
        }
    }
}

/// One remembered file.
#[derive(Debug, Clone)]
struct Entry {
    identity: Identity,
    deep: bool,
    verified: Verified,
}

/// The remembered files, by name.
#[derive(Debug, Default)]
pub struct State {
    entries: BTreeMap<String, Entry>,
}

impl State {
    /// The state at `path`: empty when there is none. A file there that is not a
    /// wal-verify state (the catalogue, a segment, anything typed by mistake) is refused
    /// before any work, since the run replaces the state whole at its end. Read line by
    /// line (a line per file), never whole.
    pub fn load(path: &Path) -> Result<State> {
        let file = match durable::open_regular(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(unusable(path, &e.to_string())),
        };
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        let mut entries = BTreeMap::new();
        let mut version = VERSION;
        for index in 0u64.. {
            line.clear();
            let read = std::io::BufRead::read_until(
                &mut std::io::Read::take(&mut reader, LINE_MAX + 1),
                b'\n',
                &mut line,
            );
            match read {
                Ok(0) if index > 0 => break,
                Ok(n) if n as u64 > LINE_MAX => {
                    return Err(unusable(
                        path,
                        &format!("line {} is over {LINE_MAX} bytes", index + 1),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(unusable(path, &e.to_string())),
            }
            let value: Option<Value> = serde_json::from_slice(&line).ok();
            let parsed = if index == 0 {
                value
                    .and_then(|v| v["wal_verify_state"].as_u64())
                    .filter(|v| (2..=VERSION).contains(v))
                    .map(|v| version = v)
            } else {
                value
                    .as_ref()
                    .and_then(parse_entry)
                    .map(|(name, mut entry)| {
                        // Version 2's --deep checked page headers, not record CRCs.
                        entry.deep &= version >= 3;
                        entries.insert(name, entry);
                    })
            };
            if parsed.is_none() {
                return Err(unusable(
                    path,
                    &format!("line {}: not a wal-verify state", index + 1),
                ));
            }
        }
        Ok(State { entries })
    }

    /// What was verified of `name`, if its file is still the one verified (and it was
    /// verified at least as deep as asked).
    #[must_use]
    pub fn known(&self, name: &str, identity: &Identity, deep: bool) -> Option<&Verified> {
        self.entries
            .get(name)
            .filter(|e| e.identity == *identity && (e.deep || !deep))
            .map(|e| &e.verified)
    }

    /// Remembers `verified`, whose file had `identity`.
    pub fn remember(&mut self, identity: Identity, deep: bool, verified: Verified) {
        self.entries.insert(
            verified.name.as_str().to_owned(),
            Entry {
                identity,
                deep,
                verified,
            },
        );
    }

    /// Keeps only the names in `present` (files gone since are forgotten).
    pub fn retain(&mut self, present: &std::collections::BTreeSet<String>) {
        self.entries.retain(|name, _| present.contains(name));
    }

    /// Writes the state to `path`, whole and durably: a first line with the run's
    /// verdict (what wal-check reads, without reading the rest), then a line per file.
    pub fn save(&self, path: &Path, last_run: &wal_core::verified::LastRun) -> Result<()> {
        durable::replace_durably(path, |file| {
            let mut out = std::io::BufWriter::new(file);
            let first = json!({
                "wal_verify_state": VERSION,
                (wal_core::verified::LAST_RUN_KEY): last_run,
            });
            serde_json::to_writer(&mut out, &first)?;
            out.write_all(b"\n")?;
            for (name, e) in &self.entries {
                let header = e.verified.header.map(|h| {
                    json!({
                        "magic": h.magic, "info": h.info, "timeline": h.timeline,
                        "page_address": h.page_address.to_string(),
                        "system_identifier": h.system_identifier.to_string(),
                        "segment_size": h.segment_size.bytes(), "block_size": h.block_size,
                    })
                });
                let mut line = match &e.identity {
                    Identity::File {
                        size,
                        mtime_ns,
                        inode,
                    } => json!({"size": size, "mtime_ns": mtime_ns.to_string(), "inode": inode}),
                    Identity::Object { url, etag } => json!({"url": url, "etag": etag}),
                };
                if let Some(fields) = line.as_object_mut() {
                    let switches: Vec<Value> = e
                        .verified
                        .switches
                        .iter()
                        .map(|(parent, lsn)| json!([parent, lsn.to_string()]))
                        .collect();
                    fields.insert("name".to_owned(), json!(name));
                    fields.insert("deep".to_owned(), json!(e.deep));
                    fields.insert("header".to_owned(), header.unwrap_or(Value::Null));
                    fields.insert("switches".to_owned(), Value::Array(switches));
                }
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
            out.flush()
        })
    }
}

/// A state file that is not one: refused (78), never replaced.
fn unusable(path: &Path, why: &str) -> wal_core::WalError {
    wal_core::WalError::Config(format!(
        "--state {}: {why}: refused, it is not replaced (give a new file, or remove it)",
        path.display()
    ))
}

fn parse_entry(e: &Value) -> Option<(String, Entry)> {
    let name = e["name"].as_str()?.to_owned();
    let number = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok());
    let header = match &e["header"] {
        Value::Null => None,
        h => {
            let magic = u16::try_from(number(&h["magic"])?).ok()?;
            Some(LongHeader {
                magic,
                info: u16::try_from(number(&h["info"])?).ok()?,
                timeline: u32::try_from(number(&h["timeline"])?).ok()?,
                page_address: number(&h["page_address"])?,
                system_identifier: number(&h["system_identifier"])?,
                segment_size: SegmentSize::new(number(&h["segment_size"])?).ok()?,
                block_size: u32::try_from(number(&h["block_size"])?).ok()?,
                pg_version: pg_version_of_magic(magic)?,
            })
        }
    };
    let switches = e["switches"]
        .as_array()?
        .iter()
        .map(|s| Some((u32::try_from(number(&s[0])?).ok()?, number(&s[1])?)))
        .collect::<Option<Vec<_>>>()?;
    let identity = match e["etag"].as_str() {
        Some(etag) => Identity::Object {
            url: e["url"].as_str()?.to_owned(),
            etag: etag.to_owned(),
        },
        None => Identity::File {
            size: number(&e["size"])?,
            mtime_ns: e["mtime_ns"].as_str()?.parse().ok()?,
            inode: number(&e["inode"])?,
        },
    };
    let verified = Verified {
        name: WalName::parse_file_name(&name).ok()?,
        header,
        switches,
    };
    Some((
        name,
        Entry {
            identity,
            deep: e["deep"].as_bool()?,
            verified,
        },
    ))
}
