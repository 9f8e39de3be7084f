//! Streaming encoders and decoders for Barman's six WAL compression formats.
//!
//! Barman compresses WAL in-process (`docs/barman-formats.md#compression`) with gzip,
//! bzip2, xz, zstd, lz4 (frame
//! format) or snappy (framing format). walpipe must write streams that Barman, the
//! python libraries it uses and the stock CLIs read, and must read theirs back (restores,
//! duplicate checks against an existing archive). Unlike Barman's in-memory path, every
//! function here streams through fixed buffers: memory depends on the algorithm and its
//! level, never on the size of the file.
//!
//! Decoding is strict, because a WAL that decodes to a silently shorter file is worse than
//! no WAL at all:
//! * corrupt input is an [`io::ErrorKind::InvalidData`] error, truncated input an
//!   [`io::ErrorKind::UnexpectedEof`] (or `InvalidData`) error; an empty input is not a
//!   stream of any format (`UnexpectedEof`);
//! * errors of the underlying reader keep their own kind, so a caller can tell a damaged
//!   file (`ErrorKind::Corrupt`) from a failing disk (`ErrorKind::Io`);
//! * concatenated members/streams/frames are read to the end, as the CLIs write them
//!   (`gzip` members appended to one another, `xz -T`, several `zstd`/`lz4` frames);
//! * trailing data that is not another member/stream/frame is an error for every format
//!   (the CLIs only warn); xz's stream padding (zero bytes in multiples of four) and zstd's
//!   skippable frames are part of their formats and are accepted.
//! * decoding is bounded whatever the input: a stream whose header asks for more than
//!   128 MiB of decoder memory, or that decodes to more than 1 GiB (the largest WAL
//!   segment), is an `InvalidData` error (see [`decoder`]).
//!
//! How truncation is caught, per format:
//!
//! | format | caught by |
//! |---|---|
//! | gzip | flate2 (the deflate stream or its 8-byte CRC32/ISIZE trailer is missing) |
//! | bzip2 | the bzip2 crate (stream end-of-stream marker and CRC) |
//! | xz | liblzma (stream footer and index) |
//! | zstd | the zstd crate: end of input inside a frame is "incomplete frame" |
//! | lz4 | here: `lz4_flex` treats end of input before a block header as the end of the frame, so this module follows the frame layout and requires the end mark (and the content checksum, when the frame declares one) |
//! | snappy | snap, inside a chunk. The framing format has no end marker, so a stream cut exactly at a chunk boundary decodes to a shorter output: callers that know the expected size (WAL segments) must check it |

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::num::IntErrorKind;
use std::path::Path;
use std::str::FromStr;

use crate::compression::{Compression, MAGIC_MAX_LENGTH};

/// Size of the buffers used to copy, read and compare: large enough that the codecs see
/// whole blocks, small enough to stay in cache.
const BUFFER_SIZE: usize = 128 * 1024;

/// The most memory a decoder may take for its window (zstd) or dictionary (xz): 128 MiB.
/// Both decoders allocate what the stream's header declares before reading any data, so,
/// unbounded, a 20-byte zstd file can make its decoder allocate 2 GiB and a 68-byte xz
/// file 1.5 GiB (4 GiB at most). 128 MiB is the default limit of the `zstd` CLI and of
/// python-zstandard (Barman's decoder): every zstd level fits (22 with `--ultra` uses
/// 128 MiB), and so does `--long` at its default (27); streams written with `--long=28` or
/// more are refused, as `zstd -d` refuses them without `--memory`. Every xz preset fits
/// (`-9`/`-9e`, the largest, need 65 MiB); a custom `--lzma2=dict=` of 128 MiB or more is
/// refused (96 MiB, the size below, is decoded). The other formats cannot ask for more than a few MiB.
const DECODER_MEMORY: u64 = 128 << 20;

/// [`DECODER_MEMORY`] as zstd's `window_log_max` (27).
const ZSTD_WINDOW_LOG_MAX: u32 = DECODER_MEMORY.trailing_zeros();

/// The most bytes a decoder yields: 1 GiB, the largest WAL segment PostgreSQL can be built
/// with (`--with-wal-segsize=1024`). Anything walpipe decompresses is a WAL file, so a
/// stream that decodes to more is corrupt, or a decompression bomb aimed at the disk.
pub const MAX_DECODED: u64 = 1 << 30;

/// A compression level as Barman's `compression_level` accepts it
/// (`docs/barman-formats.md#compression-levels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// `low`: the algorithm's fast level (Barman's `LEVEL_LOW`).
    Low,
    /// `medium`, Barman's default (`LEVEL_MEDIUM`).
    #[default]
    Medium,
    /// `high`: the algorithm's strong level (Barman's `LEVEL_HIGH`).
    High,
    /// An integer, clamped into the algorithm's range when resolved.
    Exact(i32),
}

/// An algorithm's levels: Barman's `LEVEL_MIN`, `LEVEL_MAX`, `LEVEL_LOW`, `LEVEL_MEDIUM`
/// and `LEVEL_HIGH` (`docs/barman-formats.md#compression`).
struct LevelTable {
    min: i32,
    max: i32,
    low: i32,
    medium: i32,
    high: i32,
}

impl LevelTable {
    /// The table of `algorithm`, or `None` for snappy, which has no levels.
    fn of(algorithm: Compression) -> Option<LevelTable> {
        let (min, max, low, medium, high) = match algorithm {
            Compression::Bzip2 => (1, 9, 1, 5, 9),
            Compression::Gzip => (1, 9, 1, 6, 9),
            Compression::Lz4 => (0, 16, 0, 6, 10),
            Compression::Snappy => return None,
            Compression::Xz => (1, 9, 1, 3, 5),
            Compression::Zstd => (-22, 22, 1, 4, 9),
        };
        Some(LevelTable {
            min,
            max,
            low,
            medium,
            high,
        })
    }
}

impl Level {
    /// The level the algorithm will use: Barman's low/medium/high table, integers clamped
    /// into the algorithm's range (`docs/barman-formats.md#compression-levels`); `None` for
    /// snappy, which has no levels.
    ///
    /// | algorithm | low / medium / high | range |
    /// |---|---|---|
    /// | gzip | 1 / 6 / 9 | 1..=9 |
    /// | bzip2 | 1 / 5 / 9 | 1..=9 |
    /// | xz | 1 / 3 / 5 | 1..=9 |
    /// | zstd | 1 / 4 / 9 | -22..=22 |
    /// | lz4 | 0 / 6 / 10 | 0..=16 |
    ///
    /// lz4 levels resolve as Barman's do but do not change the output: `lz4_flex` only has
    /// the fast mode (Barman's level 0). The stream is the same format either way.
    #[must_use]
    pub fn resolve(self, algorithm: Compression) -> Option<i32> {
        let table = LevelTable::of(algorithm)?;
        Some(match self {
            Level::Low => table.low,
            Level::Medium => table.medium,
            Level::High => table.high,
            Level::Exact(level) => level.clamp(table.min, table.max),
        })
    }

    /// The resolved level of gzip, bzip2 and xz, whose ranges are 1..=9.
    fn preset(self, algorithm: Compression) -> u32 {
        self.resolve(algorithm)
            .and_then(|level| u32::try_from(level).ok())
            .expect("gzip, bzip2 and xz levels are clamped into 1..=9")
    }
}

impl fmt::Display for Level {
    /// The spelling [`Level::from_str`] reads back: `low`, `medium`, `high` or the integer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Low => f.write_str("low"),
            Level::Medium => f.write_str("medium"),
            Level::High => f.write_str("high"),
            Level::Exact(level) => write!(f, "{level}"),
        }
    }
}

/// Error for a compression level that is neither `low`, `medium`, `high` nor an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compression level {0:?} (expected low, medium, high or an integer)")]
pub struct InvalidLevel(pub String);

impl FromStr for Level {
    type Err = InvalidLevel;

