//! Guest networking and bring-your-own root filesystems.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::harness::{stderr, stdout, Vmb};

/// A one-page HTTP server on the host's loopback; counts connections.
pub fn serve_once_per_connection() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let body = "hello-from-host\n";
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn user_network_reaches_host_loopback_and_none_cannot() {
    let (port, hits) = serve_once_per_connection();
    let url = format!("http://10.0.2.2:{port}/");
    let v = Vmb::new();
    let o = v.run(&["run", "--network", "user", "--", "wget", "-q", "-O-", &url]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "hello-from-host\n");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let o = v.run(&[
        "run",
        "--network",
        "none",
        "--",
        "sh",
        "-c",
        &format!("wget -q -O- {url}; echo rc=$?; ls /sys/class/net"),
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("rc=1") && !out.contains("hello-from-host"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| !l.starts_with("rc="))
            .collect::<Vec<_>>(),
        ["lo"],
        "no NIC at all: {out}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the server saw no connection from the isolated guest"
    );
}

#[test]
fn rootfs_directory_is_packed_and_booted_instead_of_busybox() {
    // A minimal root filesystem: the host's static busybox and a marker file.
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox =
        vmbuild_image::busybox(&vmbuild_image::cache_root().unwrap(), &mut |_| {}).unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "ls", "tar"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["etc", "tmp", "proc", "sys", "dev", "run", "home/build"] {
        std::fs::create_dir_all(root.path().join(d)).unwrap();
    }
    std::fs::write(root.path().join("etc/marker"), "my own root\n").unwrap();
    let v = Vmb::new();
    let r = root.path().to_string_lossy().into_owned();
    let o = v.run(&[
        "run",
        "--rootfs",
        &r,
        "--",
        "sh",
        "-c",
        "cat /etc/marker; ls /bin",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("my own root\n"), "{out}");
    assert!(
        !out.contains("wget"),
        "only our four applets, not the initramfs busybox: {out}"
    );

    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), vec![7u8; 4096]).unwrap();
    let j = junk.path().to_string_lossy().into_owned();
    let o = v.run(&["run", "--rootfs", &j, "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(crate::harness::assert_one_line_error(&o).contains("erofs/ext4"));
}
