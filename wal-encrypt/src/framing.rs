//! OpenPGP packet framing for streams: packet headers and bodies of any length.
//!
//! A stage streams files it has not measured (and must not trust a `stat` for), so the
//! packets it writes use partial body lengths (RFC 9580 §4.2.1.4): power-of-two chunks,
//! then one ordinary length for the rest. The packets it reads may use any of the length
//! forms of either packet format (`gpg` writes old-format headers with definite lengths).
//! Everything here goes through fixed buffers: memory does not grow with the file.

use std::io::{self, BufRead, Read, Write};

use wal_core::openpgp::{self, BodyLength, PacketHeader};

/// log2 of [`CHUNK`].
const CHUNK_BITS: u8 = 18;

/// The size of a partial body chunk, and of every buffer the stage streams through.
pub const CHUNK: usize = 1 << CHUNK_BITS;

/// Appends the new-format length octets for a final (non-partial) body of `len` bytes.
pub fn push_length(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=191 => out.push(len as u8),
        192..=8383 => {
            let rest = len - 192;
            out.push((rest >> 8) as u8 + 192);
            out.push(rest as u8);
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// Appends an old-format packet header (RFC 9580 §4.2.2.1) for a body of `len` bytes of
/// packet type `tag`, in the shortest length form that holds `len`.
///
/// The session key packets open a message, and gpg writes them in this form. `file`
/// recognises an encrypted message only by such a first header, and Barman runs `file`
/// to tell an encrypted WAL file from a plain one (`PGP` and `ENCRYPTED` in its answer):
/// under a new-format header Barman would take the message for uncompressed WAL.
pub fn push_old_format_header(tag: u8, len: usize, out: &mut Vec<u8>) {
    debug_assert!(tag < 16, "old-format headers hold packet types 0-15");
    let ctb = 0x80 | (tag << 2);
    if let Ok(len) = u8::try_from(len) {
        out.extend_from_slice(&[ctb, len]);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(ctb | 1);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(ctb | 2);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Writes a packet body as partial body chunks of [`CHUNK`] bytes, then the rest with a
/// definite length. The caller writes the packet's CTB first.
#[derive(Debug)]
pub struct PartialBodyWriter<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> PartialBodyWriter<W> {
    /// A body writer on `inner`.
    pub fn new(inner: W) -> Self {
        PartialBodyWriter {
            inner,
            buffer: Vec::with_capacity(CHUNK),
        }
    }

    /// Writes the final length and the buffered rest; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut header = Vec::with_capacity(5);
        push_length(self.buffer.len(), &mut header);
        self.inner.write_all(&header)?;
        self.inner.write_all(&self.buffer)?;
        Ok(self.inner)
    }

    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        debug_assert_eq!(chunk.len(), CHUNK);
        self.inner.write_all(&[0xe0 | CHUNK_BITS])?;
        self.inner.write_all(chunk)
    }
}

impl<W: Write> Write for PartialBodyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.is_empty() && buf.len() >= CHUNK {
            self.write_chunk(&buf[..CHUNK])?;
            return Ok(CHUNK);
        }
        let taken = buf.len().min(CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..taken]);
        if self.buffer.len() == CHUNK {
            let chunk = std::mem::take(&mut self.buffer);
            self.write_chunk(&chunk)?;
            self.buffer = chunk;
            self.buffer.clear();
        }
        Ok(taken)
    }

    /// Flushes the inner writer; buffered bytes wait for a full chunk (a partial chunk
    /// must be a power of two long).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A format error in the data being read: `InvalidData` with a message that says what.
pub fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// A message that ends too soon.
pub fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "truncated OpenPGP message")
}

