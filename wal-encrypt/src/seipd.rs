//! The SEIPDv1 packet with one literal data packet inside: what `gpg --encrypt
//! --compress-level 0` writes (Barman's command) and what this stage writes.
//!
//! GnuPG 2.2 (Debian 12) reads SEIPDv1 but not SEIPDv2, so this is the format; the bulk
//! work is in [`crate::cipher`]. The packet (RFC 9580 §5.13.1) is a version octet, then
//! under CFB encryption: a random prefix whose last two octets repeat, the literal data
//! packet, and an MDC packet holding the SHA-1 of all the plaintext before the digest.
//!
//! Reading takes the same shape only: a message whose first inner packet is anything
//! but a literal data packet (gpg's default zlib compression, a signed message) is handed
//! back untouched, for sequoia to read in full.

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;

use sequoia_openpgp::types::SymmetricAlgorithm;
use wal_core::openpgp::{BodyLength, TAG_LITERAL, TAG_SEIPD};

use crate::cipher::{BLOCK, CfbReader, CfbWriter, MDC_DIGEST, Sha1Thread};
use crate::framing::{
    BodyReader, CHUNK, PartialBodyWriter, invalid, push_length, read_header, truncated,
};

/// The random prefix: one block, then its last two octets again.
const PREFIX: usize = BLOCK + 2;

/// The literal data packet's header fields we write: binary data (`b`), no file name,
/// no date (as sequoia writes them; gpg reads them alike).
const LITERAL_FIELDS: [u8; 6] = [b'b', 0, 0, 0, 0, 0];

/// Writes a SEIPDv1 packet holding `input` as literal data, encrypted with `key`;
/// returns `output` and the bytes of `input` encrypted.
///
/// With the input's `size` known, every packet gets a definite length (as gpg writes
/// them) and the input is read straight into the cipher's buffer; `input` must then hold
/// exactly `size` bytes (a file that changes size meanwhile is an error). Without it, the
/// packets use partial body lengths.
pub fn write<W: Write>(
    mut output: W,
    algo: SymmetricAlgorithm,
    key: &[u8],
    input: &mut impl Read,
    size: Option<u64>,
) -> io::Result<(W, u64)> {
    let mut prefix = [0u8; PREFIX];
    openssl::rand::rand_bytes(&mut prefix[..BLOCK]).map_err(io::Error::other)?;
    prefix.copy_within(BLOCK - 2..BLOCK, BLOCK);
    if let Some((size, lengths)) = size.and_then(|size| Some((size, Lengths::new(size)?))) {
        let mut header = vec![0xc0 | TAG_SEIPD];
        push_length(lengths.seipd, &mut header);
        header.push(1);
        output.write_all(&header)?;
        let mut cfb = CfbWriter::new(output, algo, key)?;
        cfb.write_all(&prefix)?;
        let mut literal = vec![0xc0 | TAG_LITERAL];
        push_length(lengths.literal, &mut literal);
        literal.extend_from_slice(&LITERAL_FIELDS);
        cfb.write_all(&literal)?;
        let copied = cfb.fill_from(input, size)?;
        if copied != size || input.read(&mut [0u8; 1])? != 0 {
            return Err(io::Error::other(format!(
                "the file changed size while being encrypted ({size} bytes expected)"
            )));
        }
        return Ok((cfb.finish()?, copied));
    }
    output.write_all(&[0xc0 | TAG_SEIPD])?;
    let mut body = PartialBodyWriter::new(output);
    body.write_all(&[1])?;
    let mut cfb = CfbWriter::new(body, algo, key)?;
    cfb.write_all(&prefix)?;
    cfb.write_all(&[0xc0 | TAG_LITERAL])?;
    let mut literal = PartialBodyWriter::new(cfb);
    literal.write_all(&LITERAL_FIELDS)?;
    let copied = copy(input, &mut literal)?;
    let output = literal.finish()?.finish()?.finish()?;
    Ok((output, copied))
}

/// The definite body lengths of the two packets for an input of `size` bytes.
struct Lengths {
    literal: usize,
    seipd: usize,
}

impl Lengths {
    /// `None` when a length does not fit the four-octet form.
    fn new(size: u64) -> Option<Lengths> {
        let literal = usize::try_from(size)
            .ok()?
            .checked_add(LITERAL_FIELDS.len())?;
        let mut header = Vec::with_capacity(5);
        push_length(literal, &mut header);
        // Version, prefix, the literal packet (CTB, length, body), the MDC packet.
        let seipd = 1 + PREFIX + 1 + header.len() + literal + 2 + MDC_DIGEST;
        (u32::try_from(seipd).is_ok()).then_some(Lengths { literal, seipd })
    }
}

/// What [`read`] found inside the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner {
    /// A literal data packet, whose content (this many bytes) went to the output; the
    /// MDC matched.
    Literal(u64),
    /// Something else (compressed data, a signed message): nothing was written.
    Other,
}

