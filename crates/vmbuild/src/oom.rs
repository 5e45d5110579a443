//! Saying that the guest ran out of memory when its OOM killer killed
//! something during a command (`run`) or a build step.

use vmbuild_proto::OomKill;
use vmbuild_runner::pipeline::{BuildObserver, Step, StepResult, Stream};

/// Where the memory size came from, for the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryFrom {
    /// `vmbuild run`: only `--memory`.
    RunFlag,
    /// `vmbuild build`: `--memory` or the pipeline's `resources.memory`.
    BuildConfig,
}

/// `the guest ran out of memory: the kernel's OOM killer killed tr (pid
/// 123) [--memory 256 MiB]; raise --memory ...` (without the `vmbuild: `
/// prefix).
pub fn message(oom: &OomKill, memory_mib: u32, from: MemoryFrom) -> String {
    let raise = match from {
        MemoryFrom::RunFlag => "raise --memory",
        MemoryFrom::BuildConfig => "raise --memory (or the pipeline's resources.memory)",
    };
    format!(
        "the guest ran out of memory: the kernel's OOM killer killed {} [--memory {memory_mib} MiB]; {raise}",
        oom.who()
    )
}

/// Adds the out-of-memory note after each step during which the OOM killer
/// ran, so the step list shows it under the step (whatever its exit code).
pub struct OomNotes<'a> {
    pub inner: &'a mut dyn BuildObserver,
    /// The VM's memory; `None` for the bubblewrap runner (no VM, no report).
    pub memory_mib: Option<u32>,
    /// Which flags set it, for the advice.
    pub from: MemoryFrom,
}

impl BuildObserver for OomNotes<'_> {
    fn step_started(&mut self, index: usize, total: usize, step: &Step) {
        self.inner.step_started(index, total, step);
    }
    fn output(&mut self, index: usize, stream: Stream, bytes: &[u8]) {
        self.inner.output(index, stream, bytes);
    }
    fn step_finished(&mut self, index: usize, step: &Step, result: &StepResult) {
        self.inner.step_finished(index, step, result);
        if let (Some(oom), Some(mib)) = (&result.exit.oom, self.memory_mib) {
            let text = message(oom, mib, self.from);
            self.inner.note(&format!("step '{}': {text}", step.name));
        }
    }
    fn note(&mut self, text: &str) {
        self.inner.note(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmbuild_proto::OomVictim;

    #[test]
    fn says_who_how_much_and_what_to_do() {
        let oom = OomKill {
            kills: 1,
            victims: vec![OomVictim {
                pid: 123,
                name: "tr".into(),
            }],
        };
        assert_eq!(
            message(&oom, 256, MemoryFrom::RunFlag),
            "the guest ran out of memory: the kernel's OOM killer killed tr (pid 123) \
             [--memory 256 MiB]; raise --memory"
        );
        assert!(message(&oom, 512, MemoryFrom::BuildConfig)
            .ends_with("[--memory 512 MiB]; raise --memory (or the pipeline's resources.memory)"));
    }
}
