//! A cgroup per VM: which hierarchy the host has (v1 or v2, from
//! `/proc/self/mountinfo`), and the directories, limit files and
//! `cgroup.procs` files of one VM's cgroup — all pure, so v2 is tested as
//! data on a v1 host and the other way round. [`live`] creates and
//! removes them.

use std::path::{Path, PathBuf};

pub mod live;

/// The directory under each hierarchy's root that holds the VMs' cgroups.
/// It stays (other runs may be using it); each VM's own cgroup goes.
pub const PARENT: &str = "vmbuild";

/// Where the memory and pids controllers are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1: each controller its own hierarchy.
    V1 { memory: PathBuf, pids: PathBuf },
    /// cgroup v2: one unified hierarchy with both controllers.
    V2 { root: PathBuf },
}

impl CgroupLayout {
    /// `v1` or `v2`.
    pub fn version(&self) -> &'static str {
        match self {
            CgroupLayout::V1 { .. } => "v1",
            CgroupLayout::V2 { .. } => "v2",
        }
    }
}

/// Finds the memory and pids controllers in `mountinfo` (the text of
/// `/proc/self/mountinfo`). v1 wins when both controllers are bound to v1
/// hierarchies (a "hybrid" host also mounts an empty v2 tree);
/// `v2_controllers` reads a v2 mount's `cgroup.controllers`, which must list
/// both. `None`: no usable hierarchy.
pub fn detect(
    mountinfo: &str,
    v2_controllers: impl Fn(&Path) -> Option<String>,
) -> Option<CgroupLayout> {
    let mut memory = None;
    let mut pids = None;
    let mut v2 = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let superopts = r.nth(1).unwrap_or("");
        let mountpoint = PathBuf::from(unescape(mountpoint));
        match fstype {
            "cgroup" => {
                let opts: Vec<&str> = superopts.split(',').collect();
                if opts.contains(&"memory") {
                    memory.get_or_insert(mountpoint.clone());
                }
                if opts.contains(&"pids") {
                    pids.get_or_insert(mountpoint);
                }
            }
            "cgroup2" if v2.is_none() => v2 = Some(mountpoint),
            _ => {}
        }
    }
    if let (Some(memory), Some(pids)) = (memory, pids) {
        return Some(CgroupLayout::V1 { memory, pids });
    }
    let root = v2?;
    let ctl = v2_controllers(&root)?;
    let has = |c: &str| ctl.split_whitespace().any(|x| x == c);
    (has("memory") && has("pids")).then_some(CgroupLayout::V2 { root })
}

/// mountinfo escapes blanks, tabs, newlines and backslashes as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One VM's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// QEMU's memory: the guest's plus QEMU's own overhead.
    pub memory_bytes: u64,
    /// Processes and threads in the cgroup.
    pub pids: u32,
}

/// A file write that sets up a VM's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: PathBuf,
    pub value: String,
    /// Some files exist only with a kernel option (swap accounting): a
    /// missing optional file is skipped.
    pub optional: bool,
}

/// What creating one VM's cgroup does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlan {
    pub version: &'static str,
    /// Made if missing (the shared [`PARENT`] first).
    pub mkdirs: Vec<PathBuf>,
    pub writes: Vec<Write>,
    /// The files QEMU's child side writes `0` to, to join.
    pub procs: Vec<PathBuf>,
    /// The VM's own directories, removed after the run (deepest first).
    pub remove: Vec<PathBuf>,
    pub limits: Limits,
}

/// The cgroup named `name` (unique per VM) under [`PARENT`] in `layout`.
pub fn plan(layout: &CgroupLayout, name: &str, limits: Limits) -> CgroupPlan {
    let w = |path: PathBuf, value: String, optional: bool| Write {
        path,
        value,
        optional,
    };
    match layout {
        CgroupLayout::V1 { memory, pids } => {
            let mem = memory.join(PARENT).join(name);
            let pid = pids.join(PARENT).join(name);
            CgroupPlan {
                version: layout.version(),
                mkdirs: vec![
                    memory.join(PARENT),
                    mem.clone(),
                    pids.join(PARENT),
                    pid.clone(),
                ],
                writes: vec![
                    w(
                        mem.join("memory.limit_in_bytes"),
                        limits.memory_bytes.to_string(),
                        false,
                    ),
                    // memory+swap: only with swap accounting; never more
                    // than memory alone, so the guest cannot swap past it.
                    w(
                        mem.join("memory.memsw.limit_in_bytes"),
                        limits.memory_bytes.to_string(),
                        true,
                    ),
                    w(pid.join("pids.max"), limits.pids.to_string(), false),
                ],
                procs: vec![mem.join("cgroup.procs"), pid.join("cgroup.procs")],
                remove: vec![mem, pid],
                limits,
            }
        }
        CgroupLayout::V2 { root } => {
            let parent = root.join(PARENT);
            let vm = parent.join(name);
            let enable = "+memory +pids".to_string();
            CgroupPlan {
                version: layout.version(),
                mkdirs: vec![parent.clone(), vm.clone()],
                writes: vec![
                    w(root.join("cgroup.subtree_control"), enable.clone(), false),
                    w(parent.join("cgroup.subtree_control"), enable, false),
                    w(
                        vm.join("memory.max"),
                        limits.memory_bytes.to_string(),
                        false,
                    ),
                    w(vm.join("memory.swap.max"), "0".into(), true),
                    w(vm.join("pids.max"), limits.pids.to_string(), false),
                ],
                procs: vec![vm.join("cgroup.procs")],
                remove: vec![vm],
                limits,
            }
        }
    }
}

#[cfg(test)]
mod tests;
