//! [`Capped`]: a writer that keeps at most a fixed number of bytes, so a
//! guest printing without end cannot fill the host's disk through
//! `--log-file` (docs/security.md#layers).

use std::io::{self, Write};

/// Writes through to `inner` until `cap` bytes, then writes one notice and
/// swallows the rest (reporting it written, so the build goes on).
pub struct Capped<W: Write> {
    inner: W,
    cap: u64,
    written: u64,
    full: bool,
}

impl<W: Write> Capped<W> {
    /// A writer keeping at most `cap` bytes of what it is given.
    pub fn new(inner: W, cap: u64) -> Self {
        Capped {
            inner,
            cap,
            written: 0,
            full: false,
        }
    }
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.full {
            return Ok(buf.len());
        }
        let room = usize::try_from(self.cap - self.written).unwrap_or(usize::MAX);
        if buf.len() <= room {
            self.inner.write_all(buf)?;
            self.written += buf.len() as u64;
            return Ok(buf.len());
        }
        self.inner.write_all(&buf[..room])?;
        self.written = self.cap;
        self.full = true;
        writeln!(
            self.inner,
            "\n[vmbuild: this log stopped at {} bytes (--log-file-max); the rest of the output is not in it]",
            self.cap
        )?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exactly_the_cap_then_one_notice() {
        let mut w = Capped::new(Vec::new(), 10);
        w.write_all(b"12345").unwrap();
        w.write_all(b"67890abc").unwrap();
        w.write_all(b"more and more").unwrap();
        let text = String::from_utf8(w.inner).unwrap();
        assert!(
            text.starts_with("1234567890\n[vmbuild: this log stopped at 10 bytes"),
            "{text}"
        );
        assert_eq!(text.matches("[vmbuild:").count(), 1, "{text}");
        assert!(!text.contains("abc") && !text.contains("more"), "{text}");
    }

    #[test]
    fn under_the_cap_everything_passes() {
        let mut w = Capped::new(Vec::new(), 10);
        w.write_all(b"0123456789").unwrap();
        assert_eq!(w.inner, b"0123456789");
        assert!(!w.full);
    }
}
