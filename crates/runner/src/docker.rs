//! The docker runner (`--runner docker`): the same steps as the other
//! runners, in a container of a Docker Engine, driven through the engine's
//! HTTP API ([`engine`], with the `bollard` crate; never the `docker` CLI).
//!
//! What a command sees (docs/security.md compares it with the VM):
//! - The root filesystem of an image vmbuild imported itself ([`rootfs`]):
//!   the busybox environment by default, the environment image of
//!   `environment.contents.packages`, or `--rootfs`; tagged
//!   `vmbuild/env:<content key>`, imported once and reused.
//! - `/home/build`: a private read-write copy of the source directory
//!   (the same copy the bubblewrap runner makes), bind-mounted, with
//!   `out/` in it: the build writes, the host's source never changes.
//! - The cache directory bind-mounted **read-write** at
//!   `/var/cache/vmbuild` and `/var/cache/melange` (melange's Docker
//!   runner: writes persist); cache volumes read-write at their targets.
//! - `/tmp` and `/var/tmp` fresh tmpfs (1777).
//! - Network `none` (loopback only) or `user` (the engine's default
//!   bridge); `--cpus` / `--memory` as the container's limits.
//! - Root in the container with only [`plan::CAPS_KEPT`], no new
//!   privileges, never privileged.
//! - Exactly the environment in [`CommandSpec::env`], its cwd (created if
//!   missing), no stdin; stdout and stderr apart, streamed. (An
//!   interactive shell, `--interactive`, is an exec with a terminal
//!   instead: `docker/tty.rs`.)
//!
//! Every command is one exec in one long-lived container. It ends on its
//! exit status (polled while the output streams), not on EOF: when it has
//! exited, everything else in the container except its PID 1 is killed
//! ([`plan::KILL_LEFTOVERS`]), so a background process holding the pipes
//! neither keeps the step open nor outlives it. On timeout or Ctrl-C the
//! container is killed and removed. Everything the runner creates carries
//! [`plan::LABEL_MANAGED`]; the container is removed on every path
//! (finish, abort, drop).

pub mod engine;
pub mod plan;
pub mod rootfs;
mod tty;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use futures_util::StreamExt;
use vmbuild_cache::SharedDir;
use vmbuild_image::Progress;
use vmbuild_proto::{CommandSpec, ExitInfo};
use vmbuild_qemu::Network;

use crate::bwrap::{boottime_us, empty_command, make_workspace, remove_workspace};
use crate::error::RunError;
use crate::features::{Feature, RunnerKind};
use crate::output::OutputSink;
use crate::runners::StartEvent;
use crate::stop::Stopper;
use crate::vm::RootImage;
use engine::{api, short};
pub use engine::{Engine, EngineImage, EngineInfo};
use plan::ContainerPlan;

/// How often a running command's exec is asked whether it has exited
/// (when its output has not ended first).
const POLL: Duration = Duration::from_millis(100);
/// Bound on reading what is left of the output once the command exited.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Bound on the engine reporting an exec ended after its output did.
const EXIT_GRACE: Duration = Duration::from_secs(10);
const DURING: &str = "while running the command";

/// Errors of the docker runner (all setup failures: exit code 125).
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker Engine answers at {address} ({why}); start one as root with `dockerd &` (apt-get install docker.io), or point DOCKER_HOST at a running engine")]
    NotRunning { address: String, why: String },
    #[error("DOCKER_HOST={0} is not a unix:// or tcp:// address")]
    BadAddress(String),
    #[error("Docker Engine error while {during}: {why}")]
    Api { during: String, why: String },
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("root image {}: {why}", .path.display())]
    Rootfs { path: PathBuf, why: String },
}

