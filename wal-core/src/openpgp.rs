//! Recognising encrypted OpenPGP messages by their first packet header.
//!
//! A local archive stores an encrypted WAL under its plain name
//! (`docs/barman-formats.md#encryption`), and only
//! xlog.db says it is encrypted. wal-scan (files a client encrypted before dropping them
//! in the incoming queue, uncatalogued files of an archive), wal-store (a duplicate whose
//! stored copy is encrypted, rebuild-xlogdb) and wal-encrypt (records that do not say)
//! need to know from the bytes. Barman spawns `file --brief` per file for that; here it is
//! one small read and no OpenPGP library.
//!
//! An encrypted message (RFC 9580 §10.3) starts with a session key packet, public-key
//! (PKESK, tag 1) or symmetric-key (SKESK, tag 3), or, when the session key was agreed
//! otherwise, directly with an encrypted data packet: SED (tag 9, no integrity
//! protection), SEIPD (tag 18) or the draft AEAD packet (tag 20). The first byte of a
//! packet (its CTB) holds the tag in either the old or the new packet format (RFC 9580
//! §4.2); the version byte after the length rules out look-alikes. None of walpipe's other
//! formats can be mistaken for one: a WAL page starts with its magic (`10 d1` on
//! PostgreSQL 15), text files (history, backup labels) with ASCII, and every compression
//! magic with a byte that is no CTB of these tags.
//!
//! ASCII-armoured messages (`gpg --armor`) start with `-----BEGIN PGP MESSAGE-----`.

use std::io::{self, Read};
use std::path::Path;

/// Bytes to read from the start of a file to identify it: the longest packet header (a
/// CTB and a five-octet length) plus a version octet, or the armour line.
pub const HEAD_LENGTH: usize = ARMOR_HEADER.len();

/// The first line of an ASCII-armoured OpenPGP message.
pub const ARMOR_HEADER: &[u8] = b"-----BEGIN PGP MESSAGE-----";

/// Packet tag of a Public-Key Encrypted Session Key packet.
pub const TAG_PKESK: u8 = 1;
/// Packet tag of a Symmetric-Key Encrypted Session Key packet.
pub const TAG_SKESK: u8 = 3;
/// Packet tag of a Symmetrically Encrypted Data packet (no integrity protection).
pub const TAG_SED: u8 = 9;
/// Packet tag of a Marker packet (ignored by readers).
pub const TAG_MARKER: u8 = 10;
/// Packet tag of a Literal Data packet.
pub const TAG_LITERAL: u8 = 11;
/// Packet tag of a Symmetrically Encrypted and Integrity Protected Data packet.
pub const TAG_SEIPD: u8 = 18;
/// Packet tag of a Modification Detection Code packet.
pub const TAG_MDC: u8 = 19;
/// Packet tag of the AEAD Encrypted Data packet of the RFC 4880bis drafts.
pub const TAG_AEAD: u8 = 20;

/// How an encrypted OpenPGP message starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageStart {
    /// With a session key encrypted to a public key (`gpg --encrypt`).
    PublicKeySessionKey,
    /// With a session key derived from a passphrase (`gpg --symmetric`).
    SymmetricSessionKey,
    /// Directly with encrypted data; `authenticated` is false for the SED packet, which
    /// has no integrity protection and must not be trusted.
    EncryptedData {
        /// Whether the packet protects its content (SEIPD, AEAD) or not (SED).
        authenticated: bool,
    },
    /// With the ASCII armour line.
    Armored,
}

/// The length of a packet body, as its header gives it (RFC 9580 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// The whole body is this long.
    Full(u32),
    /// This many bytes follow, then another length header for the rest (new format only).
    Partial(u32),
    /// The body runs to the end of the input (old format only).
    Indeterminate,
}

/// A parsed packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// The packet tag.
    pub tag: u8,
    /// The body length (or the first partial length).
    pub length: BodyLength,
    /// Bytes taken by the header (CTB and length octets).
    pub header_len: usize,
}

