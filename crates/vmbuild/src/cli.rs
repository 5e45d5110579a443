//! The command line (clap). Values are parsed here; behaviour lives in the
//! library crates.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::args::{parse_cpus, parse_duration, parse_env, parse_memory};

fn parse_cache_from(s: &str) -> Result<vmbuild_transfer::CacheRef, String> {
    vmbuild_transfer::target::parse(s, vmbuild_transfer::Direction::From).map_err(|e| e.why)
}

fn parse_cache_to(s: &str) -> Result<vmbuild_transfer::CacheRef, String> {
    vmbuild_transfer::target::parse(s, vmbuild_transfer::Direction::To).map_err(|e| e.why)
}

fn parse_volume(s: &str) -> Result<vmbuild_cache::volume::VolumeSpec, String> {
    s.parse()
        .map_err(|e: vmbuild_cache::volume::SpecError| e.to_string())
}

/// `vmbuild --version`: the version, the git commit it was built from and
/// the SHA-256 of the guest init built into it (`-V` prints the version only).
pub static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {})\nguest init sha256 {}",
        env!("CARGO_PKG_VERSION"),
        env!("VMBUILD_GIT_COMMIT"),
        vmbuild_embedded_init::INIT_SHA256
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "vmbuild",
    version,
    long_version = LONG_VERSION.as_str(),
    about = "Run CI build pipelines inside throw-away QEMU microVMs"
)]
pub struct Cli {
    /// More logging (-v: debug, -vv: trace); also RUST_LOG.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Colour in progress output: auto (on a terminal, unless NO_COLOR is set), always,
    /// never [also VMBUILD_COLOR, vmbuild.toml `color`]. Progress is a live line only when
    /// stderr is a terminal and not with --log-format json; plain lines otherwise.
    #[arg(long, value_enum, global = true, value_name = "WHEN")]
    pub color: Option<crate::live::ColorChoice>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a melange-style pipeline (steps in one fresh VM); outputs land in --output-dir.
    Build(Box<BuildArgs>),
    /// Boot a fresh microVM, run one command in it, and exit with its code.
    Run(RunArgs),
    /// Check pipeline configs without booting anything: parse, resolve substitutions and
    /// `if:`, expand `uses:`, check package names; errors as file:line:col. Exit 0 when all pass.
    Validate(ValidateArgs),
    /// Environment images (built from `environment.contents.packages`).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Warm-start snapshots (saved guests restored instead of booting): list, prune.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Named cache volumes (`--cache id=NAME,...`): list, measure, clear, remove, prune.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Show what vmbuild found on this host (QEMU, accelerator, kernel,
    /// virtiofsd, bubblewrap) and how to fix what is missing.
    Doctor,
    /// Defaults for repeated flags (vmbuild.toml, ~/.config/vmbuild/config.toml).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Benchmarks (separate from the tests; see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shell completion script: `source <(vmbuild completions bash)`,
    /// `vmbuild completions zsh > ~/.zfunc/_vmbuild`,
    /// `vmbuild completions fish > ~/.config/fish/completions/vmbuild.fish`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of the pipeline file (checked in as
    /// schemas/vmbuild.schema.json; see docs/pipelines.md for editors).
    Schema,
    /// Write what a package installs beside the binary into DIR: man/ (vmbuild.1 and one
    /// page per subcommand), completions/ (bash, zsh, fish), the guest init it carries and
    /// the pipeline JSON Schema. Used by scripts/deb.sh.
    #[command(hide = true)]
    Assets {
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print each default (runner, cache dir/root/mode, memory, cpus, network) as it applies
    /// here and where it came from: flag > env > project vmbuild.toml > user config.toml >
    /// built-in (docs/install.md).
    Show {
        /// A pipeline file or directory whose vmbuild.toml applies (default: the current
        /// directory, as for `vmbuild run`).
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// QEMU user-mode networking (outgoing connections, DNS; the host's loopback services at
    /// 10.0.2.2)
    User,
    /// user-mode networking without the host's own services (10.0.2.2 and the host's other
    /// addresses are rejected, except DNS): a host firewall rule on QEMU's uid; root only
    #[value(name = "user,restrict-host")]
    UserRestrictHost,
    /// no network device
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheModeArg {
    /// read-only 9p + guest overlay: writes are discarded
    Overlay,
    /// read-write virtiofs: writes persist to the host
    Virtiofs,
}

/// Options shared by everything that boots a VM.
#[derive(Debug, Clone, Args)]
pub struct VmArgs {
    /// Accelerator: kvm, hvf or tcg (default: detected).
    #[arg(long, value_name = "ACCEL")]
    pub accel: Option<String>,
    /// Number of vCPUs [default: 1, or the pipeline's resources.cpu] (melange: --cpu).
    #[arg(long, alias = "cpu", value_parser = parse_cpus)]
    pub cpus: Option<u32>,
    /// Guest memory in MiB, or with a unit: 512M, 2G [default: 1024, or the pipeline's resources.memory].
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u32>,
    /// Guest kernel (bzImage or ELF vmlinux); default: the pinned Debian kernel, fetched on first use.
    #[arg(long, env = "VMBUILD_KERNEL", value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// The modules directory of --kernel (lib/modules/RELEASE).
    #[arg(long, env = "VMBUILD_KERNEL_MODULES", value_name = "DIR")]
    pub kernel_modules: Option<PathBuf>,
    /// Extra guest kernel command-line argument (repeatable), e.g. `loglevel=7`.
    #[arg(long = "kernel-arg", value_name = "ARG")]
    pub kernel_args: Vec<String>,
    /// Write the guest's serial console to FILE (kept after the run).
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,
    /// QEMU binary (default: qemu-system-<arch> on PATH; also VMBUILD_QEMU).
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// Host directory shared at /var/cache/vmbuild (and /var/cache/melange); created if missing.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Guest network: `user` (QEMU user-mode NAT; the host's loopback services are at 10.0.2.2)
    /// or `none` (no network device at all) [default: `user` for build, `none` for run].
    #[arg(long, value_enum)]
    pub network: Option<NetworkArg>,
    /// Run in this root filesystem instead of the busybox environment: an erofs/ext4 image
    /// file, or a directory (packed to a temporary erofs image).
    #[arg(long, value_name = "PATH")]
    pub rootfs: Option<PathBuf>,
    /// Trust the PEM CA certificates in FILE inside the guest too (repeatable), e.g. a
    /// TLS-intercepting proxy's CA or the host's bundle /etc/ssl/certs/ca-certificates.crt.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// How the cache dir and volumes are shared (default: overlay, or virtiofs when
    /// QEMU_USE_VIRTIOFS=1).
    #[arg(long, value_enum, value_name = "MODE")]
    pub cache_mode: Option<CacheModeArg>,
    /// A cache volume at a guest path (repeatable), BuildKit's cache-mount keys:
    /// id=NAME|src=DIR,target=PATH[,sharing=shared|locked|private][,persist=never|always]
    /// [,uid=N,gid=N,mode=0755]. See docs/cache.md.
    #[arg(long = "cache", value_parser = parse_volume, value_name = "SPEC")]
    pub volumes: Vec<vmbuild_cache::volume::VolumeSpec>,
    /// How concurrent builds share --cache-dir: shared (default) or locked (one build at a
    /// time), as a volume's sharing= (the lock file lives under the cache root).
    #[arg(long, value_parser = vmbuild_cache::volume::parse_sharing, value_name = "MODE")]
    pub cache_sharing: Option<vmbuild_cache::volume::Sharing>,
    /// What happens to a build's writes to --cache-dir: never (overlay default), on-success
    /// (overlay: committed when the build succeeds) or always (virtiofs).
    #[arg(long, value_parser = vmbuild_cache::volume::parse_persist, value_name = "WHEN")]
    pub cache_persist: Option<vmbuild_cache::volume::Persist>,
    /// Where named volumes live [default: $VMBUILD_CACHE_ROOT, else
    /// $XDG_CACHE_HOME/vmbuild/volumes, else ~/.cache/vmbuild/volumes].
    #[arg(long, value_name = "DIR")]
    pub cache_root: Option<PathBuf>,
    /// How long each guest start-up phase may take (QEMU connecting, the guest init's first
    /// message, its reply to setup) before the VM counts as stuck (exit 123) [default: 60s
    /// under TCG, 20s under KVM/HVF].
    #[arg(long, env = "VMBUILD_BOOT_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub boot_timeout: Option<Duration>,
    /// Always boot: neither restore the guest from a saved snapshot nor save one (warm start,
    /// docs/warm-start.md; qemu runner). Snapshots live in $VMBUILD_SNAPSHOTS, else
    /// <cache root>/snapshots.
    #[arg(long, env = "VMBUILD_COLD", value_parser = clap::builder::BoolishValueParser::new())]
    pub cold: bool,
    /// UNSAFE, for comparisons only: run QEMU with all of vmbuild's privileges (as root when
    /// vmbuild is root), without its seccomp sandbox, cgroup and rlimits (docs/security.md).
    #[arg(long)]
    pub unsafe_no_confinement: bool,
    /// Size of the scratch disk (e.g. 16G): a sparse file on the host, removed after the run,
    /// holding what the guest writes to /home/build and the cache overlays (instead of guest
    /// RAM); writes past it fail with "no space". 0: no disk, writes stay in --memory
    /// [default: 16G for build, 0 for run (it costs ~0.3 s of boot under TCG)].
    #[arg(long, value_parser = crate::args::parse_size, value_name = "SIZE")]
    pub disk: Option<u64>,
    /// `cpus` and `memory` from below the flags (see defaults.rs).
    #[arg(skip)]
    pub file_defaults: Fallbacks,
}

/// `cpus` and `memory` set by the environment (`VMBUILD_CPUS`,
/// `VMBUILD_MEMORY`: the bool is true) or a defaults file (false).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fallbacks {
    pub cpus: Option<(u32, bool)>,
    pub memory: Option<(u32, bool)>,
}

/// The value below a flag: an environment fallback beats the pipeline's
/// resources, a file fallback does not.
pub fn below_flag(
    flag: Option<u32>,
    fallback: Option<(u32, bool)>,
    pipeline: Option<u32>,
) -> Option<u32> {
    match fallback {
        Some((v, true)) => flag.or(Some(v)),
        _ => flag.or(pipeline).or(fallback.map(|(v, _)| v)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum RunnerArg {
    /// a throw-away QEMU microVM per build
    #[default]
    Qemu,
    /// a bubblewrap sandbox on the host (no VM; the cache is bound read-write)
    Bubblewrap,
    /// a container of a Docker Engine (DOCKER_HOST or the default socket;
    /// the cache is bound read-write)
    Docker,
}

impl RunnerArg {
    pub fn kind(self) -> vmbuild_runner::RunnerKind {
        match self {
            Self::Qemu => vmbuild_runner::RunnerKind::Qemu,
            Self::Bubblewrap => vmbuild_runner::RunnerKind::Bubblewrap,
            Self::Docker => vmbuild_runner::RunnerKind::Docker,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// build: a step list on a terminal, JSON lines otherwise; run: text
    Auto,
    /// the step list
    Text,
    /// one JSON event per line
    Json,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The pipeline file (melange-style YAML).
    pub config: PathBuf,
    /// Where the steps run [default: qemu; also VMBUILD_RUNNER, vmbuild.toml].
    #[arg(long, value_enum)]
    pub runner: Option<RunnerArg>,
    #[command(flatten)]
    pub vm: VmArgs,
    /// Shown at /home/build in the guest (default: the config file's directory).
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// After the build's steps, passed or failed, copy the guest's
    /// /home/build (sources, build tree, outputs) into DIR, replacing it,
    /// and keep it (melange: --workspace-dir).
    #[arg(long, value_name = "DIR")]
    pub workspace_dir: Option<PathBuf>,
    /// Where the package's files land after a successful build (default:
    /// ./vmbuild-out/<package>; with subpackages ./vmbuild-out, one dir per package)
    /// (melange: --out-dir).
    #[arg(long, alias = "out-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// KEY=VALUE lines, lowest precedence (see docs/pipelines.md).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Set a variable in every step (highest precedence; repeatable).
    #[arg(short, long = "env", value_parser = parse_env, value_name = "KEY=VALUE")]
    pub env: Vec<(String, String)>,
    /// A directory of `uses:` pipelines (repeatable; searched first).
    #[arg(long, value_name = "DIR")]
    pub pipeline_dir: Vec<PathBuf>,
    /// Whole-build timeout (default: the pipeline's package.timeout, else none).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Progress format.
    #[arg(long, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    /// Also write the full log (every step's output) to FILE.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Before booting, import the cache volumes (--cache-dir and id= volumes) from an export,
    /// BuildKit-style: type=registry,ref=REGISTRY/REPO:TAG or type=local,src=DIR[,tag=T]
    /// (repeatable: the first export with a volume wins; failures are warnings). See docs/cache.md.
    #[arg(long, value_parser = parse_cache_from, value_name = "SPEC")]
    pub cache_from: Vec<vmbuild_transfer::CacheRef>,
    /// After a successful build, export the cache volumes: type=registry,ref=... or
    /// type=local,dest=DIR[,tag=T], pushing only chunks the target lacks (repeatable;
    /// failures are warnings unless ignore-error=false).
    #[arg(long, value_parser = parse_cache_to, value_name = "SPEC")]
    pub cache_to: Vec<vmbuild_transfer::CacheRef>,
    /// Most bytes of file content the outputs may write on the host (e.g. 500M, 20G); past
    /// it the build fails naming this limit and --output-dir is left unchanged.
    #[arg(long, value_parser = crate::args::parse_size, value_name = "SIZE", default_value = "10G")]
    pub max_output_size: u64,
    /// Most bytes --log-file keeps (e.g. 100M); past it the file ends with a notice and the
    /// build goes on (the screen still shows everything).
    #[arg(long, value_parser = crate::args::parse_size, value_name = "SIZE", default_value = "256M")]
    pub log_file_max: u64,
    /// Apply the config's `options:` entry NAME (its vars and package changes; repeatable).
    #[arg(long, value_name = "NAME")]
    pub build_option: Vec<String>,
    /// More Wolfi -> Debian package-name entries (`WOLFI-NAME DEBIAN-NAME...` lines;
    /// repeatable; they win over the built-in map).
    #[arg(long, value_name = "FILE")]
    pub package_map: Vec<PathBuf>,
    /// Do not run the config's `test:` sections after a successful build.
    #[arg(long)]
    pub skip_tests: bool,
    /// A YAML mapping of var names to values that override the config's `vars:`.
    #[arg(long, value_name = "FILE")]
    pub vars_file: Option<PathBuf>,
    /// Add packages to the build environment (repeatable; melange's flag).
    #[arg(long, value_name = "NAME")]
    pub package_append: Vec<String>,
    #[command(flatten)]
    pub distro: DistroArgs,
    /// Trace every step's commands (`set -x`), as melange's --debug.
    #[arg(long)]
    pub debug: bool,
    /// Accepted for melange compatibility: vmbuild always removes everything it made.
    #[arg(long)]
    pub rm: bool,
    /// When a step fails, open a shell on this terminal inside the build environment
    /// (the guest for qemu) in the step's working directory with its environment, as
    /// melange's --interactive: `exit 0` continues with the next step as if it had
    /// passed, any other exit fails the build there. Needs a terminal on stdin. Time in
    /// the shell does not count against --timeout.
    #[arg(long)]
    pub interactive: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The pipeline files (melange-style YAML).
    #[arg(required = true, value_name = "CONFIG")]
    pub configs: Vec<PathBuf>,
    /// A directory of `uses:` pipelines (repeatable; searched before each config's own
    /// `pipelines/` directory and the built-ins).
    #[arg(long, value_name = "DIR")]
    pub pipeline_dir: Vec<PathBuf>,
    /// Treat warnings (package names with no Debian equivalent) as errors.
    #[arg(long)]
    pub strict: bool,
    /// More Wolfi -> Debian package-name entries (`WOLFI-NAME DEBIAN-NAME...` lines;
    /// repeatable; they win over the built-in map).
    #[arg(long, value_name = "FILE")]
    pub package_map: Vec<PathBuf>,
    /// Apply the config's `options:` entry NAME (repeatable).
    #[arg(long, value_name = "NAME")]
    pub build_option: Vec<String>,
    /// Print only the errors and the summary, not one line per valid config.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the command runs [default: qemu; also VMBUILD_RUNNER, vmbuild.toml].
    #[arg(long, value_enum)]
    pub runner: Option<RunnerArg>,
    #[command(flatten)]
    pub vm: VmArgs,
    /// Stop the VM after this long (300, 300s, 5m); exit code 124.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Set a variable in the command's environment (repeatable).
    #[arg(short, long = "env", value_parser = parse_env, value_name = "KEY=VALUE")]
    pub env: Vec<(String, String)>,
    /// Working directory in the guest (default /home/build).
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Print where the time went (one JSON line on stderr).
    #[arg(long)]
    pub timings: bool,
    /// `text` (default): the command's stdout and stderr as they are, vmbuild's notes on
    /// stderr. `json`: one JSON event per line on stderr for everything (notes, the command
    /// as one step, each output line, its exit, an error) — the same events as `build`.
    #[arg(long, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the cached images with size and last use.
    Ls,
    /// Build (or reuse) the image a pipeline needs, ahead of time.
    Build(ImageBuildArgs),
    /// Remove images by key (a unique prefix is enough).
    Rm {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove least-recently-used images.
    Prune {
        /// Remove images not used for this long (30d, 12h, ...).
        #[arg(long, value_parser = crate::args::parse_age, value_name = "AGE")]
        older_than: Option<Duration>,
        /// Then remove the least recently used until the total fits (20G, 500M, ...).
        #[arg(long, value_parser = crate::args::parse_size, value_name = "SIZE")]
        max_size: Option<u64>,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `vmbuild snapshot ...` (docs/warm-start.md).
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List the saved guests with size, last use and the machine they fit.
    Ls,
    /// Remove the least recently used snapshots (never one in use).
    Prune {
        /// How many to keep [default: 0, all go].
        #[arg(long, default_value_t = 0)]
        keep: usize,
    },
}

/// `--format` of the `cache` listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// a table, sizes human-readable
    Text,
    /// JSON, sizes in bytes
    Json,
}

/// The cache root every `vmbuild cache` subcommand works in.
#[derive(Debug, Args)]
pub struct CacheRootArg {
    /// Where named volumes live [default: $VMBUILD_CACHE_ROOT, else
    /// $XDG_CACHE_HOME/vmbuild/volumes, else ~/.cache/vmbuild/volumes].
    #[arg(long, value_name = "DIR")]
    pub cache_root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List volumes and forks: size, last use, who holds them.
    Ls {
        #[command(flatten)]
        root: CacheRootArg,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Size of each top-level entry of a volume, or of a directory (a path
    /// with a `/`, e.g. ./cache), largest first; no argument: every volume.
    Du {
        #[arg(value_name = "ID|DIR")]
        target: Option<String>,
        #[command(flatten)]
        root: CacheRootArg,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// One volume as JSON: path, size, files, last use, holder, forks.
    Inspect {
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        root: CacheRootArg,
    },
    /// Empty a volume (or a directory: a path with a `/`), or just the given
    /// subpaths of it. Waits for a build holding the volume.
    Clear {
        #[arg(value_name = "ID|DIR")]
        target: String,
        /// Relative paths inside it to delete (e.g. pip npm/_cacache).
        #[arg(value_name = "SUBPATH")]
        subpaths: Vec<String>,
        /// Fail at once, naming the holder, instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        root: CacheRootArg,
    },
    /// Remove volumes with their forks and lock files (refused while held).
    Rm {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        root: CacheRootArg,
    },
    /// Export volumes (IDs) or a directory (a path with a `/`, e.g. ./cache) to a registry or an
    /// OCI layout dir: --to type=registry,ref=REF or type=local,dest=DIR[,tag=T].
    Export {
        #[arg(required = true, value_name = "ID|DIR")]
        targets: Vec<String>,
        #[arg(long, value_parser = parse_cache_to, value_name = "SPEC")]
        to: vmbuild_transfer::CacheRef,
        /// The name of a directory in the export (default: cache-dir, as --cache-dir is named).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        root: CacheRootArg,
    },
    /// Import a volume (ID) or a directory (a path with a `/`) from an export, replacing its
    /// content: --from type=registry,ref=REF or type=local,src=DIR[,tag=T].
    Import {
        #[arg(value_name = "ID|DIR")]
        target: String,
        #[arg(long, value_parser = parse_cache_from, value_name = "SPEC")]
        from: vmbuild_transfer::CacheRef,
        /// The volume of the export to take (default: the ID, or cache-dir for a directory).
        #[arg(long, value_name = "NAME")]
        volume: Option<String>,
        #[command(flatten)]
        root: CacheRootArg,
    },
    /// Remove least-recently-used volumes and forks; never a held one.
    Prune {
        /// Remove volumes not used for longer than this (30d, 12h, 90m, ...).
        #[arg(long, value_parser = crate::args::parse_age, value_name = "AGE")]
        keep_duration: Option<Duration>,
        /// Then remove the least recently used until the total fits (20G, 500M, ...).
        #[arg(long, value_parser = crate::args::parse_size, value_name = "SIZE")]
        max_size: Option<u64>,
        /// Only say what would be removed (the locks are probed the same way).
        #[arg(long)]
        dry_run: bool,
        /// Prune the top-level entries (pip/, npm/, ...) of this plain cache directory (a
        /// --cache-dir) instead of the volumes; it has no locks: make sure no build uses it.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        root: CacheRootArg,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// A pipeline file whose environment.contents.packages to build.
    pub config: Option<PathBuf>,
    /// A package to include (repeatable), instead of a pipeline file.
    #[arg(long, value_name = "NAME")]
    pub package: Vec<String>,
    #[command(flatten)]
    pub distro: DistroArgs,
}

/// Where environment images come from: the Debian suite and mirror
/// mmdebstrap installs `environment.contents.packages` from. Both are part
/// of an image's key, so each suite gets its own cached image.
#[derive(Debug, Clone, Default, Args)]
pub struct DistroArgs {
    /// Debian suite of the environment images (default bookworm; e.g. trixie for a newer
    /// glibc and toolchain, as recent melange configs often need).
    #[arg(long, value_name = "SUITE")]
    pub suite: Option<String>,
    /// Debian mirror URL for the environment images (default http://deb.debian.org/debian).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
}

impl DistroArgs {
    /// `spec` with the suite and mirror given on the command line (the
    /// others keep the spec's defaults).
    pub fn apply(&self, mut spec: vmbuild_image::env::EnvSpec) -> vmbuild_image::env::EnvSpec {
        if let Some(s) = &self.suite {
            spec.suite = s.clone();
        }
        if let Some(m) = &self.mirror {
            spec.mirror = Some(m.clone());
        }
        spec
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Median wall time of `vmbuild run -- true`, its phases, and the floor
    /// (bare QEMU booting the same kernel into an initramfs that powers off).
    Boot(BenchBootArgs),
    /// Reading and writing the shared cache in both modes vs natively.
    Cache(BenchCacheArgs),
    /// Cache export and import (type=local, and a registry with --registry) against
    /// `tar | zstd -T0` and its reverse, and a re-export after a 1% change.
    Transfer(BenchTransferArgs),
    /// One pipeline built under qemu, bubblewrap and docker, interleaved
    /// in one run: wall time per runner.
    Runners(BenchRunnersArgs),
}

#[derive(Debug, Args)]
pub struct BenchTransferArgs {
    /// Size of the generated cache, MiB.
    #[arg(long, default_value = "500")]
    pub size_mib: u64,
    /// Runs per measurement (the median is shown).
    #[arg(long, default_value = "3")]
    pub runs: usize,
    /// Also export to and import from this registry: REGISTRY/REPO, a new repository
    /// per run is made under it (e.g. a local docker-registry: 127.0.0.1:5000/bench/cache).
    #[arg(long, value_name = "REF")]
    pub registry: Option<String>,
    /// Scratch directory (default: a fresh one in /var/tmp).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchRunnersArgs {
    /// Builds per runner (at least 1).
    #[arg(long, default_value = "5")]
    pub runs: usize,
    /// Pipelines to build (default: examples/hello/vmbuild.yaml).
    #[arg(value_name = "CONFIG")]
    pub configs: Vec<PathBuf>,
    /// Runners to compare.
    #[arg(long = "runner", value_enum, default_values_t = [RunnerArg::Qemu, RunnerArg::Bubblewrap, RunnerArg::Docker])]
    pub runners: Vec<RunnerArg>,
    /// Extra flags for every build (e.g. `--extra=-e
    /// --extra=PIP_INDEX_URL=http://{host}:PORT/simple/`); `{host}` becomes
    /// the host's address as the runner's build sees it.
    #[arg(long = "extra", value_name = "ARG", allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchCacheArgs {
    #[command(flatten)]
    pub vm: VmArgs,
}

#[derive(Debug, Args)]
pub struct BenchBootArgs {
    /// Runs per measurement (at least 5).
    #[arg(long, default_value = "10")]
    pub runs: usize,
    #[command(flatten)]
    pub vm: VmArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_everything_after_double_dash() {
        let cli = Cli::try_parse_from([
            "vmbuild", "run", "--cpus", "2", "-e", "A=1", "--", "sh", "-c", "exit 7",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.command, ["sh", "-c", "exit 7"]);
        assert_eq!(r.vm.cpus, Some(2));
        assert_eq!(r.env, [("A".to_string(), "1".to_string())]);
    }

    #[test]
    fn build_takes_melanges_interactive_flag() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Build(b) = cli.command else {
                panic!("not build")
            };
            b.interactive
        };
        assert!(parse(&["vmbuild", "build", "--interactive", "x.yaml"]));
        assert!(!parse(&["vmbuild", "build", "x.yaml"]));
        // Only build has it (melange has it on build).
        assert!(Cli::try_parse_from(["vmbuild", "run", "--interactive", "--", "sh"]).is_err());
    }

    #[test]
    fn run_requires_a_command() {
        assert!(Cli::try_parse_from(["vmbuild", "run"]).is_err());
    }

    #[test]
    fn builds_suite_and_mirror_make_their_own_environment_image() {
        let cli = Cli::try_parse_from([
            "vmbuild",
            "build",
            "x.yaml",
            "--suite",
            "trixie",
            "--mirror",
            "http://mirror.example/debian",
        ])
        .unwrap();
        let Command::Build(b) = cli.command else {
            panic!("not build")
        };
        let plain = vmbuild_image::env::EnvSpec::new(["gcc"]);
        let spec = b.distro.apply(plain.clone());
        assert_eq!(spec.suite, "trixie");
        assert_eq!(spec.mirror.as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(spec.packages, plain.packages);
        assert_ne!(spec.key(), plain.key());
        // Without the flags, the defaults (bookworm, mmdebstrap's mirror).
        assert_eq!(DistroArgs::default().apply(plain.clone()), plain);
    }
}