/// Reads one packet header; `None` at the end of the input. The raw header octets are
/// appended to `raw` (to hand the whole packet to sequoia).
pub fn read_header(input: &mut impl Read, raw: &mut Vec<u8>) -> io::Result<Option<PacketHeader>> {
    let mut ctb = [0u8; 1];
    if read_full(input, &mut ctb)? == 0 {
        return Ok(None);
    }
    let start = raw.len();
    raw.push(ctb[0]);
    if ctb[0] & 0x80 == 0 {
        return Err(invalid(format!(
            "not an OpenPGP packet (first octet {:#04x})",
            ctb[0]
        )));
    }
    let more = if ctb[0] & 0x40 == 0 {
        match ctb[0] & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => 0,
        }
    } else {
        let mut first = [0u8; 1];
        input.read_exact(&mut first).map_err(eof_is_truncation)?;
        raw.push(first[0]);
        match first[0] {
            192..=223 => 1,
            255 => 4,
            _ => 0,
        }
    };
    let mut octets = [0u8; 4];
    input
        .read_exact(&mut octets[..more])
        .map_err(eof_is_truncation)?;
    raw.extend_from_slice(&octets[..more]);
    openpgp::parse_header(&raw[start..])
        .map(Some)
        .ok_or_else(|| invalid("malformed packet header"))
}

/// Reads the new-format length octets of the next partial body chunk.
fn read_new_length(input: &mut impl Read) -> io::Result<BodyLength> {
    let mut octets = [0u8; 5];
    input
        .read_exact(&mut octets[..1])
        .map_err(eof_is_truncation)?;
    let more = match octets[0] {
        192..=223 => 1,
        255 => 4,
        _ => 0,
    };
    input
        .read_exact(&mut octets[1..=more])
        .map_err(eof_is_truncation)?;
    openpgp::parse_new_length(&octets[..=more])
        .map(|(length, _)| length)
        .ok_or_else(|| invalid("malformed partial body length"))
}

fn eof_is_truncation(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        truncated()
    } else {
        e
    }
}

/// Reads one packet body, whatever its length form; ends where the body ends. A body cut
/// short by the end of the input is an `UnexpectedEof` error, never a short body.
#[derive(Debug)]
pub struct BodyReader<R: Read> {
    inner: R,
    /// Bytes left in the current chunk (the whole body when not partial).
    remaining: u64,
    /// Whether the current chunk is the last one.
    last: bool,
    /// Old-format indeterminate length: the body is the rest of the input.
    to_end: bool,
}

impl<R: Read> BodyReader<R> {
    /// The body that follows a header with this `length`.
    pub fn new(inner: R, length: BodyLength) -> Self {
        let (remaining, last, to_end) = match length {
            BodyLength::Full(len) => (u64::from(len), true, false),
            BodyLength::Partial(len) => (u64::from(len), false, false),
            BodyLength::Indeterminate => (0, true, true),
        };
        BodyReader {
            inner,
            remaining,
            last,
            to_end,
        }
    }

    /// The reader after the body.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> BodyReader<R> {
    /// Moves past exhausted chunks; how many bytes the current one still holds (0 at the
    /// end of the body).
    fn available(&mut self) -> io::Result<usize> {
        while self.remaining == 0 {
            if self.last {
                return Ok(0);
            }
            match read_new_length(&mut self.inner)? {
                BodyLength::Full(len) => (self.remaining, self.last) = (u64::from(len), true),
                BodyLength::Partial(len) => self.remaining = u64::from(len),
                BodyLength::Indeterminate => return Err(invalid("malformed partial body")),
            }
        }
        Ok(usize::try_from(self.remaining).unwrap_or(usize::MAX))
    }
}

impl<R: Read> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.to_end {
            return self.inner.read(buf);
        }
        let want = buf.len().min(self.available()?);
        if want == 0 {
            return Ok(0);
        }
        let got = self.inner.read(&mut buf[..want])?;
        if got == 0 {
            return Err(truncated());
        }
        self.remaining -= got as u64;
        Ok(got)
    }
}

