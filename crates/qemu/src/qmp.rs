//! A QMP client over the `qapi` crate, on a socket QEMU connected to.
//!
//! The host listens on the QMP socket and QEMU connects at startup
//! (`-chardev socket,id=qmp,path=...` without `server=on`), so the client is
//! built from an accepted stream. qapi's `QmpStreamTokio::open` takes any
//! `AsyncRead + AsyncWrite`; a background task drives its reader, routing
//! command responses back to callers and events into a channel.

use futures::StreamExt;
use qapi::qmp;
use qapi::{Enum, ExecuteError};
use tokio::io::WriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::QemuError;

type Writer = qapi::futures::QmpStreamTokio<WriteHalf<UnixStream>>;

/// The QMP events vmbuild acts on; everything else is `Other` by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEvent {
    /// The VM shut down; `guest` is true when the guest asked for it,
    /// `reason` is QEMU's cause name (e.g. `guest-shutdown`, `host-qmp-quit`).
    Shutdown { guest: bool, reason: String },
    /// The guest reported a panic (pvpanic); `action` is what QEMU does next.
    GuestPanicked { action: String },
    /// Any other event, by its QMP name (e.g. `STOP`, `RESET`).
    Other(String),
}

impl From<qmp::Event> for QmpEvent {
    fn from(e: qmp::Event) -> Self {
        match e {
            qmp::Event::SHUTDOWN { data, .. } => QmpEvent::Shutdown {
                guest: data.guest,
                reason: data.reason.name().to_string(),
            },
            qmp::Event::GUEST_PANICKED { data, .. } => QmpEvent::GuestPanicked {
                action: data.action.name().to_string(),
            },
            other => QmpEvent::Other(
                serde_json::to_value(&other)
                    .ok()
                    .and_then(|v| v.get("event").and_then(|n| n.as_str()).map(str::to_string))
                    .unwrap_or_else(|| "unknown".to_string()),
            ),
        }
    }
}

/// A negotiated QMP connection. Dropping it closes the connection.
pub struct Qmp {
    service: qapi::futures::QapiService<Writer>,
    events: mpsc::UnboundedReceiver<QmpEvent>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").finish_non_exhaustive()
    }
}

/// Same as [`Qmp::accept`].
pub async fn accept(listener: &UnixListener) -> Result<Qmp, QemuError> {
    Qmp::accept(listener).await
}

impl Qmp {
    /// Accepts QEMU's connection on `listener` and negotiates capabilities.
    /// Waits as long as QEMU takes to connect: race it against the QEMU
    /// process exiting (and a timeout) in the caller.
    pub async fn accept(listener: &UnixListener) -> Result<Qmp, QemuError> {
        let (stream, _) = listener.accept().await.map_err(QemuError::QmpAccept)?;
        Qmp::from_stream(stream).await
    }

