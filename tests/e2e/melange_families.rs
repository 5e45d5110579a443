//! The remaining built-in pipeline families run once, in one Debian
//! environment (the autoconf test's image) and one VM: a main package
//! built with `cmake/*`, `meson/*`, `python/build|install|import|test`,
//! `perl/make|cleanup`, `ruby/build|install|clean`, `test/echo`, and
//! subpackages split off by `split/debug|static|lib|locales|infodir|alldocs|bin`
//! and `python/build-wheel`; each on a tiny source written here. Nothing
//! is fetched from the network but Debian packages for the image.
//!
//! The toolchain families (`go/*`, `cargo/build`, `npm/install`, `pecl/*`,
//! `R/build`, `llvm/covreport`, `maven/*`, `git-am`) run in
//! tests/e2e/melange_toolchains.rs, in an image of their own.

use std::path::Path;

use crate::harness::{stderr, Vmb};

const CONFIG: &str = r#"
package: { name: poly, version: "1.0.0", epoch: 0 }
environment:
  contents:
    # The autoconf test's image (tests/e2e/melange.rs AUTOCONF lists the
    # same packages): one environment image for both tests.
    packages: [build-base, busybox, ruby, py3-setuptools, python3-wheel, autoconf, automake, libtool, wget, make, binutils, scanelf]
pipeline:
  - uses: cmake/configure
    working-directory: cm
  - uses: cmake/build
    working-directory: cm
  - uses: cmake/install
    working-directory: cm
  - uses: meson/configure
    working-directory: ms
  - uses: meson/compile
    working-directory: ms
  - uses: meson/install
    working-directory: ms
  - uses: python/build
    working-directory: py
  - uses: python/install
    working-directory: py
  - uses: python/import
    working-directory: py
    with:
      import: polypy
  - uses: python/test
    working-directory: py
    with:
      command: python3 -c 'import polypy; assert polypy.GREETING == "hi"'
  - uses: perl/make
    working-directory: pl
  - uses: autoconf/make-install
    working-directory: pl
  - uses: perl/cleanup
  - uses: ruby/build
    with:
      dir: rb
      gem: polyrb
  - uses: ruby/install
    with:
      dir: rb
      gem: polyrb
      version: 1.0.0
  - uses: ruby/clean
  - uses: test/echo
    with:
      message: every family ran
  - name: files for the split pipelines that no build above makes
    runs: |
      d=${{targets.destdir}}
      mkdir -p $d/usr/share/info $d/usr/share/locale/fr/LC_MESSAGES $d/usr/share/doc/poly
      echo info > $d/usr/share/info/poly.info
      echo mo > $d/usr/share/locale/fr/LC_MESSAGES/poly.mo
      echo readme > $d/usr/share/doc/poly/README
subpackages:
  - name: poly-dbg
    pipeline: [{ uses: split/debug }]
  - name: poly-static
    pipeline: [{ uses: split/static }]
  - name: poly-libs
    pipeline: [{ uses: split/lib }]
  - name: poly-lang
    pipeline: [{ uses: split/locales }]
  - name: poly-info
    pipeline: [{ uses: split/infodir }]
  - name: poly-docs
    pipeline: [{ uses: split/alldocs }]
  - name: poly-bin
    pipeline: [{ uses: split/bin }]
  - name: poly-wheel
    pipeline:
      - uses: python/build-wheel
        working-directory: py
"#;

/// Writes `files` (path, contents) under `dir` (also the toolchain test's).
pub(crate) fn write_all(dir: &Path, files: &[(&str, &str)]) {
    for (p, text) in files {
        let at = dir.join(p);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, text).unwrap();
    }
}

