#!/usr/bin/env bash
# Builds the guest init (vmbuild-init) as a static binary and copies it to
# target/vmbuild-init, the stable path the host side looks up. Prints that
# path.
#
# RUSTFLAGS applies only to target artifacts when --target is explicit, so
# proc-macros and build scripts stay dynamic; the host target's std is all
# that is needed (no extra rustup target). Static glibc needs libc6-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}

RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release -p vmbuild-guest-init --target "$triple" >&2

built="$target_dir/$triple/release/vmbuild-init"
[[ -f $built ]] || { echo "build-init: $built was not produced" >&2; exit 1; }

# An ELF64 little-endian x86-64 executable without a PT_INTERP program
# header (no dynamic loader) is static. Uses readelf when present, else
# reads the program headers with od.
elf_field() { # FILE OFFSET SIZE -> unsigned decimal
    od -An -t "u$3" -j "$2" -N "$3" "$1" | tr -d ' \n'
}
has_interp() {
    if command -v readelf >/dev/null 2>&1; then
        readelf -lW "$1" | grep -q '^ *INTERP '
        return
    fi
    local phoff phentsize phnum i
    phoff=$(elf_field "$1" 32 8)
    phentsize=$(elf_field "$1" 54 2)
    phnum=$(elf_field "$1" 56 2)
    for ((i = 0; i < phnum; i++)); do
        [[ $(elf_field "$1" $((phoff + i * phentsize)) 4) == 3 ]] && return 0
    done
    return 1
}
magic=$(od -An -c -N 4 "$built" | tr -d ' \n')
class=$(elf_field "$built" 4 1)
machine=$(elf_field "$built" 18 2)
if [[ $magic != '177ELF' || $class != 2 || $machine != 62 ]]; then
    echo "build-init: $built is not an x86-64 ELF64 binary" >&2
    exit 1
fi
if has_interp "$built"; then
    echo "build-init: $built is dynamically linked (has PT_INTERP); it cannot be the guest's /init." >&2
    echo "build-init: is the static glibc (libc6-dev) installed, and is RUSTFLAGS overridden?" >&2
    exit 1
fi

out="$target_dir/vmbuild-init"
cp "$built" "$out.tmp.$$"
# Symbols are dead weight in every initramfs (the build keeps them).
if command -v strip >/dev/null 2>&1; then strip "$out.tmp.$$"; fi
mv -f "$out.tmp.$$" "$out"
realpath "$out"