    /// Reads `low`, `medium`, `high` or an integer (negative allowed, for zstd).
    ///
    /// Barman silently uses `medium` for anything else
    /// (`docs/barman-formats.md#compression-levels`). We refuse it instead: a
    /// misspelt level is a mistake in the configuration, not a wish for the default.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Level::Low),
            "medium" => Ok(Level::Medium),
            "high" => Ok(Level::High),
            _ => match s.parse::<i32>() {
                Ok(level) => Ok(Level::Exact(level)),
                // Python integers are unbounded and Barman clamps them, so an absurd level
                // still means "the maximum" (or minimum); saturating keeps that meaning.
                Err(e) if *e.kind() == IntErrorKind::PosOverflow => Ok(Level::Exact(i32::MAX)),
                Err(e) if *e.kind() == IntErrorKind::NegOverflow => Ok(Level::Exact(i32::MIN)),
                Err(_) => Err(InvalidLevel(s.to_string())),
            },
        }
    }
}

/// A streaming compressor writing into `W`.
///
/// Write the uncompressed bytes, then call [`Encoder::finish`]: dropping an encoder
/// without finishing it leaves a truncated stream. Flushing ends the current block early
/// (a sync flush for gzip, a block for zstd/lz4/snappy), which costs ratio; call it only
/// when the bytes so far must reach `W`.
pub struct Encoder<W: Write> {
    state: EncoderState<W>,
}

/// One variant per algorithm; the large encoders are boxed so the enum stays small.
enum EncoderState<W: Write> {
    Bzip2(bzip2::write::BzEncoder<W>),
    Gzip(flate2::write::GzEncoder<W>),
    Lz4(Box<lz4_flex::frame::FrameEncoder<W>>),
    Snappy {
        encoder: Box<snap::write::FrameEncoder<W>>,
        /// Whether any input was written: snap writes its stream identifier only with the
        /// first chunk, so [`Encoder::finish`] writes it for an empty input.
        got_input: bool,
    },
    Xz(xz2::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Starts a stream of `algorithm` at `level` (see [`Level::resolve`]) into `output`.
    ///
    /// The formats are the ones Barman writes (`docs/barman-formats.md#compression`); where
    /// a format has an optional
    /// checksum of the content we turn it on, since archives are read back long after they
    /// were written:
    /// * gzip: one member, no file name, mtime 0;
    /// * bzip2: one stream, block size = level × 100 kB;
    /// * xz: one stream, preset = level, CRC64 check (xz's default);
    /// * zstd: one frame, with a content checksum (as the zstd CLI; python-zstandard omits
    ///   it by default, both read either);
    /// * lz4: one frame of independent 256 KiB blocks with a content checksum (as the lz4
    ///   CLI); the level is ignored, see [`Level::resolve`];
    /// * snappy: the framing format, stream identifier first (python-snappy's
    ///   `stream_compress`).
    ///
    /// Memory depends on the algorithm and level, not on the input: a few MiB for gzip,
    /// bzip2, lz4, snappy and zstd up to level 9; 32 MiB for xz 3 (medium) and 94 MiB for
    /// xz 5–6 (liblzma's figures); about 75 MiB for zstd 19 (measured). The top levels are
    /// costly: xz 9 takes up to 674 MiB, zstd 20–22 about 700 MiB (measured with a
    /// 16 MiB input), which Barman's range allows.
    pub fn new(algorithm: Compression, level: Level, output: W) -> io::Result<Self> {
        let state = match algorithm {
            Compression::Bzip2 => EncoderState::Bzip2(bzip2::write::BzEncoder::new(
                output,
                bzip2::Compression::new(level.preset(algorithm)),
            )),
            Compression::Gzip => EncoderState::Gzip(flate2::write::GzEncoder::new(
                output,
                flate2::Compression::new(level.preset(algorithm)),
            )),
            Compression::Lz4 => {
                let frame = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max256KB)
                    .content_checksum(true);
                EncoderState::Lz4(Box::new(lz4_flex::frame::FrameEncoder::with_frame_info(
                    frame, output,
                )))
            }
            Compression::Snappy => EncoderState::Snappy {
                encoder: Box::new(snap::write::FrameEncoder::new(output)),
                got_input: false,
            },
            Compression::Xz => {
                // XzEncoder::new unwraps liblzma's answer; building the stream ourselves
                // turns an allocation failure into an error instead of a panic.
                let stream = xz2::stream::Stream::new_easy_encoder(
                    level.preset(algorithm),
                    xz2::stream::Check::Crc64,
                )?;
                EncoderState::Xz(xz2::write::XzEncoder::new_stream(output, stream))
            }
            Compression::Zstd => {
                let level = level.resolve(algorithm).unwrap_or_default();
                let mut encoder = zstd::stream::write::Encoder::new(output, level)?;
                encoder.include_checksum(true)?;
                EncoderState::Zstd(encoder)
            }
        };
        Ok(Encoder { state })
    }

    /// The algorithm this encoder writes.
    #[must_use]
    pub fn algorithm(&self) -> Compression {
        match self.state {
            EncoderState::Bzip2(_) => Compression::Bzip2,
            EncoderState::Gzip(_) => Compression::Gzip,
            EncoderState::Lz4(_) => Compression::Lz4,
            EncoderState::Snappy { .. } => Compression::Snappy,
            EncoderState::Xz(_) => Compression::Xz,
            EncoderState::Zstd(_) => Compression::Zstd,
        }
    }

    /// Ends the stream (trailers, checksums) and returns the inner writer, so the caller
    /// can fsync it. The inner writer itself is not flushed: a `BufWriter` must still be.
    pub fn finish(self) -> io::Result<W> {
        match self.state {
            EncoderState::Bzip2(encoder) => encoder.finish(),
            EncoderState::Gzip(encoder) => encoder.finish(),
            EncoderState::Lz4(encoder) => encoder.finish().map_err(io::Error::from),
            EncoderState::Snappy { encoder, got_input } => {
                let mut output = encoder
                    .into_inner()
                    .map_err(snap::write::IntoInnerError::into_error)?;
                if !got_input {
                    // An empty stream is still a stream: the identifier alone, so that the
                    // file is recognised by its magic and reads back as empty (a file
                    // without it is not snappy, see `decoder`).
                    output.write_all(Compression::Snappy.magic())?;
                }
                Ok(output)
            }
            EncoderState::Xz(encoder) => encoder.finish(),
            EncoderState::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            EncoderState::Bzip2(encoder) => encoder.write(buf),
            EncoderState::Gzip(encoder) => encoder.write(buf),
            EncoderState::Lz4(encoder) => encoder.write(buf),
            EncoderState::Snappy { encoder, got_input } => {
                let written = encoder.write(buf)?;
                *got_input |= written > 0;
                Ok(written)
            }
            EncoderState::Xz(encoder) => encoder.write(buf),
            EncoderState::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            EncoderState::Bzip2(encoder) => encoder.flush(),
            EncoderState::Gzip(encoder) => encoder.flush(),
            EncoderState::Lz4(encoder) => encoder.flush(),
            EncoderState::Snappy { encoder, .. } => encoder.flush(),
            EncoderState::Xz(encoder) => encoder.flush(),
            EncoderState::Zstd(encoder) => encoder.flush(),
        }
    }
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

/// A streaming decompressor over `input`.
///
/// Reads concatenated members/streams/frames (multi-member gzip, multi-stream bzip2 and
/// xz, several zstd or lz4 frames) as the CLIs write them. Errors follow the module's
/// rules: corrupt or truncated input is `InvalidData` or `UnexpectedEof`, and so is an
/// empty input (checked here, before returning: this reads the first bytes of `input`);
/// errors of `input` itself are returned unchanged.
///
/// Memory and output are bounded whatever the input: the decoder's own memory depends on
/// the stream's parameters (block size, window), which the stream's header declares, and
/// is capped at 128 MiB for zstd (window) and xz (dictionary), a few MiB for the other
/// formats (their headers cannot ask for more); a stream whose parameters need more is
/// refused (`InvalidData`) before anything is allocated. A stream that decodes to more
/// than [`MAX_DECODED`] bytes (1 GiB, the largest WAL segment) fails with `InvalidData`
/// once the limit is passed.
pub fn decoder<'a, R: BufRead + 'a>(
    algorithm: Compression,
    mut input: R,
) -> io::Result<Box<dyn Read + 'a>> {
    // Some decoders (snap, lz4_flex) take an empty input for an empty stream; none of the
    // formats encodes nothing as no bytes.
    if input.fill_buf()?.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("empty input is not a {algorithm} stream"),
        ));
    }
    let input = Source(input);
    Ok(match algorithm {
        Compression::Bzip2 => Box::new(Checked::new(
            algorithm,
            bzip2::bufread::MultiBzDecoder::new(input),
        )),
        // MultiGzDecoder, not GzDecoder: the latter stops silently after the first member.
        Compression::Gzip => Box::new(Checked::new(
            algorithm,
            flate2::bufread::MultiGzDecoder::new(input),
        )),
        Compression::Lz4 => Box::new(Checked::new(algorithm, Lz4Decoder::new(input))),
        Compression::Snappy => Box::new(Checked::new(
            algorithm,
            snap::read::FrameDecoder::new(input),
        )),
        Compression::Xz => {
            // A stream decoder (not xz2's auto decoder, which also takes legacy .lzma
            // files), reading concatenated streams as `xz -dc` does.
            let stream =
                xz2::stream::Stream::new_stream_decoder(DECODER_MEMORY, xz2::stream::CONCATENATED)?;
            Box::new(Checked::new(
                algorithm,
                xz2::bufread::XzDecoder::new_stream(input, stream),
            ))
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(Checked::new(algorithm, decoder))
        }
    })
}

