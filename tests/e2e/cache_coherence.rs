//! The read-only cache share stays coherent when the host changes a file
//! during a run (another build writing the same cache through virtiofs, a
//! user refreshing it): a read sees the new content whole, never the new
//! bytes cut to the old size or padded with NULs up to it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::{wait_with_limit, Vmb};

/// Files the host rewrites, each a different way.
const FILES: [&str; 3] = ["shrunk", "grown", "renamed-over"];

/// Reads every file once (filling any guest cache), says `ready`, waits
/// until the host lists `go` in the lower-only directory `sync` (readdir
/// always asks the host), then prints `NAME SIZE SHA256` for each file.
const GUEST: &str = r#"
c=/var/cache/vmbuild
for f in shrunk grown renamed-over; do cat $c/$f > /dev/null; done
echo ready
i=0
until ls $c/sync | grep -qx go; do
    i=$((i+1)); [ $i -lt 1200 ] || { echo "no go from the host" >&2; exit 9; }
    sleep 0.05
done
for f in shrunk grown renamed-over; do
    echo "$f $(wc -c < $c/$f) $(sha256sum < $c/$f | cut -d' ' -f1)"
done
"#;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// Shrinks in place, grows in place, renames a new file over the old one;
/// returns the expected `NAME SIZE SHA256` lines.
fn rewrite(c: &Path) -> Vec<String> {
    use std::io::Write;
    let shrunk = b"the new, shorter content\n".to_vec();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.join("shrunk"))
        .unwrap();
    f.set_len(0).unwrap();
    f.write_all(&shrunk).unwrap();
    let grown_tail = pattern(2, 70_000);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(c.join("grown"))
        .unwrap();
    f.write_all(&grown_tail).unwrap();
    let grown = std::fs::read(c.join("grown")).unwrap();
    assert_eq!(grown.len(), 200_000 + 70_000);
    let renamed = pattern(3, 300_000);
    std::fs::write(c.join("renamed-over.tmp"), &renamed).unwrap();
    std::fs::rename(c.join("renamed-over.tmp"), c.join("renamed-over")).unwrap();
    std::fs::File::create(c.join("sync/go")).unwrap();
    let line =
        |name: &str, b: &[u8]| format!("{name} {} {}", b.len(), hex::encode(Sha256::digest(b)));
    vec![
        line("shrunk", &shrunk),
        line("grown", &grown),
        line("renamed-over", &renamed),
    ]
}

#[test]
fn overlay_reads_see_host_rewrites_whole() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    std::fs::create_dir(c.join("sync")).unwrap();
    for (i, f) in FILES.iter().enumerate() {
        std::fs::write(c.join(f), pattern(i as u8 + 10, 200_000)).unwrap();
    }
    let mut child = v.spawn(&[
        "run",
        "--cache-dir",
        &c.to_string_lossy(),
        "--",
        "sh",
        "-c",
        GUEST,
    ]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the guest did not get ready");
    let want = rewrite(c);
    let got: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    let status = wait_with_limit(&mut child, Duration::from_secs(120));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    v.assert_clean();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(got, want, "the guest read a torn or stale file");
}
