//! Warm start on a live VM (docs/warm-start.md): deciding between restore,
//! save and plain boot, saving a cold-booted guest right after its Hello,
//! and resuming a restored one.
//!
//! Saving: QMP `stop`, `migrate unix:<rundir>/migrate.sock` (the host
//! listens; QEMU's seccomp sandbox forbids `exec:` targets), the stream
//! copied into a store entry while hashed, `cont`. The guest goes on with
//! its run; a failed save only costs the attempt.
//!
//! Restoring: QEMU started with the same command line plus `-incoming
//! fd:3` (the stream opened read-only by vmbuild), `cont` once loaded,
//! then `Resume` (fresh entropy and the host clock) answered by a Hello.

use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use vmbuild_proto::{GuestMessage, HostMessage, Resume, RESUME_ENTROPY_BYTES};
use vmbuild_store::Building;

use super::launch::Launch;
use super::session::Vm;
use super::snapshot::files::{self, Lookup, Meta, STREAM};
use super::snapshot::{key, Saved, Snapshots, MAX_SNAPSHOTS};
use crate::error::RunError;
use crate::stop::Stopper;

/// How long saving may take before it is given up (the run goes on).
const SAVE_LIMIT: Duration = Duration::from_secs(60);
/// The migration bandwidth while saving: 64 GiB/s, i.e. no cap.
const SAVE_BANDWIDTH: u64 = 64 << 30;
/// How long a restored guest may take to answer `Resume` before the
/// restore counts as failed (a working one answers in milliseconds).
const RESUME_LIMIT: Duration = Duration::from_secs(15);

/// What this boot does about snapshots.
pub enum Decision {
    /// Boot; the reason is logged at `-v`.
    Cold(String),
    /// Boot and save the guest at Hello.
    Save(SaveTarget),
    /// Restore this snapshot (the description is kept to save anew if the
    /// restore fails).
    Restore(Saved, String),
}

/// Where a cold boot saves its guest.
pub struct SaveTarget {
    snapshots: Snapshots,
    key: String,
    description: String,
    building: Building,
}

impl SaveTarget {
    /// Starts saving `key` unless another run is saving or using it.
    pub fn begin(snapshots: Snapshots, key: String, description: String) -> Option<SaveTarget> {
        let building = snapshots.begin(&key)?;
        Some(SaveTarget {
            snapshots,
            key,
            description,
            building,
        })
    }
}

/// Why a restore did not give a running guest.
pub enum Failed {
    /// Timeout or Ctrl-C: the run ends, no fallback.
    Stopped(RunError),
    /// Anything else: boot instead.
    Unusable(String),
}

impl From<RunError> for Failed {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Interrupted | RunError::Timeout { .. } => Failed::Stopped(e),
            other => Failed::Unusable(other.to_string()),
        }
    }
}

