//! The bulk cryptography of a SEIPDv1 packet, on OpenSSL: CFB and the SHA-1 MDC.
//!
//! Why not sequoia here: sequoia computes every SHA-1, the MDC included, with collision
//! detection (sha1collisiondetection), which caps a gpg-compatible stream at about
//! 150-200 MB/s, no faster than `gpg` itself. The MDC is a hash of plaintext under
//! encryption, where collision detection protects nothing, so this module uses OpenSSL's
//! SHA-1 (as GnuPG uses libgcrypt's) and runs it on a thread of its own, beside the
//! cipher. Decryption computes CFB with the ECB primitive: each plaintext block is
//! `E(previous ciphertext block) XOR ciphertext block`, and all the `E` inputs are known
//! up front, so AES-NI pipelines them (about 8× faster than OpenSSL's serial CFB
//! decryption). Key handling stays with sequoia.
//!
//! OpenPGP's CFB for SEIPD is plain CFB-128 with an all-zero IV (RFC 9580 §5.13.1): the
//! random prefix plays the IV's part.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use openssl::sha::Sha1;
use openssl::symm::{Cipher, Crypter, Mode};
use sequoia_openpgp::types::SymmetricAlgorithm;

use crate::framing::{CHUNK, read_full};

/// The block size of every cipher this module handles (AES).
pub const BLOCK: usize = 16;

/// The length of the SHA-1 digest an MDC packet carries.
pub const MDC_DIGEST: usize = 20;

/// Chunks queued for the hashing thread: enough to keep it busy, few enough to keep
/// memory flat.
const IN_FLIGHT: usize = 2;

/// The OpenSSL CFB-128 and ECB ciphers for `algo`; `None` for ciphers this module does
/// not accelerate (they go through sequoia).
#[must_use]
pub fn ciphers(algo: SymmetricAlgorithm) -> Option<(Cipher, Cipher)> {
    match algo {
        SymmetricAlgorithm::AES128 => Some((Cipher::aes_128_cfb128(), Cipher::aes_128_ecb())),
        SymmetricAlgorithm::AES192 => Some((Cipher::aes_192_cfb128(), Cipher::aes_192_ecb())),
        SymmetricAlgorithm::AES256 => Some((Cipher::aes_256_cfb128(), Cipher::aes_256_ecb())),
        _ => None,
    }
}

fn ssl(e: openssl::error::ErrorStack) -> io::Error {
    io::Error::other(e)
}

fn unsupported(algo: SymmetricAlgorithm) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{algo} is not handled by the OpenSSL path"),
    )
}

/// RFC 9580 §5.13.1's quick check: whether `key` decrypts the first 18 bytes of a SEIPDv1
/// body (`ciphertext`) to a prefix whose last two bytes repeat. A wrong key passes with
/// probability 2⁻¹⁶ (the MDC catches it then); the right key fails on a change to any of
/// those 18 bytes, so a failure alone does not say which ([`crate::decrypt`] tells them
/// apart by where the key came from).
pub fn quick_check(algo: SymmetricAlgorithm, key: &[u8], ciphertext: &[u8]) -> io::Result<bool> {
    let (_, ecb) = ciphers(algo).ok_or_else(|| unsupported(algo))?;
    // A session key decrypted with a wrong passphrase names a cipher by chance (its first
    // octet is random): one whose key length differs cannot be the key, and OpenSSL would
    // refuse it with an error that reads like a fault of ours.
    if ciphertext.len() < BLOCK + 2 || key.len() != ecb.key_len() {
        return Ok(false);
    }
    let mut crypter = Crypter::new(ecb, Mode::Encrypt, key, None).map_err(ssl)?;
    crypter.pad(false);
    // E(0) for the first block, E(C0) for the second.
    let mut input = [0u8; 2 * BLOCK];
    input[BLOCK..].copy_from_slice(&ciphertext[..BLOCK]);
    let mut keystream = [0u8; 3 * BLOCK];
    crypter.update(&input, &mut keystream).map_err(ssl)?;
    let repeat = [
        ciphertext[BLOCK - 2] ^ keystream[BLOCK - 2],
        ciphertext[BLOCK - 1] ^ keystream[BLOCK - 1],
    ];
    let check = [
        ciphertext[BLOCK] ^ keystream[BLOCK],
        ciphertext[BLOCK + 1] ^ keystream[BLOCK + 1],
    ];
    Ok(repeat == check)
}

