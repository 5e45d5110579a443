//! Fetch one Debian package at a pinned version (`apt-get download`), verify
//! it, and unpack it (`dpkg-deb -x`), falling back to the archive's current
//! version when the pin is gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::io_err;
use crate::{ImageError, Progress};

/// A package pinned by exact version and `.deb` hash.
#[derive(Debug, Clone, Copy)]
pub struct DebPin<'a> {
    /// Package name.
    pub package: &'a str,
    /// Exact version.
    pub version: &'a str,
    /// sha256 of the `.deb` file, lowercase hex.
    pub sha256: &'a str,
}

/// What to use when the pinned version is no longer in the archive.
#[derive(Debug, Clone, Copy)]
pub enum Fallback<'a> {
    /// The candidate version of the same package.
    Candidate,
    /// The current candidate of whatever this meta-package depends on
    /// (`linux-image-amd64` -> `linux-image-6.1.0-NN-amd64`).
    DependencyOf(&'a str),
}

/// The apt and dpkg executables used.
#[derive(Debug, Clone)]
pub struct AptTools {
    /// `apt-get`.
    pub apt_get: PathBuf,
    /// `apt-cache`.
    pub apt_cache: PathBuf,
    /// `dpkg-deb`.
    pub dpkg_deb: PathBuf,
}

impl AptTools {
    /// Find the tools on `PATH`; the error names `package` and says how to
    /// pass a kernel instead.
    pub fn find(package: &str) -> Result<AptTools, ImageError> {
        let find = |tool: &'static str| {
            which::which(tool).map_err(|_| ImageError::NoApt {
                package: package.to_string(),
                tool,
            })
        };
        Ok(AptTools {
            apt_get: find("apt-get")?,
            apt_cache: find("apt-cache")?,
            dpkg_deb: find("dpkg-deb")?,
        })
    }
}

/// The package actually fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedDeb {
    /// Package name.
    pub package: String,
    /// Version.
    pub version: String,
    /// sha256 of the `.deb`.
    pub sha256: String,
    /// `true` when this is the pin, `false` for a fallback.
    pub pinned: bool,
}

