//! Environment images from packages and the pip cache round trip: a warm
//! virtiofs cache means no package file is downloaded again.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{stderr, Vmb};

/// The tests/e2e/fixtures index server on the host's loopback.
pub(crate) struct Index {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
    file_marker: &'static str,
    _dir: tempfile::TempDir,
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Index {
    /// Downloads real package files from PyPI into a fresh dir and serves
    /// them as a PEP 503 index, each package file after `delay` (a remote
    /// index's latency): two wheels, and six as an sdist so that the cold
    /// build must build a wheel, which pip's cache keeps.
    fn pypi(delay: f64) -> Index {
        Index::pypi_with(delay, &[])
    }

    /// [`Index::pypi`] with more server arguments (`CERT KEY`: https).
    fn pypi_with(delay: f64, extra: &[&Path]) -> Index {
        Index::start("pypi_server.py", "/files/", delay, extra, |dir| {
            for (kind, pkgs) in [
                ("--only-binary=:all:", &["idna==3.7", "packaging==24.1"][..]),
                ("--no-binary=:all:", &["six==1.16.0"][..]),
            ] {
                let st = Command::new("python3")
                    .args(["-m", "pip", "download", "--quiet", kind, "--no-deps", "-d"])
                    .arg(dir)
                    .args(pkgs)
                    .status()
                    .expect("python3 -m pip download");
                assert!(st.success(), "pip download of {pkgs:?} failed");
            }
        })
    }

    /// Packs real tarballs from the npm registry into a fresh dir and serves
    /// them as an npm registry, each tarball after `delay`.
    fn npm(delay: f64) -> Index {
        Index::start("npm_registry.py", "/-/", delay, &[], |dir| {
            std::fs::create_dir_all(dir).unwrap();
            let st = Command::new("npm")
                .args(["pack", "--silent"])
                .args(NPM_PACKAGES)
                .current_dir(dir)
                .stdout(Stdio::null())
                .status()
                .expect("npm pack");
            assert!(st.success(), "npm pack of the test packages failed");
        })
    }

    /// Fetches the package files into a fresh dir with `fetch`, then serves
    /// them with tests/e2e/fixtures/`script` (given `extra` arguments last);
    /// `file_marker` is what the paths of package files (not index
    /// documents) contain.
    pub(crate) fn start(
        script: &str,
        file_marker: &'static str,
        delay: f64,
        extra: &[&Path],
        fetch: impl FnOnce(&Path),
    ) -> Index {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        fetch(&files);
        let log = dir.path().join("requests.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/e2e/fixtures")
            .join(script);
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&files)
            .arg(&log)
            .arg(delay.to_string())
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the index server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("server prints its port");
        Index {
            child,
            port,
            log,
            file_marker,
            _dir: dir,
        }
    }

    /// Package files (wheels, sdists, tarballs) requested since the last call.
    fn take_file_requests(&self) -> Vec<String> {
        self.take_requests()
            .into_iter()
            .filter(|l| l.contains(self.file_marker))
            .collect()
    }

    /// Every request since the last call, one "GET <path> <status>" each.
    fn take_requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines().map(str::to_string).collect()
    }
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .join("vmbuild.yaml")
}

/// One build of `examples/<name>` with `-e` settings `env`, which must
/// succeed; returns its wall time and log.
fn example_build(
    v: &Vmb,
    name: &str,
    env: &[&str],
    cache: &Path,
    mode: &str,
    out: &Path,
) -> (Duration, String) {
    example_build_with(v, name, env, cache, mode, out, &[])
}

/// [`example_build`] with more arguments.
fn example_build_with(
    v: &Vmb,
    name: &str,
    env: &[&str],
    cache: &Path,
    mode: &str,
    out: &Path,
    more: &[&str],
) -> (Duration, String) {
    let cfg = example(name).to_string_lossy().into_owned();
    let (c, o) = (
        cache.to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
    );
    let mut args = vec![
        "build",
        cfg.as_str(),
        "--cache-dir",
        &c,
        "--cache-mode",
        mode,
        "--output-dir",
        &o,
        "--log-format",
        "text",
    ];
    for e in env {
        args.extend(["-e", e]);
    }
    args.extend(more);
    let t0 = Instant::now();
    let r = v.run(&args);
    let took = t0.elapsed();
    assert_eq!(r.status.code(), Some(0), "stderr: {}", stderr(&r));
    (took, stderr(&r))
}

/// One build of the pip example; returns its wall time and log.
fn pip_build(v: &Vmb, index: &Index, cache: &Path, mode: &str, out: &Path) -> (Duration, String) {
    pip_build_with(v, index, cache, mode, out, &[])
}

