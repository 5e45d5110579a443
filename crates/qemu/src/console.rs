//! Reading the guest serial console after the fact. Pure.

use std::fmt;

/// Why the guest died, as told by its console. Each carries the console line
/// that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The kernel panicked for another reason.
    KernelPanic(String),
    /// PID 1 (the vmbuild guest init) exited or was killed.
    InitCrash(String),
    /// The guest ran out of memory (the OOM killer ran, or the kernel
    /// panicked for lack of memory).
    OutOfMemory(String),
}

impl GuestFailure {
    /// The console line the failure was recognised by.
    pub fn line(&self) -> &str {
        match self {
            GuestFailure::KernelPanic(l)
            | GuestFailure::InitCrash(l)
            | GuestFailure::OutOfMemory(l) => l,
        }
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::KernelPanic(l) => write!(f, "guest kernel panic: {l}"),
            GuestFailure::InitCrash(l) => {
                write!(f, "guest init crashed: {l} (see the console log; rebuild the initramfs if it is stale)")
            }
            GuestFailure::OutOfMemory(l) => {
                write!(f, "guest ran out of memory: {l} (give the VM more memory)")
            }
        }
    }
}

/// The last `lines` lines of `text` (CRLF tolerated), joined with `\n`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

const OOM_MARKERS: [&str; 4] = [
    "Out of memory: Killed process",
    "oom-kill:",
    "Out of memory and no killable processes",
    "System is deadlocked on memory",
];
const INIT_MARKER: &str = "Attempted to kill init";
const PANIC_MARKER: &str = "Kernel panic - not syncing";

/// Recognises a guest failure in a console log, most specific first:
/// out of memory (whatever followed it is a consequence), then a crash of
/// PID 1 (its message also says "Kernel panic", so it must win over that),
/// then any other kernel panic. `None` when the console shows none of them.
///
/// Meant for the console of a VM that ended without a clean result: an OOM
/// kill of a build process on an otherwise healthy VM also matches.
pub fn classify(console: &str) -> Option<GuestFailure> {
    let find = |needle: &str| {
        console
            .lines()
            .find(|l| l.contains(needle))
            .map(|l| l.trim().to_string())
    };
    if let Some(l) = OOM_MARKERS.iter().find_map(|m| find(m)) {
        return Some(GuestFailure::OutOfMemory(l));
    }
    if let Some(l) = find(INIT_MARKER) {
        return Some(GuestFailure::InitCrash(l));
    }
    find(PANIC_MARKER).map(GuestFailure::KernelPanic)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "\
[    0.292721] PCI: Fatal: No config space access function found\r
[    1.322940] reboot: Power down\r
";

    const NO_ROOT: &str = "\
[    1.101010] Freeing unused kernel image (initmem) memory: 2824K\r
[    1.203333] VFS: Cannot open root device \"(null)\" or unknown-block(0,0): error -6\r
[    1.203400] Please append a correct \"root=\" boot option; here are the available partitions:\r
[    1.203500] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r
[    1.203600] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2\r
[    1.203700] Kernel Offset: disabled\r
";

    const INIT_EXIT: &str = "\
[    1.402000] Run /init as init process\r
[    1.512000] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r
[    1.512100] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2\r
[    1.512200] Call Trace:\r
";

    const INIT_SEGV: &str = "\
[    2.000000] init[1]: segfault at 0 ip 0000000000401000 sp 00007ffd0 error 4 in init[401000+1000]\r
[    2.000100] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\r
";

    const OOM_KILL: &str = "\
[   12.100000] cc1plus invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0\r
[   12.100100] Mem-Info:\r
[   12.100500] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=cc1plus,pid=812,uid=0\r
[   12.100600] Out of memory: Killed process 812 (cc1plus) total-vm:612340kB, anon-rss:401232kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:900kB oom_score_adj:0\r
";

    const OOM_THEN_INIT_KILLED: &str = "\
[    9.000000] Out of memory: Killed process 1 (init) total-vm:2048kB, anon-rss:100kB\r
[    9.000100] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\r
";

    const OOM_PANIC: &str = "\
[    5.000000] Out of memory and no killable processes...\r
[    5.000100] Kernel panic - not syncing: System is deadlocked on memory\r
";

    #[test]
    fn clean_boot_is_not_a_failure() {
        assert_eq!(classify(CLEAN), None);
        assert_eq!(classify(""), None);
    }

    #[test]
    fn plain_kernel_panic() {
        assert_eq!(
            classify(NO_ROOT),
            Some(GuestFailure::KernelPanic(
                "[    1.203500] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)".into()
            ))
        );
    }

    #[test]
    fn init_crash_wins_over_kernel_panic() {
        let f = classify(INIT_EXIT);
        assert!(
            matches!(&f, Some(GuestFailure::InitCrash(l)) if l.ends_with("exitcode=0x00000100")),
            "{f:?}"
        );
        assert!(matches!(
            classify(INIT_SEGV),
            Some(GuestFailure::InitCrash(_))
        ));
    }

    #[test]
    fn oom_kill_is_out_of_memory() {
        let f = classify(OOM_KILL);
        assert!(
            matches!(&f, Some(GuestFailure::OutOfMemory(l)) if l.contains("Out of memory: Killed process 812")),
            "{f:?}"
        );
        let only_oom_kill = "[ 1.0] oom-kill:constraint=CONSTRAINT_NONE,task=ld,pid=9\n";
        assert!(matches!(
            classify(only_oom_kill),
            Some(GuestFailure::OutOfMemory(_))
        ));
    }

    #[test]
    fn oom_wins_over_what_it_caused() {
        assert!(matches!(
            classify(OOM_THEN_INIT_KILLED),
            Some(GuestFailure::OutOfMemory(_))
        ));
        assert!(matches!(
            classify(OOM_PANIC),
            Some(GuestFailure::OutOfMemory(_))
        ));
    }

    #[test]
    fn failure_display_says_what_to_do() {
        let f = GuestFailure::OutOfMemory("x".into());
        assert!(f.to_string().contains("more memory"));
        assert_eq!(f.line(), "x");
    }

    #[test]
    fn tail_returns_last_lines() {
        assert_eq!(tail(NO_ROOT, 2), "[    1.203600] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2\n[    1.203700] Kernel Offset: disabled");
        assert_eq!(tail("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(tail("a\nb\nc\n", 1), "c");
        assert_eq!(tail("a\nb", 0), "");
        assert_eq!(tail("", 3), "");
    }
}
