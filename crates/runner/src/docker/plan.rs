//! The docker runner's pure half: options -> the container the engine is
//! asked for (labels, mounts, limits, capabilities), the exec of one
//! command, and image names. Plain data in, bollard request bodies out;
//! nothing here talks to the engine, so all of it is unit-tested.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType};
use vmbuild_proto::{CommandSpec, GUEST_CACHE_ALIAS, GUEST_CACHE_DIR, GUEST_HOME};
use vmbuild_qemu::Network;

/// The label on everything vmbuild creates in the engine (containers and
/// imported images); `docker ps -a --filter label=dev.vmbuild.managed`
/// finds them, and the tests check by it that nothing is left behind.
pub const LABEL_MANAGED: &str = "dev.vmbuild.managed";
/// What the labelled object is: [`KIND_CONTAINER`] or [`KIND_ENV_IMAGE`].
pub const LABEL_KIND: &str = "dev.vmbuild.kind";
/// The content key of an imported environment image.
pub const LABEL_KEY: &str = "dev.vmbuild.key";
/// The session a container belongs to (one per build or run).
pub const LABEL_SESSION: &str = "dev.vmbuild.session";
/// A build or run's container (removed when the session ends).
pub const KIND_CONTAINER: &str = "container";
/// An environment image imported from vmbuild's own builders (kept and
/// reused; `vmbuild image rm/prune` remove it).
pub const KIND_ENV_IMAGE: &str = "env-image";
/// Repository of imported environment images: `vmbuild/env:<key>`.
pub const IMAGE_REPO: &str = "vmbuild/env";

/// Capabilities a build keeps (everything else is dropped): what a root
/// build needs to own, chmod and install files in its own tree and to
/// drop to another uid. Docker's default set also has NET_RAW, MKNOD,
/// SYS_CHROOT, AUDIT_WRITE, NET_BIND_SERVICE, SETPCAP and SETFCAP; none
/// of these is needed to build, so they are not given.
pub const CAPS_KEPT: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
];

/// The container's PID 1: a shell that sleeps forever and survives the
/// `kill -9 -1` that ends each command's leftovers ([`KILL_LEFTOVERS`]):
/// PID 1 of a PID namespace is exempt from it, and the sleep it waits on
/// is simply started again.
pub const KEEP_ALIVE: [&str; 3] = ["/bin/sh", "-c", "while :; do sleep 3600 & wait; done"];

/// Run after each command: kills every process in the container except
/// PID 1 and itself, so nothing a command started in the background
/// outlives it (as under the other runners).
pub const KILL_LEFTOVERS: [&str; 3] = ["/bin/sh", "-c", "kill -9 -1 2>/dev/null; exit 0"];

/// Gives a command exactly its own environment and the PATH lookup the
/// other runners do. The engine adds `HOSTNAME` (and `PATH` when the
/// command has none) to every exec; the shell this runs in adds `SHLVL`
/// and `PWD`; `env -u` takes away each the command did not set. The
/// command is looked up in its `PATH` here, by the shell's own loop, and
/// started by absolute path: a busybox `env` or shell given a bare name
/// would prefer its own applet over, say, `/usr/local/bin/tar`. A name
/// not found is left bare for `env`, which then gives the shell's 127.
pub const ENV_SHIM: &str = "/usr/bin/env";

/// Variables something other than the command may add to its environment.
const INJECTED: [&str; 4] = ["HOSTNAME", "PATH", "SHLVL", "PWD"];

/// The `sh -c` script of [`exec_config`]: `$1` is the command, the rest
/// its arguments; `unset` is the `-u NAME ...` list for `env`.
fn launch_script(unset: &str) -> String {
    format!(
        "c=$1; shift; case $c in */*) ;; *) IFS=:; for d in $PATH; do \
if [ -n \"$d\" ] && [ -f \"$d/$c\" ] && [ -x \"$d/$c\" ]; then c=$d/$c; break; fi; done; unset IFS;; esac; \
exec {ENV_SHIM}{unset} -- \"$c\" \"$@\""
    )
}

/// How the container is put together; filled by [`super::Container`] from
/// [`super::DockerOptions`] and what it prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// Image reference (`vmbuild/env:<key>`).
    pub image: String,
    /// The private copy of the source, bound read-write at `/home/build`.
    pub workspace: PathBuf,
    /// Bound read-write at `/var/cache/vmbuild` and `/var/cache/melange`.
    pub cache_dir: Option<PathBuf>,
    /// (host directory, absolute target): bound read-write.
    pub volumes: Vec<(PathBuf, String)>,
    pub network: Network,
    /// CPU limit in CPUs (`None`: no limit).
    pub cpus: Option<u32>,
    /// Memory limit in MiB (`None`: no limit).
    pub memory_mib: Option<u32>,
    /// A unique id of this session, in the container's labels.
    pub session: String,
}

