//! Finding the members of a process group (Linux `/proc`).
//!
//! Both virtiofsd flavours fork once their sandbox is set up: the leader
//! waits for a worker. Killing the whole group at once lets the leader die
//! first, so the worker is reparented to PID 1, which in many containers
//! never reaps it. Signalling the other members first lets the leader reap
//! its worker and exit by itself.

use rustix::process::Pid;

/// Live (non-zombie) processes in group `pgid`, other than `pgid` itself.
/// Empty where `/proc` is not available.
pub(crate) fn other_group_members(pgid: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != pgid.as_raw_pid())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|(state, pgrp)| pgrp == pgid.as_raw_pid() && state != 'Z')
        })
        .filter_map(Pid::from_raw)
        .collect()
}

/// True when a member of group `pgid` other than its leader lives in another
/// PID namespace than the leader: the sandboxed worker of a virtiofsd using
/// the namespace sandbox (short-lived helpers it forks before that stay in
/// the leader's namespace).
pub(crate) fn has_member_in_new_pid_ns(pgid: Pid) -> bool {
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(leader_ns) = ns(pgid.as_raw_pid()) else {
        return false;
    };
    other_group_members(pgid)
        .iter()
        .any(|m| ns(m.as_raw_pid()).is_some_and(|n| n != leader_ns))
}

/// `(state, pgrp)` from a `/proc/PID/stat` line. The command name may hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(line: &str) -> Option<(char, i32)> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_with_odd_names() {
        assert_eq!(
            parse_stat("20310 (virtiofsd) S 20307 20307 20307 0 -1"),
            Some(('S', 20307))
        );
        assert_eq!(parse_stat("5 (a) b) (c) Z 1 42 42 0"), Some(('Z', 42)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_a_child_in_its_own_group() {
        use std::os::unix::process::CommandExt;
        let mut leader = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("sleep 30 & wait")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(leader.id() as i32).unwrap();
        let mut members = Vec::new();
        for _ in 0..200 {
            members = other_group_members(pgid);
            if !members.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        let _ = leader.wait();
        assert_eq!(members.len(), 1, "{members:?}");
        assert!(!members.contains(&pgid));
    }

    #[test]
    fn a_plain_child_is_not_in_a_new_pid_namespace() {
        use std::os::unix::process::CommandExt;
        let mut leader = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("sleep 30 & wait")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(leader.id() as i32).unwrap();
        while other_group_members(pgid).is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let found = has_member_in_new_pid_ns(pgid);
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        let _ = leader.wait();
        assert!(!found);
    }
}