/// Compresses all of `input` into `output`; returns (bytes read, the writer), the writer
/// being returned as [`Encoder::finish`] does (not flushed, not synced).
pub fn compress<R: Read + ?Sized, W: Write>(
    algorithm: Compression,
    level: Level,
    input: &mut R,
    output: W,
) -> io::Result<(u64, W)> {
    let mut encoder = Encoder::new(algorithm, level, output)?;
    let read = copy(input, &mut encoder)?;
    Ok((read, encoder.finish()?))
}

/// Decompresses all of `input` into `output`; returns the bytes written.
///
/// Corrupt or truncated input is an error (`InvalidData` or `UnexpectedEof`), never a
/// silent short output (except snappy cut at a chunk boundary: see the module doc). On
/// error, `output` holds part of the content: write to a temporary file.
pub fn decompress<R: BufRead, W: Write + ?Sized>(
    algorithm: Compression,
    input: R,
    output: &mut W,
) -> io::Result<u64> {
    let mut decoded = decoder(algorithm, input)?;
    copy(&mut decoded, output)
}

/// Opens `path` and returns a reader of its decompressed content, identifying the format
/// by its magic bytes as Barman does (`docs/barman-formats.md#detecting-compression`), and
/// what it found.
///
/// A file that starts with no known magic (a plain WAL, a history file, a file shorter than
/// the magic) is returned as it is, with `None`. Works on pipes too: nothing is sought.
pub fn open_decompressed(path: &Path) -> io::Result<(Option<Compression>, Box<dyn Read>)> {
    let mut file = File::open(path)?;
    let mut head = [0u8; MAGIC_MAX_LENGTH];
    let head_len = read_full(&mut file, &mut head)?;
    let found = Compression::identify(&head[..head_len]);
    let content = io::Cursor::new(head).take(head_len as u64).chain(file);
    Ok(match found {
        None => (None, Box::new(content)),
        Some(algorithm) => (
            Some(algorithm),
            decoder(algorithm, BufReader::with_capacity(BUFFER_SIZE, content))?,
        ),
    })
}

/// A stored file's content, as far as can be read without a key.
#[allow(missing_debug_implementations)] // holds a decoder
pub enum Plaintext {
    /// An OpenPGP message: its plaintext needs the key.
    Encrypted,
    /// The plaintext, decompressed as the file's magic says (`None`: stored plain).
    Readable {
        /// The compression found.
        compression: Option<Compression>,
        /// The decompressed bytes.
        reader: Box<dyn Read>,
    },
}

/// Opens the plaintext of a stored file (`file`, already opened by the caller, who
/// decided it may be read): encryption and compression told by the magic bytes, as
/// Barman tells them. The decoder is bounded as [`decoder`] says.
pub fn open_plaintext(file: File) -> io::Result<Plaintext> {
    let probe = MAGIC_MAX_LENGTH.max(crate::openpgp::HEAD_LENGTH);
    let mut reader = BufReader::with_capacity(BUFFER_SIZE, file);
    let mut magic = Vec::with_capacity(probe);
    (&mut reader).take(probe as u64).read_to_end(&mut magic)?;
    if crate::openpgp::identify(&magic).is_some() {
        return Ok(Plaintext::Encrypted);
    }
    let compression = Compression::identify(&magic);
    let content = io::Cursor::new(magic).chain(reader);
    Ok(match compression {
        None => Plaintext::Readable {
            compression,
            reader: Box::new(content),
        },
        Some(algorithm) => Plaintext::Readable {
            compression,
            reader: decoder(algorithm, BufReader::with_capacity(BUFFER_SIZE, content))?,
        },
    })
}

/// True when two readers yield the same bytes. Compares in fixed-size chunks (memory
/// flat), stops at the first difference and reads both to their end otherwise, so a
/// decoder's trailer checks run before the answer is `true`.
pub fn same_content(a: &mut dyn Read, b: &mut dyn Read) -> io::Result<bool> {
    let mut left = vec![0u8; BUFFER_SIZE];
    let mut right = vec![0u8; BUFFER_SIZE];
    loop {
        let left_len = read_full(a, &mut left)?;
        let right_len = read_full(b, &mut right)?;
        if left[..left_len] != right[..right_len] {
            return Ok(false);
        }
        // `read_full` only comes back short at the end of its reader: both ended together.
        if left_len < BUFFER_SIZE {
            return Ok(true);
        }
    }
}

/// Copies `from` to `to` through one [`BUFFER_SIZE`] buffer (`io::copy` uses 8 KiB, which
/// makes the encoders work in small steps); returns the bytes copied.
fn copy<R: Read + ?Sized, W: Write + ?Sized>(from: &mut R, to: &mut W) -> io::Result<u64> {
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut copied = 0u64;
    loop {
        let len = match from.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buffer[..len])?;
        copied += len as u64;
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(len) => filled += len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The compressed input of a decoder, marking its own errors as [`SourceError`] so that
/// [`Checked`] can tell them from the decoder's complaints about the data.
///
/// Every decoder used here passes its reader's errors through unchanged (the kind is kept,
/// so `Interrupted` is still retried by `read_exact`).
struct Source<R>(R);

/// An error of the decoder's input (disk, pipe), as opposed to bad compressed data.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct SourceError(io::Error);

impl SourceError {
    fn wrap(error: io::Error) -> io::Error {
        io::Error::new(error.kind(), SourceError(error))
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(SourceError::wrap)
    }
}

impl<R: BufRead> BufRead for Source<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf().map_err(SourceError::wrap)
    }

    fn consume(&mut self, amount: usize) {
        self.0.consume(amount);
    }
}

/// A decoder whose errors follow the module's rules: errors of the input come back as
/// they were; every other error is about the data and becomes `UnexpectedEof` (truncated)
/// or `InvalidData` (anything else: flate2 and bzip2 say `InvalidInput`, snap and
/// `lz4_flex` `Other`), with the algorithm named. It also counts the decoded bytes and
/// fails the stream past [`MAX_DECODED`].
struct Checked<D> {
    algorithm: Compression,
    decoder: D,
    /// Bytes yielded so far.
    decoded: u64,
}

impl<D: Read> Checked<D> {
    fn new(algorithm: Compression, decoder: D) -> Self {
        Checked {
            algorithm,
            decoder,
            decoded: 0,
        }
    }

