//! What a snapshot depends on, and its key. Pure: the caller gives the
//! cold-boot command line and the identities of the files it boots.
//!
//! A saved state fits a new QEMU only if the new command line describes
//! the same machine: QEMU, its release, the kernel, the initramfs (hence
//! the guest init), machine type, accelerator, CPU model, memory, vCPUs,
//! kernel command line, and the device layout (which virtio devices, in
//! which order, with which options). All of that is in the argv, so the
//! description is the argv with what a run binds anew taken out: socket
//! and log paths, shared host directories, disk image files, and 9p/virtiofs
//! mount tags (the guest reads a tag only when its driver binds, which
//! happens after a restore; see `Hello::snapshot_safe`).

use std::path::Path;

use sha2::{Digest, Sha256};

/// Bumped whenever what a snapshot holds or how it is checked changes.
pub const FORMAT: u32 = 1;

/// Option keys whose values a run binds anew (paths and tags).
const RUN_BOUND_KEYS: &[&str] = &["path", "file", "mount_tag", "tag"];
/// Flags whose next argument is a host file identified separately.
const FILE_FLAGS: &[&str] = &["-kernel", "-initrd"];

/// Who a file is, cheaply: path, size, modification time (ns) and inode.
/// A rebuilt kernel or initramfs changes at least one of them.
pub fn file_identity(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "{} len={} mtime={}.{:09} ino={}",
            path.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        ),
        Err(e) => format!("{} unreadable: {e}", path.display()),
    }
}

/// Replaces the values of [`RUN_BOUND_KEYS`] in a QEMU option list
/// (`a=b,c=d`, where `,,` is an escaped comma inside a value) by `*`.
pub fn normalize_opts(arg: &str) -> String {
    // Split on single commas only.
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' && chars.peek() == Some(&',') {
            chars.next();
            cur.push_str(",,");
        } else if c == ',' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| match p.split_once('=') {
            Some((k, _)) if RUN_BOUND_KEYS.contains(&k) => format!("{k}=*"),
            _ => p,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The description of the machine `argv` (a cold boot's arguments, without
/// argv\[0\]) starts, with `qemu` (binary identity and release) and the
/// identities of the files after [`FILE_FLAGS`] from `identify`.
pub fn describe(
    qemu_identity: &str,
    qemu_release: &str,
    argv: &[String],
    identify: &dyn Fn(&Path) -> String,
) -> String {
    let mut lines = vec![
        format!("vmbuild-snapshot format {FORMAT}"),
        format!("qemu {qemu_identity}"),
        format!("qemu-release {qemu_release}"),
    ];
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        if FILE_FLAGS.contains(&a.as_str()) {
            let file = args.next().map(String::as_str).unwrap_or("");
            lines.push(format!("{a} {}", identify(Path::new(file))));
        } else {
            lines.push(normalize_opts(a));
        }
    }
    lines.join("\n")
}

/// The store key of a description: 32 hex digits of its SHA-256.
pub fn key_of(description: &str) -> String {
    let digest = Sha256::digest(description.as_bytes());
    hex::encode(&digest[..16])
}

/// Whether a VM with this argv can be saved and restored at all, or why
/// not: vhost-user devices (virtiofs) refuse migration on QEMU 7.2 and the
/// guest's mapping of their shared memory cannot be carried over; HVF has
/// no migration support.
pub fn unsupported(argv: &[String]) -> Option<&'static str> {
    if argv.iter().any(|a| a.starts_with("vhost-user-fs")) {
        return Some("virtiofs shares (vhost-user-fs) cannot be saved by QEMU");
    }
    if argv.windows(2).any(|w| w[0] == "-accel" && w[1] == "hvf") {
        return Some("QEMU's HVF accelerator (macOS) cannot save a VM");
    }
    if argv.iter().any(|a| a == "-incoming") {
        return Some("the command line already loads a state");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(p: &Path) -> String {
        format!("{}#id", p.display())
    }

    fn argv(memory: &str, shares: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "-M",
            "microvm,acpi=on",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-m",
            memory,
            "-kernel",
            "/k/vmlinux",
            "-initrd",
            "/c/init.cpio",
            "-append",
            "console=ttyS0 quiet",
            "-chardev",
            "socket,id=ctl,path=/tmp/vmbuild-abc/ctl.sock",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (n, s) in shares.iter().enumerate() {
            a.push("-fsdev".into());
            a.push(format!(
                "local,id=fs{n},path={s},security_model=none,readonly=on"
            ));
            a.push("-device".into());
            a.push(format!("virtio-9p-device,fsdev=fs{n},mount_tag=tag{s}"));
        }
        a
    }

    #[test]
    fn run_bound_paths_and_tags_do_not_change_the_key() {
        let a = describe("q", "7.2.22", &argv("1024M", &["/home/a/cache"]), &ident);
        let b = describe("q", "7.2.22", &argv("1024M", &["/srv/other,,dir"]), &ident);
        assert_eq!(key_of(&a), key_of(&b), "{a}\n---\n{b}");
        assert!(
            a.contains("local,id=fs0,path=*,security_model=none,readonly=on"),
            "{a}"
        );
        assert!(a.contains("-kernel /k/vmlinux#id"), "{a}");
    }

    #[test]
    fn machine_memory_devices_files_and_qemu_change_the_key() {
        let base = key_of(&describe("q", "7.2.22", &argv("1024M", &["/a"]), &ident));
        let others = [
            describe("q", "7.2.22", &argv("2048M", &["/a"]), &ident),
            describe("q", "7.2.22", &argv("1024M", &[]), &ident),
            describe("q", "7.2.22", &argv("1024M", &["/a", "/b"]), &ident),
            describe("q2", "7.2.22", &argv("1024M", &["/a"]), &ident),
            describe("q", "10.0.0", &argv("1024M", &["/a"]), &ident),
            describe("q", "7.2.22", &argv("1024M", &["/a"]), &|p| {
                format!("{}#new", p.display())
            }),
        ];
        for o in others {
            assert_ne!(key_of(&o), base, "{o}");
        }
        let mut cpus = argv("1024M", &["/a"]);
        cpus[7] = "2".into();
        assert_ne!(key_of(&describe("q", "7.2.22", &cpus, &ident)), base);
    }

    #[test]
    fn escaped_commas_stay_inside_their_value() {
        assert_eq!(
            normalize_opts("local,id=fs0,path=/a,,b,readonly=on"),
            "local,id=fs0,path=*,readonly=on"
        );
        assert_eq!(normalize_opts("microvm,acpi=on"), "microvm,acpi=on");
    }

    #[test]
    fn virtiofs_is_not_snapshottable() {
        let a = vec![
            "-device".to_string(),
            "vhost-user-fs-device,chardev=vfs0,tag=x".into(),
        ];
        assert!(unsupported(&a).is_some());
        assert!(unsupported(&argv("1024M", &["/a"])).is_none());
        let hvf: Vec<String> = ["-accel", "hvf"].iter().map(|s| s.to_string()).collect();
        assert!(unsupported(&hvf).is_some());
    }

    #[test]
    fn identity_names_size_and_time() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        std::fs::write(&f, "abc").unwrap();
        let id = file_identity(&f);
        assert!(id.contains("len=3"), "{id}");
        assert!(file_identity(&d.path().join("missing")).contains("unreadable"));
    }
}
