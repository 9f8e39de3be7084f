//! walpipe's shared core.
//!
//! Everything here is used by at least two of walpipe's binaries (the admission rule for
//! this crate: what only one binary uses stays in that binary): the WAL record and its
//! NDJSON stream (`docs/records.md`), the stage driver
//! every binary runs on, WAL file names, the compression registry, the xlog.db catalogue,
//! durable file operations, locks, errors and exit codes, and the logger every
//! diagnostic line goes through. Behind features, the parts only
//! some binaries need: the codecs (`codec`), the command line's shared step and layout
//! flags (`cli`, the only part that sees argv), a child process stopped with the tool
//! on a signal (`child`), the SQL connection to PostgreSQL (`pg`), and the progress
//! counter drawn on a terminal (`progress`).
#![deny(missing_docs)]

pub mod blame;
pub mod compression;
pub mod durable;
pub mod error;
pub mod exit;
pub mod identity;
pub mod layout;
pub mod lock;
pub mod log;
pub mod lookahead;
pub mod names;
pub mod openpgp;
pub mod private;
pub mod process;
pub mod receiver;
pub mod record;
pub mod shape;
pub mod stage;
pub mod temp;
pub mod trust;
pub mod verified;
pub mod xlogdb;

#[cfg(feature = "child")]
pub mod child;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "codec")]
pub mod codec;
#[cfg(feature = "pg")]
pub mod pg;
#[cfg(feature = "progress")]
pub mod progress;

pub use compression::Compression;
pub use error::{ErrorKind, WalError};
pub use exit::ExitCode;
pub use names::{WalKind, WalName};
pub use record::{Outcome, RecordError, WalRecord};