/// Download `pin` into `work_dir` (a fresh, empty directory) and unpack it
/// into `dest`. When the pinned version is gone from the archive, fetch the
/// `fallback` instead and report it through `notice`. `progress` hears the
/// download (bytes of the package's size) and the unpacking.
pub fn fetch_deb(
    tools: &AptTools,
    pin: DebPin<'_>,
    fallback: Fallback<'_>,
    work_dir: &Path,
    dest: &Path,
    notice: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<FetchedDeb, ImageError> {
    let spec = format!("{}={}", pin.package, pin.version);
    tracing::info!(package = %spec, "downloading with apt-get");
    let out = download(tools, &spec, work_dir, progress)?;
    let fetched = if out.ok {
        let deb = find_deb(work_dir)?;
        let actual = sha256_file(&deb)?;
        if !actual.eq_ignore_ascii_case(pin.sha256) {
            return Err(ImageError::HashMismatch {
                file: deb,
                expected: pin.sha256.to_string(),
                actual,
            });
        }
        extract(tools, &deb, dest, progress)?;
        FetchedDeb {
            package: pin.package.to_string(),
            version: pin.version.to_string(),
            sha256: actual,
            pinned: true,
        }
    } else if pin_missing(&out.stderr) {
        let fetched = fetch_fallback(tools, pin, fallback, work_dir, dest, progress)?;
        let why = match fallback {
            Fallback::Candidate => "its current version in the archive".to_string(),
            Fallback::DependencyOf(meta) => format!("what {meta} depends on now"),
        };
        notice(&format!(
            "notice: pinned {} {} is no longer in the apt archive; using {} {} ({why}) instead. \
             It was checked only against apt's signed index, not a pinned sha256 (its sha256 is \
             {}); pin it in images/ once it is tested",
            pin.package, pin.version, fetched.package, fetched.version, fetched.sha256
        ));
        fetched
    } else {
        return Err(out.failure());
    };
    Ok(fetched)
}

fn fetch_fallback(
    tools: &AptTools,
    pin: DebPin<'_>,
    fallback: Fallback<'_>,
    work_dir: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<FetchedDeb, ImageError> {
    let no_fallback = |reason: String| ImageError::NoFallback {
        package: pin.package.to_string(),
        version: pin.version.to_string(),
        reason,
    };
    let package = match fallback {
        Fallback::Candidate => pin.package.to_string(),
        Fallback::DependencyOf(meta) => {
            let out = run(&tools.apt_cache, &["depends", meta], work_dir)?;
            if !out.ok {
                return Err(no_fallback(format!(
                    "`apt-cache depends {meta}` failed: {}",
                    tail(&out.stderr)
                )));
            }
            parse_depends(&out.stdout)
                .ok_or_else(|| no_fallback(format!("{meta} has no dependency to fall back to")))?
        }
    };
    tracing::warn!(%package, "pinned version gone; downloading the current candidate");
    let out = download(tools, &package, work_dir, progress)?;
    if !out.ok {
        return Err(no_fallback(format!(
            "`apt-get download {package}` failed: {}",
            tail(&out.stderr)
        )));
    }
    let deb = find_deb(work_dir)?;
    let sha256 = sha256_file(&deb)?;
    let deb_str = deb.to_string_lossy().into_owned();
    let out = run(
        &tools.dpkg_deb,
        &["-f", &deb_str, "Package", "Version"],
        work_dir,
    )?;
    if !out.ok {
        return Err(out.failure());
    }
    let (package, version) = parse_control(&out.stdout)
        .ok_or_else(|| no_fallback(format!("cannot read Package/Version of {}", deb.display())))?;
    extract(tools, &deb, dest, progress)?;
    Ok(FetchedDeb {
        package,
        version,
        sha256,
        pinned: false,
    })
}

/// `apt-get download SPEC` into `work_dir`, telling `progress` the bytes
/// that have arrived (of the size `--print-uris` gives, when it does).
fn download(
    tools: &AptTools,
    spec: &str,
    work_dir: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Output, ImageError> {
    let total = run(
        &tools.apt_get,
        &["download", "--print-uris", spec],
        work_dir,
    )
    .ok()
    .filter(|o| o.ok)
    .and_then(|o| parse_uri_size(&o.stdout));
    let what = format!("downloading {}", spec.replace('=', " "));
    progress(Progress::Begin { what: &what, total });
    let out = run_watched(&tools.apt_get, &["download", spec], work_dir, &mut || {
        progress(Progress::Bytes(dir_bytes(work_dir)));
    });
    progress(Progress::End);
    out
}

/// The size apt-get's `--print-uris` gives for the one package it would
/// fetch: `'URI' FILE SIZE HASH`.
pub fn parse_uri_size(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .find(|l| l.starts_with('\''))
        .and_then(|l| l.rsplit_once('\'').map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// The bytes of the regular files under `dir` (apt writes its download
/// there, or under `partial/`).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn extract(
    tools: &AptTools,
    deb: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), ImageError> {
    std::fs::create_dir_all(dest).map_err(io_err(format!("creating {}", dest.display())))?;
    let deb_str = deb.to_string_lossy().into_owned();
    let dest_str = dest.to_string_lossy().into_owned();
    let cwd = dest.parent().unwrap_or(dest);
    let name = deb.file_name().unwrap_or_default().to_string_lossy();
    progress(Progress::Begin {
        what: &format!("unpacking {name}"),
        total: None,
    });
    let out = run(&tools.dpkg_deb, &["-x", &deb_str, &dest_str], cwd);
    progress(Progress::End);
    let out = out?;
    if out.ok {
        Ok(())
    } else {
        Err(out.failure())
    }
}

/// Whether apt's stderr says the requested package/version does not exist
/// (as opposed to a network or permission failure).
pub fn pin_missing(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        (l.contains("Version '") && l.contains("was not found"))
            || l.contains("Unable to locate package")
            || l.contains("has no installation candidate")
            || l.contains("Couldn't find any package")
    })
}

/// The first real (non-virtual) `Depends:` of `apt-cache depends` output.
pub fn parse_depends(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let dep = l
            .trim()
            .trim_start_matches('|')
            .strip_prefix("Depends:")?
            .trim();
        (!dep.is_empty() && !dep.starts_with('<')).then(|| dep.to_string())
    })
}