/// The labels of a session's container.
pub fn container_labels(session: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_KIND.to_string(), KIND_CONTAINER.to_string()),
        (LABEL_SESSION.to_string(), session.to_string()),
    ])
}

/// The `changes` of an image import: the labels of an environment image
/// with content key `key`.
pub fn image_changes(key: &str) -> Vec<String> {
    vec![
        format!("LABEL {LABEL_MANAGED}=true"),
        format!("LABEL {LABEL_KIND}={KIND_ENV_IMAGE}"),
        format!("LABEL {LABEL_KEY}={key}"),
    ]
}

/// `vmbuild/env:<key>`.
pub fn image_ref(key: &str) -> String {
    format!("{IMAGE_REPO}:{key}")
}

/// The engine's network mode for `network`: no interface but loopback, or
/// the default bridge (NAT to the host's network, like QEMU's user mode).
pub fn network_mode(network: Network) -> &'static str {
    match network {
        Network::None => "none",
        Network::User => "bridge",
    }
}

fn bind(source: &Path, target: &str) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(false),
        ..Default::default()
    }
}

/// The bind mounts, in order: workspace, cache dir (at both cache paths),
/// volumes.
pub fn mounts(plan: &ContainerPlan) -> Vec<Mount> {
    let mut m = vec![bind(&plan.workspace, GUEST_HOME)];
    if let Some(c) = &plan.cache_dir {
        m.push(bind(c, GUEST_CACHE_DIR));
        m.push(bind(c, GUEST_CACHE_ALIAS));
    }
    m.extend(plan.volumes.iter().map(|(h, t)| bind(h, t)));
    m
}