/// The arguments of `launch`'s cold boot, as text.
fn argv_text(launch: &Launch) -> Vec<String> {
    vmbuild_qemu::build_argv(&launch.plan.qemu)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// Restore, save or just boot, for the VM `launch` describes.
pub fn decide(snapshots: &Snapshots, launch: &Launch) -> Decision {
    let argv = argv_text(launch);
    if let Some(why) = key::unsupported(&argv) {
        return Decision::Cold(why.to_string());
    }
    let cfg = &launch.plan.qemu;
    let description = key::describe(
        &key::file_identity(&cfg.qemu),
        &cfg.version.to_string(),
        &argv,
        &key::file_identity,
    );
    let k = key::key_of(&description);
    let unusable = match snapshots.lookup(&k, &description) {
        Lookup::Found(saved) => return Decision::Restore(saved, description),
        Lookup::Missing => None,
        Lookup::Bad(why) => {
            tracing::debug!("snapshot {k} is unusable ({why}); replacing it");
            snapshots.discard(&k);
            Some(why)
        }
    };
    match (
        SaveTarget::begin(snapshots.clone(), k, description),
        unusable,
    ) {
        (Some(t), _) => Decision::Save(t),
        (None, None) => Decision::Cold("another run is saving this snapshot".into()),
        (None, Some(why)) => Decision::Cold(format!("snapshot unusable ({why}) and in use")),
    }
}

/// Saves `vm`'s guest (just after its Hello) into `target`, and resumes
/// it. Never fails the run: what went wrong is logged at `-v`.
pub async fn save(vm: &mut Vm, target: SaveTarget, listener: &UnixListener, stop: &Stopper) {
    let t0 = Instant::now();
    let key = target.key.clone();
    let outcome = tokio::select! {
        r = tokio::time::timeout(SAVE_LIMIT, save_stream(vm, target, listener)) => {
            r.unwrap_or_else(|_| Err(format!("took longer than {SAVE_LIMIT:?}")))
        }
        _ = stop.fired("while saving a snapshot") => Err("stopped".into()),
    };
    if let Some(qmp) = vm.qmp() {
        if let Err(e) = qmp.cont().await {
            tracing::debug!("resuming the guest after saving: {e}");
        }
    }
    match outcome {
        Ok(bytes) => tracing::debug!(
            "saved snapshot {key}: {bytes} bytes in {} ms",
            t0.elapsed().as_millis()
        ),
        Err(why) => tracing::debug!("snapshot {key} not saved: {why}"),
    }
}

/// Stops the guest, streams its state into the entry, commits it and
/// prunes old entries; returns the stream's size.
async fn save_stream(
    vm: &mut Vm,
    target: SaveTarget,
    listener: &UnixListener,
) -> Result<u64, String> {
    let qmp = vm.qmp().ok_or("no QMP connection")?;
    qmp.stop().await.map_err(|e| e.to_string())?;
    // A local socket: no reason for QEMU's default 128 MiB/s cap.
    qmp.set_migration_bandwidth(SAVE_BANDWIDTH)
        .await
        .map_err(|e| e.to_string())?;
    let sock = super::plan::migrate_socket(vm.rundir());
    let uri = format!("unix:{}", sock.display());
    let path = target.building.dir().join(STREAM);
    let receive = async {
        let (mut conn, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = conn.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            file.write_all(&buf[..n]).await.map_err(|e| e.to_string())?;
            total += n as u64;
        }
        // No fsync: the guest waits for this, and a stream cut short by a
        // crash is caught by its recorded size and checksum at restore.
        file.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((total, hex::encode(hash.finalize())))
    };
    let (received, started) = tokio::join!(receive, qmp.migrate(&uri));
    started.map_err(|e| e.to_string())?;
    let (stream_bytes, sha256) = received?;
    loop {
        let (status, error) = qmp.migration().await.map_err(|e| e.to_string())?;
        match status.as_str() {
            "completed" => break,
            "failed" | "cancelled" => {
                return Err(format!(
                    "QEMU's migration {status}: {}",
                    error.unwrap_or_default()
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let meta = Meta {
        format: key::FORMAT,
        description: target.description,
        stream_bytes,
        sha256,
    };
    files::write_meta(target.building.dir(), &meta).map_err(|e| e.to_string())?;
    target.building.commit().map_err(|e| e.to_string())?;
    let pruned = target.snapshots.prune_to(MAX_SNAPSHOTS);
    if !pruned.is_empty() {
        tracing::debug!(?pruned, "pruned least recently used snapshots");
    }
    Ok(stream_bytes)
}

/// Fresh entropy for a `Resume`, from the host's kernel.
fn host_entropy() -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut buf = vec![0u8; RESUME_ENTROPY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("reading host entropy: {e}"))?;
    Ok(buf)
}

/// The host's wall clock in nanoseconds since the epoch.
fn host_time_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Waits for QEMU to load the state and for `verified` (the stream's
/// checksum, computed meanwhile) to pass, only then resumes the vCPUs, and
/// walks the restored init through `Resume` -> `Hello`.
pub async fn resume(
    vm: &mut Vm,
    stop: &Stopper,
    verified: tokio::task::JoinHandle<Result<(), String>>,
) -> Result<(), Failed> {
    let t0 = Instant::now();
    let loaded = async {
        loop {
            let Some(qmp) = vm.qmp() else {
                return Err(Failed::Unusable("no QMP connection".into()));
            };
            let state = qmp
                .run_state()
                .await
                .map_err(|e| Failed::Unusable(e.to_string()))?;
            match state.as_str() {
                "inmigrate" => tokio::time::sleep(Duration::from_millis(2)).await,
                "paused" | "postmigrate" | "prelaunch" => return Ok(true),
                "running" => return Ok(false),
                other => {
                    return Err(Failed::Unusable(format!(
                        "QEMU is {other} after loading the snapshot"
                    )))
                }
            }
        }
    };
    let loaded = tokio::select! {
        r = loaded => r,
        _ = tokio::time::sleep(RESUME_LIMIT) => Err(Failed::Unusable(format!("QEMU did not load the snapshot within {RESUME_LIMIT:?}"))),
        e = stop.fired("while restoring the VM") => Err(Failed::Stopped(e)),
    };
    let paused = match loaded {
        Ok(p) => p,
        // QEMU exiting (a stream it rejects) shows as a QMP error: its own
        // words are in its log.
        Err(Failed::Unusable(why)) => {
            let log = vm.qemu_log_tail();
            return Err(Failed::Unusable(if log.is_empty() {
                why
            } else {
                format!("{why}; QEMU: {log}")
            }));
        }
        Err(stopped) => return Err(stopped),
    };
    match verified.await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(Failed::Unusable(why)),
        Err(e) => return Err(Failed::Unusable(format!("checking the snapshot: {e}"))),
    }
    if paused {
        let qmp = vm
            .qmp()
            .ok_or_else(|| Failed::Unusable("no QMP connection".into()))?;
        qmp.cont()
            .await
            .map_err(|e| Failed::Unusable(e.to_string()))?;
    }
    let msg = HostMessage::Resume(Resume {
        entropy: host_entropy().map_err(Failed::Unusable)?,
        unix_time_ns: host_time_ns(),
    });
    vm.send(&msg, "sending Resume to the restored guest")
        .await
        .map_err(Failed::from)?;
    let deadline = Some(("the restored guest's answer to Resume", RESUME_LIMIT));
    match vm
        .next_non_log(stop, "while restoring the VM", deadline)
        .await
        .map_err(Failed::from)?
    {
        GuestMessage::Hello(h) if h.resumed => {
            vm.hello_arrived(h);
            vm.timings.restored = true;
        }
        other => {
            return Err(Failed::Unusable(format!(
                "the restored guest answered Resume with {other:?}"
            )))
        }
    }
    tracing::debug!("restored in {} ms", t0.elapsed().as_millis());
    Ok(())
}
