//! The compression registry: Barman's algorithm names, cloud key extensions and magic bytes.
//!
//! Local archives store compressed WAL under its plain name
//! (`docs/barman-formats.md#archive-layout`), so the only ways to know how a stored file is
//! compressed are xlog.db and the file's first bytes. The magic numbers and names here are
//! Barman's (`docs/barman-formats.md#compression`, and for recognising a format
//! `docs/barman-formats.md#detecting-compression`), so walpipe reads Barman's archives and
//! Barman reads ours.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A compression algorithm, by Barman's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `bzip2` (Barman's deprecated alias `pybzip2` reads as this).
    #[serde(alias = "pybzip2")]
    Bzip2,
    /// `gzip` (`pygzip` and `pigz` write the same format and read as this).
    #[serde(alias = "pygzip", alias = "pigz")]
    Gzip,
    /// LZ4 frame format.
    Lz4,
    /// Snappy framing format (python-snappy's `stream_compress`).
    Snappy,
    /// xz (LZMA2 in the .xz container).
    Xz,
    /// Zstandard.
    Zstd,
}

/// The longest magic in the registry (snappy's stream identifier): Barman's `MAGIC_MAX_LENGTH`.
pub const MAGIC_MAX_LENGTH: usize = 10;

impl Compression {
    /// Every algorithm, in Barman's identification order (alphabetical by name).
    pub const ALL: [Compression; 6] = [
        Compression::Bzip2,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Snappy,
        Compression::Xz,
        Compression::Zstd,
    ];

    /// Barman's name, as written in xlog.db.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Snappy => "snappy",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The extension barman-cloud appends to object keys
    /// (`docs/barman-formats.md#cloud-object-keys`).
    #[must_use]
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Bzip2 => ".bz2",
            Compression::Gzip => ".gz",
            Compression::Lz4 => ".lz4",
            Compression::Snappy => ".snappy",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }

    /// The bytes every file of this format starts with (`docs/barman-formats.md#compression`).
    #[must_use]
    pub fn magic(self) -> &'static [u8] {
        match self {
            Compression::Bzip2 => b"BZh",
            Compression::Gzip => &[0x1f, 0x8b, 0x08],
            Compression::Lz4 => &[0x04, 0x22, 0x4d, 0x18],
            Compression::Snappy => &[0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59],
            Compression::Xz => &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
            Compression::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
        }
    }

    /// The algorithm whose magic starts `head`, as Barman's `identify_compression`: the
    /// first match in alphabetical order; an empty `head` never matches.
    #[must_use]
    pub fn identify(head: &[u8]) -> Option<Compression> {
        Compression::ALL
            .into_iter()
            .find(|c| !head.is_empty() && head.starts_with(c.magic()))
    }

    /// Reads the first [`MAGIC_MAX_LENGTH`] bytes of `path` and identifies them.
    pub fn identify_file(path: &Path) -> io::Result<Option<Compression>> {
        let mut head = Vec::with_capacity(MAGIC_MAX_LENGTH);
        crate::durable::open_regular(path)?
            .take(MAGIC_MAX_LENGTH as u64)
            .read_to_end(&mut head)?;
        Ok(Compression::identify(&head))
    }

    /// The algorithm whose cloud extension ends `key`, and `key` without it.
    #[must_use]
    pub fn strip_extension(key: &str) -> (&str, Option<Compression>) {
        for c in Compression::ALL {
            if let Some(stem) = key.strip_suffix(c.extension()) {
                return (stem, Some(c));
            }
        }
        (key, None)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for a compression name walpipe does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?} (known: bzip2, gzip, lz4, snappy, xz, zstd)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    /// Accepts Barman's names and its aliases (`pygzip`, `pigz`, `pybzip2`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "bzip2" | "pybzip2" => Compression::Bzip2,
            "gzip" | "pygzip" | "pigz" => Compression::Gzip,
            "lz4" => Compression::Lz4,
            "snappy" => Compression::Snappy,
            "xz" => Compression::Xz,
            "zstd" => Compression::Zstd,
            other => return Err(UnknownCompression(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_each_magic_and_nothing_else() {
        for c in Compression::ALL {
            let mut head = c.magic().to_vec();
            head.extend_from_slice(b"payload");
            assert_eq!(Compression::identify(&head), Some(c), "{c}");
            assert_eq!(
                Compression::identify(&c.magic()[..c.magic().len() - 1]),
                None
            );
        }
        assert_eq!(Compression::identify(b""), None);
        assert_eq!(Compression::identify(&[0u8; 16]), None);
        // A WAL page header (magic 0xD110 for PostgreSQL 15) is not compressed.
        assert_eq!(Compression::identify(&[0x10, 0xd1, 0x06, 0x00]), None);
    }

    #[test]
    fn barman_names_and_aliases_parse() {
        assert_eq!("pygzip".parse(), Ok(Compression::Gzip));
        assert_eq!("pigz".parse(), Ok(Compression::Gzip));
        assert_eq!("pybzip2".parse(), Ok(Compression::Bzip2));
        assert_eq!("zstd".parse(), Ok(Compression::Zstd));
        assert!("custom".parse::<Compression>().is_err());
        let c: Compression = serde_json::from_str("\"pygzip\"").unwrap();
        assert_eq!(c, Compression::Gzip);
        assert_eq!(serde_json::to_string(&Compression::Lz4).unwrap(), "\"lz4\"");
    }

    #[test]
    fn cloud_extensions_strip() {
        assert_eq!(
            Compression::strip_extension("000000010000000000000001.zst"),
            ("000000010000000000000001", Some(Compression::Zstd))
        );
        assert_eq!(
            Compression::strip_extension("000000010000000000000001.partial.snappy"),
            (
                "000000010000000000000001.partial",
                Some(Compression::Snappy)
            )
        );
        assert_eq!(
            Compression::strip_extension("00000002.history"),
            ("00000002.history", None)
        );
    }
}
