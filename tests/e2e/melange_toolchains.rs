//! The built-in pipelines that need a language toolchain run once each, in
//! one Debian environment image and one VM, on tiny sources written here:
//! `go/build`, `go/build/v2`, `go/install` and `go/bump` (modules served
//! by a `file://` GOPROXY made here), `cargo/build`, `npm/install` (from
//! tests/e2e/fixtures/npm_registry.py on the host's loopback),
//! `pecl/phpize` and `pecl/install` (a PHP extension), `R/build`, `git-am`,
//! `maven/configure-mirror`, `maven/pombump`, and `llvm/covreport` (profiles
//! of a clang-instrumented program). `go/covdata` needs Go 1.20; Debian
//! bookworm (the default suite) has 1.19, so a second VM on the same image
//! checks that it says so (docs/melange-compat.md has its run on trixie).
//! Each result is checked in the outputs or by running it in the VM.

use std::path::Path;
use std::process::Command;

use crate::env_images::Index;
use crate::harness::{stderr, Vmb};
use crate::melange_families::write_all;

/// The environment of both builds: every package the pipelines below
/// need, so the two configs resolve to one environment image. Debian's
/// clang only recommends its profile runtime (`-fprofile-instr-generate`),
/// so it is named here by its Debian name, libclang-rt-dev.
const PACKAGES: &str = "[build-base, busybox, ca-certificates-bundle, make, git, go, rust, cargo-auditable, nodejs, npm, php-8.3, php-8.3-dev, autoconf, automake, R, R-dev, R-doc, clang-19, libclang-rt-dev, llvm-19, python3, py3-yaml, jq]";

const CONFIG: &str = r#"
package: { name: tools, version: "1.0.0", epoch: 0 }
environment:
  contents:
    packages: PACKAGES
  environment:
    GOPROXY: file:///home/build/goproxy
    GOSUMDB: "off"
    npm_config_update_notifier: "false"
    npm_config_audit: "false"
    npm_config_fund: "false"