/// Parses the packet header at the start of `bytes`; `None` when the first byte is not a
/// CTB or the length octets are cut off.
#[must_use]
pub fn parse_header(bytes: &[u8]) -> Option<PacketHeader> {
    let ctb = *bytes.first()?;
    if ctb & 0x80 == 0 {
        return None;
    }
    if ctb & 0x40 == 0 {
        // Old format: tag in bits 5-2, length type in bits 1-0.
        let tag = (ctb >> 2) & 0x0f;
        let (length, header_len) = match ctb & 0x03 {
            0 => (BodyLength::Full(u32::from(*bytes.get(1)?)), 2),
            1 => (
                BodyLength::Full(u32::from(u16::from_be_bytes([
                    *bytes.get(1)?,
                    *bytes.get(2)?,
                ]))),
                3,
            ),
            2 => (BodyLength::Full(be_u32(bytes.get(1..5)?)), 5),
            _ => (BodyLength::Indeterminate, 1),
        };
        return Some(PacketHeader {
            tag,
            length,
            header_len,
        });
    }
    let (length, len_octets) = parse_new_length(bytes.get(1..)?)?;
    Some(PacketHeader {
        tag: ctb & 0x3f,
        length,
        header_len: 1 + len_octets,
    })
}

/// Parses a new-format length (also the header of each partial body chunk after the
/// first); returns the length and the octets it took.
#[must_use]
pub fn parse_new_length(bytes: &[u8]) -> Option<(BodyLength, usize)> {
    let first = *bytes.first()?;
    Some(match first {
        0..=191 => (BodyLength::Full(u32::from(first)), 1),
        192..=223 => {
            let second = *bytes.get(1)?;
            let len = ((u32::from(first) - 192) << 8) + u32::from(second) + 192;
            (BodyLength::Full(len), 2)
        }
        224..=254 => (BodyLength::Partial(1 << (first & 0x1f)), 1),
        255 => (BodyLength::Full(be_u32(bytes.get(1..5)?)), 5),
    })
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut octets = [0u8; 4];
    octets.copy_from_slice(bytes);
    u32::from_be_bytes(octets)
}

/// How `head` (the first bytes of a file, [`HEAD_LENGTH`] of them when the file is that
/// long) starts, when it starts an encrypted OpenPGP message.
#[must_use]
pub fn identify(head: &[u8]) -> Option<MessageStart> {
    if head.starts_with(ARMOR_HEADER) {
        return Some(MessageStart::Armored);
    }
    let header = parse_header(head)?;
    let version = head.get(header.header_len).copied();
    let definite = matches!(header.length, BodyLength::Full(_));
    match header.tag {
        // Session key packets are short and always have a definite length.
        TAG_PKESK if definite && matches!(version, Some(3 | 6)) => {
            Some(MessageStart::PublicKeySessionKey)
        }
        TAG_SKESK if definite && matches!(version, Some(4..=6)) => {
            Some(MessageStart::SymmetricSessionKey)
        }
        TAG_SEIPD if matches!(version, Some(1 | 2)) => Some(MessageStart::EncryptedData {
            authenticated: true,
        }),
        TAG_AEAD if version == Some(1) => Some(MessageStart::EncryptedData {
            authenticated: true,
        }),
        // No version octet: the body is ciphertext from the first byte.
        TAG_SED if version.is_some() => Some(MessageStart::EncryptedData {
            authenticated: false,
        }),
        _ => None,
    }
}

/// Reads the first [`HEAD_LENGTH`] bytes of `path` and identifies them.
pub fn identify_file(path: &Path) -> io::Result<Option<MessageStart>> {
    let mut head = Vec::with_capacity(HEAD_LENGTH);
    crate::durable::open_regular(path)?
        .take(HEAD_LENGTH as u64)
        .read_to_end(&mut head)?;
    Ok(identify(&head))
}

