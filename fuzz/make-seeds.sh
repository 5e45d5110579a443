#!/usr/bin/env bash
# Regenerates the checked-in seed corpus (fuzz/corpus/*): real frames of
# each guest message kind, and small tar streams of every entry kind the
# unpacker handles, in GNU, pax and ustar forms.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/guest_messages corpus/output_tar
python3 - <<'PY'
import json, struct
def frame(kind, payload):
    return struct.pack("<BI", kind, len(payload)) + payload
hello = json.dumps({"init_version": "0.1.0", "kernel_release": "6.1.0", "init_start_us": 1, "port_open_us": 2}).encode()
exited = json.dumps({"code": 0, "signal": None, "started_us": 5, "ended_us": 9}).encode()
seeds = {
    "hello": frame(1, hello),
    "session": frame(1, hello) + frame(2, b'{"uptime_us":7}') + frame(3, b"out\n") + frame(4, b"err\n") + frame(5, exited),
    "fatal": frame(6, b"mount failed"),
    "log": frame(7, b"guest says"),
    "signal": frame(5, json.dumps({"code": None, "signal": 9, "started_us": 1, "ended_us": 2}).encode()),
    "truncated": frame(3, b"abc")[:6],
}
for name, data in seeds.items():
    open(f"corpus/guest_messages/{name}", "wb").write(data)
PY
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/t/dir/sub"
echo hello > "$tmp/t/dir/file"
ln -s file "$tmp/t/dir/link"
ln "$tmp/t/dir/file" "$tmp/t/dir/hard"
printf x > "$tmp/t/dir/sub/$(printf 'n%.0s' $(seq 1 120))"
for fmt in gnu pax ustar; do
    tar --format=$fmt -C "$tmp/t" -cf "corpus/output_tar/tree-$fmt" . 2>/dev/null || true
done
tar -C "$tmp/t" -cf - dir/file | head -c 700 > corpus/output_tar/truncated
