//! Which uid QEMU runs as when vmbuild is root: the `vmbuild` system user
//! when present (`useradd --system vmbuild`), else [`FALLBACK_ID`], a
//! fixed uid/gid that no account uses. Read from `/etc/passwd` (where
//! `useradd` writes), parsed here without NSS.

/// The account looked up first.
pub const USER_NAME: &str = "vmbuild";
/// The uid and gid used when there is no `vmbuild` account, unless an
/// account already has it (then [`NOBODY`]).
pub const FALLBACK_ID: u32 = 64_012;
/// `nobody`'s uid and `nogroup`'s gid on Debian: the last resort.
pub const NOBODY: u32 = 65_534;

/// One `/etc/passwd` entry's name, uid and primary gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The accounts in `/etc/passwd` text (malformed lines skipped).
pub fn parse_passwd(text: &str) -> Vec<Account> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Account {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Whether any group in `/etc/group` text has `gid`.
pub fn group_has_gid(group_text: &str, gid: u32) -> bool {
    group_text
        .lines()
        .any(|l| l.split(':').nth(2).and_then(|g| g.parse().ok()) == Some(gid))
}

/// The identity for QEMU: `(uid, gid, name)` where name is the account's,
/// or `None` for the unused fallback id.
pub fn choose(passwd: &str, group: &str) -> (u32, u32, Option<String>) {
    let accounts = parse_passwd(passwd);
    if let Some(a) = accounts.iter().find(|a| a.name == USER_NAME) {
        return (a.uid, a.gid, Some(a.name.clone()));
    }
    let taken = accounts.iter().any(|a| a.uid == FALLBACK_ID) || group_has_gid(group, FALLBACK_ID);
    if taken {
        let name = accounts
            .iter()
            .find(|a| a.uid == NOBODY)
            .map(|a| a.name.clone());
        return (NOBODY, NOBODY, name);
    }
    (FALLBACK_ID, FALLBACK_ID, None)
}

/// The account QEMU runs as for `--network user,restrict-host`: the host
/// firewall tells those VMs apart by it (see `super::firewall`).
pub const RESTRICTED_NAME: &str = "vmbuild-restricted";
/// Its uid/gid when there is no such account.
pub const RESTRICTED_FALLBACK_ID: u32 = 64_013;

/// The identity for restricted QEMUs: the `vmbuild-restricted` account,
/// else [`RESTRICTED_FALLBACK_ID`] when no account or group has it; `None`
/// when it is taken (there is no safe shared fallback: the firewall rule
/// would hit whoever has that uid).
pub fn choose_restricted(passwd: &str, group: &str) -> Option<(u32, u32, Option<String>)> {
    let accounts = parse_passwd(passwd);
    if let Some(a) = accounts.iter().find(|a| a.name == RESTRICTED_NAME) {
        return Some((a.uid, a.gid, Some(a.name.clone())));
    }
    let taken = accounts.iter().any(|a| a.uid == RESTRICTED_FALLBACK_ID)
        || group_has_gid(group, RESTRICTED_FALLBACK_ID);
    (!taken).then_some((RESTRICTED_FALLBACK_ID, RESTRICTED_FALLBACK_ID, None))
}

/// [`choose_restricted`] on this host's files.
pub fn choose_restricted_on_host() -> Option<(u32, u32, Option<String>)> {
    let read = |p| std::fs::read_to_string(p).unwrap_or_default();
    choose_restricted(&read("/etc/passwd"), &read("/etc/group"))
}

/// [`choose`] on this host's `/etc/passwd` and `/etc/group` (missing files
/// read as empty).
pub fn choose_on_host() -> (u32, u32, Option<String>) {
    let read = |p| std::fs::read_to_string(p).unwrap_or_default();
    choose(&read("/etc/passwd"), &read("/etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "root:x:0:0:root:/root:/bin/bash\n\
                        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                        broken line\n";

    #[test]
    fn the_vmbuild_account_wins() {
        let passwd = format!("{BASE}vmbuild:x:998:997::/nonexistent:/usr/sbin/nologin\n");
        assert_eq!(choose(&passwd, ""), (998, 997, Some("vmbuild".into())));
    }

    #[test]
    fn without_it_the_unused_fallback_id() {
        assert_eq!(
            choose(BASE, "root:x:0:\n"),
            (FALLBACK_ID, FALLBACK_ID, None)
        );
    }

    #[test]
    fn a_taken_fallback_id_falls_back_to_nobody() {
        let passwd = format!("{BASE}someone:x:64012:100::/home/s:/bin/sh\n");
        assert_eq!(choose(&passwd, ""), (NOBODY, NOBODY, Some("nobody".into())));
        assert_eq!(
            choose(BASE, "odd:x:64012:\n"),
            (NOBODY, NOBODY, Some("nobody".into()))
        );
    }

    #[test]
    fn restricted_vms_get_their_own_uid_or_none() {
        assert_eq!(choose_restricted(BASE, ""), Some((64_013, 64_013, None)));
        let named = format!("{BASE}vmbuild-restricted:x:997:996::/:/bin/false\n");
        assert_eq!(
            choose_restricted(&named, ""),
            Some((997, 996, Some("vmbuild-restricted".into())))
        );
        let taken = format!("{BASE}other:x:64013:100::/:/bin/sh\n");
        assert_eq!(choose_restricted(&taken, ""), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(
            parse_passwd("a:x:1:2::/:/bin/sh\nb:x:notanumber:2\nc\n"),
            [Account {
                name: "a".into(),
                uid: 1,
                gid: 2
            }]
        );
    }
}
