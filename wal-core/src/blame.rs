//! Which side of a copy failed: the file read, the file written, or the data itself.
//!
//! A transforming stage (wal-compress, wal-encrypt) streams a file through a codec or a
//! cipher; when that fails, the error surfaces from deep inside it. Wrapping both ends in
//! [`Watched`] lets the stage say whether the source could not be read (`io`), the copy
//! could not be written (`io`, disk full), or the data was refused (`corrupt`), naming
//! the right file.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Which side of a copy an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Reading the source failed (disk, permissions).
    Input,
    /// Writing the copy failed (disk full).
    Output,
    /// Neither: the data was refused (corrupt, truncated, wrong key).
    Data,
}

/// The side to blame once a copy from `input` to `output` failed.
#[must_use]
pub fn blame<R, W>(input: &Watched<R>, output: &Watched<W>) -> Side {
    if input.failed {
        Side::Input
    } else if output.failed {
        Side::Output
    } else {
        Side::Data
    }
}

/// A reader or writer that remembers whether it failed and counts the bytes that went
/// through it, so an error deep in a codec or a message parser can be blamed on the right
/// file.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    failed: bool,
    bytes: u64,
}

impl<T> Watched<T> {
    /// Watches `inner`.
    pub fn new(inner: T) -> Self {
        Watched {
            inner,
            failed: false,
            bytes: 0,
        }
    }

    /// Bytes that went through.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether an operation on it failed.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The watched reader or writer.
    #[must_use]
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The watched reader or writer, unwrapped.
    pub fn into_inner(self) -> T {
        self.inner
    }

    fn watch<V>(&mut self, result: io::Result<V>, len: impl Fn(&V) -> usize) -> io::Result<V> {
        match &result {
            Ok(value) => self.bytes += len(value) as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.failed = true,
        }
        result
    }
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        self.watch(result, |len| *len)
    }
}

impl<R: Seek> Seek for Watched<R> {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        let result = self.inner.seek(position);
        self.watch(result, |_| 0)
    }
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.watch(result, |len| *len)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.watch(result, |()| 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn failures_are_blamed_on_their_side() {
        let mut input = Watched::new(Failing);
        let mut output = Watched::new(Vec::new());
        assert!(input.read(&mut [0u8; 4]).is_err());
        assert_eq!(blame(&input, &output), Side::Input);
        let input = Watched::new(io::empty());
        output.write_all(b"hello").unwrap();
        output.flush().unwrap();
        assert_eq!((output.bytes(), output.failed()), (5, false));
        assert_eq!(blame(&input, &output), Side::Data);
    }
}
