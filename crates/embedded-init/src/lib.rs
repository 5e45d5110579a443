//! The static guest init (`vmbuild-init`, the PID 1 of every vmbuild VM),
//! built by this crate's build script and carried in the binary as bytes, so
//! an installed `vmbuild` needs no second file. See docs/install.md.

mod elf;

pub use elf::elf_needs_interpreter;

/// The embedded static `vmbuild-init` executable.
pub static INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vmbuild-init"));

/// The SHA-256 of [`INIT`] in lowercase hex, computed when it was embedded
/// (printed by `vmbuild --version` and `vmbuild doctor`).
pub const INIT_SHA256: &str = env!("VMBUILD_EMBEDDED_INIT_SHA256");

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn embedded_init_is_static_and_matches_its_hash() {
        assert_eq!(elf_needs_interpreter(INIT), Some(false));
        assert_eq!(hex::encode(sha2::Sha256::digest(INIT)), INIT_SHA256);
    }

    /// A minimal ELF64 header with one program header of type `p_type`.
    fn elf_with_phdr(p_type: u32) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&p_type.to_le_bytes());
        e
    }

    #[test]
    fn tells_static_from_dynamic_elf() {
        assert_eq!(elf_needs_interpreter(&elf_with_phdr(1)), Some(false));
        assert_eq!(elf_needs_interpreter(&elf_with_phdr(3)), Some(true));
        assert_eq!(elf_needs_interpreter(b"#!/bin/sh\n"), None);
        let mut truncated = elf_with_phdr(3);
        truncated.truncate(66);
        assert_eq!(elf_needs_interpreter(&truncated), None);
    }
}
