//! Build (or reuse) an environment image by hand and print where it is.
//!
//! `cargo run -p vmbuild-image --example env_image -- CACHE_ROOT [PACKAGE...]`

use std::path::PathBuf;

use vmbuild_image::{ensure_env_image, EnvSpec};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(root) = args.next().map(PathBuf::from) else {
        eprintln!("usage: env_image CACHE_ROOT [PACKAGE...]");
        std::process::exit(2);
    };
    let packages: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let spec = EnvSpec::new(packages);
    match ensure_env_image(&root, &spec, &mut |l| eprintln!("{l}")) {
        Ok((img, built)) => println!(
            "{} {} {} bytes ({})",
            img.path.display(),
            img.format.fs_type(),
            img.size,
            if built { "built" } else { "cached" }
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
