//! A registry with htpasswd basic auth: a wrong password is a one-line
//! error naming the registry; the right one from a Docker config.json
//! (`DOCKER_CONFIG`) works. Its own test binary: it sets the process
//! environment.

mod support;

use vmbuild_transfer::{
    export, open, target, Direction, ExportOptions, Meter, Source, TransferError,
};

fn push(r: &str, vol: &std::path::Path, records: &std::path::Path) -> Result<(), TransferError> {
    let spec = target::parse(r, Direction::To).unwrap();
    let mut store = open(&spec, Direction::To, &[])?;
    let src = Source {
        name: "v".into(),
        dir: vol.to_path_buf(),
        key: "v".into(),
    };
    export(
        &[src],
        store.as_mut(),
        &ExportOptions {
            level: 3,
            records,
            meter: &Meter::default(),
        },
    )
    .map(drop)
}

fn docker_config(dir: &std::path::Path, registry: &str, user: &str, password: &str) {
    use std::io::Write;
    let auth = {
        // base64 of user:password, as `docker login` writes it.
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let raw = format!("{user}:{password}").into_bytes();
        let mut s = String::new();
        for c in raw.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut f = std::fs::File::create(dir.join("config.json")).unwrap();
    write!(f, r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#).unwrap();
}

#[test]
fn wrong_password_is_one_line_and_the_docker_config_works() {
    let reg = support::TestRegistry::start(Some(("ci", "right-password")));
    let host = tempfile::tempdir().unwrap();
    let vol = host.path().join("vol");
    support::make_volume(&vol, 20, 0);
    let r = format!("type=registry,ref={}", reg.reference("auth/cache:1"));
    let cfg = host.path().join("docker");
    std::env::remove_var("VMBUILD_REGISTRY_USER");
    std::env::remove_var("VMBUILD_REGISTRY_PASSWORD");
    std::env::set_var("DOCKER_CONFIG", &cfg);

    // No credentials at all.
    let e = push(&r, &vol, &host.path().join("r"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&reg.addr) && e.contains("refused anonymous access"),
        "{e}"
    );

    docker_config(&cfg, &reg.addr, "ci", "wrong-password");
    let e = push(&r, &vol, &host.path().join("r")).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TransferError::Unauthorized { .. }), "{msg}");
    assert!(
        msg.contains(&reg.addr) && msg.contains("user ci from the Docker config"),
        "{msg}"
    );
    assert!(
        !msg.contains('\n') && !msg.contains("wrong-password"),
        "{msg}"
    );

    docker_config(&cfg, &reg.addr, "ci", "right-password");
    push(&r, &vol, &host.path().join("r")).unwrap();

    // CI's variables win over the Docker config.
    std::env::set_var("VMBUILD_REGISTRY_USER", "ci");
    std::env::set_var("VMBUILD_REGISTRY_PASSWORD", "wrong-again");
    let e = push(&r, &vol, &host.path().join("r"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("VMBUILD_REGISTRY_USER"), "{e}");
}
