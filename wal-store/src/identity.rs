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

use std::io::{self, Write};
use std::path::Path;

use wal_core::durable;
use wal_core::error::Result;
use wal_core::identity::{Identity, load};
use wal_core::shape::LongHeader;
use wal_core::{WalError, WalName};

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
