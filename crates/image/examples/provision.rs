//! End-to-end provisioning by hand: the pinned kernel and busybox into a
//! cache root, then an initramfs.
//!
//! `cargo run -p vmbuild-image --example provision -- [CACHE_ROOT] [INIT]`
//! (defaults: the real cache root, and the provisioned busybox as init).

use std::path::PathBuf;
use std::time::Instant;

use vmbuild_image::{
    build_initramfs, busybox, cache_root, guest_modules, resolve_kernel, InitramfsSpec,
    KernelRequest,
};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let root = match args.next() {
        Some(p) => PathBuf::from(p),
        None => cache_root()?,
    };
    let mut notice = |n: &str| eprintln!("{n}");

    let req = KernelRequest {
        kernel: None,
        modules: None,
        cache_root: root.clone(),
    };
    for pass in ["first", "second"] {
        let t = Instant::now();
        let k = resolve_kernel(&req, &mut notice)?;
        println!("kernel ({pass} call, {:?}): {k:?}", t.elapsed());
    }
    let t = Instant::now();
    let bb = busybox(&root, &mut notice)?;
    println!("busybox ({:?}): {}", t.elapsed(), bb.display());

    let kernel = resolve_kernel(&req, &mut notice)?;
    let init = std::fs::read(args.next().map(PathBuf::from).unwrap_or_else(|| bb.clone()))?;
    let modules = guest_modules()?;
    let groups = vmbuild_image::guest_module_groups()?;
    let applets = vmbuild_image::busybox_applets(&bb);
    for pass in ["first", "second"] {
        let t = Instant::now();
        let spec = InitramfsSpec {
            init: &init,
            busybox: Some(&bb),
            kernel: &kernel,
            modules: &modules,
            on_demand: &groups,
            applets: &applets,
        };
        let p = build_initramfs(&spec, &root)?;
        let size = std::fs::metadata(&p)?.len();
        println!(
            "initramfs ({pass} call, {:?}): {} ({size} bytes)",
            t.elapsed(),
            p.display()
        );
    }
    Ok(())
}
