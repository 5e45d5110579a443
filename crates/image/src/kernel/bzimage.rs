//! Pure parsing of Linux kernel images: bzImage header, release string,
//! compressed payload, and the PVH note of an ELF vmlinux.
//!
//! All functions take bytes and return `Err(String)` describing damage; the
//! callers attach the file name.

use object::elf::{FileHeader32, FileHeader64, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

use crate::kernel::decompress::{self, Format};

/// ELF note type of the PVH 32-bit entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The two kinds of kernel image QEMU can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// x86 boot protocol image (`vmlinuz`): magic `HdrS` at 0x202.
    BzImage,
    /// An ELF `vmlinux`.
    Elf,
}

/// Recognize a kernel image by its magic.
pub fn detect(data: &[u8]) -> Option<KernelFormat> {
    if data.get(0x202..0x206) == Some(b"HdrS") {
        Some(KernelFormat::BzImage)
    } else if data.starts_with(b"\x7fELF") {
        Some(KernelFormat::Elf)
    } else {
        None
    }
}

fn u16_at(data: &[u8], off: usize) -> Result<u16, String> {
    data.get(off..off + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| format!("header ends before offset {off:#x}"))
}

fn u32_at(data: &[u8], off: usize) -> Result<u32, String> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("header ends before offset {off:#x}"))
}

/// Take a release token (`6.1.0-56-amd64`) from the start of `s`.
fn release_token(s: &[u8]) -> Option<String> {
    let end = s
        .iter()
        .position(|&b| b == b' ' || b == 0 || b == b'\n')
        .unwrap_or(s.len());
    let tok = std::str::from_utf8(&s[..end]).ok()?;
    let ok = !tok.is_empty()
        && tok.len() <= 64
        && tok.starts_with(|c: char| c.is_ascii_digit())
        && tok.chars().all(|c| c.is_ascii_graphic() && c != '/');
    ok.then(|| tok.to_string())
}

/// The release (`uname -r`) from a bzImage's `kernel_version` header field.
pub fn bzimage_release(data: &[u8]) -> Result<String, String> {
    let ptr = u16_at(data, 0x20e)?;
    if ptr == 0 {
        return Err("the header has no kernel version string".into());
    }
    let off = ptr as usize + 0x200;
    let s = data
        .get(off..)
        .ok_or_else(|| format!("kernel version string at {off:#x} is past the end of the file"))?;
    release_token(&s[..s.len().min(128)])
        .ok_or_else(|| "the kernel version string is not a release".to_string())
}

/// The release from an ELF vmlinux's `Linux version X ...` banner.
pub fn elf_release(data: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    memchr::memmem::find_iter(data, BANNER).find_map(|pos| {
        let rest = &data[pos + BANNER.len()..];
        release_token(&rest[..rest.len().min(128)])
    })
}

