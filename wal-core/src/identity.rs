//! The PostgreSQL system an archive belongs to, so that two clusters never mix their WAL
//! and a check can compare a live server with its archive.
//!
//! Every WAL segment names the cluster that wrote it (`xlp_sysid` in its long page
//! header) and, through its page magic, the major release. An archive remembers both in
//! Barman's own identity file, `<home>/<server>/identity.json`
//! (`{"systemid": "<digits>", "version": "15"}`, which `barman check` compares as
//! "systemid coherence"); for an archive outside Barman's layout the file is
//! `<archive>/<server>-identity.json`. wal-store writes it and refuses WAL of another
//! system; wal-check compares it with the server's `pg_control_system()`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::durable;
use crate::error::{Result, WalError};
use crate::layout::ServerLayout;

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
                crate::ErrorKind::Config,
                "{garbage:?}"
            );
        }
    }
}
