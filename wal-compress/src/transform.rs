//! The work on one record: write a compressed (or decompressed) copy of its file and point
//! the record at the copy.
//!
//! Everything streams through fixed buffers ([`wal_core::codec`]), so memory does not
//! grow with the file. Nothing is fsynced here: wal-store fsyncs the copy before storing
//! it, and a copy lost in a crash is simply made again from the untouched source. A
//! failure removes the copy and fails the record with a kind that says whose fault it
//! was: `not_found` (the file is gone), `io` (reading or writing failed), `corrupt` (the
//! compressed data is damaged).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use wal_core::codec::{self, Level};
use wal_core::error::IoContext;
use wal_core::names::{self, SegmentSize};
use wal_core::{Compression, WalError, WalKind, WalRecord};

use crate::config::{Config, Mode};
use wal_core::blame::{Side, Watched, blame};
use wal_core::temp::{TempFile, TempNames};

/// Buffer size for reading sources and writing copies: the codecs' own chunk size, so
/// each read or write is one system call per codec step.
const BUFFER_SIZE: usize = 128 * 1024;

/// Does the configured job on each record; shared by all worker threads.
#[derive(Debug)]
pub struct Transformer<'a> {
    config: &'a Config,
    names: TempNames,
}

impl<'a> Transformer<'a> {
    /// A transformer for one run.
    pub fn new(config: &'a Config) -> Self {
        Transformer {
            config,
            names: TempNames::default(),
        }
    }

    /// Compresses or decompresses the record's file, updating the record; leaves records
    /// it has nothing to do for unchanged.
    pub fn process(&self, record: &mut WalRecord) -> Result<(), WalError> {
        match self.config.mode {
            Mode::Compress { algorithm, level } => self.compress(record, algorithm, level),
            Mode::Decompress => self.decompress(record),
        }
    }

    fn compress(
        &self,
        record: &mut WalRecord,
        algorithm: Compression,
        level: Level,
    ) -> Result<(), WalError> {
        // Barman never compresses twice, and encrypted bytes do not compress.
        if record.compression.is_some() || record.encryption.is_some() {
            return Ok(());
        }
        let path = record.require_path()?.clone();
        let mut input = Watched::new(wal_core::durable::open_wal(&path)?);
        let (temp, mut output) = self.create_copy(record, &path, "compressed")?;
        let result = codec::compress(algorithm, level, &mut input, &mut output)
            .and_then(|(_, output)| output.flush());
        if let Err(error) = result {
            return Err(match blame(&input, &output) {
                Side::Input => WalError::io("cannot read", &path, error),
                Side::Output => WalError::io("cannot write", temp.path(), error),
                Side::Data => WalError::io("cannot compress", &path, error),
            });
        }
        record.size = output.bytes();
        record.compression = Some(algorithm);
        temp.hand_to(record);
        Ok(())
    }

    fn decompress(&self, record: &mut WalRecord) -> Result<(), WalError> {
        // Encrypted bytes must be decrypted first (wal-encrypt --decrypt).
        if record.encryption.is_some() {
            return Ok(());
        }
        let path = record.require_path()?.clone();
        let algorithm = match record.compression {
            Some(algorithm) => algorithm,
            // Records from an archive listing may not say; the magic does.
            None => match Compression::identify_file(&path).context("cannot read", &path)? {
                Some(algorithm) => algorithm,
                None => return Ok(()),
            },
        };
        let source = wal_core::durable::open_wal(&path)?;
        let mut input = BufReader::with_capacity(BUFFER_SIZE, Watched::new(source));
        let (temp, mut output) = self.create_copy(record, &path, "decompressed")?;
        let result =
            codec::decompress(algorithm, &mut input, &mut output).and_then(|_| output.flush());
        if let Err(error) = result {
            return Err(match blame(input.get_ref(), &output) {
                Side::Input => WalError::io("cannot read", &path, error),
                Side::Output => WalError::io("cannot write", temp.path(), error),
                Side::Data => WalError::Corrupt {
                    path,
                    message: error.to_string(),
                },
            });
        }
        let size = output.bytes();
        check_snappy_segment(record, algorithm, size, &path)?;
        record.size = size;
        record.compression = None;
        temp.hand_to(record);
        Ok(())
    }

    /// Creates the temporary copy of `path` for `record`, buffered and watched.
    fn create_copy(
        &self,
        record: &WalRecord,
        path: &Path,
        suffix: &str,
    ) -> Result<(TempFile, Watched<BufWriter<File>>), WalError> {
        let (temp, file) =
            self.names
                .create_for(self.config.temp_dir.as_deref(), record, path, suffix)?;
        Ok((
            temp,
            Watched::new(BufWriter::with_capacity(BUFFER_SIZE, file)),
        ))
    }
}

/// The snappy framing format has no end marker, so a stream cut at a chunk boundary
/// decodes without error to a shorter file (see [`wal_core::codec`]). A segment (or a
/// partial segment, which pg_receivewal pads to full size) always has a legal segment size,
/// so for those a wrong size is the truncation we could not see otherwise.
fn check_snappy_segment(
    record: &WalRecord,
    algorithm: Compression,
    size: u64,
    path: &Path,
) -> Result<(), WalError> {
    let kind = record.kind.or_else(|| names::classify(&record.name));
    let whole_segment = matches!(kind, Some(WalKind::Segment | WalKind::Partial));
    if algorithm == Compression::Snappy && whole_segment && SegmentSize::new(size).is_err() {
        return Err(WalError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "truncated snappy stream: decompressed to {size} bytes, \
                 not the size of a WAL segment"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_snappy_segments_are_corrupt() {
        let mut record = WalRecord::new("000000010000000000000001");
        let path = Path::new("/q/x");
        assert!(check_snappy_segment(&record, Compression::Snappy, 1 << 24, path).is_ok());
        let err = check_snappy_segment(&record, Compression::Snappy, 65_536, path).unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Corrupt);
        assert!(check_snappy_segment(&record, Compression::Zstd, 65_536, path).is_ok());
        record.name = "00000002.history".into();
        assert!(check_snappy_segment(&record, Compression::Snappy, 41, path).is_ok());
    }
}