/// `(Package, Version)` from `dpkg-deb -f DEB Package Version` output.
pub fn parse_control(stdout: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        stdout.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.strip_prefix(':')?.trim();
            (!v.is_empty()).then(|| v.to_string())
        })
    };
    Some((field("Package")?, field("Version")?))
}

/// sha256 of a file, lowercase hex.
/// Fetches `pin` into `<out>/download` and unpacks it into `<out>/root`
/// (the layout both the kernel and the busybox cache entries use); returns
/// what was fetched and the unpacked root.
pub fn fetch_into_entry(
    tools: &AptTools,
    pin: DebPin<'_>,
    fallback: Fallback<'_>,
    out: &Path,
    notice: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(FetchedDeb, PathBuf), ImageError> {
    let download = out.join("download");
    let root = out.join("root");
    crate::provision::mkdir_0755(&download)?;
    let fetched = fetch_deb(tools, pin, fallback, &download, &root, notice, progress)?;
    Ok((fetched, root))
}

/// Removes what [`fetch_into_entry`] left in `out` once the needed files
/// were moved out of it.
pub fn remove_scratch(out: &Path) -> Result<(), ImageError> {
    for scratch in [out.join("download"), out.join("root")] {
        std::fs::remove_dir_all(&scratch)
            .map_err(io_err(format!("removing {}", scratch.display())))?;
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io_err(format!("reading {}", path.display())))?;
    Ok(hex::encode(h.finalize()))
}

fn find_deb(dir: &Path) -> Result<PathBuf, ImageError> {
    let rd = std::fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    let mut debs = Vec::new();
    for entry in rd {
        let path = entry
            .map_err(io_err(format!("listing {}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "deb") {
            debs.push(path);
        }
    }
    match debs.len() {
        1 => Ok(debs.remove(0)),
        n => Err(ImageError::Io {
            context: format!("apt-get download left {n} .deb files in {}", dir.display()),
            source: std::io::Error::other("expected exactly one"),
        }),
    }
}

struct Output {
    command: String,
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Output {
    fn failure(&self) -> ImageError {
        ImageError::AptFailed {
            command: self.command.clone(),
            status: self.status.clone(),
            stderr: tail(&self.stderr),
        }
    }
}

/// Last few meaningful stderr lines (apt's "unsandboxed" warning dropped).
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("unsandboxed"))
        .collect();
    let start = lines.len().saturating_sub(4);
    let t = lines[start..].join(" / ");
    if t.is_empty() {
        "no error output".into()
    } else {
        t
    }
}

/// [`run`], calling `tick` about every 100 ms while the program runs.
fn run_watched(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    tick: &mut dyn FnMut(),
) -> Result<Output, ImageError> {
    use std::io::Read;
    let command = format!("{} {}", program.display(), args.join(" "));
    tracing::debug!(%command, "running");
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!("running `{command}`")))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        tick();
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Err(e) => return Err(io_err(format!("waiting for `{command}`"))(e)),
        }
    };
    tick();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !stderr.trim().is_empty() {
        tracing::debug!(%command, %stderr, "stderr");
    }
    Ok(Output {
        command,
        ok: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
    })
}