/// A part of a shared buffer for the hashing thread.
struct Piece {
    buffer: Arc<Vec<u8>>,
    range: Range<usize>,
}

/// SHA-1 on a thread of its own, fed with shared chunks; chunk buffers come back for
/// reuse so a stream allocates a handful of them, not one per chunk.
pub struct Sha1Thread {
    sender: Option<SyncSender<Piece>>,
    recycled: Receiver<Vec<u8>>,
    pool: Vec<Vec<u8>>,
    handle: Option<JoinHandle<[u8; MDC_DIGEST]>>,
}

impl std::fmt::Debug for Sha1Thread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sha1Thread").finish_non_exhaustive()
    }
}

impl Sha1Thread {
    /// Starts the thread.
    pub fn spawn() -> io::Result<Self> {
        let (sender, pieces) = sync_channel::<Piece>(IN_FLIGHT);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let handle = thread::Builder::new()
            .name("wal-encrypt-sha1".into())
            .spawn(move || {
                let mut sha = Sha1::new();
                for piece in pieces {
                    sha.update(&piece.buffer[piece.range]);
                    // Whoever lets go of a buffer last gets it back (exactly one does).
                    if let Some(buffer) = Arc::into_inner(piece.buffer) {
                        let _ = recycle.try_send(buffer);
                    }
                }
                sha.finish()
            })?;
        Ok(Sha1Thread {
            sender: Some(sender),
            recycled,
            pool: Vec::new(),
            handle: Some(handle),
        })
    }

    /// Hashes `buffer[range]` after everything sent before.
    pub fn hash(&self, buffer: Arc<Vec<u8>>, range: Range<usize>) -> io::Result<()> {
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        sender.send(Piece { buffer, range }).map_err(|_| stopped())
    }

    /// A chunk-sized buffer, its content left from its last use: reused buffers are not
    /// zeroed again (their bytes are overwritten before being read).
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buffer = self
            .pool
            .pop()
            .or_else(|| self.recycled.try_recv().ok())
            .unwrap_or_default();
        buffer.resize(CHUNK, 0);
        buffer
    }

    /// Takes back a buffer this side held last.
    pub fn give_back(&mut self, buffer: Arc<Vec<u8>>) {
        if let Some(buffer) = Arc::into_inner(buffer) {
            self.pool.push(buffer);
        }
    }

    /// The digest of everything hashed.
    pub fn finish(mut self) -> io::Result<[u8; MDC_DIGEST]> {
        drop(self.sender.take());
        self.handle
            .take()
            .ok_or_else(stopped)?
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))
    }
}

fn stopped() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

/// Encrypts a plaintext stream in CFB mode into `inner`, hashing it for the MDC.
/// [`CfbWriter::finish`] appends the MDC packet (RFC 9580 §5.13.1).
pub struct CfbWriter<W: Write> {
    inner: W,
    crypter: Crypter,
    hasher: Sha1Thread,
    /// A chunk buffer, of which the first `filled` bytes are plaintext to encrypt.
    plain: Vec<u8>,
    filled: usize,
    cipher: Vec<u8>,
}

impl<W: Write> CfbWriter<W> {
    /// A writer encrypting with `algo` and `key` into `inner`.
    pub fn new(inner: W, algo: SymmetricAlgorithm, key: &[u8]) -> io::Result<Self> {
        let (cfb, _) = ciphers(algo).ok_or_else(|| unsupported(algo))?;
        let crypter = Crypter::new(cfb, Mode::Encrypt, key, Some(&[0u8; BLOCK])).map_err(ssl)?;
        let mut hasher = Sha1Thread::spawn()?;
        let plain = hasher.buffer();
        Ok(CfbWriter {
            inner,
            crypter,
            hasher,
            plain,
            filled: 0,
            cipher: vec![0u8; CHUNK + BLOCK],
        })
    }

    /// Hashes (on the other thread) and encrypts (on this one) the buffered plaintext.
    fn seal(&mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let next = self.hasher.buffer();
        let chunk = Arc::new(std::mem::replace(&mut self.plain, next));
        let len = std::mem::take(&mut self.filled);
        self.hasher.hash(Arc::clone(&chunk), 0..len)?;
        self.encrypt(&chunk[..len])?;
        self.hasher.give_back(chunk);
        Ok(())
    }

