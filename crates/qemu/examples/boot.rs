//! Manual smoke test: boot a kernel + initramfs with the crate's defaults and
//! report how it went.
//!
//!     cargo run -p vmbuild-qemu --example boot -- KERNEL INITRD [VIRTIOFSD_SOCKET]
//!
//! Shares a temp dir over 9p (read-only, tag `ro`, and read-write, tag `rw`),
//! and over virtiofs (tag `vfs`) when a running virtiofsd's socket is given.
//! The run directory's name contains a comma, to exercise option escaping.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmbuild_qemu::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: boot KERNEL INITRD [VIRTIOFSD_SOCKET]";
    let kernel = PathBuf::from(args.next().ok_or(usage)?);
    let initrd = PathBuf::from(args.next().ok_or(usage)?);
    let virtiofs = args.next().map(PathBuf::from);

    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("vm,run");
    std::fs::create_dir(&run)?;
    let share_dir = run.join("share,dir");
    std::fs::create_dir(&share_dir)?;

    let (accel, why) = choose_accel(&probe_host());
    println!("accel: {why}");
    let mut shares = vec![
        Share {
            tag: "ro".into(),
            host_path: share_dir.clone(),
            kind: ShareKind::NineP { read_only: true },
        },
        Share {
            tag: "rw".into(),
            host_path: share_dir.clone(),
            kind: ShareKind::NineP { read_only: false },
        },
    ];
    if let Some(socket) = virtiofs {
        shares.push(Share {
            tag: "vfs".into(),
            host_path: share_dir,
            kind: ShareKind::Virtiofs { socket },
        });
    }
    let cfg = VmConfig {
        qemu: find_qemu(Arch::current(), None)?,
        host_os: HostOs::current(),
        arch: Arch::current(),
        accel,
        cpus: 1,
        memory_mib: 512,
        kernel,
        initrd,
        kernel_cmdline_extra: vec![],
        tsc_khz: if accel == Accel::Tcg {
            probe_tsc_khz()
        } else {
            None
        },
        console_log: run.join("console.log"),
        control_socket: run.join("ctl.sock"),
        qmp_socket: run.join("qmp.sock"),
        shares,
        drives: vec![],
        network: Network::None,
        version: QemuVersion::new(7, 2, 0),
        sandbox: false,
    };
    let ctl = tokio::net::UnixListener::bind(&cfg.control_socket)?;
    let qmp_listener = tokio::net::UnixListener::bind(&cfg.qmp_socket)?;
    let argv = build_argv(&cfg);
    println!(
        "{} {}",
        cfg.qemu.display(),
        argv.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );

    let start = Instant::now();
    let mut proc = QemuProcess::spawn(&cfg.qemu, &argv, &run.join("qemu.log"), None)?;
    let mut qmp = tokio::select! {
        q = accept_qmp(&qmp_listener) => q?,
        st = proc.wait() => return Err(format!("QEMU exited ({}) before QMP: {}", st?, proc.read_log()).into()),
    };
    let (_ctl_stream, _) = ctl.accept().await?;
    println!(
        "running: {} ({:?})",
        qmp.query_status().await?,
        start.elapsed()
    );

    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            e = qmp.next_event() => match e {
                Some(e) => println!("event at {:?}: {e:?}", start.elapsed()),
                None => break,
            },
            _ = &mut deadline => { println!("timeout; killing"); proc.kill().await?; break; }
        }
    }
    let st = proc.wait().await?;
    println!("exit {st} after {:?}", start.elapsed());
    let console = std::fs::read_to_string(&cfg.console_log).unwrap_or_default();
    println!(
        "console tail:\n{}\nclassified: {:?}",
        tail(&console, 3),
        classify(&console)
    );
    let log = proc.read_log();
    if !log.is_empty() {
        println!("qemu log:\n{log}");
    }
    Ok(())
}