/// Decrypts the body of a SEIPDv1 packet (`ciphertext`: what follows the version octet)
/// with `key`, writing the literal data to `output` and checking the MDC.
///
/// Format errors are `InvalidData` (with the reason) or `UnexpectedEof` (truncation).
/// The plaintext goes out before the MDC is checked, as with gpg: a caller that gets an
/// error must throw the output away.
pub fn read(
    ciphertext: impl Read,
    algo: SymmetricAlgorithm,
    key: &[u8],
    output: &mut impl Write,
) -> io::Result<Inner> {
    let mut plain = PlainStream::new(CfbReader::new(ciphertext, algo, key)?)?;
    let mut prefix = [0u8; PREFIX];
    read_exactly(&mut plain, &mut prefix)?;
    let mut raw = Vec::new();
    let header = read_header(&mut plain, &mut raw)?.ok_or_else(truncated)?;
    if header.tag != TAG_LITERAL || header.length == BodyLength::Indeterminate {
        return Ok(Inner::Other);
    }
    let mut literal = BodyReader::new(&mut plain, header.length);
    // Format, file name (length-prefixed) and date: nothing walpipe keeps.
    let mut fields = [0u8; 2];
    read_exactly(&mut literal, &mut fields)?;
    let mut name_and_date = vec![0u8; usize::from(fields[1]) + 4];
    read_exactly(&mut literal, &mut name_and_date)?;
    let copied = copy_buffered(&mut literal, output)?;
    let mut mdc = [0u8; 2 + MDC_DIGEST];
    match plain.read_exact(&mut mdc) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(invalid(
                "no modification detection code after the literal data (truncated?)",
            ));
        }
        other => other?,
    }
    if mdc[..2] != [0xd3, 0x14] {
        return Err(invalid(
            "unexpected packet after the literal data where the MDC belongs",
        ));
    }
    if plain.read(&mut [0u8; 1])? != 0 {
        return Err(invalid("data after the MDC packet"));
    }
    if plain.digest()? != mdc[2..] {
        return Err(invalid(
            "modification detected: the MDC does not match (corrupt or tampered message)",
        ));
    }
    Ok(Inner::Literal(copied))
}

fn read_exactly(input: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            truncated()
        } else {
            e
        }
    })
}

/// Writes out what `from` lends, with no copy of its own; returns the bytes copied.
fn copy_buffered(from: &mut impl BufRead, to: &mut impl Write) -> io::Result<u64> {
    let mut copied = 0u64;
    loop {
        let buf = from.fill_buf()?;
        if buf.is_empty() {
            return Ok(copied);
        }
        let len = buf.len();
        to.write_all(buf)?;
        from.consume(len);
        copied += len as u64;
    }
}

/// Copies through one [`CHUNK`] buffer; returns the bytes copied.
pub fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buffer = vec![0u8; CHUNK];
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

/// The decrypted stream, hashed on the side: everything but its last 20 bytes (the MDC
/// digest, which the MDC does not cover) goes to the hashing thread.
struct PlainStream<R: Read> {
    source: CfbReader<R>,
    hasher: Sha1Thread,
    chunk: Arc<Vec<u8>>,
    position: usize,
    /// The last bytes seen, not hashed yet: they may be the digest.
    held_back: Vec<u8>,
}

impl<R: Read> PlainStream<R> {
    fn new(source: CfbReader<R>) -> io::Result<Self> {
        Ok(PlainStream {
            source,
            hasher: Sha1Thread::spawn()?,
            chunk: Arc::new(Vec::new()),
            position: 0,
            held_back: Vec::with_capacity(2 * MDC_DIGEST),
        })
    }

    /// Decrypts the next chunk; false at the end.
    fn advance(&mut self) -> io::Result<bool> {
        let mut next = self.hasher.buffer();
        if !self.source.next_chunk(&mut next)? {
            return Ok(false);
        }
        let next = Arc::new(next);
        if next.len() >= MDC_DIGEST {
            if !self.held_back.is_empty() {
                let held = Arc::new(std::mem::take(&mut self.held_back));
                let len = held.len();
                self.hasher.hash(held, 0..len)?;
            }
            let cut = next.len() - MDC_DIGEST;
            self.hasher.hash(Arc::clone(&next), 0..cut)?;
            self.held_back.extend_from_slice(&next[cut..]);
        } else {
            self.held_back.extend_from_slice(&next);
            if self.held_back.len() > MDC_DIGEST {
                let cut = self.held_back.len() - MDC_DIGEST;
                let tail = self.held_back.split_off(cut);
                let held = Arc::new(std::mem::replace(&mut self.held_back, tail));
                self.hasher.hash(held, 0..cut)?;
            }
        }
        let previous = std::mem::replace(&mut self.chunk, next);
        self.hasher.give_back(previous);
        self.position = 0;
        Ok(true)
    }

