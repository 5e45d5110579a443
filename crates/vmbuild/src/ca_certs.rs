//! `--ca-cert FILE`: CA certificates the guest trusts besides its root's own
//! (a TLS-intercepting proxy's CA, a private registry's). Only the PEM
//! `CERTIFICATE` blocks are taken from each file, so a bundle that also
//! holds a private key never carries the key into the guest.

use std::path::{Path, PathBuf};

use vmbuild_runner::RunError;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";
/// A whole public CA store is about 200 KiB; more than this is a mistake.
const MAX_BYTES: u64 = 8 << 20;

/// The certificates of every file in `paths`, concatenated, or `None` when
/// no `--ca-cert` was given.
pub fn read(paths: &[PathBuf]) -> Result<Option<String>, RunError> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut all = String::new();
    for p in paths {
        all.push_str(&read_one(p)?);
    }
    Ok(Some(all))
}

fn read_one(path: &Path) -> Result<String, RunError> {
    let bad = |why: String| RunError::Flag {
        flag: format!("--ca-cert {}", path.display()),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a file; give a PEM file of CA certificates".into()));
    }
    if meta.len() > MAX_BYTES {
        return Err(bad(format!(
            "{} bytes is more than a CA bundle ({} MiB at most)",
            meta.len(),
            MAX_BYTES >> 20
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        bad("not a PEM text file (DER? convert it with `openssl x509 -inform der -in FILE`)".into())
    })?;
    let certs = certificate_blocks(&text);
    if certs.is_empty() {
        return Err(bad(format!("no PEM certificate ({BEGIN}) in it")));
    }
    Ok(certs)
}

/// Every `BEGIN CERTIFICATE` .. `END CERTIFICATE` block of `text`, each
/// ending in a newline; everything else (comments, keys) is left out.
pub fn certificate_blocks(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let Some(len) = body.find(END) else {
            break;
        };
        // A block cut off before its END (another PEM header comes first)
        // is dropped, so whatever follows it, a key say, is never taken.
        if let Some(next) = body[..len].find("-----BEGIN ") {
            rest = &body[next..];
            continue;
        }
        let end = start + BEGIN.len() + len + END.len();
        out.push_str(&rest[start..end]);
        out.push('\n');
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----";

    #[test]
    fn only_certificate_blocks_are_kept() {
        let text = format!(
            "# proxy CA\n{CERT}\n-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n{CERT}"
        );
        let got = certificate_blocks(&text);
        assert_eq!(got, format!("{CERT}\n{CERT}\n"));
        assert!(!got.contains("secret"));
        // A block cut off before its END line is not a certificate.
        assert_eq!(certificate_blocks("-----BEGIN CERTIFICATE-----\nMIIB"), "");
        // Nor is one cut off by the next header: the key after it stays out.
        let cut = format!(
            "-----BEGIN CERTIFICATE-----\nMII\n-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n{CERT}"
        );
        assert_eq!(certificate_blocks(&cut), format!("{CERT}\n"));
    }

    #[test]
    fn files_are_read_in_order_and_bad_ones_say_why() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.pem");
        let b = d.path().join("b.pem");
        std::fs::write(&a, CERT).unwrap();
        std::fs::write(&b, format!("{CERT}\n")).unwrap();
        assert_eq!(read(&[]).unwrap(), None);
        assert_eq!(
            read(&[a.clone(), b]).unwrap().unwrap(),
            format!("{CERT}\n{CERT}\n")
        );

        let err = |p: &Path| read(&[a.clone(), p.to_path_buf()]).unwrap_err().to_string();
        let missing = d.path().join("nope.pem");
        assert!(err(&missing).contains("nope.pem"), "{}", err(&missing));
        assert!(err(d.path()).contains("not a file"), "{}", err(d.path()));
        let key = d.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(err(&key).contains("no PEM certificate"), "{}", err(&key));
        let der = d.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0xff, 0xfe]).unwrap();
        assert!(err(&der).contains("DER"), "{}", err(&der));
    }
}