/// The docker runner's options; the CLI fills them from its flags.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// Copied to the workspace at `/home/build` (`None`: empty, as `run`).
    pub source_dir: Option<PathBuf>,
    /// Bound read-write at the cache paths (validated, absolute).
    pub cache_dir: Option<PathBuf>,
    /// Cache volumes (held by the caller), bound read-write at their
    /// targets; `root_mode` applied on the host, an `owner` refused.
    pub volumes: Vec<SharedDir>,
    /// Guest directories under `/home/build` to create in the workspace.
    pub mkdirs: Vec<String>,
    /// The root filesystem (`None`: the busybox environment, unless
    /// `root_dir` is given).
    pub root_image: Option<RootImage>,
    /// `--rootfs DIR`: this directory tree as the root filesystem, packed
    /// as it is (keyed by the digest of its tarball, so an unchanged tree
    /// is imported once).
    pub root_dir: Option<PathBuf>,
    pub network: Network,
    /// CPU limit in CPUs (`None`: none).
    pub cpus: Option<u32>,
    /// Memory limit in MiB (`None`: none).
    pub memory_mib: Option<u32>,
}

/// A started container and its workspace: runs commands one at a time.
pub struct Container {
    engine: Engine,
    /// `None` once removed.
    id: Option<String>,
    workspace: Option<tempfile::TempDir>,
    /// Working directories already made in the container.
    made: HashSet<String>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("id", &self.id).finish()
    }
}

