//! Decompression of kernel payloads and compressed modules (xz, gzip, zstd).

use std::io::Read;

/// A compression format we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.xz` (liblzma).
    Xz,
    /// gzip (flate2, pure Rust).
    Gzip,
    /// zstd (ruzstd, pure Rust).
    Zstd,
}

/// Largest output we accept: no kernel or module is near this; it bounds a
/// corrupt or hostile stream.
pub const MAX_OUTPUT: u64 = 1 << 30;

impl Format {
    /// Recognize a stream by its magic bytes.
    pub fn sniff(data: &[u8]) -> Option<Format> {
        if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Format::Xz)
        } else if data.starts_with(&[0x1f, 0x8b]) {
            Some(Format::Gzip)
        } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Format::Zstd)
        } else {
            None
        }
    }

    /// The format a module file name's extension implies (`.ko.xz` ...);
    /// `None` for a plain `.ko`.
    pub fn from_module_name(name: &str) -> Option<Format> {
        if name.ends_with(".ko.xz") {
            Some(Format::Xz)
        } else if name.ends_with(".ko.gz") {
            Some(Format::Gzip)
        } else if name.ends_with(".ko.zst") {
            Some(Format::Zstd)
        } else {
            None
        }
    }

    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Xz => "xz",
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
        }
    }
}

/// Decompress one stream. Bytes after the end of the first stream (the
/// kernel appends its uncompressed size) are ignored. Errors are strings for
/// the caller to wrap with the file name.
pub fn decompress(format: Format, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let res = match format {
        Format::Xz => liblzma::read::XzDecoder::new(data)
            .take(MAX_OUTPUT + 1)
            .read_to_end(&mut out),
        Format::Gzip => flate2::read::GzDecoder::new(data)
            .take(MAX_OUTPUT + 1)
            .read_to_end(&mut out),
        Format::Zstd => {
            let mut src = data;
            let dec = ruzstd::StreamingDecoder::new(&mut src).map_err(|e| format!("zstd: {e}"))?;
            dec.take(MAX_OUTPUT + 1).read_to_end(&mut out)
        }
    };
    res.map_err(|e| format!("{} stream: {e}", format.name()))?;
    if out.len() as u64 > MAX_OUTPUT {
        return Err(format!(
            "{} stream expands beyond {MAX_OUTPUT} bytes",
            format.name()
        ));
    }
    if out.is_empty() {
        return Err(format!("{} stream is empty", format.name()));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub fn xz(data: &[u8]) -> Vec<u8> {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A zstd frame holding `data` in one raw block (data < 256 bytes).
    pub fn zstd_raw(data: &[u8]) -> Vec<u8> {
        assert!(data.len() < 256);
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
        f.push(0x20); // single segment, 1-byte content size, no checksum
        f.push(data.len() as u8);
        let hdr = 1u32 | ((data.len() as u32) << 3); // last block, raw
        f.extend_from_slice(&hdr.to_le_bytes()[..3]);
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn round_trips_each_format_with_trailing_bytes() {
        let data = b"hello kernel payload, hello kernel payload".to_vec();
        for (fmt, mut stream) in [
            (Format::Xz, xz(&data)),
            (Format::Gzip, gzip(&data)),
            (Format::Zstd, zstd_raw(&data)),
        ] {
            assert_eq!(Format::sniff(&stream), Some(fmt));
            stream.extend_from_slice(&[1, 2, 3, 4]); // like the bzImage size trailer
            assert_eq!(decompress(fmt, &stream).unwrap(), data, "{fmt:?}");
        }
    }

    #[test]
    fn truncated_and_garbage_streams_are_errors() {
        let data = vec![7u8; 10_000];
        let x = xz(&data);
        assert!(decompress(Format::Xz, &x[..x.len() / 2]).is_err());
        let g = gzip(&data);
        assert!(decompress(Format::Gzip, &g[..g.len() / 2]).is_err());
        assert!(decompress(Format::Zstd, &[0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff]).is_err());
        assert!(decompress(Format::Xz, b"not xz at all").is_err());
    }

    #[test]
    fn module_extensions() {
        assert_eq!(Format::from_module_name("a.ko.xz"), Some(Format::Xz));
        assert_eq!(Format::from_module_name("a.ko.gz"), Some(Format::Gzip));
        assert_eq!(Format::from_module_name("a.ko.zst"), Some(Format::Zstd));
        assert_eq!(Format::from_module_name("a.ko"), None);
        assert_eq!(Format::sniff(b"\x7fELF"), None);
    }
}
