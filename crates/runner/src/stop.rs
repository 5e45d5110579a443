//! When to give up: a deadline (`--timeout`) and an interrupt flag (Ctrl-C).

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::RunError;

/// Shared by every await point of a run; `fired` resolves with the error to
/// return when the deadline passes or an interrupt arrives.
#[derive(Debug, Clone)]
pub struct Stopper {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    interrupt: watch::Receiver<bool>,
}

impl Stopper {
    pub fn new(timeout: Option<Duration>, interrupt: watch::Receiver<bool>) -> Self {
        Self { timeout, deadline: timeout.map(|t| Instant::now() + t), interrupt }
    }

    /// A stopper that never fires (tests, benchmarks).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for the life of the program so `changed()`
        // never reports a closed channel.
        std::mem::forget(tx);
        Self::new(None, rx)
    }

    /// Waits until the run must stop; `during` names the phase for the message.
    pub async fn fired(&self, during: &'static str) -> RunError {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let timeout = self.timeout.unwrap_or_default();
        let mut interrupt_rx = self.interrupt.clone();
        tokio::select! {
            _ = deadline => RunError::Timeout { after: timeout, during },
            _ = async move {
                loop {
                    if *interrupt_rx.borrow_and_update() { return; }
                    if interrupt_rx.changed().await.is_err() { std::future::pending::<()>().await; }
                }
            } => RunError::Interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadline_fires_as_timeout() {
        let (_tx, rx) = watch::channel(false);
        let s = Stopper::new(Some(Duration::from_secs(5)), rx);
        let e = s.fired("running the command").await;
        assert!(matches!(e, RunError::Timeout { after, .. } if after == Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn interrupt_fires_as_interrupted() {
        let (tx, rx) = watch::channel(false);
        let s = Stopper::new(None, rx);
        tokio::spawn(async move { tx.send(true).unwrap(); tokio::time::sleep(Duration::from_secs(60)).await });
        assert!(matches!(s.fired("booting").await, RunError::Interrupted));
    }

    #[tokio::test(start_paused = true)]
    async fn never_does_not_fire() {
        let s = Stopper::never();
        let r = tokio::time::timeout(Duration::from_secs(3600), s.fired("x")).await;
        assert!(r.is_err());
    }
}
