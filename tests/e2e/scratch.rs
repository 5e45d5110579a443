//! The scratch disk (`--disk`): what a guest writes to /home/build goes to
//! a sparse file on the host instead of guest RAM, is bounded by the
//! disk's size, and the file goes with the run.

use std::time::Instant;

use crate::harness::{stderr, stdout, Vmb};

#[test]
fn four_gib_fit_on_the_disk_with_512m_of_memory_and_past_the_disk_is_no_space() {
    let v = Vmb::new();
    let t = Instant::now();
    let o = v.run(&[
        "run",
        "--memory",
        "512",
        "--disk",
        "6G",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/home/build/big bs=1M count=4096 2>/dev/null && ls -l /home/build/big",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(" 4294967296 "), "{}", stdout(&o));
    eprintln!("4 GiB written in {:?}", t.elapsed());

    let o = v.run(&[
        "run",
        "--disk",
        "64M",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/home/build/big bs=1M count=100",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    // Vmb::run checked that nothing (the run dir with scratch.img, QEMU)
    // was left behind after each run.
}
