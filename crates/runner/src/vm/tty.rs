//! An interactive shell in the guest (`--interactive`): the command runs on
//! a guest pty (`RunTty`), the user's terminal is in raw mode meanwhile,
//! typed bytes go to the guest as `Stdin`, window changes as `Resize`, and
//! the guest's output is written to stdout and nowhere else.

use vmbuild_proto::{CommandSpec, ExitInfo, GuestMessage, HostMessage, TtyRun, STDIN_CHUNK};

use super::diagnose;
use super::session::Vm;
use crate::error::RunError;
use crate::stop::Stopper;
use crate::terminal::{self, Input, RawMode, Resizes};

/// What woke the relay.
enum Event {
    Guest(Result<GuestMessage, RunError>),
    Typed(Vec<u8>),
    Resized(vmbuild_proto::WindowSize),
}

impl Vm {
    /// Runs `cmd` on a pseudo-terminal in the guest, attached to the
    /// user's terminal (stdin must be one), until it exits; its status.
    /// The terminal is restored however this ends. `stop` still ends it
    /// (QEMU dying, SIGTERM, or a deadline if it has one).
    pub async fn run_tty(
        &mut self,
        cmd: &CommandSpec,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        let raw = RawMode::enter()?;
        let mut input = Input::start()?;
        let mut resizes = Resizes::watch();
        let req = TtyRun {
            command: cmd.clone(),
            size: terminal::window_size(),
        };
        self.send(&HostMessage::RunTty(req), "sending the shell to the guest")
            .await?;
        let result = loop {
            let event = tokio::select! {
                m = self.next_message(stop, "in the interactive shell", None) => Event::Guest(m),
                b = input.recv() => Event::Typed(b),
                s = resizes.next() => Event::Resized(s),
            };
            match event {
                Event::Guest(Err(e)) => break Err(e),
                Event::Guest(Ok(GuestMessage::Stdout(b) | GuestMessage::Stderr(b))) => {
                    terminal::write_out(&b)
                }
                Event::Guest(Ok(GuestMessage::Log(l))) => tracing::debug!(guest = %l),
                Event::Guest(Ok(GuestMessage::Exited(e))) => break Ok(e),
                Event::Guest(Ok(other)) => {
                    break Err(diagnose::protocol_error(
                        "shell output or exit status",
                        &other,
                    ))
                }
                Event::Typed(b) => {
                    for chunk in b.chunks(STDIN_CHUNK) {
                        self.send(
                            &HostMessage::Stdin(chunk.to_vec()),
                            "sending typed input to the guest",
                        )
                        .await?;
                    }
                }
                Event::Resized(s) => {
                    self.send(
                        &HostMessage::Resize(s),
                        "sending the window size to the guest",
                    )
                    .await?
                }
            }
        };
        drop((input, raw));
        result
    }
}