    fn encrypt(&mut self, plain: &[u8]) -> io::Result<()> {
        let len = self.crypter.update(plain, &mut self.cipher).map_err(ssl)?;
        self.inner.write_all(&self.cipher[..len])
    }

    /// Reads up to `len` bytes of `input` straight into the plaintext buffer (no copy
    /// through another buffer); returns the bytes read, fewer only at the end of `input`.
    pub fn fill_from(&mut self, input: &mut impl Read, len: u64) -> io::Result<u64> {
        let mut total = 0u64;
        while total < len {
            let room = CHUNK - self.filled;
            let want = usize::try_from(len - total).map_or(room, |left| left.min(room));
            let got = read_full(input, &mut self.plain[self.filled..self.filled + want])?;
            self.filled += got;
            total += got as u64;
            if self.filled == CHUNK {
                self.seal()?;
            }
            if got < want {
                break;
            }
        }
        Ok(total)
    }

    /// Writes the MDC packet (its header is hashed, its digest is not) and returns the
    /// inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_all(&[0xd3, 0x14])?;
        self.seal()?;
        let CfbWriter {
            mut inner,
            mut crypter,
            hasher,
            mut cipher,
            ..
        } = self;
        let digest = hasher.finish()?;
        let len = crypter.update(&digest, &mut cipher).map_err(ssl)?;
        inner.write_all(&cipher[..len])?;
        Ok(inner)
    }
}

impl<W: Write> Write for CfbWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = buf.len().min(CHUNK - self.filled);
        self.plain[self.filled..self.filled + taken].copy_from_slice(&buf[..taken]);
        self.filled += taken;
        if self.filled == CHUNK {
            self.seal()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts a CFB ciphertext stream chunk by chunk, through the ECB primitive.
pub struct CfbReader<R: Read> {
    inner: R,
    ecb: Crypter,
    /// The previous ciphertext block, then the chunk read: the cipher's inputs are then
    /// one contiguous slice, `[..aligned]`, with no copying.
    ciphertext: Vec<u8>,
    keystream: Vec<u8>,
    done: bool,
}

impl<R: Read> CfbReader<R> {
    /// A reader decrypting `inner` with `algo` and `key`.
    pub fn new(inner: R, algo: SymmetricAlgorithm, key: &[u8]) -> io::Result<Self> {
        let (_, ecb) = ciphers(algo).ok_or_else(|| unsupported(algo))?;
        let mut ecb = Crypter::new(ecb, Mode::Encrypt, key, None).map_err(ssl)?;
        ecb.pad(false);
        Ok(CfbReader {
            inner,
            ecb,
            // The IV (all zero) is the first "previous block".
            ciphertext: vec![0u8; BLOCK + CHUNK],
            keystream: vec![0u8; CHUNK + BLOCK],
            done: false,
        })
    }

    /// Decrypts the next chunk (up to [`CHUNK`] bytes) into `out` (resized to it);
    /// false at the end.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.done {
            out.clear();
            return Ok(false);
        }
        let len = read_full(&mut self.inner, &mut self.ciphertext[BLOCK..])?;
        if len < CHUNK {
            self.done = true;
        }
        if len == 0 {
            out.clear();
            return Ok(false);
        }
        let aligned = len - len % BLOCK;
        // Only a new buffer is zeroed: a reused one is overwritten below.
        out.resize(len, 0);
        if aligned > 0 {
            // E(previous block), E(block 0), ... E(block n-2): XORed with blocks 0..n-1.
            self.ecb
                .update(&self.ciphertext[..aligned], &mut self.keystream)
                .map_err(ssl)?;
            xor(
                &mut out[..aligned],
                &self.ciphertext[BLOCK..BLOCK + aligned],
                &self.keystream,
            );
        }
        if len > aligned {
            // The last, partial block of the stream, after the last whole one.
            self.ecb
                .update(
                    &self.ciphertext[aligned..aligned + BLOCK],
                    &mut self.keystream,
                )
                .map_err(ssl)?;
            xor(
                &mut out[aligned..],
                &self.ciphertext[BLOCK + aligned..BLOCK + len],
                &self.keystream,
            );
        } else {
            self.ciphertext.copy_within(aligned..aligned + BLOCK, 0);
        }
        Ok(true)
    }
}