/// The create request: [`KEEP_ALIVE`] as PID 1, root, the mounts, the
/// network, limits, [`CAPS_KEPT`] only, `no-new-privileges`, never
/// privileged, labelled with [`container_labels`].
pub fn container_body(plan: &ContainerPlan) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(plan.image.clone()),
        cmd: Some(KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
        entrypoint: Some(Vec::new()),
        env: Some(Vec::new()),
        user: Some("0:0".into()),
        working_dir: Some(GUEST_HOME.into()),
        hostname: Some(vmbuild_image::env::HOSTNAME.into()),
        labels: Some(container_labels(&plan.session)),
        network_disabled: Some(plan.network == Network::None),
        host_config: Some(HostConfig {
            mounts: Some(mounts(plan)),
            network_mode: Some(network_mode(plan.network).into()),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(CAPS_KEPT.iter().map(|c| c.to_string()).collect()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            nano_cpus: plan.cpus.map(|c| i64::from(c) * 1_000_000_000),
            memory: plan.memory_mib.map(|m| i64::from(m) << 20),
            // Not swap on top of the limit: the build sees what it was given.
            memory_swap: plan.memory_mib.map(|m| i64::from(m) << 20),
            tmpfs: Some(HashMap::from([
                ("/tmp".to_string(), "rw,exec,mode=1777".to_string()),
                ("/var/tmp".to_string(), "rw,exec,mode=1777".to_string()),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The exec of `cmd`: through [`launch_script`] so the command gets
/// exactly `cmd.env` and a `PATH` lookup, in `cmd.cwd`, as root, stdout
/// and stderr attached apart, no stdin and no tty.
pub fn exec_config(cmd: &CommandSpec) -> ExecConfig {
    let has = |k: &str| cmd.env.iter().any(|(n, _)| n == k);
    let unset: String = INJECTED
        .iter()
        .filter(|k| !has(k))
        .map(|k| format!(" -u {k}"))
        .collect();
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        launch_script(&unset),
        "vmbuild-exec".to_string(),
    ];
    argv.extend(cmd.argv.iter().cloned());
    ExecConfig {
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: Some(cmd.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: Some(argv),
        privileged: Some(false),
        user: Some("0:0".into()),
        working_dir: Some(cmd.cwd.clone()),
        ..Default::default()
    }
}

/// A plain exec of `argv` as root in `/` (setup and cleanup commands).
pub fn helper_exec(argv: &[&str]) -> ExecConfig {
    ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
        user: Some("0:0".into()),
        working_dir: Some("/".into()),
        privileged: Some(false),
        ..Default::default()
    }
}

/// The directories a command's exec needs before it starts: its cwd when
/// that is not `/` (the engine does not create an exec's working
/// directory; the other runners do). `None` when nothing is needed.
pub fn mkdir_cwd(cmd: &CommandSpec) -> Option<Vec<String>> {
    let cwd = cmd.cwd.trim_end_matches('/');
    if cwd.is_empty() || !cwd.starts_with('/') {
        return None;
    }
    Some(vec![
        "mkdir".into(),
        "-p".into(),
        "--".into(),
        cwd.to_string(),
    ])
}

/// An exit code as the engine reports it (a command killed by signal N
/// reads 128 + N, as under bubblewrap).
pub fn exit_code(code: Option<i64>) -> Option<i32> {
    code.and_then(|c| i32::try_from(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ContainerPlan {
        ContainerPlan {
            image: image_ref("abc"),
            workspace: "/tmp/ws".into(),
            cache_dir: Some("/c".into()),
            volumes: vec![("/v/gomod".into(), "/root/go/pkg/mod".into())],
            network: Network::None,
            cpus: Some(2),
            memory_mib: Some(512),
            session: "s1".into(),
        }
    }

    #[test]
    fn container_is_labelled_limited_and_unprivileged() {
        let b = container_body(&plan());
        assert_eq!(b.image.as_deref(), Some("vmbuild/env:abc"));
        let labels = b.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_KIND], KIND_CONTAINER);
        assert_eq!(labels["dev.vmbuild.session"], "s1");
        let h = b.host_config.unwrap();
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_drop.unwrap(), ["ALL"]);
        let caps = h.cap_add.unwrap();
        assert!(!caps
            .iter()
            .any(|c| c == "SYS_ADMIN" || c == "NET_RAW" || c == "MKNOD"));
        assert_eq!(h.security_opt.unwrap(), ["no-new-privileges"]);
        assert_eq!(h.nano_cpus, Some(2_000_000_000));
        assert_eq!(h.memory, Some(512 << 20));
        assert_eq!(h.memory_swap, h.memory);
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(b.network_disabled, Some(true));
        assert_eq!(b.env, Some(Vec::new()), "no environment of the image's own");
    }

    #[test]
    fn no_limits_unless_given_and_user_network_is_the_bridge() {
        let mut p = plan();
        p.cpus = None;
        p.memory_mib = None;
        p.network = Network::User;
        let b = container_body(&p);
        let h = b.host_config.unwrap();
        assert_eq!((h.nano_cpus, h.memory), (None, None));
        assert_eq!(h.network_mode.as_deref(), Some("bridge"));
        assert_eq!(b.network_disabled, Some(false));
    }

    #[test]
    fn mounts_are_workspace_cache_twice_then_volumes_all_read_write() {
        let m = mounts(&plan());
        let pairs: Vec<(&str, &str)> = m
            .iter()
            .map(|m| (m.source.as_deref().unwrap(), m.target.as_deref().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/tmp/ws", "/home/build"),
                ("/c", "/var/cache/vmbuild"),
                ("/c", "/var/cache/melange"),
                ("/v/gomod", "/root/go/pkg/mod"),
            ]
        );
        assert!(m
            .iter()
            .all(|m| m.read_only == Some(false) && m.typ == Some(MountType::BIND)));
        let mut p = plan();
        p.cache_dir = None;
        p.volumes.clear();
        assert_eq!(mounts(&p).len(), 1);
    }

    #[test]
    fn exec_removes_what_the_engine_adds_unless_the_command_sets_it() {
        let cmd = CommandSpec {
            argv: vec!["-weird".into(), "x".into()],
            env: vec![("HOME".into(), "/home/build".into())],
            cwd: "/home/build/sub".into(),
            binds: Vec::new(),
            user: None,
        };
        let e = exec_config(&cmd);
        let argv = e.cmd.unwrap();
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert!(
            argv[2].ends_with(
                "exec /usr/bin/env -u HOSTNAME -u PATH -u SHLVL -u PWD -- \"$c\" \"$@\""
            ),
            "{}",
            argv[2]
        );
        assert_eq!(argv[3..], ["vmbuild-exec", "-weird", "x"]);
        assert_eq!(e.env.unwrap(), ["HOME=/home/build"]);
        assert_eq!(e.working_dir.as_deref(), Some("/home/build/sub"));
        assert_eq!((e.tty, e.attach_stdin), (Some(false), Some(false)));
        let cmd = CommandSpec {
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("HOSTNAME".into(), "h".into()),
            ],
            ..cmd
        };
        let script = &exec_config(&cmd).cmd.unwrap()[2];
        assert!(
            script.contains("exec /usr/bin/env -u SHLVL -u PWD --"),
            "{script}"
        );
    }

    #[test]
    fn cwd_is_made_when_not_root_and_labels_of_images() {
        let mut cmd = CommandSpec {
            argv: vec!["true".into()],
            env: Vec::new(),
            cwd: "/".into(),
            binds: Vec::new(),
            user: None,
        };
        assert_eq!(mkdir_cwd(&cmd), None);
        cmd.cwd = "/home/build/a b/".into();
        assert_eq!(
            mkdir_cwd(&cmd).unwrap(),
            ["mkdir", "-p", "--", "/home/build/a b"]
        );
        assert_eq!(
            image_changes("k1"),
            [
                "LABEL dev.vmbuild.managed=true",
                "LABEL dev.vmbuild.kind=env-image",
                "LABEL dev.vmbuild.key=k1"
            ]
        );
        assert_eq!(exit_code(Some(137)), Some(137));
        assert_eq!(exit_code(Some(i64::MAX)), None);
    }
}