fn run(program: &Path, args: &[&str], cwd: &Path) -> Result<Output, ImageError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    tracing::debug!(%command, "running");
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running `{command}`")))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !stderr.trim().is_empty() {
        tracing::debug!(%command, %stderr, "stderr");
    }
    Ok(Output {
        command,
        ok: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_size_comes_from_print_uris() {
        let out = "'http://deb.debian.org/debian/pool/main/l/linux-signed-amd64/linux-image-6.1.0-28-amd64_6.1.119-1_amd64.deb' linux-image-6.1.0-28-amd64_6.1.119-1_amd64.deb 69012344 SHA256:ab12\n";
        assert_eq!(parse_uri_size(out), Some(69_012_344));
        assert_eq!(parse_uri_size("E: Unable to locate package x\n"), None);
        assert_eq!(
            parse_uri_size("'http://x/y.deb' y.deb notanumber SHA256:00\n"),
            None
        );
    }

    #[test]
    fn classifies_missing_pins() {
        assert!(pin_missing(
            "E: Version '6.1.999-1' for 'linux-image-6.1.0-56-amd64' was not found\n"
        ));
        assert!(pin_missing(
            "E: Unable to locate package linux-image-6.1.0-99-amd64\n"
        ));
        assert!(pin_missing(
            "E: Package 'x' has no installation candidate\n"
        ));
        assert!(!pin_missing(
            "E: Failed to fetch http://deb.debian.org/x.deb  Could not resolve 'deb.debian.org'\n"
        ));
        assert!(!pin_missing(""));
    }

    #[test]
    fn parses_apt_cache_depends() {
        let out = "linux-image-amd64\n  Depends: <virtual-thing>\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            parse_depends(out).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(
            parse_depends("m\n |Depends: a\n  Depends: b\n").as_deref(),
            Some("a")
        );
        assert_eq!(parse_depends("linux-image-amd64\n  Recommends: x\n"), None);
    }

    #[test]
    fn parses_control_fields() {
        let out = "Package: busybox-static\nVersion: 1:1.36.1-1\n";
        assert_eq!(
            parse_control(out),
            Some(("busybox-static".into(), "1:1.36.1-1".into()))
        );
        assert_eq!(parse_control("Package: x\n"), None);
    }

    /// Fake apt-get / apt-cache / dpkg-deb as shell scripts. `have` is the
    /// `NAME=VERSION` spec the fake archive holds; downloads write `content`.
    fn fake_tools(dir: &Path, have: &str, content: &str) -> AptTools {
        let script = |name: &str, body: String| {
            // Written by a child process: a writable fd of this (threaded)
            // test process, inherited by another test's fork, would make
            // exec of the script fail with ETXTBSY.
            let p = dir.join(name);
            let st = Command::new("sh")
                .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
                .arg(&p)
                .stdin(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .unwrap()
                        .write_all(format!("#!/bin/sh\n{body}").as_bytes())?;
                    c.wait()
                })
                .unwrap();
            assert!(st.success());
            p
        };
        let (hp, hv) = have.split_once('=').unwrap();
        let size = content.len();
        AptTools {
            apt_get: script(
                "apt-get",
                format!(
                    r#"[ "$1" = download ] || exit 1
if [ "$2" = --print-uris ]; then
  echo "'http://deb.example/{hp}_{hv}_amd64.deb' {hp}_{hv}_amd64.deb {size} SHA256:00"
  exit 0
fi
case "$2" in
  {have}|{hp}) printf '{content}' > "{hp}_{hv}_amd64.deb"; exit 0;;
  {hp}=*) echo "E: Version '${{2#*=}}' for '{hp}' was not found" >&2; exit 100;;
  *) echo "E: Unable to locate package ${{2%%=*}}" >&2; exit 100;;
esac
"#
                ),
            ),
            apt_cache: script(
                "apt-cache",
                format!("echo \"$2\"; echo '  Depends: {hp}'\n"),
            ),
            dpkg_deb: script(
                "dpkg-deb",
                format!(
                    r#"case "$1" in
  -x) mkdir -p "$3/boot" && cp "$2" "$3/boot/payload";;
  -f) echo "Package: {hp}"; echo "Version: {hv}";;