/// The root filesystem's content key, importing it into the engine first
/// when it is not there (under a host lock, so parallel builds import a
/// key once). Blocking work runs in place: call from a multi-threaded
/// runtime.
pub async fn ensure_image(
    engine: &Engine,
    root: Option<&RootImage>,
    root_dir: Option<&Path>,
    events: &mut (dyn FnMut(StartEvent<'_>) + Send),
) -> Result<String, RunError> {
    let cache_root = vmbuild_image::cache_root()?;
    if let Some(dir) = root_dir {
        return ensure_dir_image(engine, &cache_root, dir, events).await;
    }
    let (key, busybox) = match root {
        None => {
            let bb = tokio::task::block_in_place(|| {
                vmbuild_image::busybox(&cache_root, &mut |l: &str| events(StartEvent::Notice(l)))
            })?;
            let applets = vmbuild_image::busybox_applets(&bb);
            let key = tokio::task::block_in_place(|| rootfs::busybox_key(&bb, &applets))?;
            (key, Some((bb, applets)))
        }
        Some(img) => (
            tokio::task::block_in_place(|| rootfs::image_key(img))?,
            None,
        ),
    };
    if engine.has_image(&key).await? {
        return Ok(key);
    }
    let _lock = import_lock(&cache_root, &key)?;
    if engine.has_image(&key).await? {
        return Ok(key);
    }
    let scratch = import_scratch(&cache_root)?;
    let tar = rootfs::scratch_tar(scratch.path());
    packing(events, || match (&busybox, root) {
        (Some((bb, applets)), _) => rootfs::write_busybox_tar(bb, applets, &tar),
        (None, Some(img)) => {
            let tree = scratch.path().join("tree");
            rootfs::unpack_image(img, &tree)?;
            rootfs::write_tree_tar(&tree, &tar)
        }
        (None, None) => unreachable!("busybox is set when there is no root image"),
    })?;
    import_and_clean(engine, &key, &tar, scratch, events).await?;
    Ok(key)
}

/// [`ensure_image`] for a directory tree: packed first (its tarball's
/// digest is the key), imported only when the engine lacks that key.
async fn ensure_dir_image(
    engine: &Engine,
    cache_root: &Path,
    dir: &Path,
    events: &mut (dyn FnMut(StartEvent<'_>) + Send),
) -> Result<String, RunError> {
    let scratch = import_scratch(cache_root)?;
    let tar = rootfs::scratch_tar(scratch.path());
    let key = packing(events, || {
        rootfs::write_tree_tar(dir, &tar)?;
        rootfs::file_key("dir", &tar)
    })?;
    let _lock = import_lock(cache_root, &key)?;
    if engine.has_image(&key).await? {
        drop_scratch(scratch);
        return Ok(key);
    }
    import_and_clean(engine, &key, &tar, scratch, events).await?;
    Ok(key)
}

/// Imports `tar` as `key`, telling so, then removes the scratch dir.
async fn import_and_clean(
    engine: &Engine,
    key: &str,
    tar: &Path,
    scratch: tempfile::TempDir,
    events: &mut (dyn FnMut(StartEvent<'_>) + Send),
) -> Result<(), RunError> {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let what = format!(
        "importing {} into the Docker Engine (once)",
        plan::image_ref(key)
    );
    let total = std::fs::metadata(tar).map(|m| m.len()).ok();
    events(StartEvent::Progress(Progress::Begin { what: &what, total }));
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let import = engine.import(key, tar, sent.clone());
    tokio::pin!(import);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let imported = loop {
        tokio::select! {
            r = &mut import => break r,
            _ = tick.tick() => events(StartEvent::Progress(Progress::Bytes(sent.load(Relaxed)))),
        }
    };
    events(StartEvent::Progress(Progress::Bytes(sent.load(Relaxed))));
    events(StartEvent::Progress(Progress::End));
    drop_scratch(scratch);
    Ok(imported?)
}

/// Runs `work` (writing the root filesystem's tarball) in place, told as
/// a spinner's worth of progress.
fn packing<T, E>(
    events: &mut (dyn FnMut(StartEvent<'_>) + Send),
    work: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    events(StartEvent::Progress(Progress::Begin {
        what: "packing the root filesystem for the Docker Engine",
        total: None,
    }));
    let out = tokio::task::block_in_place(work);
    events(StartEvent::Progress(Progress::End));
    out
}

/// `<cache_root>/docker/`: import locks and scratch dirs.
fn docker_dir(cache_root: &Path) -> Result<PathBuf, RunError> {
    let d = cache_root.join("docker");
    std::fs::create_dir_all(&d)
        .map_err(|e| RunError::io(format!("creating {}", d.display()), e))?;
    Ok(d)
}

/// Serializes imports of `key` on this host (held while the file lives).
fn import_lock(cache_root: &Path, key: &str) -> Result<std::fs::File, RunError> {
    let path = docker_dir(cache_root)?.join(format!(".import-{key}.lock"));
    tokio::task::block_in_place(|| lock_file(&path))
}

fn import_scratch(cache_root: &Path) -> Result<tempfile::TempDir, RunError> {
    tempfile::Builder::new()
        .prefix("vmbuild-import-")
        .tempdir_in(docker_dir(cache_root)?)
        .map_err(|e| RunError::io("creating a scratch dir for an image import", e))
}

fn drop_scratch(scratch: tempfile::TempDir) {
    let path = scratch.path().to_path_buf();
    tokio::task::block_in_place(|| {
        if scratch.close().is_err() {
            let _ = crate::copy::remove_tree(&path);
        }
    });
}

/// An exclusive `flock` on `path` (created), held while the file lives.
fn lock_file(path: &Path) -> Result<std::fs::File, RunError> {
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| RunError::io(format!("opening {}", path.display()), e))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| RunError::io(format!("locking {}", path.display()), e.into()))?;
    Ok(f)
}

impl Container {
    /// Connects to the engine, imports the root filesystem if needed,
    /// copies the source into a workspace, and creates and starts the
    /// container. `stop` (timeout, Ctrl-C) is honoured throughout: the
    /// container, if one was made, is removed.
    pub async fn start(
        opts: &DockerOptions,
        stop: &Stopper,
        events: &mut (dyn FnMut(StartEvent<'_>) + Send),
    ) -> Result<Container, RunError> {
        let engine = Engine::connect().await?;
        let session = session_id();
        let started = tokio::select! {
            biased;
            e = stop.fired("while starting the container") => Err(e),
            r = Self::start_inner(&engine, opts, &session, events) => r,
        };
        if started.is_err() {
            // Whatever got made before the error or the stop.
            remove_session(&engine, &session).await;
        }
        started
    }

    async fn start_inner(
        engine: &Engine,
        opts: &DockerOptions,
        session: &str,
        events: &mut (dyn FnMut(StartEvent<'_>) + Send),
    ) -> Result<Container, RunError> {
        let key = ensure_image(
            engine,
            opts.root_image.as_ref(),
            opts.root_dir.as_deref(),
            events,
        )
        .await?;
        events(StartEvent::Phase("preparing the container's workspace"));
        if let Some(c) = &opts.cache_dir {
            crate::bwrap::volumes::existing_dir("--cache-dir", c)?;
        }
        let volumes = crate::bwrap::volumes::prepare(&opts.volumes)?;
        let workspace = tokio::task::block_in_place(|| {
            make_workspace(opts.source_dir.as_deref(), &opts.mkdirs)
        })?;
        let plan = ContainerPlan {
            image: plan::image_ref(&key),
            workspace: workspace.path().to_path_buf(),
            cache_dir: opts.cache_dir.clone(),
            volumes: volumes.into_iter().map(|v| (v.host, v.target)).collect(),
            network: opts.network,
            cpus: opts.cpus,
            memory_mib: opts.memory_mib,
            session: session.to_string(),
        };
        events(StartEvent::Phase("starting the container"));
        let name = format!("vmbuild-{session}");
        let created = engine
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                plan::container_body(&plan),
            )
            .await
            .map_err(api("creating the container"))
            .map_err(RunError::from)?;
        let mut c = Container {
            engine: engine.clone(),
            id: Some(created.id),
            workspace: Some(workspace),
            made: HashSet::from(["/".to_string(), vmbuild_proto::GUEST_HOME.to_string()]),
        };
        let id = c.id.clone().unwrap_or_default();
        if let Err(e) = engine.docker.start_container(&id, None).await {
            let e = RunError::from(DockerError::Api {
                during: "starting the container".into(),
                why: short(&e),
            });
            c.remove().await;
            return Err(e);
        }
        Ok(c)
    }

    /// The host directory the commands see as `/home/build`.
    pub fn workspace(&self) -> Option<&Path> {
        self.workspace.as_ref().map(|w| w.path())
    }

    /// Runs one command to its exit status, streaming its output to `sink`.
    /// On timeout or interrupt the container is removed and the stopper's
    /// error returned.
    pub async fn run(
        &mut self,
        cmd: &CommandSpec,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        if cmd.argv.is_empty() {
            return Ok(empty_command(sink));
        }
        refuse_run_as(cmd)?;
        let started_us = boottime_us();
        let ran = tokio::select! {
            biased;
            e = stop.fired(DURING) => Err(e),
            r = self.run_inner(cmd, sink) => r,
        };
        self.exited(ran, started_us).await
    }

    /// A command's end: its exit status since `started_us`, or, when it was
    /// stopped or failed, the container removed and the error.
    pub(crate) async fn exited(
        &mut self,
        ran: Result<i32, RunError>,
        started_us: u64,
    ) -> Result<ExitInfo, RunError> {
        let code = match ran {
            Ok(code) => code,
            Err(e) => {
                self.remove().await;
                return Err(e);
            }
        };
        Ok(ExitInfo {
            code: Some(code),
            signal: None,
            started_us,
            ended_us: boottime_us(),
            oom: None,
        })
    }

    async fn run_inner(
        &mut self,
        cmd: &CommandSpec,
        sink: &mut dyn OutputSink,
    ) -> Result<i32, RunError> {
        let id = self.prepare_cwd(cmd).await?;
        let exec = self
            .engine
            .docker
            .create_exec(&id, plan::exec_config(cmd))
            .await
            .map_err(api("creating the command's exec"))?;
        let started = self
            .engine
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(api("starting the command"))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(DockerError::Api {
                during: "starting the command".into(),
                why: "the engine did not attach its output".into(),
            }
            .into());
        };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let mut open = true;
        let mut code = None;
        while open && code.is_none() {
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(o)) => put(sink, o),
                    Some(Err(e)) => {
                        tracing::debug!(error = %short(&e), "the command's output stream broke");
                        open = false;
                    }
                    None => open = false,
                },
                _ = poll.tick() => code = self.exit_code(&exec.id).await?,
            }
        }
        // Exited (or its output ended): it counts as ended when the
        // engine says so, and nothing it started may outlive it.
        let code = match code {
            Some(c) => c,
            None => self.await_exit(&exec.id).await?,
        };
        self.helper(&id, &plan::KILL_LEFTOVERS).await?;
        if open {
            let _ = tokio::time::timeout(DRAIN_GRACE, async {
                while let Some(Ok(o)) = output.next().await {
                    put(sink, o);
                }
            })
            .await;
        }
        Ok(code)
    }

    /// The container's id, with `cmd`'s working directory made (once).
    async fn prepare_cwd(&mut self, cmd: &CommandSpec) -> Result<String, RunError> {
        let id = self
            .id
            .clone()
            .ok_or_else(|| RunError::BadCommand("the container was already removed".into()))?;
        if !self.made.contains(cmd.cwd.trim_end_matches('/')) {
            if let Some(argv) = plan::mkdir_cwd(cmd) {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                self.helper(&id, &argv).await?;
                self.made.insert(cmd.cwd.trim_end_matches('/').to_string());
            }
        }
        Ok(id)
    }

    /// The exec's exit code once it has exited, else `None`.
    async fn exit_code(&self, exec: &str) -> Result<Option<i32>, RunError> {
        let i = self
            .engine
            .docker
            .inspect_exec(exec)
            .await
            .map_err(api("asking whether the command exited"))?;
        if i.running == Some(true) {
            return Ok(None);
        }
        Ok(Some(plan::exit_code(i.exit_code).unwrap_or(-1)))
    }

    async fn await_exit(&self, exec: &str) -> Result<i32, RunError> {
        let deadline = tokio::time::Instant::now() + EXIT_GRACE;
        loop {
            if let Some(c) = self.exit_code(exec).await? {
                return Ok(c);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DockerError::Api {
                    during: "waiting for the command to exit".into(),
                    why: format!("its output ended but the engine still reports it running after {EXIT_GRACE:?}"),
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs a helper command to its end, output discarded; an error if it
    /// could not run or failed.
    async fn helper(&self, id: &str, argv: &[&str]) -> Result<(), RunError> {
        let exec = self
            .engine
            .docker
            .create_exec(id, plan::helper_exec(argv))
            .await
            .map_err(api("preparing the container"))?;
        let mut tail = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .engine
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(api("preparing the container"))?
        {
            while let Some(Ok(o)) = output.next().await {
                tail.extend_from_slice(o.as_ref());
            }
        }
        match self.await_exit(&exec.id).await? {
            0 => Ok(()),
            c => Err(DockerError::Api {
                during: format!("running `{}` in the container", argv.join(" ")),
                why: format!("exit code {c}: {}", String::from_utf8_lossy(&tail).trim()),
            }
            .into()),
        }
    }

    /// Kills and removes the container (once).
    async fn remove(&mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = self.engine.remove_container(&id).await {
                tracing::warn!("could not remove container {id}: {e}");
            }
        }
    }

    /// Removes the container and the workspace.
    pub async fn finish(mut self) {
        self.remove().await;
        if let Some(ws) = self.workspace.take() {
            remove_workspace(ws).await;
        }
    }
}

impl Drop for Container {
    /// A session dropped without `finish` (an error path, a panic) still
    /// removes its container: on a thread of its own, so it works inside
    /// and outside a runtime.
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let engine = self.engine.clone();
            let t = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    let _ = rt.block_on(engine.remove_container(&id));
                }
            });
            let _ = t.join();
        }
    }
}

/// Removes any container of `session` (a start that failed or was stopped
/// half-way).
async fn remove_session(engine: &Engine, session: &str) {
    match engine.labelled_containers_of(session).await {
        Ok(ids) => {
            for id in ids {
                let _ = engine.remove_container(&id).await;
            }
        }
        Err(e) => tracing::warn!("could not list this run's containers: {e}"),
    }
}

fn put(sink: &mut dyn OutputSink, o: bollard::container::LogOutput) {
    match o {
        bollard::container::LogOutput::StdErr { message } => sink.stderr(&message),
        bollard::container::LogOutput::StdOut { message }
        | bollard::container::LogOutput::Console { message } => sink.stdout(&message),
        bollard::container::LogOutput::StdIn { .. } => {}
    }
}

/// A unique id for this session's container name and label: pid, time
/// and a counter.
fn session_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:x}-{}",
        std::process::id(),
        t & 0xffff_ffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Refuses a command that asks for a user: the docker runner has no
/// accounts, and never runs as root a step that asked for one.
pub(crate) fn refuse_run_as(cmd: &CommandSpec) -> Result<(), RunError> {
    match cmd.user {
        Some(_) => Err(RunError::Unsupported {
            runner: RunnerKind::Docker,
            feature: Feature::RunAs,
        }),
        None => Ok(()),
    }
}
