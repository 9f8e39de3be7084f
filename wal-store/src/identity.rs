//! The PostgreSQL system an archive belongs to, so that two clusters never mix their WAL.
//!
//! Every WAL segment names the cluster that wrote it (`xlp_sysid` in its long page
//! header) and, through its page magic, the major release. An archive remembers both in
//! Barman's own identity file, `<home>/<server>/identity.json`
//! (`{"systemid": "<digits>", "version": "15"}`, which `barman check` compares as
//! "systemid coherence"); for an archive outside Barman's layout the file is
//! `<archive>/<server>-identity.json`. `put` writes it, create-only and durably, from the
//! first segment it stores when it is missing, and refuses every later segment whose
//! header names another system or release, with both identifiers in one line: a second
//! cluster pointed at the same archive by mistake is stopped at its first WAL, and the
//! first cluster goes on archiving.
//!
//! What cannot be seen is not checked: an encrypted file's header (wal-store holds no
//! key), and cloud archives, which have no identity file in Barman's layout.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wal_core::durable;
use wal_core::error::Result;
use wal_core::layout::ServerLayout;
use wal_core::shape::LongHeader;
use wal_core::{WalError, WalName};

/// An archive's system: its identifier and major release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The PostgreSQL system identifier.
    pub system_identifier: u64,
    /// The major release, as PostgreSQL writes it (`15`, `9.6`).
    pub version: String,
}

/// Barman's file, as `json.dump(..., indent=4, sort_keys=True)` writes it.
#[derive(Debug, Deserialize)]
struct IdentityFile {
    systemid: String,
    version: Option<String>,
}

/// Where the identity of the archive of `layout` lives: Barman's place when the archive
/// is `<home>/<server>/wals`, else beside xlog.db in the archive. For a store into the
/// incoming queue (archive-command's hand-off, `layout.wals` being that queue), the
/// identity of the archive beside it: `<home>/<server>/identity.json` when the queue is
/// `<home>/<server>/incoming`, else none.
#[must_use]
pub fn path_for(layout: &ServerLayout, into_queue: bool) -> Option<PathBuf> {
    let dir_name = if into_queue { "incoming" } else { "wals" };
    let server_dir = layout.wals.parent().filter(|dir| {
        layout.wals.file_name() == Some(dir_name.as_ref())
            && dir.file_name() == Some(layout.server.as_ref())
    });
    match (server_dir, into_queue) {
        (Some(dir), _) => Some(dir.join("identity.json")),
        (None, true) => None,
        (None, false) => Some(layout.wals.join(format!("{}-identity.json", layout.server))),
    }
}

/// The archive's identity as written at `path`, if any.
pub fn load(path: &Path) -> Result<Option<Identity>> {
    let unusable = |why: String| {
        WalError::Config(format!(
            "{}: not an identity file ({why}): fix or remove it",
            path.display()
        ))
    };
    // Never through a link, never a fifo: a few hundred bytes of a regular file.
    let mut text = Vec::new();
    match durable::open_regular(path) {
        Ok(file) => file
            .take(64 * 1024)
            .read_to_end(&mut text)
            .map_err(|e| WalError::io("cannot read", path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Err(unusable(e.to_string())),
        Err(e) => return Err(WalError::io("cannot read", path, e)),
    };
    let file: IdentityFile = serde_json::from_slice(&text).map_err(|e| unusable(e.to_string()))?;
    let system_identifier = file
        .systemid
        .parse()
        .map_err(|_| unusable(format!("systemid {:?} is not a number", file.systemid)))?;
    Ok(Some(Identity {
        system_identifier,
        version: file.version.unwrap_or_default(),
    }))
}

/// Writes `header`'s identity at `path` unless one is there already (another writer may
/// have been first); returns the identity the archive now has.
pub fn record(path: &Path, header: &LongHeader) -> Result<Identity> {
    let text = format!(
        "{{\n    \"systemid\": \"{}\",\n    \"version\": \"{}\"\n}}\n",
        header.system_identifier, header.pg_version
    );
    if let Some(dir) = path.parent() {
        durable::create_dir_durably(dir)?;
    }
    match durable::write_new_durably(path, |file| file.write_all(text.as_bytes())) {
        Ok(()) => Ok(Identity {
            system_identifier: header.system_identifier,
            version: header.pg_version.to_string(),
        }),
        Err(WalError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            load(path)?.ok_or_else(|| {
                WalError::Temporary(format!("{}: created, then gone", path.display()))
            })
        }
        Err(err) => Err(err),
    }
}

/// Refuses `header` (of the WAL `name`) unless it belongs to `identity`'s system and
/// release.
pub fn check(identity: &Identity, header: &LongHeader, name: &WalName, path: &Path) -> Result<()> {
    if header.system_identifier != identity.system_identifier {
        return Err(WalError::Config(format!(
            "{name}: belongs to PostgreSQL system {}, but this archive belongs to system {} \
             ({}): another cluster's WAL is never stored here",
            header.system_identifier,
            identity.system_identifier,
            path.display()
        )));
    }
    if !identity.version.is_empty() && header.pg_version != identity.version {
        return Err(WalError::Config(format!(
            "{name}: is PostgreSQL {} WAL, but this archive holds PostgreSQL {} ({}): \
             a new major release needs a new archive",
            header.pg_version,
            identity.version,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn the_file_is_barmans_beside_wals_else_in_the_archive() {
        let barman = ServerLayout::barman(Path::new("/b"), "pg");
        assert_eq!(
            path_for(&barman, false).unwrap(),
            Path::new("/b/pg/identity.json")
        );
        let other = ServerLayout::from_archive(Path::new("/srv/archive"), "pg");
        assert_eq!(
            path_for(&other, false).unwrap(),
            Path::new("/srv/archive/pg-identity.json")
        );
        let queue = ServerLayout::from_archive(Path::new("/b/pg/incoming"), "pg");
        assert_eq!(
            path_for(&queue, true).unwrap(),
            Path::new("/b/pg/identity.json")
        );
        let elsewhere = ServerLayout::from_archive(Path::new("/q"), "pg");
        assert!(path_for(&elsewhere, true).is_none());
    }

    #[test]
    fn reads_what_barman_writes_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.json");
        assert!(load(&path).unwrap().is_none());
        fs::write(
            &path,
            "{\n    \"systemid\": \"7390123456789012345\",\n    \"version\": \"15\"\n}\n",
        )
        .unwrap();
        assert_eq!(
            load(&path).unwrap(),
            Some(Identity {
                system_identifier: 7_390_123_456_789_012_345,
                version: "15".into()
            })
        );
        for garbage in ["", "{}", "{\"systemid\": \"x\"}", "\u{0}\u{1}"] {
            fs::write(&path, garbage).unwrap();
            assert_eq!(
                load(&path).unwrap_err().kind(),
                wal_core::ErrorKind::Config,
                "{garbage:?}"
            );
        }
    }
}