fn xor(out: &mut [u8], a: &[u8], b: &[u8]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const KEY: [u8; 32] = [7u8; 32];

    /// `data` in OpenSSL's own CFB-128 with an all-zero IV: what the ECB-based reader must
    /// invert.
    fn cfb_encrypt(algo: SymmetricAlgorithm, key: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
        let (cfb, _) = ciphers(algo).ok_or_else(|| unsupported(algo))?;
        let mut crypter =
            Crypter::new(cfb, Mode::Encrypt, key, Some(&[0u8; BLOCK])).map_err(ssl)?;
        let mut out = vec![0u8; data.len() + BLOCK];
        let len = crypter.update(data, &mut out).map_err(ssl)?;
        out.truncate(len);
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 253) as u8).collect()
    }

    /// A wrong passphrase yields a random cipher octet and a key of the length the right
    /// cipher needs: the check says no (it was an OpenSSL error, reported as corrupt data
    /// once in a few hundred wrong passphrases).
    #[test]
    fn a_key_of_another_length_fails_the_quick_check_without_an_error() {
        let prefix = cfb_encrypt(
            SymmetricAlgorithm::AES256,
            &KEY,
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 15, 16,
            ],
        )
        .unwrap();
        assert!(quick_check(SymmetricAlgorithm::AES256, &KEY, &prefix).unwrap());
        for algo in [SymmetricAlgorithm::AES128, SymmetricAlgorithm::AES192] {
            assert!(!quick_check(algo, &KEY, &prefix).unwrap(), "{algo}");
        }
        assert!(!quick_check(SymmetricAlgorithm::AES256, &KEY[..16], &prefix).unwrap());
    }

    #[test]
    fn ecb_based_decryption_inverts_cfb() {
        for len in [
            0,
            1,
            15,
            16,
            17,
            CHUNK - 1,
            CHUNK,
            CHUNK + 5,
            3 * CHUNK + 33,
        ] {
            let plain = data(len);
            let cipher = cfb_encrypt(SymmetricAlgorithm::AES256, &KEY, &plain).unwrap();
            let mut reader =
                CfbReader::new(Cursor::new(&cipher), SymmetricAlgorithm::AES256, &KEY).unwrap();
            let mut decrypted = Vec::new();
            let mut chunk = Vec::new();
            while reader.next_chunk(&mut chunk).unwrap() {
                decrypted.extend_from_slice(&chunk);
            }
            assert!(decrypted == plain, "{len}");
        }
    }

    #[test]
    fn the_writer_appends_the_mdc_of_what_it_encrypted() {
        let plain = data(CHUNK + 1000);
        let mut writer =
            CfbWriter::new(Vec::new(), SymmetricAlgorithm::AES128, &KEY[..16]).unwrap();
        for piece in plain.chunks(4096) {
            writer.write_all(piece).unwrap();
        }
        let cipher = writer.finish().unwrap();
        assert_eq!(cipher.len(), plain.len() + 22);
        let mut reader =
            CfbReader::new(Cursor::new(&cipher), SymmetricAlgorithm::AES128, &KEY[..16]).unwrap();
        let mut decrypted = Vec::new();
        let mut chunk = Vec::new();
        while reader.next_chunk(&mut chunk).unwrap() {
            decrypted.extend_from_slice(&chunk);
        }
        let (body, digest) = decrypted.split_at(decrypted.len() - MDC_DIGEST);
        assert!(body[..plain.len()] == plain[..]);
        assert_eq!(&body[plain.len()..], [0xd3, 0x14]);
        assert_eq!(digest, openssl::sha::sha1(body));
    }

    #[test]
    fn the_quick_check_tells_right_keys_from_wrong_ones() {
        let mut prefix = data(18);
        prefix[16] = prefix[14];
        prefix[17] = prefix[15];
        let cipher = cfb_encrypt(SymmetricAlgorithm::AES256, &KEY, &prefix).unwrap();
        assert!(quick_check(SymmetricAlgorithm::AES256, &KEY, &cipher).unwrap());
        assert!(!quick_check(SymmetricAlgorithm::AES256, &[8u8; 32], &cipher).unwrap());
        assert!(!quick_check(SymmetricAlgorithm::AES256, &KEY, &cipher[..17]).unwrap());
        assert!(ciphers(SymmetricAlgorithm::Twofish).is_none());
    }
}