    /// The error of a stream that decodes to more than [`MAX_DECODED`] bytes.
    fn too_long(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "corrupt {} stream: it decodes to more than {MAX_DECODED} bytes, the size of \
                 the largest WAL segment",
                self.algorithm
            ),
        )
    }

    /// Whether `error` is the decoder refusing a stream over [`DECODER_MEMORY`]. zstd only
    /// gives its error's text, which is stable (`ZSTD_getErrorString` of
    /// `frameParameter_windowTooLarge`).
    fn over_memory_limit(error: &io::Error) -> bool {
        let inner = error.get_ref();
        inner
            .and_then(|inner| inner.downcast_ref::<xz2::stream::Error>())
            .is_some_and(|e| matches!(e, xz2::stream::Error::MemLimit))
            || inner.is_some_and(|inner| {
                inner
                    .to_string()
                    .starts_with("Frame requires too much memory")
            })
    }

    fn classify(&self, error: io::Error) -> io::Error {
        if error
            .get_ref()
            .is_some_and(<dyn std::error::Error + Send + Sync>::is::<SourceError>)
        {
            return match error
                .into_inner()
                .map(<dyn std::error::Error + Send + Sync>::downcast::<SourceError>)
            {
                Some(Ok(source)) => source.0,
                _ => unreachable!("the payload was checked to be a SourceError"),
            };
        }
        let algorithm = self.algorithm;
        if Self::over_memory_limit(&error) {
            return io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{algorithm} stream refused: decoding it needs more than {} MiB of \
                     memory (a window or dictionary larger than any standard setting of \
                     the {algorithm} CLI writes): {error}",
                    DECODER_MEMORY >> 20
                ),
            );
        }
        if error.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("truncated {algorithm} stream: {error}"),
            )
        } else {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt {algorithm} stream: {error}"),
            )
        }
    }
}

impl<D: Read> Read for Checked<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.decoded > MAX_DECODED {
            return Err(self.too_long());
        }
        let len = self.decoder.read(buf).map_err(|e| self.classify(e))?;
        self.decoded += len as u64;
        if self.decoded > MAX_DECODED {
            return Err(self.too_long());
        }
        Ok(len)
    }
}

/// `lz4_flex`'s frame decoder, made to read every frame and to refuse a truncated one.
///
/// `FrameDecoder::read` returns `Ok(0)` at the end of each frame (so a plain read loop
/// stops after the first of several frames), and also when the input ends where a block
/// header should be, or just after the magic (so a cut stream decodes to a silent short
/// output). It also takes exactly four trailing bytes for the start of a frame it has no
/// more bytes of. This wrapper keeps reading while input remains and, when the input ends,
/// asks [`Lz4Framing`] whether it ended between frames.
///
/// Each frame gets a fresh `FrameDecoder`: one reused across frames keeps the buffers of
/// a frame with larger blocks (or of a legacy frame) for the next one, which its debug
/// assertions refuse, so a debug build panicked on such a stream.
struct Lz4Decoder<R: BufRead> {
    /// Always `Some` between calls; taken only to replace the decoder between frames.
    frames: Option<lz4_flex::frame::FrameDecoder<Lz4Framing<R>>>,
}

impl<R: BufRead> Lz4Decoder<R> {
    fn new(input: R) -> Self {
        Lz4Decoder {
            frames: Some(lz4_flex::frame::FrameDecoder::new(Lz4Framing::new(input))),
        }
    }

    fn frames(&mut self) -> &mut lz4_flex::frame::FrameDecoder<Lz4Framing<R>> {
        self.frames
            .as_mut()
            .expect("the frame decoder is only taken to be replaced")
    }

    /// Starts the next frame with a fresh decoder over the same input.
    fn next_frame(&mut self) {
        let framing = self
            .frames
            .take()
            .expect("the frame decoder is only taken to be replaced")
            .into_inner();
        self.frames = Some(lz4_flex::frame::FrameDecoder::new(framing));
    }
}

impl<R: BufRead> Read for Lz4Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let len = self.frames().read(buf)?;
            if len > 0 {
                return Ok(len);
            }
            // End of a frame, an empty block, or end of input: only the last may end the
            // stream, and only between frames.
            let framing = self.frames().get_mut();
            let between_frames = framing.part == Lz4Part::Magic && framing.word_len == 0;
            if !framing.input.fill_buf()?.is_empty() {
                if between_frames {
                    self.next_frame();
                }
                continue;
            }
            return match framing.part {
                _ if between_frames => Ok(0),
                // A legacy frame has no end mark: it may end between any two blocks.
                Lz4Part::BlockSize if framing.legacy && framing.word_len == 0 => Ok(0),
                // lz4_flex takes a 4-byte tail for a frame it has no more bytes of.
                Lz4Part::NotAFrame => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data after the last frame is not an lz4 frame",
                )),
                _ => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "input ends inside an lz4 frame",
                )),
            };
        }
    }
}

/// What [`Lz4Framing`] expects next in the lz4 frame format
/// (<https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lz4Part {
    /// A frame's 4-byte magic number: before its first byte is the only place a stream of
    /// LZ4 frames may end.
    Magic,
    /// The FLG byte of the frame descriptor.
    Flags,
    /// A 4-byte block size, or the end mark (0).
    BlockSize,
    /// Bytes to pass over (rest of the descriptor, block data, checksums), then `then`.
    Skip {
        /// Bytes still to pass over.
        remaining: u64,
        /// What comes after them.
        then: LaterPart,
    },
    /// A magic number that is neither: a skippable frame (which `lz4_flex` refuses) or
    /// garbage. Only fatal when `lz4_flex` did not already say so, i.e. when it was the last
    /// four bytes of the input.
    NotAFrame,
}

/// Where [`Lz4Part::Skip`] leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaterPart {
    Magic,
    BlockSize,
}

/// Follows the structure of the lz4 frames read through it (headers, block sizes, end
/// marks, checksums) without decoding anything, to know whether the input ended between
/// frames.
struct Lz4Framing<R> {
    input: R,
    part: Lz4Part,
    /// The little-endian word being assembled for `Magic` or `BlockSize`.
    word: [u8; 4],
    word_len: usize,
    /// FLG bits of the current frame.
    block_checksums: bool,
    content_checksum: bool,
    /// Whether the current frame is a legacy one (`lz4 -l`, never written by Barman): its
    /// magic is followed by blocks at once (no descriptor, no checksums), and it has no
    /// end mark, although `lz4_flex` ends it at a zero block size as any other frame.
    legacy: bool,
}

/// The magic number of an LZ4 frame.
const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;
/// The magic number of the legacy format (`lz4 -l`).
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;

impl<R> Lz4Framing<R> {
    fn new(input: R) -> Self {
        Lz4Framing {
            input,
            part: Lz4Part::Magic,
            word: [0; 4],
            word_len: 0,
            block_checksums: false,
            content_checksum: false,
            legacy: false,
        }
    }

    /// Advances over `bytes`, the next bytes of the stream.
    fn observe(&mut self, mut bytes: &[u8]) {
        while let Some(&first) = bytes.first() {
            match self.part {
                Lz4Part::NotAFrame => return,
                Lz4Part::Magic | Lz4Part::BlockSize => {
                    let take = (4 - self.word_len).min(bytes.len());
                    self.word[self.word_len..self.word_len + take].copy_from_slice(&bytes[..take]);
                    self.word_len += take;
                    bytes = &bytes[take..];
                    if self.word_len == 4 {
                        self.word_len = 0;
                        self.on_word(u32::from_le_bytes(self.word));
                    }
                }
                Lz4Part::Flags => {
                    bytes = &bytes[1..];
                    self.block_checksums = first & 0x10 != 0;
                    self.content_checksum = first & 0x04 != 0;
                    // BD, the optional content size and dictionary id, then the header
                    // checksum byte.
                    let rest =
                        1 + 8 * u64::from(first & 0x08 != 0) + 4 * u64::from(first & 0x01) + 1;
                    self.skip(rest, LaterPart::BlockSize);
                }
                Lz4Part::Skip { remaining, then } => {
                    let take =
                        usize::try_from(remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
                    bytes = &bytes[take..];
                    self.skip(remaining - take as u64, then);
                }
            }
        }
    }

    /// Handles a complete magic number or block size.
    fn on_word(&mut self, word: u32) {
        match self.part {
            Lz4Part::Magic if word == LZ4_FRAME_MAGIC => {
                self.legacy = false;
                self.part = Lz4Part::Flags;
            }
            Lz4Part::Magic if word == LZ4_LEGACY_MAGIC => {
                self.legacy = true;
                self.block_checksums = false;
                self.content_checksum = false;
                self.part = Lz4Part::BlockSize;
            }
            Lz4Part::Magic => self.part = Lz4Part::NotAFrame,
            // The end mark, then the content checksum if the frame has one.
            Lz4Part::BlockSize if word == 0 => {
                self.skip(4 * u64::from(self.content_checksum), LaterPart::Magic);
            }
            Lz4Part::BlockSize => {
                // The high bit flags an uncompressed block; the rest is the data's size.
                let data = u64::from(word & 0x7FFF_FFFF);
                self.skip(
                    data + 4 * u64::from(self.block_checksums),
                    LaterPart::BlockSize,
                );
            }
            _ => unreachable!("on_word is only called for magic numbers and block sizes"),
        }
    }

    /// Passes over `count` bytes, then expects `then`.
    fn skip(&mut self, count: u64, then: LaterPart) {
        self.part = match (count, then) {
            (0, LaterPart::Magic) => Lz4Part::Magic,
            (0, LaterPart::BlockSize) => Lz4Part::BlockSize,
            (remaining, then) => Lz4Part::Skip { remaining, then },
        };
    }
}

impl<R: Read> Read for Lz4Framing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.input.read(buf)?;
        self.observe(&buf[..len]);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// 16 MiB and a bit: the size of a default WAL segment, plus an odd tail so that no
    /// block or chunk ends exactly at the end of the data.
    const SEGMENT_PLUS: usize = 16 * 1024 * 1024 + 4099;

