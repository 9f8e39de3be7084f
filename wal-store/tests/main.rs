//! wal-store's integration tests: the binary over real files and NDJSON streams.

// Runs every provider against its server (or its configuration checks): only in a build
// with all of them, as the default features are.
#[cfg(all(feature = "aws", feature = "azure", feature = "gcp"))]
mod cloud;
mod common;
mod delete;
mod get;
mod put;
mod rebuild;
