//! `wal-store fetch`: downloads the objects a cloud archive's listing names, so that the
//! stages after it (decryption, wal-verify) read them as files.
//!
//! ```text
//! wal-scan archive s3://… | wal-store fetch --temp-dir DIR | [wal-encrypt --decrypt] | wal-verify --temp-dir DIR
//! ```
//!
//! Each record's `stored_at` is the URL of the object the listing found; the object must
//! be one of this archive's, under the record's WAL name (`…/<server>/wals/<hash>/<name>`
//! and an extension that names the same WAL): a record naming an object elsewhere fails
//! alone, and nothing is downloaded for it. Several objects of one name (the same WAL
//! under two extensions) are each fetched: a verifier wants to see them all. The download
//! is a temp file in `--temp-dir` (`.<name>.<pid>-<random>.download`, as `get`'s), listed
//! in the record's `temps` and its `path`; its size must be the listing's (an object
//! replaced since it was listed fails, `temporary`), and its first bytes must be of the
//! compression and encryption its key's extensions name (`corrupt` if not).
//!
//! A record that arrives settled (it has an outcome: `wal-verify --recall` marks the
//! files its state still vouches for) or failed is passed on untouched: nothing to fetch.
//! Records go `--jobs` at a time, and out in the order they came, each batch as soon as
//! it is fetched, so the temp space in use is about the batch plus what the pipe holds.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use wal_core::error::Result;
use wal_core::stage::{self, Summary};
use wal_core::{WalError, WalName, WalRecord};

use crate::STAGE;
use crate::cloud::download::Kind;
use crate::cloud::location::parse_key;
use crate::cloud::{Bucket, CloudTarget};

/// Fetches the objects of the records on `input` into `temp_dir`.
pub fn run(
    cloud: &CloudTarget,
    temp_dir: &Path,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Summary> {
    let bucket = Bucket::open(cloud)?;
    stage::run_batches(STAGE, bucket.jobs(), input, output, |batch| {
        fetch_batch(&bucket, temp_dir, batch);
        Ok(())
    })
}

/// Downloads a batch's unsettled records, `--jobs` at a time.
fn fetch_batch(bucket: &Bucket<'_>, temp_dir: &Path, batch: &mut [WalRecord]) {
    let work = batch
        .iter_mut()
        .filter(|record| !record.failed() && record.outcome.is_none())
        .map(|record| async move {
            let url = bucket.name_url(&record.name);
            if let Err(err) = bucket.bounded(&url, fetch(bucket, temp_dir, record)).await {
                record.fail(STAGE, &err);
            }
        });
    bucket.block_on(
        futures::stream::iter(work)
            .buffer_unordered(bucket.jobs())
            .collect::<Vec<()>>(),
    );
}

/// Downloads one record's object, and points the record at the copy.
async fn fetch(bucket: &Bucket<'_>, temp_dir: &Path, record: &mut WalRecord) -> Result<()> {
    let name = WalName::parse_file_name(&record.name)?;
    let key = key_of(bucket, record, &name)?;
    let (temp, size) = bucket
        .download_temp(&key, temp_dir, name.as_str(), Kind::Download)
        .await?;
    record.temps.push(temp.clone());
    record.path = Some(temp.clone());
    if size != record.size {
        return Err(WalError::Temporary(format!(
            "{}: {size} bytes downloaded, {} listed: replaced since it was listed (run \
             again)",
            bucket.url(&key),
            record.size
        )));
    }
    let (compression, encryption) =
        crate::list::identify(&temp).map_err(|e| WalError::io("cannot read", &temp, e))?;
    if (compression, encryption) != (record.compression, record.encryption) && encryption.is_none()
    {
        return Err(WalError::Corrupt {
            path: PathBuf::from(bucket.url(&key)),
            message: format!(
                "its key says {}, its bytes are {}",
                describe(record.compression, record.encryption),
                describe(compression, encryption)
            ),
        });
    }
    // An encrypted object's compression is inside the encryption: its key says it.
    if encryption.is_none() {
        record.compression = compression;
    }
    record.encryption = encryption;
    Ok(())
}

/// The key of the object the record's `stored_at` names, if it is one of this archive's
/// objects of the record's WAL name.
fn key_of(bucket: &Bucket<'_>, record: &WalRecord, name: &WalName) -> Result<String> {
    let target = bucket.target;
    let prefix = target.location.name_prefix(&target.server, name);
    let url = record
        .stored_at
        .as_deref()
        .and_then(Path::to_str)
        .unwrap_or_default();
    url.strip_prefix(&bucket.url(&prefix))
        .map(|rest| format!("{prefix}{rest}"))
        .filter(|key| !key.contains("//") && !key.split('/').any(|part| part == ".."))
        .filter(|key| parse_key(key).is_some_and(|info| info.name == *name))
        .ok_or_else(|| {
            WalError::Usage(format!(
                "{}: stored_at {url:?} is not an object of {name} in this archive ({})",
                record.name,
                bucket.url(&format!("{prefix}…"))
            ))
        })
}

fn describe(
    compression: Option<wal_core::compression::Compression>,
    encryption: Option<wal_core::record::Encryption>,
) -> String {
    match (compression, encryption) {
        (_, Some(encryption)) => encryption.name().to_owned(),
        (Some(compression), None) => compression.to_string(),
        (None, None) => "uncompressed".to_owned(),
    }
}
