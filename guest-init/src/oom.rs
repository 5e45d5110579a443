//! Noticing the kernel's OOM killer during a command: the `oom_kill` count
//! of `/proc/vmstat` before and after, and who it killed from the kernel
//! log (`/dev/kmsg`: "Out of memory: Killed process 123 (tr) ...").

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use vmbuild_proto::{OomKill, OomVictim};

/// How long to wait for the kernel log lines of kills already counted.
const LOG_WAIT: Duration = Duration::from_millis(200);

/// The `oom_kill` counter from `/proc/vmstat` text.
pub fn parse_oom_kill_count(vmstat: &str) -> Option<u64> {
    vmstat.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "oom_kill").then(|| w.next()?.parse().ok())?
    })
}

/// The victim named by one kernel log record (`/dev/kmsg` format
/// `PRIO,SEQ,TS,FLAGS;TEXT`, or the bare text), when it is an OOM kill:
/// "Out of memory: Killed process 123 (tr) total-vm:...", also the memory
/// cgroup form "Memory cgroup out of memory: Killed process ...".
pub fn parse_kill_line(record: &str) -> Option<OomVictim> {
    let text = record.split_once(';').map_or(record, |(_, t)| t);
    let (_, rest) = text.split_once("Killed process ")?;
    let (pid, rest) = rest.split_once(" (")?;
    let pid = pid.parse().ok()?;
    // The name may itself hold ") "; the kernel follows it with " total-vm".
    let name = match rest.find(") total-vm") {
        Some(end) => &rest[..end],
        None => &rest[..rest.rfind(')')?],
    };
    Some(OomVictim {
        pid,
        name: name.to_string(),
    })
}

/// Watches one command: created before it starts, [`OomWatch::finish`]ed
/// after it ended.
pub struct OomWatch {
    before: Option<u64>,
    kmsg: Option<File>,
}

fn read_count() -> Option<u64> {
    std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| parse_oom_kill_count(&s))
}

impl OomWatch {
    /// Notes the counter and opens the kernel log at its end. Either may be
    /// missing (no /proc, no /dev/kmsg): then nothing is reported.
    pub fn start() -> Self {
        let kmsg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/kmsg")
            .and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f))
            .ok();
        Self {
            before: read_count(),
            kmsg,
        }
    }

    /// The OOM kills since [`OomWatch::start`], if any.
    pub fn finish(mut self) -> Option<OomKill> {
        let kills = read_count()?.checked_sub(self.before?)?;
        if kills == 0 {
            return None;
        }
        let mut victims = Vec::new();
        let t0 = Instant::now();
        while let Some(f) = self.kmsg.as_mut() {
            victims.extend(read_records(f).iter().filter_map(|r| parse_kill_line(r)));
            if victims.len() as u64 >= kills || t0.elapsed() > LOG_WAIT {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(OomKill { kills, victims })
    }
}

/// Every record available now (one per read); skips records the ring
/// buffer overwrote (EPIPE).
fn read_records(f: &mut File) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmstat_counter() {
        let text = "nr_free_pages 1000\noom_kill 3\nnr_oom_kill_x 9\n";
        assert_eq!(parse_oom_kill_count(text), Some(3));
        assert_eq!(parse_oom_kill_count("oom_kill_other 1\n"), None);
        assert_eq!(parse_oom_kill_count("oom_kill x\n"), None);
        assert_eq!(parse_oom_kill_count(""), None);
    }

    #[test]
    fn kmsg_kill_lines() {
        let rec = "3,812,12100600,-;Out of memory: Killed process 123 (tr) total-vm:612340kB, \
                   anon-rss:401232kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:900kB oom_score_adj:0";
        assert_eq!(
            parse_kill_line(rec),
            Some(OomVictim {
                pid: 123,
                name: "tr".into()
            })
        );
        let odd = "Memory cgroup out of memory: Killed process 9 (a) b) total-vm:1kB";
        assert_eq!(parse_kill_line(odd).unwrap().name, "a) b");
        let bare = "Out of memory: Killed process 7 (cc1plus)";
        assert_eq!(parse_kill_line(bare).unwrap().name, "cc1plus");
        for not in [
            "4,1,1,-;oom-kill:constraint=CONSTRAINT_NONE,task=tr,pid=123",
            "Out of memory: Killed process x (tr)",
            "Out of memory: Killed process 5 tr",
            "",
        ] {
            assert_eq!(parse_kill_line(not), None, "{not}");
        }
    }
}