/// The compressed payload (the ELF vmlinux, compressed) of a bzImage.
pub fn bzimage_payload(data: &[u8]) -> Result<&[u8], String> {
    let version = u16_at(data, 0x206)?;
    if version < 0x208 {
        return Err(format!(
            "boot protocol {}.{:02} has no payload fields (needs 2.08+)",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match data.get(0x1f1) {
        Some(0) => 4,
        Some(&n) => n as usize,
        None => return Err("file ends inside the boot header".into()),
    };
    let base = (setup_sects + 1) * 512;
    let offset = u32_at(data, 0x248)? as usize;
    let length = u32_at(data, 0x24c)? as usize;
    let start = base + offset;
    let end = start
        .checked_add(length)
        .ok_or_else(|| "payload length overflows".to_string())?;
    if length == 0 || end > data.len() {
        return Err(format!(
            "payload {start:#x}..{end:#x} lies outside the file ({:#x} bytes)",
            data.len()
        ));
    }
    Ok(&data[start..end])
}

/// What [`extract_pvh_vmlinux`] found in a sound bzImage.
#[derive(Debug)]
pub enum Extraction {
    /// The decompressed ELF vmlinux, which has a PVH entry note.
    Pvh(Vec<u8>),
    /// The bzImage is fine but its vmlinux cannot be booted directly (why).
    NotBootable(String),
}

/// Decompress a bzImage's payload and check that it is a PVH-bootable ELF.
/// `Err` means the image is damaged.
pub fn extract_pvh_vmlinux(bzimage: &[u8]) -> Result<Extraction, String> {
    let payload = bzimage_payload(bzimage)?;
    let Some(format) = Format::sniff(payload) else {
        let magic: Vec<String> = payload.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Ok(Extraction::NotBootable(format!(
            "its payload compression (magic {}) is not one of xz, gzip, zstd",
            magic.join(" ")
        )));
    };
    let elf = decompress::decompress(format, payload).map_err(|e| format!("payload: {e}"))?;
    if detect(&elf) != Some(KernelFormat::Elf) {
        return Err("the decompressed payload is not an ELF file".into());
    }
    if has_pvh_note(&elf).map_err(|e| format!("decompressed vmlinux: {e}"))? {
        Ok(Extraction::Pvh(elf))
    } else {
        Ok(Extraction::NotBootable(
            "its vmlinux has no PVH entry note (kernel built without CONFIG_PVH)".into(),
        ))
    }
}

/// Whether an ELF file has a `Xen` note of type 18 in a `PT_NOTE` segment
/// (what QEMU looks for to boot a vmlinux through PVH).
pub fn has_pvh_note(elf: &[u8]) -> Result<bool, String> {
    match elf.get(4) {
        Some(2) => pvh_in::<FileHeader64<Endianness>>(elf),
        Some(1) => pvh_in::<FileHeader32<Endianness>>(elf),
        _ => Err("unknown ELF class".into()),
    }
}

fn pvh_in<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<bool, String> {
    let header = H::parse(data).map_err(|e| format!("bad ELF header: {e}"))?;
    let endian = header
        .endian()
        .map_err(|e| format!("bad ELF header: {e}"))?;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| format!("bad program headers: {e}"))?;
    for ph in phdrs {
        if ph.p_type(endian) != PT_NOTE {
            continue;
        }
        let Some(mut notes) = ph
            .notes(endian, data)
            .map_err(|e| format!("bad note segment: {e}"))?
        else {
            continue;
        };
        while let Some(note) = notes.next().map_err(|e| format!("bad note: {e}"))? {
            if note.name() == b"Xen" && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernel::decompress::tests::{gzip, xz};

    /// A minimal ELF64 executable whose only program header is a PT_NOTE
    /// segment holding one note (`name`, `n_type`), plus a banner string.
    pub fn fake_vmlinux(name: &[u8], n_type: u32, banner: &[u8]) -> Vec<u8> {
        let mut note = Vec::new();
        let namesz = name.len() as u32 + 1;
        note.extend_from_slice(&namesz.to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes()); // descsz
        note.extend_from_slice(&n_type.to_le_bytes());
        note.extend_from_slice(name);
        note.push(0);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        note.extend_from_slice(&0x0100_0000u32.to_le_bytes()); // entry address

        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1; // version
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let note_off = 64 + 56u64;
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[8..16].copy_from_slice(&note_off.to_le_bytes()); // p_offset
        ph[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes()); // p_filesz
        ph[40..48].copy_from_slice(&(note.len() as u64).to_le_bytes()); // p_memsz
        ph[48..56].copy_from_slice(&4u64.to_le_bytes()); // p_align
        f.extend_from_slice(&ph);
        f.extend_from_slice(&note);
        f.extend_from_slice(banner);
        f
    }

    /// A minimal bzImage (protocol 2.15, setup_sects 1) around `payload`,
    /// with `version` as its kernel_version string.
    pub fn fake_bzimage(payload: &[u8], version: &str) -> Vec<u8> {
        let mut f = vec![0u8; 1024];
        f[0x1f1] = 1;
        f[0x1fe] = 0x55;
        f[0x1ff] = 0xaa;
        f[0x202..0x206].copy_from_slice(b"HdrS");
        f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        let vstr = 0x300usize;
        f[0x20e..0x210].copy_from_slice(&((vstr - 0x200) as u16).to_le_bytes());
        f[vstr..vstr + version.len()].copy_from_slice(version.as_bytes());
        f.extend_from_slice(&[0u8; 64]); // some "decompressor" bytes
        f[0x248..0x24c].copy_from_slice(&64u32.to_le_bytes());
        let len = payload.len() as u32 + 4; // includes the size trailer
        f[0x24c..0x250].copy_from_slice(&len.to_le_bytes());
        f.extend_from_slice(payload);
        f.extend_from_slice(&123u32.to_le_bytes());
        f
    }

    const BANNER: &[u8] = b"\0Linux version %s\0Linux version 6.9.1-test (me@x) #1 SMP\0";

    #[test]
    fn detects_formats() {
        let elf = fake_vmlinux(b"Xen", 18, b"");
        assert_eq!(detect(&elf), Some(KernelFormat::Elf));
        assert_eq!(
            detect(&fake_bzimage(&xz(&elf), "6.9.1 x")),
            Some(KernelFormat::BzImage)
        );
        assert_eq!(detect(b"random bytes that are not a kernel"), None);
        assert_eq!(detect(&[]), None);
    }

    #[test]
    fn release_from_header_and_banner() {
        let bz = fake_bzimage(
            b"xx",
            "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP",
        );
        assert_eq!(bzimage_release(&bz).unwrap(), "6.1.0-56-amd64");
        let elf = fake_vmlinux(b"Xen", 18, BANNER);
        assert_eq!(elf_release(&elf).as_deref(), Some("6.9.1-test"));
        assert_eq!(elf_release(b"no banner here"), None);
    }

    #[test]
    fn pvh_note_found_only_when_present() {
        assert!(has_pvh_note(&fake_vmlinux(b"Xen", 18, b"")).unwrap());
        assert!(!has_pvh_note(&fake_vmlinux(b"Xen", 17, b"")).unwrap());
        assert!(!has_pvh_note(&fake_vmlinux(b"GNU", 18, b"")).unwrap());
    }

    #[test]
    fn extracts_xz_and_gzip_payloads() {
        let elf = fake_vmlinux(b"Xen", 18, BANNER);
        for payload in [xz(&elf), gzip(&elf)] {
            match extract_pvh_vmlinux(&fake_bzimage(&payload, "6.9.1-test x")).unwrap() {
                Extraction::Pvh(v) => assert_eq!(v, elf),
                Extraction::NotBootable(why) => panic!("{why}"),
            }
        }
    }

    #[test]
    fn non_pvh_and_unknown_compression_are_not_bootable() {
        let no_pvh = fake_vmlinux(b"GNU", 3, b"");
        let r = extract_pvh_vmlinux(&fake_bzimage(&xz(&no_pvh), "6.9.1 x")).unwrap();
        assert!(
            matches!(r, Extraction::NotBootable(ref w) if w.contains("PVH")),
            "{r:?}"
        );
        let lz4ish = [0x02, 0x21, 0x4c, 0x18, 1, 2, 3];
        let r = extract_pvh_vmlinux(&fake_bzimage(&lz4ish, "6.9.1 x")).unwrap();
        assert!(
            matches!(r, Extraction::NotBootable(ref w) if w.contains("02 21 4c 18")),
            "{r:?}"
        );
    }

    #[test]
    fn truncated_or_garbled_images_are_errors_not_panics() {
        let elf = fake_vmlinux(b"Xen", 18, BANNER);
        let bz = fake_bzimage(&xz(&[elf.clone(), vec![9u8; 50_000]].concat()), "6.9.1 x");
        for cut in [0x203, 0x210, 0x250, bz.len() / 2, bz.len() - 10] {
            let r = extract_pvh_vmlinux(&bz[..cut]);
            assert!(r.is_err(), "cut at {cut}: {r:?}");
        }
        // Payload that decompresses to something that is not an ELF.
        let bz = fake_bzimage(&xz(b"plain text"), "6.9.1 x");
        assert!(extract_pvh_vmlinux(&bz).is_err());
        // Pseudo-random bytes after a valid magic.
        let mut junk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        junk[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(extract_pvh_vmlinux(&junk).is_err());
        let mut elf_junk = junk.clone();
        elf_junk[..4].copy_from_slice(b"\x7fELF");
        let _ = has_pvh_note(&elf_junk); // must not panic
        assert!(has_pvh_note(&elf[..70]).is_err());
    }
}