    /// Reads QEMU's greeting on an accepted `stream` and negotiates capabilities.
    pub async fn from_stream(stream: UnixStream) -> Result<Self, QemuError> {
        let negotiation = qapi::futures::QmpStreamTokio::open(stream)
            .await
            .map_err(QemuError::QmpHandshake)?;
        let v = &negotiation.capabilities.QMP.version.qemu;
        tracing::debug!("QMP greeting from QEMU {}.{}.{}", v.major, v.minor, v.micro);
        let stream = negotiation
            .negotiate()
            .await
            .map_err(QemuError::QmpHandshake)?;
        let (service, mut raw_events) = stream.into_parts();
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            // Polling the event stream also delivers command responses.
            while let Some(item) = raw_events.next().await {
                match item {
                    Ok(e) => {
                        let e = QmpEvent::from(e);
                        tracing::debug!(?e, "QMP event");
                        let _ = tx.send(e);
                    }
                    Err(e) => {
                        tracing::debug!("QMP stream error: {e}");
                        break;
                    }
                }
            }
        });
        Ok(Qmp {
            service,
            events,
            reader,
        })
    }

    async fn run<C>(&self, name: &'static str, cmd: C) -> Result<C::Ok, QemuError>
    where
        C: qapi::Command + qmp::QmpCommand,
    {
        self.service
            .execute(cmd)
            .await
            .map_err(|source| QemuError::QmpCommand {
                command: name,
                source,
            })
    }

    /// `query-status`: whether the VM is running (false when paused or shut down).
    pub async fn query_status(&self) -> Result<bool, QemuError> {
        let info = self.run("query-status", qmp::query_status {}).await?;
        Ok(info.running)
    }

    /// The VM's run state by QMP's name (`running`, `paused`, `inmigrate`,
    /// `postmigrate`, `shutdown` ...), from `query-status`.
    pub async fn run_state(&self) -> Result<String, QemuError> {
        let info = self.run("query-status", qmp::query_status {}).await?;
        Ok(info.status.name().to_string())
    }

    /// `stop`: pauses the vCPUs.
    pub async fn stop(&self) -> Result<(), QemuError> {
        self.run("stop", qmp::stop {}).await.map(|_| ())
    }

    /// `cont`: resumes the vCPUs (also after an outgoing migration
    /// completed, or an incoming one loaded a paused state).
    pub async fn cont(&self) -> Result<(), QemuError> {
        self.run("cont", qmp::cont {}).await.map(|_| ())
    }

    /// `migrate-set-parameters max-bandwidth=BYTES_PER_SEC`: QEMU caps a
    /// migration at 128 MiB/s by default, which halves the speed of saving
    /// a stopped guest to a local socket (measured: 0.55 s vs 0.26 s for
    /// 90 MB).
    pub async fn set_migration_bandwidth(&self, bytes_per_sec: u64) -> Result<(), QemuError> {
        let params = qmp::MigrateSetParameters {
            max_bandwidth: Some(bytes_per_sec),
            ..Default::default()
        };
        self.run(
            "migrate-set-parameters",
            qmp::migrate_set_parameters(params),
        )
        .await
        .map(|_| ())
    }

    /// `migrate uri=URI`: starts sending the VM's state (e.g. `unix:PATH`,
    /// where the caller listens). Returns once started; poll
    /// [`Qmp::migration`] for the outcome.
    pub async fn migrate(&self, uri: &str) -> Result<(), QemuError> {
        let cmd = qmp::migrate {
            uri: Some(uri.to_string()),
            channels: None,
            detach: None,
            resume: None,
        };
        self.run("migrate", cmd).await.map(|_| ())
    }

    /// `query-migrate`: the migration's status by QMP's name (`active`,
    /// `completed`, `failed` ...; `none` before any) and QEMU's error text
    /// when it failed.
    pub async fn migration(&self) -> Result<(String, Option<String>), QemuError> {
        let info = self.run("query-migrate", qmp::query_migrate {}).await?;
        let status = info
            .status
            .map_or_else(|| "none".to_string(), |s| s.name().to_string());
        Ok((status, info.error_desc))
    }

    /// `quit`: QEMU exits at once. QEMU closing the connection before the
    /// reply arrives counts as success.
    pub async fn quit(&self) -> Result<(), QemuError> {
        match self.run("quit", qmp::quit {}).await {
            Ok(_) => Ok(()),
            Err(QemuError::QmpCommand {
                source: ExecuteError::Io(e),
                ..
            }) if is_disconnect(&e) => {
                tracing::debug!("QEMU closed QMP while quitting: {e}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `system_powerdown`: presses the ACPI power button (the guest decides).
    pub async fn system_powerdown(&self) -> Result<(), QemuError> {
        self.run("system_powerdown", qmp::system_powerdown {})
            .await
            .map(|_| ())
    }

    /// The next event; `None` once QEMU has closed the connection and all
    /// received events were taken. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<QmpEvent> {
        self.events.recv().await
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | BrokenPipe | ConnectionReset | ConnectionAborted
    )
}
