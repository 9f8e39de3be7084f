//! walpipe's shared, dev-only test kit.
//!
//! Every crate's integration tests build on the same few pieces, so they live here once
//! (as uutils' `uutests` and ripgrep's `tests/util.rs` do) instead of being copied around:
//!
//! * [`paths`]: where the workspace, its built binaries and its scripts are;
//! * [`WorkDir`]: a short temporary directory the `postgres` user can use;
//! * [`PgCluster`]: a real, throwaway PostgreSQL 15 server (see [`pg`] for the conventions
//!   it follows);
//! * [`pitr`]: point-in-time recovery of such a server, the scenario every restore test
//!   runs against its archive;
//! * [`wal_fixtures`] and [`synthetic_segment`]: real and synthetic WAL segments;
//! * [`clean_command`]: hermetic child processes (no inherited `WALPIPE_*`/`PG*`);
//! * [`ndjson`]: records to feed a stage and records read back from it;
//! * [`stage`]: records for files a test wrote, a stage run on them to an expected exit
//!   status, the files its records point at, and stock CLIs used as filters;
//! * [`wrappers`]: the wrapper scripts run against the built binaries, and readers for
//!   the archive they fill (hash directories, xlog.db, zstd);
//! * [`cloud`]: real object-storage servers on loopback ([`Garage`], [`GarageCluster`]
//!   for S3, [`Azurite`] for Azure Blob, [`FakeGcs`] for Google Cloud Storage) and
//!   independent readers of what they hold;
//! * [`crash`]: SIGKILL at seeded random moments, for the convergence tests of the local
//!   and the cloud archive; [`convergence`]: the WAL they queue and the invariants both
//!   check after every kill;
//! * [`S3Reader`]: one long-lived botocore process reading a Garage bucket, for tests
//!   that look at it after every kill (the `aws` CLI costs a second a call);
//! * [`Gpg`]: a key pair made by the real GnuPG, and the real `gpg` to decrypt with it;
//! * [`spool`]: waiting for `restore-wal --prefetch`'s background workers;
//! * [`watchdog`]: a command run to its end, killed (and the test failed) if it hangs;
//! * [`Snapshot`]: a directory tree as it was, to prove a run left it alone.
//!
//! It is not a place for walpipe logic: it depends on no walpipe crate but `wal-core`,
//! and nothing outside `dev-dependencies` may depend on it.

pub mod cloud;
pub mod convergence;
pub mod crash;
pub mod fixtures;
pub mod gpg;
pub mod hermetic;
pub mod ndjson;
pub mod paths;
pub mod pg;
pub mod pitr;
pub mod receiver;
pub mod s3reader;
pub mod snapshot;
pub mod spool;
pub mod stage;
pub mod venv;
pub mod watchdog;
pub mod workdir;
pub mod wrappers;

pub use cloud::{Azurite, FakeGcs, Garage, GarageCluster};
pub use fixtures::{
    PG15_PAGE_MAGIC, SEGMENT_SIZE, TEST_SYSTEM_ID, history_file, segment_name, synthetic_segment,
    wal_cache_dir, wal_fixture_files, wal_fixture_segments, wal_fixtures, wal_segment,
    wal_segment_of, wal_segment_sized, write_file,
};
pub use gpg::Gpg;
pub use hermetic::{clean_cloud_command, clean_command};
pub use ndjson::{ndjson, parse_records};
pub use paths::{script, target_bin, workspace_root};
pub use pg::{PgCluster, as_postgres, pg_bin, pg_bindir};
pub use s3reader::S3Reader;
pub use snapshot::Snapshot;
pub use workdir::{WorkDir, postgres_owner, running_as_root};