    /// Deterministic pseudo-WAL: 8 KiB pages with a header, then records mixing
    /// pseudo-random words, small-alphabet words and zero runs, then zeros up to the end of
    /// the page (a tiny xorshift, so the data is the same on every run). It compresses
    /// about 3.7 times with zstd -3, like the OLTP segments of real WAL (3 to 5 times).
    fn pseudo_wal(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut data = Vec::with_capacity(len + 8192);
        while data.len() < len {
            let page = data.len();
            data.extend_from_slice(&[0x10, 0xd1, 0x06, 0x00]);
            data.extend_from_slice(&(page as u64).to_le_bytes());
            let used = 2048 + (next() % 6144) as usize;
            while data.len() - page < used {
                let word = next();
                match word % 8 {
                    0..=3 => data.extend_from_slice(&word.to_le_bytes()),
                    4..=5 => data.extend_from_slice(&(word & 0x0303_0707_0000_1f1f).to_le_bytes()),
                    _ => data.resize(data.len() + (word >> 58) as usize, 0),
                }
            }
            data.resize(page + 8192, 0);
        }
        data.truncate(len);
        data
    }

    fn encode(algorithm: Compression, level: Level, data: &[u8]) -> Vec<u8> {
        let (read, compressed) = compress(algorithm, level, &mut &data[..], Vec::new())
            .unwrap_or_else(|e| panic!("{algorithm} {level}: {e}"));
        assert_eq!(read, data.len() as u64);
        compressed
    }

    fn decode(algorithm: Compression, compressed: &[u8]) -> io::Result<Vec<u8>> {
        let mut decoded = Vec::new();
        let written = decompress(algorithm, compressed, &mut decoded)?;
        assert_eq!(written, decoded.len() as u64);
        Ok(decoded)
    }