pipeline:
  - uses: go/build
    with: { modroot: gohello, packages: ., output: hello-go }
  - uses: go/install
    with: { package: example.com/hello, version: v1.0.0 }
  - uses: go/bump
    with: { modroot: gobump, deps: example.com/dep@v1.1.0, show-diff: "true" }
  - uses: cargo/build
    with: { modroot: rs, output: hello-cargo }
  - uses: npm/install
    # An override reinstalls the tree under lib/ (nothing to override here).
    with: { package: hello-npm, version: 1.0.0, overrides: "left-pad@1.3.0" }
  - uses: pecl/phpize
    working-directory: phpext
  - uses: autoconf/make
    with: { dir: phpext }
  - uses: pecl/install
    working-directory: phpext
    with: { extension: hello }
  - uses: R/build
    with: { package: hellor, path: rpkg, version: "1.0" }
  - uses: git-am
    working-directory: am
    with: { patches: 0001-Greet-the-world.patch }
  - uses: maven/configure-mirror
    with: { mirror-url: "http://10.0.2.2:9/m2/" }
  - uses: maven/pombump
    working-directory: mvn
    with: { properties: netty.version@4.1.100 }
  - name: llvm profiles of a clang-instrumented program
    working-directory: cov
    runs: |
      clang -fprofile-instr-generate -fcoverage-mapping -o covprog cov.c
      LLVM_PROFILE_FILE=default_%p.profraw ./covprog
  - uses: llvm/covreport
    working-directory: cov
    with: { object: ./covprog }
  - name: the results, run here and kept in the package
    runs: |
      d=${{targets.destdir}}
      r=$d/usr/share/tools
      mkdir -p $r
      $d/usr/bin/hello-go 2> $r/go.out
      $d/usr/bin/hello > $r/go-install.out 2>&1
      $d/usr/bin/hello-cargo > $r/cargo.out
      $d/usr/bin/hello-npm > $r/npm.out
      php -n -d extension=$(echo $d/usr/lib/php/*/hello.so) -r 'echo hello_vmbuild();' > $r/php.out
      Rscript -e "library(hellor, lib.loc = '$d/usr/lib/R/library'); cat(hello())" > $r/r.out
      cp gobump/go.mod $r/go.mod
      cp mvn/pom.xml $r/pom.xml
      cp "$HOME/.m2/settings.xml" $r/settings.xml
      git -C am log --format=%s > $r/am.log
      cp am/greeting $r/am-greeting
subpackages:
  - name: tools-go2
    pipeline:
      - uses: go/build/v2
        with: { modroot: gohello, output: hello-go2 }
"#;

/// The second build: `go/covdata` on this environment's Go.
const COVDATA: &str = r#"
package: { name: covdata, version: "1.0.0", epoch: 0 }
environment:
  contents:
    packages: PACKAGES
pipeline:
  - uses: go/covdata
"#;

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const GO_HELLO: &[(&str, &str)] = &[
    ("go.mod", "module example.com/hello\n\ngo 1.19\n"),
    // No imports: only the runtime is compiled (the toolchain's own
    // archives do not fit -trimpath).
    (
        "main.go",
        "package main\n\nfunc main() { println(\"hello, go\") }\n",
    ),
];

/// A GOPROXY directory (`file://` layout: list, .info, .mod, .zip) with
/// example.com/hello v1.0.0 and example.com/dep v1.0.0 and v1.1.0.
fn go_proxy(proj: &Path) {
    let dep = |v: &str| {
        vec![
            (
                "go.mod".to_string(),
                "module example.com/dep\n\ngo 1.19\n".to_string(),
            ),
            (
                "dep.go".to_string(),
                format!("package dep\n\nconst Version = \"{v}\"\n"),
            ),
        ]
    };
    let hello: Vec<(String, String)> = GO_HELLO
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    for (module, version, files) in [
        ("example.com/hello", "v1.0.0", hello),
        ("example.com/dep", "v1.0.0", dep("1.0.0")),
        ("example.com/dep", "v1.1.0", dep("1.1.0")),
    ] {
        let at = proj.join("goproxy").join(module).join("@v");
        std::fs::create_dir_all(&at).unwrap();
        let gomod = &files.iter().find(|(p, _)| p == "go.mod").unwrap().1;
        std::fs::write(at.join(format!("{version}.mod")), gomod).unwrap();
        std::fs::write(
            at.join(format!("{version}.info")),
            format!("{{\"Version\":\"{version}\"}}\n"),
        )
        .unwrap();
        let list = at.join("list");
        let old = std::fs::read_to_string(&list).unwrap_or_default();
        std::fs::write(&list, format!("{old}{version}\n")).unwrap();
        // A module zip holds MODULE@VERSION/FILE.
        let files_json = serde_json::to_string(&files).unwrap();
        run(Command::new("python3").args([
            "-c",
            "import json, sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
             \x20   for p, t in json.loads(sys.argv[3]): z.writestr(sys.argv[2] + '/' + p, t)",
            &at.join(format!("{version}.zip")).display().to_string(),
            &format!("{module}@{version}"),
            &files_json,
        ]));
    }
}

/// A git repository `am/` at its first commit, and the second commit as
/// a `git format-patch` file inside it.
fn git_am_source(proj: &Path) {
    let repo = proj.join("am");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(&repo)
            .args(args))
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("greeting"), "hello\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "Say hello"]);
    std::fs::write(repo.join("greeting"), "hello, world\n").unwrap();
    git(&["commit", "-q", "-am", "Greet the world"]);
    git(&["format-patch", "-q", "-1", "HEAD"]);
    git(&["reset", "-q", "--hard", "HEAD~1"]);
    assert!(repo.join("0001-Greet-the-world.patch").is_file());
}

/// The npm package `hello-npm` 1.0.0 as `npm pack` makes it, into `dir`.
fn npm_tarball(dir: &Path) {
    let src = tempfile::tempdir().unwrap();
    write_all(
        src.path(),
        &[
            (
                "package/package.json",
                r#"{"name": "hello-npm", "version": "1.0.0", "bin": {"hello-npm": "bin/hello.js"}}"#,
            ),
            (
                "package/bin/hello.js",
                "#!/usr/bin/env node\nconsole.log('hello, npm');\n",
            ),
        ],
    );
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new("tar")
        .arg("-czf")
        .arg(dir.join("hello-npm-1.0.0.tgz"))
        .arg("-C")
        .arg(src.path())
        .arg("package"));
}

/// Every other source, one directory each, beside the config.
fn sources(proj: &Path) {
    let gohello: Vec<(String, &str)> = GO_HELLO
        .iter()
        .map(|(p, t)| (format!("gohello/{p}"), *t))
        .collect();
    let gohello: Vec<(&str, &str)> = gohello.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    write_all(proj, &gohello);
    write_all(
        proj,
        &[
            (
                "gobump/go.mod",
                "module example.com/bumped\n\ngo 1.19\n\nrequire example.com/dep v1.0.0\n",
            ),
            (
                "gobump/main.go",
                "package main\n\nimport \"example.com/dep\"\n\nfunc main() { println(dep.Version) }\n",
            ),
            (
                "rs/Cargo.toml",
                "[package]\nname = \"hello-cargo\"\nversion = \"1.0.0\"\nedition = \"2018\"\n",
            ),
            ("rs/src/main.rs", "fn main() {\n    println!(\"hello, cargo\");\n}\n"),
            (
                "phpext/config.m4",
                "PHP_ARG_ENABLE([hello], [whether to enable hello], [AS_HELP_STRING([--enable-hello], [Enable hello])], [yes])\nif test \"$PHP_HELLO\" != \"no\"; then\n  PHP_NEW_EXTENSION(hello, hello.c, $ext_shared)\nfi\n",
            ),
            (
                "phpext/hello.c",
                "#include \"php.h\"\n\
                 ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_hello_vmbuild, 0, 0, IS_STRING, 0)\n\
                 ZEND_END_ARG_INFO()\n\
                 PHP_FUNCTION(hello_vmbuild) { ZEND_PARSE_PARAMETERS_NONE(); RETURN_STRING(\"hello, php\"); }\n\
                 static const zend_function_entry hello_functions[] = { PHP_FE(hello_vmbuild, arginfo_hello_vmbuild) PHP_FE_END };\n\
                 zend_module_entry hello_module_entry = { STANDARD_MODULE_HEADER, \"hello\", hello_functions,\n\
                 \x20   NULL, NULL, NULL, NULL, NULL, \"1.0\", STANDARD_MODULE_PROPERTIES };\n\
                 ZEND_GET_MODULE(hello)\n",
            ),
            (
                "rpkg/DESCRIPTION",
                "Package: hellor\nVersion: 1.0\nTitle: Hello from R\nDescription: Says hello.\nLicense: MIT\nAuthor: vmbuild\nMaintainer: vmbuild <vmbuild@localhost>\n",
            ),
            ("rpkg/NAMESPACE", "export(hello)\n"),
            ("rpkg/R/hello.R", "hello <- function() \"hello, r\"\n"),
            (
                "mvn/pom.xml",
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                 <project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n\
                 \x20 <modelVersion>4.0.0</modelVersion>\n\
                 \x20 <groupId>dev.vmbuild</groupId>\n\
                 \x20 <artifactId>tiny</artifactId>\n\
                 \x20 <version>1.0</version>\n\
                 \x20 <properties>\n\
                 \x20   <!-- kept: comments survive -->\n\
                 \x20   <netty.version>4.1.0</netty.version>\n\
                 \x20 </properties>\n\
                 \x20 <dependencies>\n\
                 \x20   <dependency>\n\
                 \x20     <groupId>org.json</groupId>\n\
                 \x20     <artifactId>json</artifactId>\n\
                 \x20     <version>20200101</version>\n\
                 \x20   </dependency>\n\
                 \x20 </dependencies>\n\
                 </project>\n",
            ),
            (
                "mvn/pombump-deps.yaml",
                "patches:\n  - groupId: org.json\n    artifactId: json\n    version: \"20231013\"\n  - groupId: ch.qos.logback\n    artifactId: logback-core\n    version: 1.4.12\n",
            ),
            (
                "cov/cov.c",
                "#include <stdio.h>\nint used(void) { return 1; }\nint unused(void) { return 2; }\nint main(void) { printf(\"%d\\n\", used()); return 0; }\n",
            ),
        ],
    );
    go_proxy(proj);
    git_am_source(proj);
}

#[test]
fn toolchain_pipelines_build_tiny_sources_in_one_vm() {
    let v = Vmb::new();
    let work = tempfile::tempdir().unwrap();
    let proj = work.path().join("proj");
    sources(&proj);
    let registry = Index::start("npm_registry.py", "/-/", 0.0, &[], npm_tarball);
    let config = CONFIG.replace("PACKAGES", PACKAGES);
    std::fs::write(proj.join("tools.yaml"), config).unwrap();
    let out = work.path().join("out");
    let npm = format!("npm_config_registry=http://10.0.2.2:{}/", registry.port);
    let o = v.run(&[
        "build",
        &proj.join("tools.yaml").display().to_string(),
        "--out-dir",
        &out.display().to_string(),
        "--memory",
        "2Gi",
        "-e",
        &npm,
        "--log-format",
        "json",
    ]);
    let err = stderr(&o);
    // Each step's time, for whoever measures this test (--nocapture).
    for l in err
        .lines()
        .filter(|l| l.contains("\"step_finished\"") || l.contains("environment image "))
    {
        eprintln!("{l}");
    }
    assert_eq!(o.status.code(), Some(0), "{err}");
    let image = image_key(&err);
    let read = |p: &str| {
        std::fs::read_to_string(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}\n{err}"))
    };
    let r = "tools/usr/share/tools";
    // Programs built, placed in the package's (or subpackage's) bin, run.
    assert_eq!(read(&format!("{r}/go.out")), "hello, go\n");
    assert_eq!(read(&format!("{r}/go-install.out")), "hello, go\n");
    assert!(
        out.join("tools-go2/usr/bin/hello-go2").is_file(),
        "go/build/v2"
    );
    assert!(!out.join("tools/usr/bin/hello-go2").exists());
    assert_eq!(read(&format!("{r}/cargo.out")), "hello, cargo\n");
    assert_eq!(read(&format!("{r}/npm.out")), "hello, npm\n");
    assert!(out
        .join("tools/usr/lib/node_modules/hello-npm/package.json")
        .is_file());
    for left in ["package.json", "package-lock.json"] {
        assert!(!out.join("tools/usr/lib").join(left).exists(), "{left}");
    }
    // pecl: the extension installed and enabled, and it loads.
    assert_eq!(read(&format!("{r}/php.out")), "hello, php");
    assert_eq!(
        read("tools/etc/php/conf.d/hello.ini"),
        "extension=hello.so\n"
    );
    // R: the package installed into the output's library, and it loads.
    assert_eq!(read(&format!("{r}/r.out")), "hello, r");
    assert!(out
        .join("tools/usr/lib/R/library/hellor/DESCRIPTION")
        .is_file());
    // go/bump: go.mod requires the new version.
    let gomod = read(&format!("{r}/go.mod"));
    assert!(gomod.contains("example.com/dep v1.1.0"), "{gomod}");
    assert!(err.contains("go/bump: example.com/dep at v1.1.0"), "{err}");
    // git-am: the patch is a commit on top.
    assert_eq!(read(&format!("{r}/am.log")), "Greet the world\nSay hello\n");
    assert_eq!(read(&format!("{r}/am-greeting")), "hello, world\n");
    // maven: the mirror in settings.xml, the pom's versions bumped.
    let settings = read(&format!("{r}/settings.xml"));
    assert!(
        settings.contains("<url>http://10.0.2.2:9/m2/</url>"),
        "{settings}"
    );
    let pom = read(&format!("{r}/pom.xml"));
    for want in [
        "<version>20231013</version>",
        "<netty.version>4.1.100</netty.version>",
        "<artifactId>logback-core</artifactId>",
        "<!-- kept: comments survive -->",
    ] {
        assert!(pom.contains(want), "{want} missing:\n{pom}");
    }
    assert!(!pom.contains("20200101"), "{pom}");
    // llvm/covreport: two of the three functions ran (main, used).
    assert!(err.contains("Statements coverage: 66.67%"), "{err}");

    // go/covdata, in a second VM on the same image.
    std::fs::write(
        proj.join("covdata.yaml"),
        COVDATA.replace("PACKAGES", PACKAGES),
    )
    .unwrap();
    let o = v.run(&[
        "build",
        &proj.join("covdata.yaml").display().to_string(),
        "--out-dir",
        &work.path().join("out2").display().to_string(),
        "--log-format",
        "text",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("go/covdata: go version go1.19")
            && err.contains("has no covdata tool")
            && err.contains("--suite trixie"),
        "{err}"
    );
    assert!(
        err.contains(&format!("environment image {image} (")) && err.contains(", cached"),
        "the second build did not reuse {image}: {err}"
    );
}

/// The environment image's key in a build's log (`environment image KEY
/// (erofs, N MiB), built now|cached`).
fn image_key(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains(", built now") || l.contains(", cached"))
        .find_map(|l| l.split_once("environment image "))
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no environment image in the log: {log}"))
        .to_string()
}