    /// The SHA-1 of everything read but the last 20 bytes.
    fn digest(self) -> io::Result<[u8; MDC_DIGEST]> {
        self.hasher.finish()
    }
}

impl<R: Read> Read for PlainStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let len = buf.len().min(available.len());
        buf[..len].copy_from_slice(&available[..len]);
        self.consume(len);
        Ok(len)
    }
}

impl<R: Read> BufRead for PlainStream<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.position == self.chunk.len() && !self.advance()? {
            return Ok(&[]);
        }
        Ok(&self.chunk[self.position..])
    }

    fn consume(&mut self, amount: usize) {
        self.position = (self.position + amount).min(self.chunk.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const KEY: [u8; 32] = [3u8; 32];

    /// Our packet for `data`: with definite lengths when `sized`, else partial ones.
    fn encrypt_as(data: &[u8], sized: bool) -> Vec<u8> {
        let size = sized.then_some(data.len() as u64);
        let (packet, copied) = write(
            Vec::new(),
            SymmetricAlgorithm::AES256,
            &KEY,
            &mut Cursor::new(data),
            size,
        )
        .unwrap();
        assert_eq!(copied, data.len() as u64);
        packet
    }

    fn encrypt(data: &[u8]) -> Vec<u8> {
        encrypt_as(data, false)
    }

    /// The SEIPD body after the version octet.
    fn ciphertext(packet: &[u8]) -> Vec<u8> {
        let (length, used) = wal_core::openpgp::parse_new_length(&packet[1..]).unwrap();
        let mut body = Vec::new();
        BodyReader::new(Cursor::new(&packet[1 + used..]), length)
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body[0], 1, "SEIPD version 1");
        body.split_off(1)
    }

    fn decrypt(ciphertext: &[u8]) -> io::Result<(Inner, Vec<u8>)> {
        let mut out = Vec::new();
        let inner = read(
            Cursor::new(ciphertext),
            SymmetricAlgorithm::AES256,
            &KEY,
            &mut out,
        )?;
        Ok((inner, out))
    }

    #[test]
    fn round_trips_at_every_size_with_both_length_forms() {
        for size in [
            0,
            1,
            19,
            20,
            21,
            500,
            8_000,
            CHUNK - 25,
            CHUNK,
            2 * CHUNK + 3,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
            for sized in [false, true] {
                let packet = encrypt_as(&data, sized);
                let (inner, out) = decrypt(&ciphertext(&packet)).unwrap();
                assert_eq!(inner, Inner::Literal(size as u64));
                assert!(out == data, "{size} {sized}");
            }
            // Definite lengths: one length for the whole packet, as gpg writes it.
            let packet = encrypt_as(&data, true);
            let (length, used) = wal_core::openpgp::parse_new_length(&packet[1..]).unwrap();
            assert_eq!(length, BodyLength::Full((packet.len() - 1 - used) as u32));
        }
    }

    #[test]
    fn a_file_that_is_not_its_size_is_an_error() {
        for claimed in [99, 101] {
            let result = write(
                Vec::new(),
                SymmetricAlgorithm::AES256,
                &KEY,
                &mut Cursor::new(vec![5u8; 100]),
                Some(claimed),
            );
            let err = result.unwrap_err();
            assert!(err.to_string().contains("changed size"), "{err}");
        }
    }

    #[test]
    fn tampering_and_truncation_are_caught() {
        let data = vec![42u8; CHUNK + 100];
        let cipher = ciphertext(&encrypt(&data));
        // A flipped bit in the data, in the digest, and a cut anywhere. A flip that lands on
        // a partial-body length header may show as a short message rather than a bad
        // digest (the block after it decrypts to random bytes): both are refused as corrupt.
        for position in [100, CHUNK, cipher.len() - 1] {
            let mut bad = cipher.clone();
            bad[position] ^= 0x10;
            let err = decrypt(&bad).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "flip at {position}: {err}"
            );
        }
        for cut in [10, 30, CHUNK, cipher.len() - 21, cipher.len() - 1] {
            let err = decrypt(&cipher[..cut]).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn other_inner_packets_are_left_to_sequoia() {
        // A compressed data packet (tag 8) where the literal packet would be.
        let mut plain = vec![1u8; 16];
        plain.extend_from_slice(&[1, 1, 0xa3, 0x01, 0x00]);
        let mut writer = CfbWriter::new(Vec::new(), SymmetricAlgorithm::AES256, &KEY).unwrap();
        writer.write_all(&plain).unwrap();
        let cipher = writer.finish().unwrap();
        let (inner, out) = decrypt(&cipher).unwrap();
        assert_eq!(inner, Inner::Other);
        assert!(out.is_empty());
    }
}
