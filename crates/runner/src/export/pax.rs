//! Tar metadata headers of the output stream: GNU long-name/long-link and
//! pax extended-header bodies, read with a size limit and parsed strictly
//! (a malformed record is an error, never skipped).

use std::io::Read;

use rustix::fs::Timespec;

use super::{bad_stream, ExportError, MAX_META_BYTES};

/// The pax keys the unpacker applies; the rest are ignored.
#[derive(Default)]
pub(super) struct Pax {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub mtime: Option<Timespec>,
    pub size: Option<u64>,
}

/// Reads a long-name / pax header body, refusing absurd sizes.
pub(super) fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    what: &str,
) -> Result<Vec<u8>, ExportError> {
    let size = entry.header().entry_size().map_err(bad_stream)?;
    if size > MAX_META_BYTES {
        return Err(bad_stream(format!(
            "a {what} header of {size} bytes (at most {MAX_META_BYTES} accepted)"
        )));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut data).map_err(bad_stream)?;
    if data.len() as u64 != size {
        return Err(bad_stream(format!(
            "the stream ended inside a {what} header"
        )));
    }
    while data.last() == Some(&0) {
        data.pop();
    }
    Ok(data)
}

/// Parses pax records (`<len> <key>=<value>\n`, len counting the whole record).
pub(super) fn parse_pax(data: &[u8]) -> Result<Pax, ExportError> {
    let bad = |why: &str| bad_stream(format!("malformed pax header: {why}"));
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad record length"))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("record length does not match its content"));
        }
        let record = &rest[space + 1..len - 1];
        rest = &rest[len..];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("record without `=`"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"mtime" => pax.mtime = Some(parse_pax_time(value).ok_or_else(|| bad("bad mtime"))?),
            b"size" => {
                let size = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                pax.size = Some(size.ok_or_else(|| bad("bad size"))?);
            }
            k if k.starts_with(b"GNU.sparse") => {
                return Err(bad_stream(
                    "GNU sparse files are not supported in build outputs",
                ));
            }
            _ => {} // uid/gid/uname/gname/atime/ctime/xattrs: not applied
        }
    }
    Ok(pax)
}

/// `123`, `123.5`, `-2.25` → Timespec (nanosecond precision, floor).
pub(super) fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 30 {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: i64 = digits.parse().ok()?;
    Some(if int.starts_with('-') && nsec > 0 {
        Timespec {
            tv_sec: secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        }
    } else {
        Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        }
    })
}