/// The hello-world projects, one directory each, beside the config.
fn sources(proj: &Path) {
    write_all(
        proj,
        &[
            (
                "cm/CMakeLists.txt",
                "cmake_minimum_required(VERSION 3.13)\nproject(polyc C)\nset(CMAKE_C_FLAGS \"-g\")\nadd_executable(hello-cmake main.c)\nadd_library(polyc STATIC lib.c)\ninstall(TARGETS hello-cmake polyc)\n",
            ),
            ("cm/main.c", "#include <stdio.h>\nint main(void) { puts(\"hello, cmake\"); return 0; }\n"),
            ("cm/lib.c", "int polyc(void) { return 1; }\n"),
            (
                "ms/meson.build",
                "project('polym', 'c')\nshared_library('polym', 'lib.c', soversion: '1', install: true)\nexecutable('hello-meson', 'main.c', install: true)\n",
            ),
            ("ms/main.c", "#include <stdio.h>\nint main(void) { puts(\"hello, meson\"); return 0; }\n"),
            ("ms/lib.c", "int polym(void) { return 2; }\n"),
            (
                "py/pyproject.toml",
                "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"polypy\"\nversion = \"1.0.0\"\n",
            ),
            ("py/setup.py", "from setuptools import setup\nsetup(py_modules=[\"polypy\"])\n"),
            ("py/polypy.py", "GREETING = \"hi\"\n"),
            (
                "pl/Makefile.PL",
                "use ExtUtils::MakeMaker;\nWriteMakefile(NAME => 'Poly', VERSION => '1.0');\n",
            ),
            ("pl/lib/Poly.pm", "package Poly;\nsub hello { 'hello, perl' }\n1;\n"),
            (
                "rb/polyrb.gemspec",
                "Gem::Specification.new do |s|\n  s.name = 'polyrb'\n  s.version = '1.0.0'\n  s.summary = 'hello'\n  s.authors = ['vmbuild']\n  s.license = 'MIT'\n  s.files = ['lib/polyrb.rb']\nend\n",
            ),
            ("rb/lib/polyrb.rb", "module Polyrb; HELLO = 'hello, ruby'; end\n"),
        ],
    );
}

#[test]
fn every_remaining_pipeline_family_builds_a_hello_world_in_one_vm() {
    let v = Vmb::new();
    let work = tempfile::tempdir().unwrap();
    let proj = work.path().join("proj");
    sources(&proj);
    std::fs::write(proj.join("poly.yaml"), CONFIG).unwrap();
    let out = work.path().join("out");
    let o = v.run(&[
        "build",
        &proj.join("poly.yaml").display().to_string(),
        "--out-dir",
        &out.display().to_string(),
        "--memory",
        "2Gi",
        "--log-format",
        "json",
    ]);
    let err = stderr(&o);
    // Each step's time, for whoever measures this test (--nocapture).
    for l in err.lines().filter(|l| l.contains("\"step_finished\"")) {
        eprintln!("{l}");
    }
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("echo: every family ran"), "{err}");
    let has = |p: &str| {
        assert!(
            out.join(p).exists() || out.join(p).is_symlink(),
            "{p} missing; outputs:\n{}",
            list(&out)
        )
    };
    let lacks = |p: &str| assert!(!out.join(p).exists(), "{p} should have moved");
    // split/bin took every program.
    for b in ["hello-cmake", "hello-meson"] {
        has(&format!("poly-bin/usr/bin/{b}"));
    }
    lacks("poly/usr/bin");
    // split/debug ran before it, on the ELF files with debug info.
    has("poly-dbg/usr/lib/debug/usr/bin/hello-cmake.debug");
    has("poly-static/usr/lib/libpolyc.a");
    has("poly-libs/usr/lib/libpolym.so.1");
    lacks("poly/usr/lib/libpolym.so.1");
    has("poly-lang/usr/share/locale/fr/LC_MESSAGES/poly.mo");
    has("poly-info/usr/share/info/poly.info");
    has("poly-docs/usr/share/doc/poly/README");
    // python/install, perl (make-install + cleanup), ruby (install + clean).
    assert!(find(&out.join("poly/usr"), "polypy.py"), "{}", list(&out));
    assert!(find(&out.join("poly/usr"), "Poly.pm"), "{}", list(&out));
    assert!(!find(&out.join("poly"), ".packlist"), "{}", list(&out));
    assert!(find(&out.join("poly"), "polyrb.rb"), "{}", list(&out));
    assert!(
        !find(&out.join("poly"), "polyrb-1.0.0.gem"),
        "gem cache left"
    );
    assert!(
        find(&out.join("poly-wheel/usr"), "polypy.py"),
        "{}",
        list(&out)
    );
}

/// Whether a file named `name` is anywhere under `dir`.
fn find(dir: &Path, name: &str) -> bool {
    walk(dir).iter().any(|p| p.ends_with(name))
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

fn list(dir: &Path) -> String {
    walk(dir).join("\n")
}