/// True when `path` starts an encrypted OpenPGP message (Barman's "PGP … encrypted").
pub fn is_encrypted_file(path: &Path) -> io::Result<bool> {
    identify_file(path).map(|start| start.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;

    #[test]
    fn gpg_output_is_recognised() {
        // `gpg --encrypt` (GnuPG 2.2): old-format PKESK with a two-octet length.
        assert_eq!(
            identify(&[0x85, 0x01, 0x8c, 0x03, 0x06, 0x15]),
            Some(MessageStart::PublicKeySessionKey)
        );
        // sequoia: new-format PKESK.
        assert_eq!(
            identify(&[0xc1, 0xc1, 0x8c, 0x03]),
            Some(MessageStart::PublicKeySessionKey)
        );
        // `gpg --symmetric`: old-format SKESK, one-octet length.
        assert_eq!(
            identify(&[0x8c, 0x0d, 0x04, 0x09, 0x03]),
            Some(MessageStart::SymmetricSessionKey)
        );
        // A bare SEIPD packet with a partial length; a bare SED packet.
        assert_eq!(
            identify(&[0xd2, 0xe9, 0x01, 0x55]),
            Some(MessageStart::EncryptedData {
                authenticated: true
            })
        );
        assert_eq!(
            identify(&[0xa4, 0x20, 0x11, 0x22]),
            Some(MessageStart::EncryptedData {
                authenticated: false
            })
        );
        assert_eq!(
            identify(b"-----BEGIN PGP MESSAGE-----\n\nhQGMA"),
            Some(MessageStart::Armored)
        );
    }

    #[test]
    fn other_formats_are_not_taken_for_messages() {
        // WAL page magic (PostgreSQL 15), a history file, every compression magic.
        assert_eq!(identify(&[0x10, 0xd1, 0x02, 0x00]), None);
        assert_eq!(
            identify(b"1\t0/3000000\tno recovery target specified\n"),
            None
        );
        for algorithm in Compression::ALL {
            assert_eq!(identify(algorithm.magic()), None, "{algorithm}");
        }
        // Right tag, wrong version; a PKESK cannot have a partial length; too short.
        assert_eq!(identify(&[0x85, 0x01, 0x8c, 0x07]), None);
        assert_eq!(identify(&[0xc1, 0xe9, 0x03]), None);
        assert_eq!(identify(&[0x85, 0x01]), None);
        assert_eq!(identify(&[]), None);
        // Other packets: a public key, a literal data packet, a signature.
        assert_eq!(identify(&[0x99, 0x01, 0x8d, 0x04]), None);
        assert_eq!(identify(&[0xcb, 0x0c, 0x62, 0x00]), None);
        assert_eq!(identify(&[0x89, 0x01, 0x33, 0x04]), None);
    }

    #[test]
    fn lengths_in_both_formats() {
        let header = |bytes: &[u8]| parse_header(bytes).unwrap();
        assert_eq!(
            header(&[0xae, 0x01, 0x00, 0x00, 0x09, 0x62]),
            PacketHeader {
                tag: TAG_LITERAL,
                length: BodyLength::Full(0x0100_0009),
                header_len: 5
            }
        );
        assert_eq!(header(&[0xa3, 0x01]).length, BodyLength::Indeterminate);
        assert_eq!(header(&[0xa3, 0x01]).header_len, 1);
        assert_eq!(header(&[0xcb, 100]).length, BodyLength::Full(100));
        assert_eq!(header(&[0xcb, 0xc5, 0xfb]).length, BodyLength::Full(1723));
        assert_eq!(header(&[0xd2, 0xe1]).length, BodyLength::Partial(2));
        assert_eq!(
            header(&[0xd2, 0xff, 0x01, 0x00, 0x00, 0x37]),
            PacketHeader {
                tag: TAG_SEIPD,
                length: BodyLength::Full(16_777_271),
                header_len: 6
            }
        );
        assert_eq!(parse_header(&[0xd2, 0xff, 0x01]), None);
        assert_eq!(parse_header(&[0x7f, 0x00]), None);
    }

    #[test]
    fn files_are_identified_by_their_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000010000000000000001");
        std::fs::write(&path, [0x8c, 0x0d, 0x04, 0x09, 0x03, 0x08]).unwrap();
        assert!(is_encrypted_file(&path).unwrap());
        std::fs::write(&path, [0x10, 0xd1]).unwrap();
        assert!(!is_encrypted_file(&path).unwrap());
        assert!(identify_file(&dir.path().join("missing")).is_err());
    }
}
