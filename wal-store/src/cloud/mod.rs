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

pub mod connect;
pub mod failure;
pub mod location;

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use object_store::list::PaginatedListOptions;
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use wal_core::durable;
use wal_core::error::{IoContext, Result};
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
        self.breaker.trip(prefix, &cause);
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
        let mut file = File::open(path).context("cannot open", path)?;
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

    /// Downloads `key` into a new hidden file in `dir`, named for the WAL `name` and
    /// unique ([`create_download_temp`]); returns its path and byte count. The file is
    /// not fsynced (it is a temp: callers that keep it do); if anything fails, or the
    /// deadline drops the download half-way, it is removed.
    pub async fn download_temp(&self, key: &str, dir: &Path, name: &str) -> Result<(PathBuf, u64)> {
        let (path, file) = create_download_temp(dir, name)?;
        let temp = Temp(Some(path));
        let size = self.download_into(key, file, temp.path()).await?;
        Ok((temp.keep(), size))
    }

    /// Downloads `key` to `dest` durably: a temp file beside it, fsync, rename without
    /// replacing, fsync the directory; nothing under `dest` if anything fails.
    pub async fn download_durably(&self, key: &str, dest: &Path) -> Result<u64> {
        let temp = Temp(Some(durable::temp_name_for(dest)));
        let file = durable::create_temp(temp.path())?;
        let size = self.download_into(key, file, temp.path()).await?;
        durable::fsync_file(temp.path())?;
        durable::rename_no_replace(temp.path(), dest).context("cannot create", dest)?;
        temp.keep();
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

/// A temp file of ours, removed when dropped unless kept: a download that fails, or that
/// the deadline drops half-way, leaves nothing behind.
struct Temp(Option<PathBuf>);

impl Temp {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Keeps the file; its path.
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates `.<name>.<pid>-<random>.download` in `dir`, exclusively, mode 0600.
///
/// Two processes may fetch the same WAL into one directory at once (PostgreSQL's
/// restore_command and a prefetch worker, two `put`s comparing the same duplicate): each
/// gets its own file, and none unlinks or replaces another's. The random part is there
/// because processes in different pid namespaces may share the directory. The name
/// starts with a dot, so queue listings skip it, and ends in `.download`, the pattern
/// scripts/restore-wal sweeps when a killed call left one.
pub fn create_download_temp(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    loop {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let path = dir.join(format!(
            ".{name}.{}-{:08x}.download",
            std::process::id(),
            hasher.finish() >> 32
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
            Err(e) => return Err(WalError::io("cannot create", &path, e)),
        }
    }
}

/// Removes the `.<name>.<pid>-<random>.download` files in `dir` whose process is gone.
///
/// For put's comparisons only, whose downloads live and die with their process: a put
/// killed half-way leaves its download behind (16 MiB for a segment, beside the source
/// in the queue or in pg_wal), and since the names are unique no later run would replace
/// it. The next put of that WAL, which a killed put always leaves to do (its source is
/// still there), calls this first. (A `get --temp-dir` download outlives its process: it
/// is handed to the next stage, so get never sweeps; restore-wal sweeps %p's directory
/// and its spool itself.) A live process's file stays (and one whose pid was reused). A
/// process of another pid namespace sharing the directory may have a pid that is free
/// here: its file is then removed, its compare fails as `temporary` and is retried;
/// nothing stored is touched. Without /proc nothing is removed.
pub fn sweep_dead_downloads(dir: &Path, name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let pid = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".download"))
            .and_then(|unique| unique.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !process_alive(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `pid` is a live process. A zombie is not: a killed wal-store whose parent died
/// too is reaped by init, possibly late (or, in a container whose init does not reap,
/// never).
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold any byte.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .is_none_or(|state| !matches!(state, 'Z' | 'X' | 'x'))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn download_temps_are_unique_hidden_and_never_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000001";
        // Another process's download under the name every temp once had.
        let theirs = dir.path().join(format!(".{name}.download"));
        std::fs::write(&theirs, "theirs").unwrap();
        let (first, _) = create_download_temp(dir.path(), name).unwrap();
        let (second, _) = create_download_temp(dir.path(), name).unwrap();
        assert_ne!(first, second);
        for path in [&first, &second] {
            let file = path.file_name().unwrap().to_str().unwrap();
            // What scripts/restore-wal sweeps: "$DEST_DIR"/.*.download.
            assert!(
                file.starts_with(&format!(".{name}.")) && file.ends_with(".download"),
                "{file}"
            );
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
    }

    #[test]
    fn downloads_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000001";
        // pid_max is at most 2^22: this pid is nobody's.
        let dead = dir
            .path()
            .join(format!(".{name}.4999999-0badf00d.download"));
        let live = dir
            .path()
            .join(format!(".{name}.{}-1234abcd.download", std::process::id()));
        let parent = dir.path().join(format!(
            ".{name}.{}-1234abcd.download",
            std::os::unix::process::parent_id()
        ));
        let other_wal = dir
            .path()
            .join(".000000010000000000000002.4999999-0badf00d.download");
        let not_ours = dir.path().join(format!(".{name}.download"));
        // A child that exited and is not waited for yet: a zombie, dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let zombie_pid = child.id();
        while !std::fs::read_to_string(format!("/proc/{zombie_pid}/stat"))
            .unwrap()
            .contains(") Z")
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let zombie = dir
            .path()
            .join(format!(".{name}.{zombie_pid}-0badf00d.download"));
        for path in [&dead, &zombie, &live, &parent, &other_wal, &not_ours] {
            std::fs::write(path, "left").unwrap();
        }
        sweep_dead_downloads(dir.path(), name);
        child.wait().unwrap();
        assert!(!dead.exists(), "a dead process's download is swept");
        assert!(!zombie.exists(), "a zombie's download is swept");
        for path in [&live, &parent, &other_wal, &not_ours] {
            assert!(path.exists(), "{} is kept", path.display());
        }
    }
}
