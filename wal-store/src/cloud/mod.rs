//! Cloud archives: S3 (and S3-compatible servers), Azure Blob Storage, Google Cloud
//! Storage, through object_store on a current-thread tokio runtime that lives only here.
//!
//! wal-store's subcommands keep their local behaviour and records; this module gives them
//! the few operations a cloud archive needs, each bounded in time: find the objects of a
//! WAL name (one raw-prefix listing, whatever extension Barman or walpipe gave them),
//! upload without replacing, download to a file, delete, list the whole archive.
//!
//! Every failure of the store is `temporary` (exit 75: PostgreSQL, or the operator, will
//! retry), except an object that is not there. A missing bucket is a failure, never an
//! empty archive: a restore must not read "bucket gone" as "no more WAL". A failure of
//! the store itself (not of one object) fails the rest of the stream at once
//! ([`failure::Breaker`]), and every failure is told in one short line
//! ([`failure::Failure`]).

#[cfg(feature = "azure")]
mod azure;
pub mod connect;
pub mod download;
pub mod failure;
#[cfg(feature = "gcp")]
mod gcs;
pub mod location;
#[cfg(feature = "aws")]
mod s3;

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::list::PaginatedListOptions;
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use wal_core::durable;
use wal_core::error::{IoContext, Result};
use wal_core::temp::TempFile;
use wal_core::xlogdb::Xlogdb;
use wal_core::{WalError, WalName};

use self::connect::{CloudOptions, Connection};
use self::failure::{Breaker, Failure, Scope};
use self::location::{CloudLocation, KeyInfo, parse_key};

/// A cloud archive and what goes with it locally.
#[derive(Debug, Clone)]
pub struct CloudTarget {
    /// Bucket and prefix.
    pub location: CloudLocation,
    /// Server name (the key component after the prefix).
    pub server: String,
    /// Client settings.
    pub options: CloudOptions,
    /// The local catalogue (`--xlogdb`), if any: Barman keeps a cloud archive's in the
    /// server's meta directory.
    pub xlogdb: Option<Xlogdb>,
    /// Where a conflicting source goes (`--errors-dir`); without it a conflict fails the
    /// record and leaves the source where it is.
    pub errors: Option<PathBuf>,
    /// The local incoming queue (`--incoming`), if any: sources are removed only from a queue.
    pub incoming: Option<PathBuf>,
    /// The local streaming queue (`--streaming`), if any.
    pub streaming: Option<PathBuf>,
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its last-modified time, seconds since the epoch.
    pub time: f64,
    /// Its entity tag, when the store gave one.
    pub etag: Option<String>,
    /// What its key says.
    pub info: KeyInfo,
}

/// How an upload went.
#[derive(Debug)]
pub enum Upload {
    /// The object is new, of this many bytes.
    Created(u64),
    /// An object with that key was already there (nothing was replaced).
    Exists,
}

/// A connected cloud archive.
pub struct Bucket<'a> {
    /// What it is.
    pub target: &'a CloudTarget,
    connection: Connection,
    runtime: tokio::runtime::Runtime,
    /// Open until the store itself fails; then no record is tried any more.
    breaker: Breaker,
}

impl std::fmt::Debug for Bucket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({})", self.target.location)
    }
}