/// Lends the inner reader's buffer, cut to the body: no copy on the way through.
impl<R: BufRead> BufRead for BodyReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let limit = if self.to_end {
            usize::MAX
        } else {
            self.available()?
        };
        if limit == 0 {
            return Ok(&[]);
        }
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() && !self.to_end {
            return Err(truncated());
        }
        Ok(&buf[..buf.len().min(limit)])
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
        if !self.to_end {
            self.remaining = self.remaining.saturating_sub(amount as u64);
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(len) => filled += len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut writer = PartialBodyWriter::new(Vec::new());
        // Uneven writes, to cross chunk boundaries at odd places.
        for piece in body.chunks(100_003) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    fn unframed(framed: &[u8], first: BodyLength) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        BodyReader::new(Cursor::new(framed), first).read_to_end(&mut body)?;
        Ok(body)
    }

    #[test]
    fn lengths_use_the_shortest_form() {
        for (len, octets) in [
            (0, vec![0]),
            (191, vec![191]),
            (192, vec![192, 0]),
            (8383, vec![223, 255]),
            (8384, vec![255, 0, 0, 0x20, 0xc0]),
        ] {
            let mut out = Vec::new();
            push_length(len, &mut out);
            assert_eq!(out, octets, "{len}");
            let (parsed, used) = openpgp::parse_new_length(&out).unwrap();
            assert_eq!((parsed, used), (BodyLength::Full(len as u32), out.len()));
        }
    }

    /// gpg's headers: a PKESK to a 3072-bit RSA key (`85 01 8c`), a SKESK (`8c 0d`); and
    /// what we write reads back as written.
    #[test]
    fn old_format_headers_are_gpgs() {
        for (tag, len, octets) in [
            (1, 396, vec![0x85, 0x01, 0x8c]),
            (3, 13, vec![0x8c, 0x0d]),
            (1, 0, vec![0x84, 0]),
            (1, 255, vec![0x84, 0xff]),
            (1, 256, vec![0x85, 0x01, 0x00]),
            (1, 65_536, vec![0x86, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            push_old_format_header(tag, len, &mut out);
            assert_eq!(out, octets, "{tag} {len}");
            let mut raw = Vec::new();
            let header = read_header(&mut Cursor::new(&out), &mut raw)
                .unwrap()
                .unwrap();
            assert_eq!(
                (header.tag, header.length),
                (tag, BodyLength::Full(len as u32))
            );
        }
    }

    #[test]
    fn partial_bodies_round_trip() {
        for size in [0, 1, 511, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 777] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let framed = framed(&body);
            // The first length octet decides how the reader starts, as after a CTB.
            let (first, used) = openpgp::parse_new_length(&framed).unwrap();
            assert_eq!(unframed(&framed[used..], first).unwrap(), body, "{size}");
            let final_header = match size % CHUNK {
                0..=191 => 1,
                192..=8383 => 2,
                _ => 5,
            };
            assert_eq!(framed.len(), size + size / CHUNK + final_header, "{size}");
        }
    }

    #[test]
    fn a_cut_body_is_an_error_not_a_short_body() {
        let body = vec![7u8; 2 * CHUNK + 10];
        let framed = framed(&body);
        let (first, used) = openpgp::parse_new_length(&framed).unwrap();
        for cut in [used + 5, used + CHUNK, framed.len() - 1] {
            let err = unframed(&framed[used..cut], first).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        let err = unframed(&[1, 2], BodyLength::Full(3)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn headers_are_read_in_both_formats() {
        let mut raw = Vec::new();
        let mut input = Cursor::new(vec![0x85, 0x01, 0x8c, 0xd2, 0xe9, 0xa3]);
        let header = read_header(&mut input, &mut raw).unwrap().unwrap();
        assert_eq!((header.tag, header.length), (1, BodyLength::Full(396)));
        let header = read_header(&mut input, &mut raw).unwrap().unwrap();
        assert_eq!((header.tag, header.length), (18, BodyLength::Partial(512)));
        let header = read_header(&mut input, &mut raw).unwrap().unwrap();
        assert_eq!((header.tag, header.length), (8, BodyLength::Indeterminate));
        assert_eq!(raw, [0x85, 0x01, 0x8c, 0xd2, 0xe9, 0xa3]);
        assert!(read_header(&mut input, &mut raw).unwrap().is_none());
        let err = read_header(&mut Cursor::new(vec![0xd2, 0xff, 0]), &mut raw).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_header(&mut Cursor::new(vec![0x10, 0xd1]), &mut raw).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
