//! When to give up: a deadline (`--timeout`) and an interrupt flag (Ctrl-C).

use std::sync::{Arc, Mutex};
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
    /// How far the deadline was moved later ([`Stopper::push_back`]),
    /// shared by every clone.
    pushed: Arc<Mutex<Duration>>,
    interrupt: watch::Receiver<bool>,
}

impl Stopper {
    pub fn new(timeout: Option<Duration>, interrupt: watch::Receiver<bool>) -> Self {
        Self {
            timeout,
            deadline: timeout.map(|t| Instant::now() + t),
            pushed: Arc::default(),
            interrupt,
        }
    }

    /// The deadline as moved by [`Stopper::push_back`].
    fn effective_deadline(&self) -> Option<Instant> {
        let pushed = *self.pushed.lock().unwrap_or_else(|p| p.into_inner());
        self.deadline.map(|d| d + pushed)
    }

    /// Moves the deadline `by` later, for this stopper and every clone of
    /// it: time the user spent in an interactive shell (`--interactive`)
    /// does not count against `--timeout`. A [`Stopper::fired`] already
    /// waiting keeps the deadline it started with.
    pub fn push_back(&self, by: Duration) {
        *self.pushed.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    /// The same interrupt with no deadline (an interactive shell is not
    /// cut off mid-typing by the build's timeout).
    pub fn without_deadline(&self) -> Stopper {
        Stopper {
            timeout: None,
            deadline: None,
            pushed: Arc::default(),
            interrupt: self.interrupt.clone(),
        }
    }

    /// A stopper that never fires (tests, benchmarks).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for the life of the program so `changed()`
        // never reports a closed channel.
        std::mem::forget(tx);
        Self::new(None, rx)
    }

    /// A stopper for one step: the same interrupt, and the earlier of the
    /// current deadline and `timeout` from now (reported as that timeout).
    pub fn narrowed(&self, timeout: Option<Duration>) -> Stopper {
        let Some(t) = timeout else {
            return self.clone();
        };
        let step_deadline = Instant::now() + t;
        match self.effective_deadline() {
            Some(d) if d <= step_deadline => self.clone(),
            _ => Stopper {
                timeout: Some(t),
                deadline: Some(step_deadline),
                pushed: Arc::default(),
                interrupt: self.interrupt.clone(),
            },
        }
    }

    /// Waits until the run must stop; `during` names the phase for the message.
    pub async fn fired(&self, during: &str) -> RunError {
        let deadline = async {
            match self.effective_deadline() {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let timeout = self.timeout.unwrap_or_default();
        let mut interrupt_rx = self.interrupt.clone();
        tokio::select! {
            _ = deadline => RunError::Timeout { after: timeout, during: during.to_string() },
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
        tokio::spawn(async move {
            tx.send(true).unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await
        });
        assert!(matches!(s.fired("booting").await, RunError::Interrupted));
    }

    #[tokio::test(start_paused = true)]
    async fn narrowed_fires_at_the_earlier_deadline_with_its_own_duration() {
        let (_tx, rx) = watch::channel(false);
        let build = Stopper::new(Some(Duration::from_secs(100)), rx);
        let step = build.narrowed(Some(Duration::from_secs(3)));
        let t0 = Instant::now();
        assert!(
            matches!(step.fired("x").await, RunError::Timeout { after, .. } if after == Duration::from_secs(3))
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
        // A step allowed longer than what is left of the build keeps the build's deadline.
        let late = build.narrowed(Some(Duration::from_secs(1000)));
        assert!(
            matches!(late.fired("x").await, RunError::Timeout { after, .. } if after == Duration::from_secs(100))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn push_back_moves_the_deadline_of_every_clone_and_no_deadline_never_times_out() {
        let (_tx, rx) = watch::channel(false);
        let build = Stopper::new(Some(Duration::from_secs(10)), rx);
        let clone = build.narrowed(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        let shell = build.without_deadline();
        assert!(
            tokio::time::timeout(Duration::from_secs(30), shell.fired("x"))
                .await
                .is_err()
        );
        build.push_back(Duration::from_secs(30));
        assert!(
            matches!(clone.fired("x").await, RunError::Timeout { after, .. } if after == Duration::from_secs(10))
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(40));
        // A step stopper made after a push gets its own full timeout.
        build.push_back(Duration::from_secs(100));
        let step = build.narrowed(Some(Duration::from_secs(5)));
        let t1 = Instant::now();
        step.fired("x").await;
        assert_eq!(t1.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn without_deadline_keeps_the_interrupt() {
        let (tx, rx) = watch::channel(false);
        let s = Stopper::new(Some(Duration::from_secs(1)), rx).without_deadline();
        tx.send(true).unwrap();
        assert!(matches!(s.fired("x").await, RunError::Interrupted));
    }

    #[tokio::test(start_paused = true)]
    async fn never_does_not_fire() {
        let s = Stopper::never();
        let r = tokio::time::timeout(Duration::from_secs(3600), s.fired("x")).await;
        assert!(r.is_err());
    }
}
