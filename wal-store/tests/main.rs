//! wal-store's integration tests: the binary over real files and NDJSON streams.

mod cloud;
mod common;
mod delete;
mod get;
mod put;
mod rebuild;