/// [`pip_build`] with more arguments.
fn pip_build_with(
    v: &Vmb,
    index: &Index,
    cache: &Path,
    mode: &str,
    out: &Path,
    more: &[&str],
) -> (Duration, String) {
    let url = format!("PIP_INDEX_URL=http://10.0.2.2:{}/simple/", index.port);
    let env = [url.as_str(), "PIP_TRUSTED_HOST=10.0.2.2"];
    let (took, log) = example_build_with(v, "pip-cache", &env, cache, mode, out, more);
    assert!(log.contains("imported six 1.16.0"), "{log}");
    (took, log)
}

#[test]
fn pip_cache_round_trip_in_both_modes() {
    let index = Index::pypi(1.5);
    let v = Vmb::new();
    let tmp = tempfile::tempdir().unwrap();
    // The environment image first (built once, or found in the cache), so
    // the timings below compare warm and cold package caches only.
    let cfg = example("pip-cache").to_string_lossy().into_owned();
    let img = v.run(&["image", "build", &cfg]);
    assert_eq!(img.status.code(), Some(0), "stderr: {}", stderr(&img));
    let ls = v.run(&["image", "ls"]);
    assert!(
        crate::harness::stdout(&ls).contains("python3-pip"),
        "{}",
        crate::harness::stdout(&ls)
    );

    // virtiofs: the first build fills the cache, the second fetches no
    // package file and is faster.
    // The cold build also exports its cache to a registry, as a CI runner
    // with --cache-to would.
    let registry = crate::registry::TestRegistry::start(None);
    let cache_ref = format!(
        "type=registry,ref={}",
        registry.reference("ci/pip-cache:main")
    );
    let cache = tmp.path().join("cache-virtiofs");
    let root = tmp.path().join("root").to_string_lossy().into_owned();
    let to = [
        "--cache-root",
        root.as_str(),
        "--cache-to",
        cache_ref.as_str(),
    ];
    let (cold, first) = pip_build_with(
        &v,
        &index,
        &cache,
        "virtiofs",
        &tmp.path().join("out1"),
        &to,
    );
    assert!(
        first.contains("cache-to ") && first.contains("1 volume"),
        "{first}"
    );
    let fetched = index.take_file_requests();
    assert_eq!(
        fetched.len(),
        3,
        "cold build downloads the three package files: {fetched:?}\n{first}"
    );
    assert!(
        first.contains("Building wheel for six"),
        "the cold build builds six from its sdist: {first}"
    );
    assert!(
        first.contains(", cached"),
        "the image is reused, not rebuilt: {first}"
    );
    assert!(cache.join("pip").is_dir(), "pip's cache is on the host");
    let (warm, second) = pip_build(&v, &index, &cache, "virtiofs", &tmp.path().join("out2"));
    let refetched = index.take_file_requests();
    assert!(
        refetched.is_empty(),
        "warm build fetched package files again: {refetched:?}"
    );
    assert!(
        second.contains("Using cached six-1.16.0-py2.py3-none-any.whl")
            && !second.contains("Building wheel"),
        "the warm build reuses the wheel the cold build made: {second}"
    );
    // No wall-time comparison here: the cache saves ~4.5 s of index
    // latency and a wheel build out of ~25 s, less than the noise of a
    // shared 2-core machine (a run had warm 27.3 s vs cold 25.7 s under
    // load). The mechanism is asserted above (nothing fetched, the cached
    // wheel used); the speed is scripts/bench-pip.sh's, measured side by side.

    // A fresh runner: empty cache dir and cache root, the cache pulled from
    // the registry before boot; no package file is downloaded.
    let fresh = tmp.path().join("fresh-cache");
    let fresh_root = tmp.path().join("fresh-root").to_string_lossy().into_owned();
    let from = [
        "--cache-root",
        fresh_root.as_str(),
        "--cache-from",
        cache_ref.as_str(),
    ];
    let (_, third) = pip_build_with(
        &v,
        &index,
        &fresh,
        "virtiofs",
        &tmp.path().join("out3"),
        &from,
    );
    assert!(third.contains("cache-dir: imported"), "{third}");
    let refetched = index.take_file_requests();
    assert!(
        refetched.is_empty(),
        "the fresh runner fetched package files although the cache came from the registry: {refetched:?}\n{third}"
    );

    // overlay (default mode): the host cache is never written, so every
    // build downloads again: the documented behaviour.
    let cache = tmp.path().join("cache-overlay");
    std::fs::create_dir(&cache).unwrap();
    for i in 0..2 {
        pip_build(
            &v,
            &index,
            &cache,
            "overlay",
            &tmp.path().join(format!("out-ov{i}")),
        );
        assert_eq!(
            index.take_file_requests().len(),
            3,
            "overlay build {i} downloads again"
        );
    }
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "overlay left the host cache empty"
    );
    eprintln!(
        "pip example: cold {cold:?}, warm {warm:?} ({:.2}x)",
        warm.as_secs_f64() / cold.as_secs_f64()
    );
}