    /// Runs a reference CLI and returns its stdout; a missing program fails the test, since
    /// a silently skipped compatibility check is worse than none.
    fn cli(program: &str, args: &[&str], stdin: Stdio) -> Vec<u8> {
        let output = Command::new(program)
            .args(args)
            .stdin(stdin)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): run scripts/install-test-deps")
            });
        assert!(
            output.status.success(),
            "{program} {args:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn assert_same(expected: &[u8], actual: &[u8], what: &str) {
        assert_eq!(expected.len(), actual.len(), "{what}: length");
        assert!(expected == actual, "{what}: content differs");
    }

    #[test]
    fn levels_resolve_as_barman() {
        let table = [
            (Compression::Gzip, 1, 6, 9, (1, 9)),
            (Compression::Bzip2, 1, 5, 9, (1, 9)),
            (Compression::Xz, 1, 3, 5, (1, 9)),
            (Compression::Zstd, 1, 4, 9, (-22, 22)),
            (Compression::Lz4, 0, 6, 10, (0, 16)),
        ];
        for (algorithm, low, medium, high, (min, max)) in table {
            assert_eq!(Level::Low.resolve(algorithm), Some(low), "{algorithm} low");
            assert_eq!(
                Level::Medium.resolve(algorithm),
                Some(medium),
                "{algorithm} medium"
            );
            assert_eq!(
                Level::default().resolve(algorithm),
                Some(medium),
                "{algorithm} default"
            );
            assert_eq!(
                Level::High.resolve(algorithm),
                Some(high),
                "{algorithm} high"
            );
            assert_eq!(Level::Exact(min).resolve(algorithm), Some(min));
            assert_eq!(Level::Exact(max).resolve(algorithm), Some(max));
            assert_eq!(Level::Exact(min - 1).resolve(algorithm), Some(min));
            assert_eq!(Level::Exact(max + 1).resolve(algorithm), Some(max));
            assert_eq!(Level::Exact(i32::MIN).resolve(algorithm), Some(min));
            assert_eq!(Level::Exact(i32::MAX).resolve(algorithm), Some(max));
        }
        // Barman's own examples (docs/barman-formats.md#compression-levels).
        assert_eq!(Level::Exact(10).resolve(Compression::Gzip), Some(9));
        assert_eq!(Level::Exact(0).resolve(Compression::Gzip), Some(1));
        assert_eq!(Level::Exact(-30).resolve(Compression::Zstd), Some(-22));
        assert_eq!(Level::Exact(-5).resolve(Compression::Zstd), Some(-5));
        assert_eq!(Level::Exact(7).resolve(Compression::Xz), Some(7));
        for level in [Level::Low, Level::Medium, Level::High, Level::Exact(3)] {
            assert_eq!(level.resolve(Compression::Snappy), None);
        }
    }

    #[test]
    fn levels_parse_and_print() {
        assert_eq!("low".parse(), Ok(Level::Low));
        assert_eq!("medium".parse(), Ok(Level::Medium));
        assert_eq!("high".parse(), Ok(Level::High));
        assert_eq!("5".parse(), Ok(Level::Exact(5)));
        assert_eq!("0".parse(), Ok(Level::Exact(0)));
        assert_eq!("-7".parse(), Ok(Level::Exact(-7)));
        assert_eq!("99999999999".parse(), Ok(Level::Exact(i32::MAX)));
        assert_eq!("-99999999999".parse(), Ok(Level::Exact(i32::MIN)));
        for garbage in ["", "Medium", "HIGH", "fast", "5.0", " 5", "5 ", "0x5", "-"] {
            assert_eq!(
                garbage.parse::<Level>(),
                Err(InvalidLevel(garbage.to_string())),
                "{garbage:?}"
            );
        }
        for level in [Level::Low, Level::Medium, Level::High, Level::Exact(-3)] {
            assert_eq!(level.to_string().parse(), Ok(level));
        }
        let message = "fast".parse::<Level>().unwrap_err().to_string();
        assert!(message.contains("\"fast\""), "{message}");
    }

    /// The reference CLI that decodes `algorithm` to stdout (snappy has none here).
    fn cli_decoder(algorithm: Compression) -> Option<(&'static str, &'static str)> {
        match algorithm {
            Compression::Bzip2 => Some(("bzip2", "-dc")),
            Compression::Gzip => Some(("gzip", "-dc")),
            Compression::Lz4 => Some(("lz4", "-dc")),
            Compression::Snappy => None,
            Compression::Xz => Some(("xz", "-dc")),
            Compression::Zstd => Some(("zstd", "-qdc")),
        }
    }

    /// Compresses `data`, then checks that our decoder and the CLI both give it back.
    fn assert_round_trip(algorithm: Compression, level: Level, data: &[u8], dir: &Path) {
        let what = format!("{algorithm} {level}, {} bytes", data.len());
        let compressed = encode(algorithm, level, data);
        assert!(compressed.len() < data.len() / 2, "{what}: poor ratio");
        let decoded = decode(algorithm, &compressed).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_same(data, &decoded, &what);
        if let Some((program, flags)) = cli_decoder(algorithm) {
            let path = write_temp(
                dir,
                &format!("{algorithm}-{level}-{}", data.len()),
                &compressed,
            );
            let decoded = cli(program, &[flags, path.to_str().unwrap()], Stdio::null());
            assert_same(data, &decoded, &format!("{program} {flags} on {what}"));
        }
    }

    #[test]
    fn every_algorithm_round_trips_a_segment_and_the_cli_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let data = pseudo_wal(SEGMENT_PLUS);
        std::thread::scope(|scope| {
            for algorithm in Compression::ALL {
                let (data, dir) = (&data, dir.path());
                scope.spawn(move || assert_round_trip(algorithm, Level::Medium, data, dir));
            }
        });
    }

    #[test]
    fn every_level_round_trips_and_the_cli_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let data = pseudo_wal(1024 * 1024 + 7);
        // Not the top levels of xz (9: 674 MiB) and zstd (22: about 700 MiB): their memory
        // is documented on `Encoder::new`, not worth spending in a unit test.
        let cases = [
            (
                Compression::Bzip2,
                &[Level::Low, Level::Medium, Level::High][..],
            ),
            (Compression::Gzip, &[Level::Low, Level::Medium, Level::High]),
            (
                Compression::Lz4,
                &[Level::Low, Level::High, Level::Exact(16)],
            ),
            (Compression::Snappy, &[Level::Low, Level::High]),
            (
                Compression::Xz,
                &[Level::Low, Level::Medium, Level::High, Level::Exact(6)],
            ),
            (
                Compression::Zstd,
                &[
                    Level::Exact(-22),
                    Level::Low,
                    Level::Medium,
                    Level::High,
                    Level::Exact(19),
                ],
            ),
        ];
        std::thread::scope(|scope| {
            for (algorithm, levels) in cases {
                let (data, dir) = (&data, dir.path());
                scope.spawn(move || {
                    for &level in levels {
                        assert_round_trip(algorithm, level, data, dir);
                    }
                });
            }
        });
    }

    #[test]
    fn empty_input_round_trips_and_is_identified() {
        for algorithm in Compression::ALL {
            let compressed = encode(algorithm, Level::Medium, b"");
            assert_eq!(
                Compression::identify(&compressed),
                Some(algorithm),
                "{algorithm}"
            );
            assert_eq!(decode(algorithm, &compressed).unwrap(), b"", "{algorithm}");
        }
    }

    #[test]
    fn encoder_output_is_identified_by_its_magic() {
        let data = pseudo_wal(100_000);
        for algorithm in Compression::ALL {
            for level in [Level::Low, Level::High] {
                let compressed = encode(algorithm, level, &data);
                let head = &compressed[..MAGIC_MAX_LENGTH];
                assert_eq!(Compression::identify(head), Some(algorithm), "{algorithm}");
            }
        }
    }

    #[test]
    fn snappy_starts_with_the_framing_format_stream_identifier() {
        let compressed = encode(Compression::Snappy, Level::Medium, b"0123456789");
        assert_eq!(
            compressed[..10],
            [0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59]
        );
        assert_eq!(
            decode(Compression::Snappy, &compressed).unwrap(),
            b"0123456789"
        );
    }

    #[test]
    fn encoder_writes_in_pieces_and_reports_its_algorithm() {
        let data = pseudo_wal(300_000);
        for algorithm in Compression::ALL {
            let mut encoder = Encoder::new(algorithm, Level::Low, Vec::new()).unwrap();
            assert_eq!(encoder.algorithm(), algorithm);
            assert!(format!("{encoder:?}").contains(&format!("{algorithm:?}")));
            for piece in data.chunks(7777) {
                encoder.write_all(piece).unwrap();
            }
            encoder.flush().unwrap();
            let compressed = encoder.finish().unwrap();
            assert_same(
                &data,
                &decode(algorithm, &compressed).unwrap(),
                algorithm.name(),
            );
        }
    }

    #[test]
    fn concatenated_streams_decode_to_the_concatenated_data() {
        let data = pseudo_wal(700_001);
        let (first, second) = data.split_at(250_000);
        for algorithm in Compression::ALL {
            let mut stream = encode(algorithm, Level::Low, first);
            stream.extend(encode(algorithm, Level::High, second));
            // An empty stream in the middle must not end the reading either.
            let mut with_empty = encode(algorithm, Level::Low, first);
            with_empty.extend(encode(algorithm, Level::Low, b""));
            with_empty.extend(encode(algorithm, Level::Low, second));
            for (what, stream) in [("two", stream), ("with an empty one", with_empty)] {
                let decoded = decode(algorithm, &stream)
                    .unwrap_or_else(|e| panic!("{algorithm} {what}: {e}"));
                assert_same(&data, &decoded, &format!("{algorithm}: {what}"));
            }
        }
    }

    /// The offsets of the chunks of a snappy framing-format stream.
    fn snappy_chunk_starts(stream: &[u8]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            starts.push(at);
            let len = u32::from_le_bytes([stream[at + 1], stream[at + 2], stream[at + 3], 0]);
            at += 4 + len as usize;
        }
        starts
    }

    /// Cuts a stream of two frames/members at many points, including inside the magic,
    /// just after the first frame, in the middle of the last one and inside the final end
    /// mark and checksum, and expects an error each time.
    fn assert_truncation_is_an_error(algorithm: Compression) {
        let data = pseudo_wal(600_003);
        let (first, second) = data.split_at(200_000);
        let mut stream = encode(algorithm, Level::Low, first);
        let first_len = stream.len();
        stream.extend(encode(algorithm, Level::Low, second));
        let len = stream.len();
        let magic = algorithm.magic().len();
        let mut cuts = vec![
            1,
            magic - 1,
            magic,
            magic + 1,
            magic + 3,
            first_len / 2,
            first_len - 8,
            first_len - 4,
            first_len - 1,
            first_len + 1,
            first_len + magic,
            first_len + magic + 2,
            usize::midpoint(first_len, len),
        ];
        // The end of the last frame: end mark, checksums, trailers (gzip CRC32 and ISIZE,
        // lz4 end mark and content checksum, zstd checksum, xz index and footer, bzip2
        // end-of-stream marker and CRC).
        cuts.extend((1..=16).map(|back| len - back));
        if algorithm == Compression::Snappy {
            // Chunk boundaries are valid ends of a snappy stream (see the module doc).
            let starts = snappy_chunk_starts(&stream);
            cuts.retain(|cut| !starts.contains(cut));
        }
        for cut in cuts {
            match decode(algorithm, &stream[..cut]) {
                Ok(decoded) => panic!(
                    "{algorithm}: stream of {len} bytes cut at {cut} decoded to {} bytes \
                     without error",
                    decoded.len()
                ),
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                    ),
                    "{algorithm} cut at {cut}/{len}: {e} ({:?})",
                    e.kind()
                ),
            }
        }
    }

    #[test]
    fn truncated_bzip2_is_an_error() {
        assert_truncation_is_an_error(Compression::Bzip2);
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        assert_truncation_is_an_error(Compression::Gzip);
    }

    #[test]
    fn truncated_lz4_is_an_error() {
        assert_truncation_is_an_error(Compression::Lz4);
    }

    #[test]
    fn truncated_snappy_is_an_error() {
        assert_truncation_is_an_error(Compression::Snappy);
    }

    #[test]
    fn truncated_xz_is_an_error() {
        assert_truncation_is_an_error(Compression::Xz);
    }

    #[test]
    fn truncated_zstd_is_an_error() {
        assert_truncation_is_an_error(Compression::Zstd);
    }

    /// The known limit of the snappy framing format (no end marker): documented in the
    /// module doc, pinned here so that a change of behaviour is noticed.
    #[test]
    fn snappy_cut_at_a_chunk_boundary_reads_as_a_shorter_stream() {
        let data = pseudo_wal(300_000);
        let stream = encode(Compression::Snappy, Level::Medium, &data);
        let starts = snappy_chunk_starts(&stream);
        assert!(starts.len() > 3);
        let cut = starts[starts.len() - 1];
        let decoded = decode(Compression::Snappy, &stream[..cut]).unwrap();
        assert!(decoded.len() < data.len());
        assert_eq!(decoded, data[..decoded.len()]);
        // Cut right after the stream identifier: no data, but a valid (empty) stream.
        assert_eq!(decode(Compression::Snappy, &stream[..10]).unwrap(), b"");
    }

    #[test]
    fn empty_input_is_not_a_stream() {
        for algorithm in Compression::ALL {
            let e = decode(algorithm, b"").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{algorithm}: {e}");
        }
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let data = pseudo_wal(100_000);
        let tails: [&[u8]; 6] = [
            b"x",
            b"junk",
            b"\0\0\0\0\0",
            b"garbage!",
            b"more garbage than any header is long",
            &[0x04, 0x22, 0x4d, 0x18],
        ];
        for algorithm in Compression::ALL {
            let stream = encode(algorithm, Level::Low, &data);
            for tail in tails {
                let mut with_tail = stream.clone();
                with_tail.extend_from_slice(tail);
                let e = decode(algorithm, &with_tail)
                    .expect_err(&format!("{algorithm} followed by {tail:?} decoded"));
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                    ),
                    "{algorithm} followed by {tail:?}: {e}"
                );
            }
        }
    }

    /// What the formats themselves allow after a stream, and is therefore no error.
    #[test]
    fn format_padding_after_a_stream_is_accepted() {
        let data = pseudo_wal(100_000);
        // xz: stream padding, zero bytes in multiples of four (xz file format §2.2).
        let mut xz = encode(Compression::Xz, Level::Low, &data);
        xz.extend_from_slice(&[0; 8]);
        assert_same(&data, &decode(Compression::Xz, &xz).unwrap(), "xz padding");
        // zstd: a skippable frame (magic 0x184D2A50, length, payload).
        let mut zstd = encode(Compression::Zstd, Level::Low, &data);
        zstd.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        assert_same(
            &data,
            &decode(Compression::Zstd, &zstd).unwrap(),
            "zstd skippable",
        );
        // snappy: a padding chunk (type 0xfe).
        let mut snappy = encode(Compression::Snappy, Level::Low, &data);
        snappy.extend_from_slice(&[0xfe, 2, 0, 0, 0, 0]);
        assert_same(
            &data,
            &decode(Compression::Snappy, &snappy).unwrap(),
            "snappy padding",
        );
    }

    /// `stream` with the LZMA2 dictionary of its first block set to `code` (xz file
    /// format §5.3.1: `(2 | (code & 1)) << (code / 2 + 11)` bytes) and the block header's
    /// CRC32 mended, so only the dictionary size differs.
    fn with_xz_dictionary(stream: &[u8], code: u8) -> Vec<u8> {
        let mut stream = stream.to_vec();
        let start = 12; // after the stream header
        let len = (usize::from(stream[start]) + 1) * 4;
        let header = &mut stream[start..start + len];
        // Skip the size byte, the flags and the optional sizes (varints), to the filter.
        let flags = header[1];
        let mut at = 2;
        for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
            if present {
                while header[at] & 0x80 != 0 {
                    at += 1;
                }
                at += 1;
            }
        }
        assert_eq!(
            header[at..at + 2],
            [0x21, 1],
            "an LZMA2 filter with 1 property byte"
        );
        header[at + 2] = code;
        let mut crc = flate2::Crc::new();
        crc.update(&header[..len - 4]);
        header[len - 4..].copy_from_slice(&crc.sum().to_le_bytes());
        stream
    }

    /// A zstd frame with no content size, the window `2^window_log` and one raw block `x`.
    fn zstd_frame_with_window(window_log: u8) -> Vec<u8> {
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (window_log - 10) << 3];
        // Block header: last block, raw, 1 byte.
        frame.extend_from_slice(&[0x09, 0x00, 0x00, b'x']);
        frame
    }

    #[test]
    fn decoder_memory_is_bounded() {
        let refused = |algorithm: Compression, stream: &[u8], what: &str| {
            let e = decode(algorithm, stream).expect_err(what);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
            let message = e.to_string();
            assert!(
                message.contains("more than 128 MiB of memory"),
                "{what}: {e}"
            );
            assert!(message.contains(algorithm.name()), "{what}: {e}");
        };
        // zstd: the largest window the CLI decodes by default is ours; one more is refused
        // (before the decoder allocates it), up to zstd's 2 GiB maximum.
        assert_eq!(
            decode(Compression::Zstd, &zstd_frame_with_window(27)).unwrap(),
            b"x"
        );
        for window_log in [28, 30, 31] {
            refused(
                Compression::Zstd,
                &zstd_frame_with_window(window_log),
                &format!("zstd window 2^{window_log}"),
            );
        }
        // xz: the dictionaries of `xz -9` (64 MiB, code 28) and 96 MiB (29) are decoded;
        // 128 MiB (30), 1.5 GiB (37) and 4 GiB (40, the largest) are refused.
        let data = pseudo_wal(100_000);
        let stream = encode(Compression::Xz, Level::Low, &data);
        for code in [28, 29] {
            let large = with_xz_dictionary(&stream, code);
            let decoded = decode(Compression::Xz, &large).unwrap();
            assert_same(&data, &decoded, &format!("xz dictionary code {code}"));
        }
        for code in [30, 37, 40] {
            refused(
                Compression::Xz,
                &with_xz_dictionary(&stream, code),
                &format!("xz dictionary code {code}"),
            );
        }
    }

    /// Frames whose blocks shrink from one frame to the next (or that follow a legacy
    /// frame, whose blocks are 8 MiB) decode to the concatenated data. A `FrameDecoder`
    /// reused across frames kept the larger buffers, which its debug assertions refuse: a
    /// debug build panicked (found by the `decode_lz4` fuzz target).
    #[test]
    fn lz4_frames_with_shrinking_blocks_decode() {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
        let frame = |info: FrameInfo, data: &[u8]| {
            let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        };
        let data = pseudo_wal(300_000);
        let (first, second) = data.split_at(100_000);
        let large = FrameInfo::new().block_size(BlockSize::Max4MB);
        for small_mode in [BlockMode::Independent, BlockMode::Linked] {
            let small = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(small_mode);
            for first_info in [large.clone(), FrameInfo::new().legacy_frame(true)] {
                let what = format!("{first_info:?} then {small_mode:?} 64 KiB blocks");
                let mut stream = frame(first_info, first);
                stream.extend(frame(small.clone(), second));
                let decoded = decode(Compression::Lz4, &stream).expect(&what);
                assert_same(&data, &decoded, &what);
            }
        }
    }

    /// `lz4 -l` writes legacy frames: no descriptor, no end mark, so the stream ends after
    /// any whole block; cut anywhere else it is an error.
    #[test]
    fn lz4_legacy_frames_decode_and_cuts_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let data = pseudo_wal(300_000);
        let plain = write_temp(dir.path(), "plain", &data);
        let stream = cli("lz4", &["-l", "-c", plain.to_str().unwrap()], Stdio::null());
        assert_same(&data, &decode(Compression::Lz4, &stream).unwrap(), "lz4 -l");
        // Magic, then one block: its size (4 bytes), its data.
        for cut in [5, 7, 8, 9, stream.len() / 2, stream.len() - 1] {
            let e = decode(Compression::Lz4, &stream[..cut])
                .expect_err(&format!("lz4 -l cut at {cut}/{}", stream.len()));
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ),
                "cut at {cut}: {e}"
            );
        }
        // Cut right after the magic: a legacy frame of no block.
        assert_eq!(decode(Compression::Lz4, &stream[..4]).unwrap(), b"");
    }

    #[test]
    fn decoded_output_is_capped_at_the_largest_segment() {
        // 1024 frames of 1 MiB of zeros: exactly 1 GiB, a few KiB compressed.
        let frame = encode(Compression::Zstd, Level::Low, &vec![0; 1 << 20]);
        let mut stream = frame.repeat(1024);
        let decoded = decompress(Compression::Zstd, &stream[..], &mut io::sink()).unwrap();
        assert_eq!(decoded, MAX_DECODED);
        stream.extend_from_slice(&encode(Compression::Zstd, Level::Low, b"!"));
        let e = decompress(Compression::Zstd, &stream[..], &mut io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("largest WAL segment"), "{e}");
        // The reader stays failed.
        let mut reader = decoder(Compression::Zstd, &stream[..]).unwrap();
        assert!(copy(&mut reader, &mut io::sink()).is_err());
        assert!(reader.read(&mut [0; 16]).is_err());
    }

    #[test]
    fn corrupt_byte_is_an_error() {
        let data = pseudo_wal(300_000);
        for algorithm in Compression::ALL {
            let stream = encode(algorithm, Level::Low, &data);
            for at in [stream.len() / 3, stream.len() / 2, stream.len() - 6] {
                let mut corrupt = stream.clone();
                corrupt[at] ^= 0x55;
                let e = decode(algorithm, &corrupt).expect_err(&format!(
                    "{algorithm}: byte {at} of {} flipped without error",
                    stream.len()
                ));
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                    ),
                    "{algorithm} at {at}: {e} ({:?})",
                    e.kind()
                );
                assert!(e.to_string().contains(algorithm.name()), "{e}");
            }
        }
    }

    /// Yields `limit` bytes of `inner`, then fails like a dying disk.
    struct FailingAfter<R> {
        inner: R,
        limit: usize,
    }

    impl<R: Read> Read for FailingAfter<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.limit == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let len = buf.len().min(self.limit);
            let len = self.inner.read(&mut buf[..len])?;
            self.limit -= len;
            Ok(len)
        }
    }

    #[test]
    fn input_errors_keep_their_kind_and_message() {
        let data = pseudo_wal(300_000);
        for algorithm in Compression::ALL {
            let stream = encode(algorithm, Level::Low, &data);
            let input = BufReader::with_capacity(
                4096,
                FailingAfter {
                    inner: &stream[..],
                    limit: stream.len() / 2,
                },
            );
            let e = decompress(algorithm, input, &mut io::sink()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::Other, "{algorithm}: {e}");
            assert_eq!(e.to_string(), "disk on fire", "{algorithm}");
        }
    }

    #[test]
    fn cli_output_decodes_with_ours() {
        let dir = tempfile::tempdir().unwrap();
        let data = pseudo_wal(SEGMENT_PLUS);
        let plain = write_temp(dir.path(), "segment", &data);
        // (algorithm, program, flags, read the segment from stdin instead of naming it)
        let cases: &[(Compression, &str, &[&str], bool)] = &[
            (Compression::Gzip, "gzip", &["-6", "-c"], false),
            (Compression::Bzip2, "bzip2", &["-9", "-c"], false),
            (Compression::Xz, "xz", &["-6", "-T1", "-c"], false),
            // Multi-threaded xz writes block sizes in the block headers; the 4 MiB blocks
            // make several of them out of one segment.
            (
                Compression::Xz,
                "xz",
                &["-T2", "--block-size=4MiB", "-c"],
                false,
            ),
            (Compression::Zstd, "zstd", &["-q", "-3", "-c"], false),
            (
                Compression::Zstd,
                "zstd",
                &["-q", "-19", "--long=27", "-c"],
                false,
            ),
            // From stdin the size is unknown, so the frame keeps its whole 128 MiB window:
            // the largest we decode, as `zstd -d` (see decoder_memory_is_bounded).
            (
                Compression::Zstd,
                "zstd",
                &["-q", "-1", "--long=27", "-c"],
                true,
            ),
            (Compression::Lz4, "lz4", &["-c"], false),
            (Compression::Lz4, "lz4", &["-BD", "-c"], false),
            (
                Compression::Lz4,
                "lz4",
                &["-B4", "--content-size", "-c"],
                false,
            ),
            (
                Compression::Lz4,
                "lz4",
                &["-BX", "--no-frame-crc", "-c"],
                false,
            ),
        ];
        let check = |algorithm: Compression, what: &str, compressed: &[u8]| {
            assert_eq!(Compression::identify(compressed), Some(algorithm), "{what}");
            let decoded = decode(algorithm, compressed).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_same(&data, &decoded, what);
        };
        std::thread::scope(|scope| {
            for &(algorithm, program, flags, stdin) in cases {
                let (plain, check) = (&plain, &check);
                scope.spawn(move || {
                    let what = format!("{program} {}", flags.join(" "));
                    let compressed = if stdin {
                        cli(program, flags, File::open(plain).unwrap().into())
                    } else {
                        let mut argv = flags.to_vec();
                        argv.push(plain.to_str().unwrap());
                        cli(program, &argv, Stdio::null())
                    };
                    check(algorithm, &what, &compressed);
                });
            }
            // Two gzip members, as `cat a.gz b.gz` or an appending writer leaves them.
            let (data, dir, check) = (&data, dir.path(), &check);
            scope.spawn(move || {
                let half = write_temp(dir, "half", &data[..data.len() / 2]);
                let rest = write_temp(dir, "rest", &data[data.len() / 2..]);
                let mut members = cli("gzip", &["-1", "-c", half.to_str().unwrap()], Stdio::null());
                members.extend(cli(
                    "gzip",
                    &["-9", "-c", rest.to_str().unwrap()],
                    Stdio::null(),
                ));
                check(Compression::Gzip, "two gzip members", &members);
            });
        });
    }

    #[test]
    fn open_decompressed_identifies_plain_and_compressed_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = pseudo_wal(500_000);
        let mut cases = vec![(None, write_temp(dir.path(), "plain", &data), data.clone())];
        for algorithm in Compression::ALL {
            let compressed = encode(algorithm, Level::Medium, &data);
            cases.push((
                Some(algorithm),
                write_temp(dir.path(), algorithm.name(), &compressed),
                data.clone(),
            ));
        }
        // Shorter than any magic, and empty: plain.
        cases.push((
            None,
            write_temp(dir.path(), "short", b"\x1f\x8b"),
            b"\x1f\x8b".to_vec(),
        ));
        cases.push((None, write_temp(dir.path(), "empty", b""), Vec::new()));
        for (expected, path, content) in cases {
            let (found, mut reader) = open_decompressed(&path).unwrap();
            assert_eq!(found, expected, "{}", path.display());
            assert!(
                same_content(&mut reader, &mut &content[..]).unwrap(),
                "{}",
                path.display()
            );
        }
        // A file with a magic and a broken body is an error, not plain data.
        let mut broken = Compression::Zstd.magic().to_vec();
        broken.extend_from_slice(&[0xAA; 64]);
        let path = write_temp(dir.path(), "broken", &broken);
        let (found, mut reader) = open_decompressed(&path).unwrap();
        assert_eq!(found, Some(Compression::Zstd));
        let e = copy(&mut reader, &mut io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let e = open_decompressed(&dir.path().join("missing"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    /// Returns at most `step` bytes per read, to exercise short reads.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let len = buf.len().min(self.step).min(self.data.len());
            buf[..len].copy_from_slice(&self.data[..len]);
            self.data = &self.data[len..];
            Ok(len)
        }
    }

    #[test]
    fn same_content_compares_bytes_and_lengths() {
        let data = pseudo_wal(3 * BUFFER_SIZE + 17);
        let same = |a: &[u8], b: &[u8]| same_content(&mut &a[..], &mut &b[..]).unwrap();
        assert!(same(&data, &data));
        assert!(same(b"", b""));
        assert!(same(&data[..BUFFER_SIZE], &data[..BUFFER_SIZE]));
        let mut different = data.clone();
        *different.last_mut().unwrap() ^= 1;
        assert!(!same(&data, &different));
        different = data.clone();
        different[0] ^= 1;
        assert!(!same(&data, &different));
        assert!(!same(&data, &data[..data.len() - 1]));
        assert!(!same(&data[..data.len() - 1], &data));
        assert!(!same(&data[..BUFFER_SIZE], &data[..=BUFFER_SIZE]));
        assert!(!same(b"", b"x"));
        // Short reads on either side do not matter.
        let mut trickle = Trickle {
            data: &data,
            step: 1000,
        };
        assert!(same_content(&mut trickle, &mut &data[..]).unwrap());
        let mut trickle = Trickle {
            data: &data[..data.len() - 1],
            step: 333,
        };
        assert!(!same_content(&mut &data[..], &mut trickle).unwrap());
    }
}
