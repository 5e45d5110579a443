#!/usr/bin/env bash
# vmbuild on a plain shell CI runner (Jenkins, Buildkite, a GitLab shell
# executor, cron) on a Debian host, as an unprivileged user. docs/ci.md.
#
# Once per machine, as root:
#   apt-get install -y qemu-system-x86     # QEMU
#   usermod -aG kvm ci                     # let the CI user use /dev/kvm (then log in again)
# Nothing below needs root.
set -euo pipefail

: "${VMBUILD_GIT:=https://github.com/your-org/vmbuild}"
# One cache dir for every job on this machine: a passing build's writes are
# kept (--cache-persist on-success), one build at a time (--cache-sharing locked).
: "${VMBUILD_CACHE:=$HOME/.cache/vmbuild-ci}"

command -v vmbuild >/dev/null || cargo install --locked --git "$VMBUILD_GIT" vmbuild
vmbuild doctor
vmbuild build vmbuild.yaml --cache-dir "$VMBUILD_CACHE" \
    --cache-persist on-success --cache-sharing locked --log-format json