/// The npm example's packages: tiny, and without dependencies.
const NPM_PACKAGES: [&str; 3] = ["is-number@7.0.0", "left-pad@1.3.0", "escape-html@1.0.3"];

/// One build of the npm example; returns its wall time and log.
fn npm_build(
    v: &Vmb,
    registry: &Index,
    cache: &Path,
    mode: &str,
    out: &Path,
) -> (Duration, String) {
    let url = format!("NPM_REGISTRY=http://10.0.2.2:{}/", registry.port);
    let (took, log) = example_build(v, "npm-cache", &[url.as_str()], cache, mode, out);
    assert!(
        log.contains("required left-pad 1.3.0 007 true &lt;&amp;&gt;"),
        "{log}"
    );
    assert!(
        out.join("app/node_modules/is-number/package.json")
            .is_file(),
        "the install is in the output"
    );
    (took, log)
}

#[test]
fn npm_cache_round_trip_in_both_modes() {
    // npm fetches the tarballs in parallel, so one delay is all a cold
    // build waits. An npm build takes ~40 s under TCG, and with the rest of
    // the suite booting VMs beside it two identical builds were seen to
    // differ by 12 s: the delay must dwarf that, or "warm beats cold"
    // measures the neighbours (it failed that way with a 4 s delay).
    let registry = Index::npm(20.0);
    let v = Vmb::new();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example("npm-cache").to_string_lossy().into_owned();
    let img = v.run(&["image", "build", &cfg]);
    assert_eq!(img.status.code(), Some(0), "stderr: {}", stderr(&img));

    // virtiofs: the first build fills the cache; the second only
    // revalidates the packuments and fetches no tarball, and is faster.
    let cache = tmp.path().join("cache-virtiofs");
    let (cold, first) = npm_build(&v, &registry, &cache, "virtiofs", &tmp.path().join("out1"));
    let fetched = registry.take_requests();
    let tarballs: Vec<_> = fetched.iter().filter(|l| l.contains("/-/")).collect();
    assert_eq!(
        tarballs.len(),
        NPM_PACKAGES.len(),
        "cold build downloads every tarball: {fetched:?}\n{first}"
    );
    assert!(
        first.contains(", cached"),
        "the image is reused, not rebuilt: {first}"
    );
    assert!(
        cache.join("npm/_cacache").is_dir(),
        "npm's cache is on the host"
    );
    let (warm, second) = npm_build(&v, &registry, &cache, "virtiofs", &tmp.path().join("out2"));
    let again = registry.take_requests();
    assert!(
        !again.is_empty(),
        "the warm build still asks the registry (packuments): {second}"
    );
    let refetched: Vec<_> = again.iter().filter(|l| l.contains("/-/")).collect();
    assert!(
        refetched.is_empty(),
        "warm build fetched tarballs again: {again:?}"
    );
    // No wall-time comparison here: the cache saves ~4.5 s of index
    // latency and a wheel build out of ~25 s, less than the noise of a
    // shared 2-core machine (a run had warm 27.3 s vs cold 25.7 s under
    // load). The mechanism is asserted above (nothing fetched, the cached
    // wheel used); the speed is scripts/bench-pip.sh's, measured side by side.

    // overlay (default mode): the host cache is never written, so every
    // build downloads again.
    let cache = tmp.path().join("cache-overlay");
    std::fs::create_dir(&cache).unwrap();
    for i in 0..2 {
        npm_build(
            &v,
            &registry,
            &cache,
            "overlay",
            &tmp.path().join(format!("out-ov{i}")),
        );
        let got = registry.take_file_requests();
        assert_eq!(
            got.len(),
            NPM_PACKAGES.len(),
            "overlay build {i} downloads again: {got:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "overlay left the host cache empty"
    );
    eprintln!(
        "npm example: cold {cold:?}, warm {warm:?} ({:.2}x); warm requests: {again:?}",
        warm.as_secs_f64() / cold.as_secs_f64()
    );
}

#[test]
fn two_builds_needing_the_same_new_image_build_it_once() {
    // A private vmbuild cache, so the image is new (the kernel is fetched
    // into it as well, by whichever build gets there first).
    let xdg = tempfile::tempdir().unwrap();
    let proj = tempfile::tempdir().unwrap();
    std::fs::write(
        proj.path().join("vmbuild.yaml"),
        "package: { name: hi, version: \"1\" }\nenvironment: { contents: { packages: [hello] } }\n\
         pipeline:\n  - runs: hello\n",
    )
    .unwrap();
    let cfg = proj
        .path()
        .join("vmbuild.yaml")
        .to_string_lossy()
        .into_owned();
    let v = Vmb::new();
    let spawn = |out: &str| {
        let o = proj.path().join(out).to_string_lossy().into_owned();
        v.cmd()
            .env("XDG_CACHE_HOME", xdg.path())
            .args(["build", &cfg, "--output-dir", &o, "--log-format", "text"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("out-a"), spawn("out-b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    v.assert_clean();
    for o in [&a, &b] {
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
        assert!(
            stderr(o).contains("Hello, world!"),
            "the tool from the image ran: {}",
            stderr(o)
        );
    }
    let built = [&a, &b]
        .iter()
        .filter(|o| stderr(o).contains(", built now"))
        .count();
    assert_eq!(
        built,
        1,
        "exactly one build made the image:\n{}\n---\n{}",
        stderr(&a),
        stderr(&b)
    );
    let images: Vec<_> = std::fs::read_dir(xdg.path().join("vmbuild/images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
}

/// A test CA and a server certificate for 10.0.2.2 (the host as the guest
/// sees it) signed by it, made with openssl in `dir`: (ca.pem, cert, key).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=vmbuild-test-ca 2>/dev/null
openssl req $ec -keyout srv.key -out srv.csr -subj /CN=10.0.2.2 2>/dev/null
printf 'subjectAltName=IP:10.0.2.2\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out srv.pem 2>/dev/null
"#;
    let st = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .status()
        .expect("run openssl");
    assert!(st.success(), "making the test CA with openssl failed");
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// `--ca-cert`: pip in an environment image reaches an https index whose
/// certificate is signed by a CA only the host knows (a TLS-intercepting
/// proxy's, say). Without the flag the handshake fails; with it pip
/// downloads. A private key in the same file never reaches the guest.
#[test]
fn ca_cert_lets_the_guest_trust_a_host_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(tmp.path());
    let index = Index::pypi_with(0.0, &[&cert, &key]);
    // The CA with its private key in one file, as some tools write them.
    let ca_with_key = tmp.path().join("ca-and-key.pem");
    let mut both = std::fs::read(&ca).unwrap();
    both.extend(std::fs::read(tmp.path().join("ca.key")).unwrap());
    std::fs::write(&ca_with_key, both).unwrap();

    let cfg = tmp.path().join("tls.yaml");
    std::fs::write(
        &cfg,
        r#"package: {name: tls-check, version: "1"}
environment:
  contents:
    packages: [python3-pip]
pipeline:
  - runs: |
      ! grep -q "PRIVATE KEY" /etc/ssl/certs/ca-certificates.crt
      python3 -m pip download --no-deps --disable-pip-version-check -d /tmp/dl six
      ls /tmp/dl
"#,
    )
    .unwrap();
    let url = format!("PIP_INDEX_URL=https://10.0.2.2:{}/simple/", index.port);
    // The source holds none of the key files.
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let v = Vmb::new();
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            cfg.to_str().unwrap(),
            "--source-dir",
            src.to_str().unwrap(),
            "--output-dir",
            tmp.path().join("out").to_str().unwrap(),
            "-e",
            &url,
            "-e",
            "PIP_RETRIES=0",
            "--log-format",
            "text",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        v.run(&args)
    };

    let r = build(&[]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        stderr(&r)
    );
    assert!(index.take_file_requests().is_empty());

    let r = build(&["--ca-cert", ca_with_key.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(stderr(&r).contains("six-1.16.0"), "{}", stderr(&r));
    assert_eq!(index.take_file_requests().len(), 1);
}

/// `--rootfs KEY`: a cached environment image by the key `image ls` shows;
/// an unknown key is a setup error that says where to look.
#[test]
fn rootfs_by_image_key() {
    let v = Vmb::new();
    let cfg = example("pip-cache").to_string_lossy().into_owned();
    let img = v.run(&["image", "build", &cfg]);
    assert_eq!(img.status.code(), Some(0), "stderr: {}", stderr(&img));
    let out = crate::harness::stdout(&img);
    let key = out
        .split_whitespace()
        .next()
        .expect("image build prints the key");
    let r = v.run(&[
        "run",
        "--rootfs",
        key,
        "--",
        "python3",
        "-c",
        "print('py', 6 * 7)",
    ]);
    assert_eq!(r.status.code(), Some(0), "stderr: {}", stderr(&r));
    assert!(crate::harness::stdout(&r).contains("py 42"));

    let r = v.run(&["run", "--rootfs", "0000dead", "--", "true"]);
    assert_eq!(r.status.code(), Some(125), "stderr: {}", stderr(&r));
    assert!(stderr(&r).contains("vmbuild image ls"), "{}", stderr(&r));
}
