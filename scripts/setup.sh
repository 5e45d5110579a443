#!/usr/bin/env bash
# Installs the host packages vmbuild needs, through apt, only when missing.
#   qemu-system-x86  QEMU (and QEMU's legacy virtiofsd at /usr/lib/qemu/virtiofsd)
#   dpkg-dev/apt     already on Debian: used to fetch the pinned guest kernel
#   bubblewrap       the non-VM runner (`--runner bubblewrap`)
#   mmdebstrap, erofs-utils   environment images (`environment.contents.packages`)
#   libseccomp-dev libcap-ng-dev   to build the Rust virtiofsd the tests also cover
#   openssl          the tests make a throw-away CA for `--ca-cert`
#   docker-registry skopeo   cache export tests: a real OCI registry on loopback, and OCI tooling interop
#   zstd             the plain `tar | zstd` baseline of `vmbuild bench transfer`
#   docker.io        the Docker Engine of `--runner docker` (scripts/dockerd.sh starts one for the tests)
set -euo pipefail

packages=(qemu-system-x86 bubblewrap mmdebstrap erofs-utils libseccomp-dev libcap-ng-dev openssl docker-registry skopeo zstd docker.io)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# `apt-get download` (the guest kernel) needs package lists; a fresh
# container may have none.
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