esac
"#
                ),
            ),
        }
    }

    fn sha(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    #[test]
    fn pinned_download_is_verified_and_extracted() {
        let t = tempfile::tempdir().unwrap();
        let tools = fake_tools(t.path(), "pkg=1.0", "debdata");
        let (work, dest) = (t.path().join("w"), t.path().join("d"));
        std::fs::create_dir(&work).unwrap();
        let hash = sha("debdata");
        let pin = DebPin {
            package: "pkg",
            version: "1.0",
            sha256: &hash,
        };
        let mut notices = Vec::new();
        let mut events = Vec::new();
        let got = fetch_deb(
            &tools,
            pin,
            Fallback::Candidate,
            &work,
            &dest,
            &mut |n| notices.push(n.to_string()),
            &mut |p| events.push(format!("{p:?}")),
        )
        .unwrap();
        assert!(got.pinned);
        // The download's size from --print-uris, its bytes as they land
        // (all 7 at the end), then a spinner while dpkg-deb unpacks.
        assert_eq!(
            events.first().map(String::as_str),
            Some(r#"Begin { what: "downloading pkg 1.0", total: Some(7) }"#)
        );
        let end = events.iter().position(|e| e == "End").unwrap();
        assert_eq!(events[end - 1], "Bytes(7)", "{events:?}");
        assert_eq!(
            &events[end + 1..],
            [
                r#"Begin { what: "unpacking pkg_1.0_amd64.deb", total: None }"#,
                "End"
            ]
        );
        assert_eq!((got.package.as_str(), got.version.as_str()), ("pkg", "1.0"));
        assert_eq!(
            std::fs::read_to_string(dest.join("boot/payload")).unwrap(),
            "debdata"
        );
        assert!(notices.is_empty());
    }

    #[test]
    fn hash_mismatch_names_both_hashes() {
        let t = tempfile::tempdir().unwrap();
        let tools = fake_tools(t.path(), "pkg=1.0", "tampered");
        let work = t.path().join("w");
        std::fs::create_dir(&work).unwrap();
        let pinned = sha("debdata");
        let pin = DebPin {
            package: "pkg",
            version: "1.0",
            sha256: &pinned,
        };
        let err = fetch_deb(
            &tools,
            pin,
            Fallback::Candidate,
            &work,
            &t.path().join("d"),
            &mut |_| {},
            &mut crate::progress::ignore,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&pinned) && msg.contains(&sha("tampered")),
            "{msg}"
        );
        assert!(
            !t.path().join("d").exists(),
            "a mismatching deb must not be unpacked"
        );
    }

    #[test]
    fn gone_pin_falls_back_to_dependency_with_notice() {
        let t = tempfile::tempdir().unwrap();
        let tools = fake_tools(t.path(), "linux-image-9.9.0-1-amd64=9.9.1-1", "newkernel");
        let work = t.path().join("w");
        std::fs::create_dir(&work).unwrap();
        let pin = DebPin {
            package: "linux-image-6.1.0-56-amd64",
            version: "6.1.192-2",
            sha256: "00",
        };
        let mut notices = Vec::new();
        let got = fetch_deb(
            &tools,
            pin,
            Fallback::DependencyOf("linux-image-amd64"),
            &work,
            &t.path().join("d"),
            &mut |n| notices.push(n.to_string()),
            &mut crate::progress::ignore,
        )
        .unwrap();
        assert!(!got.pinned);
        assert_eq!(got.package, "linux-image-9.9.0-1-amd64");
        assert_eq!(got.version, "9.9.1-1");
        assert_eq!(got.sha256, sha("newkernel"));
        assert_eq!(notices.len(), 1);
        let n = &notices[0];
        assert!(
            n.contains("6.1.192-2") && n.contains("9.9.1-1") && n.contains("not a pinned sha256"),
            "{n}"
        );
    }

    #[test]
    fn gone_pin_falls_back_to_candidate_version() {
        let t = tempfile::tempdir().unwrap();
        let tools = fake_tools(t.path(), "busybox-static=1:1.36.1-9", "bb");
        let work = t.path().join("w");
        std::fs::create_dir(&work).unwrap();
        let pin = DebPin {
            package: "busybox-static",
            version: "1:1.35.0-4",
            sha256: "00",
        };
        let got = fetch_deb(
            &tools,
            pin,
            Fallback::Candidate,
            &work,
            &t.path().join("d"),
            &mut |_| {},
            &mut crate::progress::ignore,
        )
        .unwrap();
        assert_eq!((got.version.as_str(), got.pinned), ("1:1.36.1-9", false));
    }
}