impl<'a> Bucket<'a> {
    /// Builds the client (no request is made yet).
    pub fn open(target: &'a CloudTarget) -> Result<Bucket<'a>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| WalError::Internal(format!("cannot start the I/O runtime: {e}")))?;
        // reqwest's client must be built inside the runtime it will run on.
        let connection = {
            let _guard = runtime.enter();
            connect::connect(&target.location, &target.options)?
        };
        Ok(Bucket {
            target,
            connection,
            runtime,
            breaker: Breaker::default(),
        })
    }

    /// Runs `future` to completion on this archive's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Records in flight at once.
    #[must_use]
    pub fn jobs(&self) -> usize {
        self.target.options.jobs.max(1)
    }

    /// `s3://bucket/key`, for records and messages.
    #[must_use]
    pub fn url(&self, key: &str) -> String {
        self.target.location.url_of(key)
    }

    /// Where a WAL name lives in the archive (`s3://bucket/prefix/server/wals/hash/name`),
    /// for messages about it; the bare name when it is not a WAL name.
    #[must_use]
    pub fn name_url(&self, name: &str) -> String {
        match WalName::parse(name) {
            Ok(wal) => self.url(&self.target.location.name_prefix(&self.target.server, &wal)),
            Err(_) => self.url(name),
        }
    }

    /// The key `name` gets, stored as the record says.
    #[must_use]
    pub fn key_for(&self, record: &wal_core::WalRecord, name: &WalName) -> String {
        self.target.location.key(
            &self.target.server,
            name,
            record.compression,
            record.encryption,
        )
    }

    /// Runs one record's `work` (`what`: the place it is about, for messages) within the
    /// per-record deadline; running out of time is `temporary`, and a failure of the
    /// store. Once the store has failed, `work` is not started: the record fails at once,
    /// `temporary`, naming the WAL whose record failed first.
    pub async fn bounded<T>(&self, what: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.breaker.check(what)?;
        let deadline = self.target.options.deadline;
        let Ok(result) = tokio::time::timeout(deadline, work).await else {
            let cause = format!("no answer within {}", seconds(deadline));
            self.breaker.trip(what, &cause);
            return Err(WalError::Temporary(format!(
                "{what}: no answer from the store within {}",
                seconds(deadline)
            )));
        };
        result
    }

    /// The objects of `name` (any extension), in key order.
    pub async fn find(&self, name: &WalName) -> Result<Vec<StoredObject>> {
        self.find_with_partial(name, false).await
    }

    /// The objects of `wal`, and with `partial` those of `<wal>.partial` too (the same
    /// listing: the partial's keys share the segment's prefix).
    pub async fn find_with_partial(
        &self,
        wal: &WalName,
        partial: bool,
    ) -> Result<Vec<StoredObject>> {
        let whole = self.target.location.name_prefix(&self.target.server, wal);
        // One character short: object_store's Azure lister drops a blob whose name
        // equals the prefix (an uncompressed WAL's key); the siblings this lets in are
        // filtered out by name below. Messages name the WAL's own prefix.
        let prefix = &whole[..whole.len() - 1];
        let partial_name = format!("{wal}.partial");
        let (mut found, _) = self.list_raw(prefix, &whole).await?;
        found.retain(|object| {
            let name = object.info.name.as_str();
            name == wal.as_str() || (partial && name == partial_name)
        });
        Ok(found)
    }

    /// Every WAL object of the archive, in name order; keys under `wals/` that are not
    /// WAL are returned apart.
    pub async fn list_wals(&self) -> Result<(Vec<StoredObject>, Vec<String>)> {
        let prefix = format!("{}/", self.target.location.wals_dir(&self.target.server));
        let (mut wals, others) = self.list_raw(&prefix, &prefix).await?;
        wals.sort_by(|a, b| {
            a.info
                .name
                .as_str()
                .cmp(b.info.name.as_str())
                .then(a.key.cmp(&b.key))
        });
        Ok((wals, others))
    }

    /// Lists keys starting with `prefix` (no delimiter), page by page; a failure names
    /// `shown`, the place the caller is looking for.
    async fn list_raw(
        &self,
        prefix: &str,
        shown: &str,
    ) -> Result<(Vec<StoredObject>, Vec<String>)> {
        let mut wals = Vec::new();
        let mut others = Vec::new();
        let mut page_token = None;
        loop {
            let options = PaginatedListOptions {
                page_token: page_token.take(),
                ..PaginatedListOptions::default()
            };
            let page = self
                .connection
                .lister
                .list_paginated(Some(prefix), options)
                .await
                .map_err(|e| self.list_error(shown, &e))?;
            for meta in page.result.objects {
                let key = meta.location.to_string();
                match parse_key(&key) {
                    Some(info) => wals.push(StoredObject {
                        time: meta.last_modified.timestamp_micros() as f64 / 1e6,
                        size: meta.size,
                        etag: meta.e_tag,
                        key,
                        info,
                    }),
                    None => others.push(key),
                }
            }
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        Ok((wals, others))
    }

    /// A listing that fails, even with "not found", is a failure of the store: a
    /// listing is of no one object, and S3 and Azure answer 404 to one only when the
    /// bucket or container does not exist.
    fn list_error(&self, prefix: &str, err: &object_store::Error) -> WalError {
        let what = self.url(prefix);
        let failure = Failure::of(err);
        // Said in the service's words when it names the missing bucket, else in ours.
        let cause = match (err, failure.status) {
            (object_store::Error::NotFound { .. }, _) | (_, Some(404))
                if failure.scope == Scope::Object =>
            {
                format!(
                    "the bucket or container {} does not exist ({})",
                    self.target.location.bucket, failure.text
                )
            }
            _ => failure.text,
        };
        // A 404 to a listing is the bucket's; another answer about this one prefix (a 400,
        // a key object_store cannot parse) says nothing of the next WAL's.
        let missing_bucket =
            matches!(err, object_store::Error::NotFound { .. }) || failure.status == Some(404);
        if failure.scope == Scope::Store || missing_bucket {
            self.breaker.trip(prefix, &cause);
        }
        WalError::Temporary(format!("cannot list {what}: {cause}"))
    }

    /// Uploads the file at `path` as `key`, never replacing an object.
    ///
    /// Up to the part size, one create-only PUT (S3 `If-None-Match: *`, Azure and GCS
    /// preconditions). Larger files go up in parts, which no service can make
    /// create-only: the caller has listed the name first, so only a concurrent writer of
    /// the same WAL could slip in between.
    pub async fn upload(&self, path: &Path, key: &str) -> Result<Upload> {
        let part_size = self.target.options.part_size.max(5 << 20);
        let location = ObjectPath::from(key);
        let size = std::fs::metadata(path).context("cannot stat", path)?.len();
        let store = &self.connection.store;
        let result = if size <= part_size as u64 {
            let body = read_file(path).await?;
            store
                .put_opts(
                    &location,
                    PutPayload::from(body),
                    PutOptions::from(PutMode::Create),
                )
                .await
                .map(|_| ())
        } else {
            let upload = store
                .put_multipart_opts(&location, PutMultipartOptions::default())
                .await
                .map_err(|e| self.store_error("cannot upload to", key, &e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
            if let Err(e) = self.write_parts(&mut writer, part_size, path, key).await {
                // The parts sent so far would stay, billed, until a lifecycle rule or an
                // abort removes them (finish aborts by itself when it fails).
                let _ = writer.abort().await;
                return Err(e);
            }
            writer.finish().await.map(|_| ())
        };
        match result {
            Ok(()) => Ok(Upload::Created(size)),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Upload::Exists),
            // "Not found" from an upload is never "no such WAL" (exit 66): a multipart
            // upload the store lost (NoSuchUpload) is retried like any store failure.
            Err(e @ object_store::Error::NotFound { .. }) => Err(WalError::Temporary(format!(
                "cannot upload to {}: {}",
                self.url(key),
                Failure::of(&e).text
            ))),
            Err(e) => Err(self.store_error("cannot upload to", key, &e)),
        }
    }

    /// Reads the file at `path` into `writer`'s parts of `part_size`, at most a few parts
    /// in flight.
    async fn write_parts(
        &self,
        writer: &mut WriteMultipart,
        part_size: usize,
        path: &Path,
        key: &str,
    ) -> Result<()> {
        let mut file = wal_core::durable::open_wal(path)?;
        let mut buffer = vec![0u8; part_size.min(8 << 20)];
        loop {
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| self.store_error("cannot upload to", key, &e))?;
            let read = file.read(&mut buffer).context("cannot read", path)?;
            if read == 0 {
                return Ok(());
            }
            writer.write(&buffer[..read]);
        }
    }

    /// Downloads `key` into a new hidden file in `dir`, named for the WAL `name`, unique,
    /// and told apart by its `kind` ([`download::create`]); returns its path and byte
    /// count. The file is not fsynced (it is a temp: callers that keep it do); if anything
    /// fails, or the deadline drops the download half-way, it is removed.
    pub async fn download_temp(
        &self,
        key: &str,
        dir: &Path,
        name: &str,
        kind: download::Kind,
    ) -> Result<(PathBuf, u64)> {
        let (temp, file) = download::create(dir, name, kind)?;
        let size = self.download_into(key, file, temp.path()).await?;
        Ok((temp.keep(), size))
    }

    /// Downloads `key` to `dest` durably: a temp file beside it, fsync, rename without
    /// replacing, fsync the directory; nothing under `dest` if anything fails.
    pub async fn download_durably(&self, key: &str, dest: &Path) -> Result<u64> {
        let (temp, file) = TempFile::create(durable::temp_name_for(dest))?;
        let size = self.download_into(key, file, temp.path()).await?;
        durable::fsync_file(temp.path())?;
        durable::rename_no_replace(temp.path(), dest).context("cannot create", dest)?;
        let _ = temp.keep();
        durable::fsync_dir(durable::parent_of(dest))?;
        Ok(size)
    }

    /// Writes the object `key` into `file` (at `path`, for messages).
    async fn download_into(&self, key: &str, mut file: File, path: &Path) -> Result<u64> {
        let result = self
            .connection
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.store_error("cannot download", key, &e))?;
        let mut stream = result.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.store_error("cannot download", key, &e))?;
            file.write_all(&chunk).context("cannot write", path)?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// Deletes `key`; an object already gone counts as deleted (Azure answers 404 where
    /// S3 answers 204).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.connection.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error("cannot delete", key, &e)),
        }
    }

    /// A store failure on `key`: `not_found` for a missing object, else `temporary`,
    /// and when it is the store's (not the object's) the breaker trips.
    fn store_error(&self, action: &'static str, key: &str, err: &object_store::Error) -> WalError {
        let url = self.url(key);
        let failure = Failure::of(err);
        if failure.scope == Scope::Store {
            self.breaker.trip(key, &failure.text);
        } else if let object_store::Error::NotFound { .. } = err {
            return WalError::io(
                action,
                url,
                io::Error::new(io::ErrorKind::NotFound, "no such object"),
            );
        }
        WalError::Temporary(format!("{action} {url}: {}", failure.text))
    }
}

/// Reads a whole file (up to one part) off the runtime's thread.
async fn read_file(path: &Path) -> Result<Bytes> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::read(&owned))
        .await
        .map_err(|e| WalError::Internal(format!("reader thread failed: {e}")))?
        .map(Bytes::from)
        .context("cannot read", path)
}

/// An error and its causes on one line, as walpipe's messages are.
pub(crate) fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}
