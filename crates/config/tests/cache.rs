//! The top-level `cache:` list: parsed into `Plan::volumes` with `--cache`'s
//! meaning, every bad entry a located one-line error, step-level `cache:`
//! refused rather than ignored.

mod common;

use common::*;
use vmbuild_cache::volume::{Persist, Sharing, VolumeSource, VolumeSpec};

const STEPS: &str = "pipeline:\n  - runs: x\n";

/// `HEADER`, then `cache` (from line 4), then one step.
fn with_cache(cache: &str) -> String {
    format!("{HEADER}cache:\n{cache}{STEPS}")
}

#[test]
fn volumes_parse_with_the_flag_meanings() {
    let p = plan(&with_cache(
        "  - id: gomod\n    target: /root/go/pkg/mod/\n    sharing: locked\n  - id: npm\n    target: /home/build/.npm\n    persist: never\n    uid: 1000\n    gid: 1000\n    mode: \"0755\"\n  - id: plain\n    target: /p\n    mode: 0700\n",
    ));
    let flag = |s: &str| s.parse::<VolumeSpec>().unwrap();
    assert_eq!(
        p.volumes,
        [
            flag("id=gomod,target=/root/go/pkg/mod,sharing=locked"),
            flag("id=npm,target=/home/build/.npm,persist=never,uid=1000,gid=1000,mode=0755"),
            flag("id=plain,target=/p,mode=0700"),
        ]
    );
    assert_eq!(p.volumes[0].sharing, Sharing::Locked);
    assert_eq!(p.volumes[0].target, "/root/go/pkg/mod", "normalised");
    assert_eq!(p.volumes[1].persist, Some(Persist::Never));
    assert_eq!(p.volumes[1].mode, Some(0o755));
    assert_eq!(p.volumes[2].source, VolumeSource::Named("plain".into()));
    assert_eq!(p.volumes[2].mode, Some(0o700), "unquoted 0700 stays octal");
}

#[test]
fn no_cache_key_or_a_null_one_means_no_volumes() {
    assert!(plan(&format!("{HEADER}{STEPS}")).volumes.is_empty());
    assert!(plan(&format!("{HEADER}cache:\n{STEPS}")).volumes.is_empty());
    assert!(plan(&format!("{HEADER}cache: []\n{STEPS}"))
        .volumes
        .is_empty());
}

#[test]
fn each_bad_entry_is_located_on_its_key_or_value() {
    let cases: &[(&str, &str)] = &[
        (
            "  - id: a\n    target: /x\n    sharng: locked\n",
            "vmbuild.yaml:7:5: unknown key `sharng` in a cache volume; did you mean `sharing`?",
        ),
        (
            "  - id: a/b\n    target: /x\n",
            "vmbuild.yaml:5:9: id=\"a/b\": use letters, digits, '-', '_' and '.' (at most 64), not a path",
        ),
        (
            "  - target: /x\n",
            "vmbuild.yaml:5:5: missing required `id` in a cache volume; add it",
        ),
        (
            "  - id: a\n",
            "vmbuild.yaml:5:5: missing required `target` in a cache volume; add it",
        ),
        (
            "  - id: a\n    target: go/pkg\n",
            "vmbuild.yaml:6:13: target \"go/pkg\" must be an absolute guest path",
        ),
        (
            "  - id: a\n    target: /proc/x\n",
            "vmbuild.yaml:6:13: target /proc/x is under /proc, which the guest kernel owns",
        ),
        (
            "  - id: a\n    target: /x/../y\n",
            "vmbuild.yaml:6:13: target \"/x/../y\" must not contain '.' or '..'",
        ),
        (
            "  - id: a\n    target: /x\n    sharing: sometimes\n",
            "vmbuild.yaml:7:14: sharing=\"sometimes\": use shared, locked or private",
        ),
        (
            "  - id: a\n    target: /x\n    persist: later\n",
            "vmbuild.yaml:7:14: persist=\"later\": use never, on-success or always",
        ),
        (
            "  - id: a\n    target: /x\n    mode: \"0855\"\n",
            "vmbuild.yaml:7:11: mode=\"0855\" is not octal permission bits like 0755",
        ),
        (
            "  - id: a\n    target: /x\n    uid: root\n",
            "vmbuild.yaml:7:10: `root` is not a number (a uid or gid)",
        ),
        (
            "  - id: a\n    target: /x\n  - id: a\n    target: /y\n",
            "vmbuild.yaml:7:9: cache `a` is listed twice; mount one volume once",
        ),
        (
            "  - id: a\n    target: /x\n  - id: b\n    target: /x/\n",
            "vmbuild.yaml:8:13: target /x is already cache `a`'s; give each volume its own target",
        ),
    ];
    for (cache, want) in cases {
        assert_eq!(&err(&with_cache(cache)), want, "{cache}");
    }
}

#[test]
fn a_host_directory_is_refused_in_a_file() {
    let e = err(&with_cache("  - src: /etc\n    target: /x\n"));
    assert!(
        e.starts_with("vmbuild.yaml:5:5: a pipeline file cannot mount a host directory"),
        "{e}"
    );
    assert!(e.contains("--cache src=DIR"), "{e}");
}

#[test]
fn wrong_shapes_are_located() {
    assert_eq!(
        err(&format!("{HEADER}cache:\n  id: a\n{STEPS}")),
        "vmbuild.yaml:5:3: `cache` must be a list, found a mapping"
    );
    assert_eq!(
        err(&with_cache("  - gomod\n")),
        "vmbuild.yaml:5:5: `cache` must be a mapping, found a string"
    );
    assert_eq!(
        err(&with_cache("  - id: a\n    target: [/x]\n")),
        "vmbuild.yaml:6:13: `target` must be a string, found a list"
    );
}

#[test]
fn step_level_cache_belongs_to_its_step_and_nested_steps() {
    let text = format!(
        "{HEADER}pipeline:\n  - runs: x\n    cache:\n      - id: a\n        target: /x\n  - runs: y\n  - pipeline:\n      - runs: z\n    cache:\n      - id: b\n        target: /b\n        sharing: locked\n"
    );
    let plan = plan(&text);
    let ids: Vec<Vec<String>> = plan
        .steps
        .iter()
        .map(|s| s.volumes.iter().map(|v| v.name()).collect())
        .collect();
    assert_eq!(ids, [vec!["a".to_string()], vec![], vec!["b".to_string()]]);
    assert!(plan.volumes.is_empty(), "not build-level");
    // A step's entries are checked like the top level's, located.
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: x\n    cache:\n      - id: a\n        target: x\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:8:17:") && e.contains("absolute"),
        "{e}"
    );
}
