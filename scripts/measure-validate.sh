#!/bin/sh
# Measures `vmbuild validate` over a tree of melange configs (wolfi-dev/os):
# how many are accepted (exit 0, without --strict), how long it takes, and
# every rejection bucketed by reason. Not part of the test suite: it needs
# the repository on disk, e.g.
#
#   git clone --depth 1 https://github.com/wolfi-dev/os /tmp/wolfi-os
#   scripts/measure-validate.sh /tmp/wolfi-os
#
# Each config is checked on its own with the tree's pipelines/ directory
# (what `vmbuild validate` does for every config it is given). Figures are
# recorded in docs/melange-compat.md.
set -eu
tree=${1:?usage: scripts/measure-validate.sh WOLFI_OS_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p vmbuild --manifest-path "$here/Cargo.toml"
bin="$here/target/release/vmbuild"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$tree"
total=$(ls ./*.yaml | wc -l)
start=$(date +%s.%N)
"$bin" validate -q ./*.yaml >/dev/null 2>"$out/errors" || true
end=$(date +%s.%N)
failed=$(grep -c '^error:' "$out/errors" || true)
ok=$((total - failed))
echo "configs:   $total"
echo "accepted:  $ok ($(echo "scale=1; 100 * $ok / $total" | bc)%)"
echo "rejected:  $failed"
echo "wall time: $(echo "$end - $start" | bc | cut -c1-5) s"
grep "^vmbuild validate:" "$out/errors" || true
if grep -q '^warning:' "$out/errors"; then
  warned=$(grep '^warning:' "$out/errors" | cut -d: -f2 | sort -u | wc -l)
  echo "configs with package-name warnings: $warned"
fi
echo
echo "rejections by reason (file, line, column and quoted names removed):"
grep '^error:' "$out/errors" \
  | sed -E 's/^error: [^:]+:[0-9]+:[0-9]+: //; s/`[^`]*`/X/g; s/looked in: [^ ]+/looked in: .../' \
  | cut -c1-110 | sort | uniq -c | sort -rn
echo
echo "rejected configs:"
grep '^error:' "$out/errors" | sed -E 's/^error: ([^:]+):.*/\1/' | sort -u | tr '\n' ' '
echo
