#!/usr/bin/env bash
# Regenerates the checked-in seed corpus (fuzz/corpus/*): real frames of
# each guest message kind; small tar streams of every entry kind the
# unpacker handles, in GNU, pax and ustar forms (also the cache import's
# seeds: there they are the tar inside a chunk); and a cache export's
# manifest and config in the shape vmbuild writes them (two length bytes,
# the manifest, the config: see fuzz_targets/cache_manifest.rs).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/guest_messages corpus/output_tar corpus/cache_import corpus/cache_manifest
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
cp corpus/output_tar/* corpus/cache_import/
python3 - <<'PY'
import hashlib, json
def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()
def pair(volumes):
    config = json.dumps({"vmbuildVersion": "0.2.0", "created": 1, "volumes": [
        {"name": n, "digest": digest(n.encode()), "layers": len(ls), "bytes": 10, "entries": 3}
        for n, ls in volumes]}).encode()
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": digest(l), "size": len(l),
               "annotations": {"dev.vmbuild.volume": n}} for n, ls in volumes for l in ls]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.vmbuild.cache.v1",
        "config": {"mediaType": "application/vnd.vmbuild.cache.config.v1+json", "digest": digest(config), "size": len(config)},
        "layers": layers}).encode()
    return len(manifest).to_bytes(2, "big") + manifest + config
seeds = {
    "one-volume": pair([("cache-dir", [b"a", b"b"])]),
    "two-volumes": pair([("npm", [b"a"]), ("pip", [b"b", b"c"])]),
    "empty": pair([]),
}
for name, data in seeds.items():
    open(f"corpus/cache_manifest/{name}", "wb").write(data)
PY
