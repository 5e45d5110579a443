//! `environment.accounts` (apko's `ImageAccounts`, as melange uses it): the
//! groups and users created in the build (or test) environment before any
//! step runs, and `run-as`, the user the steps run as.
//!
//! melange's behaviour, followed here (melange `pkg/config/config.go`,
//! `pkg/build/build.go` `runAsUID`/`runAsGID`, `pkg/container/*_runner.go`):
//!
//! - a group `build` (gid 1000, member `build`) and a user `build` (uid
//!   1000, gid 1000) are always added unless the file declares them;
//! - without `run-as` (or with `root`/`0`) the steps run as root;
//! - `run-as` names a declared user (or its uid); every build step (main
//!   package and subpackages) runs as that user, and the workspace
//!   `/home/build` is owned by it (melange's qemu runner `chown -R`s it);
//!   the test VMs use their own `test.environment.accounts` the same way;
//! - a user without `gid` gets its uid as gid (melange's bubblewrap runner
//!   falls back the same way); `homedir` defaults to `/home/<username>`
//!   (apko's default), the shell to `/bin/sh`.

use crate::decode::{Cx, Str};
use crate::error::{show, ConfigError};
use crate::source::Source;
use crate::yaml::Node;

/// Keys of `environment.accounts`.
pub(crate) const ACCOUNTS_KEYS: &[&str] = &["run-as", "users", "groups"];
/// Keys of one `environment.accounts.users` entry (apko's `User`).
pub(crate) const USER_KEYS: &[&str] = &["username", "uid", "gid", "shell", "homedir"];
/// Keys of one `environment.accounts.groups` entry (apko's `Group`).
pub(crate) const GROUP_KEYS: &[&str] = &["groupname", "gid", "members"];

/// The name, uid and gid melange gives its default build account.
const BUILD_NAME: &str = "build";
const BUILD_ID: u32 = 1000;
/// Largest id accepted (melange parses ids as int32).
const MAX_ID: u32 = i32::MAX as u32;

/// `environment.accounts` as written (checked, not yet resolved).
#[derive(Debug, Default)]
pub(crate) struct AccountsDef {
    /// `run-as`, substituted later.
    pub run_as: Option<Str>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

/// One account of the environment: an `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `username`.
    pub name: String,
    pub uid: u32,
    /// Primary group id: `gid`, else the uid.
    pub gid: u32,
    /// `homedir`, else `/home/<name>`; made (owned by the user) when missing.
    pub home: String,
    /// `shell`, else `/bin/sh`.
    pub shell: String,
}

/// One group of the environment: an `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `groupname`.
    pub name: String,
    pub gid: u32,
    /// `members`: user names.
    pub members: Vec<String>,
}

/// The resolved `run-as` user: the ids the steps run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids: the primary one and every group listing the
    /// user in `members`, each once.
    pub groups: Vec<u32>,
}

/// An environment's accounts, resolved: what is created before the steps
/// run, and who they run as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub groups: Vec<Group>,
    pub users: Vec<User>,
    /// `None`: the steps run as root.
    pub run_as: Option<RunAs>,
    /// Whether the file declares any account or a non-root `run-as`:
    /// only then are the accounts created (a file without `accounts:`
    /// runs as before, in an environment left as its image has it).
    pub declared: bool,
}

/// Decodes `environment.accounts` (`node`); `at` names it in errors
/// (`environment.accounts`, `test.environment.accounts`). Names, ids, home
/// directories and shells are checked, and no two users (groups) may share
/// a name or an id.
pub(crate) fn decode(cx: Cx<'_>, node: &Node, at: &str) -> Result<AccountsDef, ConfigError> {
    let f = cx.map(node, "accounts", "environment.accounts", ACCOUNTS_KEYS)?;
    let mut def = AccountsDef {
        run_as: cx.opt_string(&f, "run-as")?,
        ..AccountsDef::default()
    };
    for n in cx.list(&f, "groups")? {
        let g = cx.map(n, "groups", "an accounts group", GROUP_KEYS)?;
        let name = name(cx, &cx.req_string(&g, "groupname")?, "groupname")?;
        let gid = id(cx, &cx.req_string(&g, "gid")?, "gid")?;
        let mut members = Vec::new();
        for m in cx.string_list(&g, "members")? {
            members.push(self::name(cx, &m, "members")?);
        }
        if let Some(other) = def.groups.iter().find(|o| o.name == name || o.gid == gid) {
            return Err(cx.invalid(
                n.pos,
                &format!("{at}.groups"),
                format!(
                    "group `{name}` (gid {gid}) clashes with group `{}` (gid {}) declared before; give each group its own name and gid",
                    other.name, other.gid
                ),
            ));
        }
        def.groups.push(Group { name, gid, members });
    }
    for n in cx.list(&f, "users")? {
        let u = cx.map(n, "users", "an accounts user", USER_KEYS)?;
        let name = name(cx, &cx.req_string(&u, "username")?, "username")?;
        let uid = id(cx, &cx.req_string(&u, "uid")?, "uid")?;
        let gid = match cx.opt_string(&u, "gid")? {
            Some(g) => id(cx, &g, "gid")?,
            None => uid,
        };
        let home = match cx.opt_string(&u, "homedir")? {
            Some(h) => path(cx, &h, "homedir")?,
            None => format!("/home/{name}"),
        };
        let shell = match cx.opt_string(&u, "shell")? {
            Some(s) => path(cx, &s, "shell")?,
            None => "/bin/sh".to_string(),
        };
        if let Some(other) = def.users.iter().find(|o| o.name == name || o.uid == uid) {
            return Err(cx.invalid(
                n.pos,
                &format!("{at}.users"),
                format!(
                    "user `{name}` (uid {uid}) clashes with user `{}` (uid {}) declared before; give each user its own name and uid",
                    other.name, other.uid
                ),
            ));
        }
        def.users.push(User {
            name,
            uid,
            gid,
            home,
            shell,
        });
    }
    Ok(def)
}

/// A user or group name: ASCII letters, digits, `_`, `-`, `.`, starting
/// with a letter or `_`, at most 32 characters (what `useradd` accepts).
fn name(cx: Cx<'_>, s: &Str, field: &str) -> Result<String, ConfigError> {
    let v = &s.value;
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(v.clone())
    } else {
        Err(cx.invalid(
            s.pos,
            field,
            format!(
                "`{}` is not a valid account name; use letters, digits, _, - and . (starting with a letter or _, at most 32)",
                show(v)
            ),
        ))
    }
}

/// A uid or gid: a whole number up to 2147483647.
fn id(cx: Cx<'_>, s: &Str, field: &str) -> Result<u32, ConfigError> {
    match s.value.trim().parse::<u32>() {
        Ok(n) if n <= MAX_ID => Ok(n),
        _ => Err(cx.invalid(
            s.pos,
            field,
            format!(
                "`{}` is not a valid id; give a whole number from 0 to {MAX_ID}",
                show(&s.value)
            ),
        )),
    }
}

/// An absolute path that fits in a passwd field.
fn path(cx: Cx<'_>, s: &Str, field: &str) -> Result<String, ConfigError> {
    let v = &s.value;
    if v.starts_with('/') && !v.contains([':', '\n', '\'', '\0']) {
        Ok(v.clone())
    } else {
        Err(cx.invalid(
            s.pos,
            field,
            format!(
                "`{}` must be an absolute path without `:`, `'` or line breaks",
                show(v)
            ),
        ))
    }
}

/// The accounts of `def` with melange's default `build` group and user
/// added (when neither the name nor the id is taken), and `run_as` (the
/// substituted `run-as`) resolved to a declared user. An unknown user is
/// an error at `run-as`'s position naming the declared ones.
pub(crate) fn resolve(
    src: &Source,
    def: &AccountsDef,
    run_as: Option<&Str>,
) -> Result<Accounts, ConfigError> {
    let mut groups = def.groups.clone();
    if !groups
        .iter()
        .any(|g| g.name == BUILD_NAME || g.gid == BUILD_ID)
    {
        groups.push(Group {
            name: BUILD_NAME.into(),
            gid: BUILD_ID,
            members: vec![BUILD_NAME.into()],
        });
    }
    let mut users = def.users.clone();
    if !users
        .iter()
        .any(|u| u.name == BUILD_NAME || u.uid == BUILD_ID)
    {
        users.push(User {
            name: BUILD_NAME.into(),
            uid: BUILD_ID,
            gid: BUILD_ID,
            home: format!("/home/{BUILD_NAME}"),
            shell: "/bin/sh".into(),
        });
    }
    let run_as = match run_as.map(|s| (s, s.value.trim())) {
        None | Some((_, "" | "root" | "0")) => None,
        Some((s, want)) => {
            let by_uid = want.parse::<u32>().ok();
            let Some(u) = users
                .iter()
                .find(|u| u.name == want || Some(u.uid) == by_uid)
            else {
                let known: Vec<String> = users
                    .iter()
                    .map(|u| format!("{} ({})", u.name, u.uid))
                    .collect();
                return Err(ConfigError::Invalid {
                    at: src.loc(s.pos),
                    field: "run-as".into(),
                    message: format!(
                        "`run-as: {}` names no user of environment.accounts.users (users: {}); declare it under `users:` or run as one of those",
                        show(want),
                        known.join(", ")
                    ),
                });
            };
            let mut ids = vec![u.gid];
            for g in &groups {
                if g.members.contains(&u.name) && !ids.contains(&g.gid) {
                    ids.push(g.gid);
                }
            }
            Some(RunAs {
                name: u.name.clone(),
                uid: u.uid,
                gid: u.gid,
                groups: ids,
            })
        }
    };
    let declared = run_as.is_some() || !def.users.is_empty() || !def.groups.is_empty();
    Ok(Accounts {
        groups,
        users,
        run_as,
        declared,
    })
}

impl User {
    /// The `/etc/passwd` line: `name:x:uid:gid::home:shell`.
    pub fn passwd_line(&self) -> String {
        format!(
            "{}:x:{}:{}::{}:{}",
            self.name, self.uid, self.gid, self.home, self.shell
        )
    }
}

impl Group {
    /// The `/etc/group` line: `name:x:gid:member,member`.
    pub fn group_line(&self) -> String {
        format!("{}:x:{}:{}", self.name, self.gid, self.members.join(","))
    }
}

impl Accounts {
    /// A `/bin/sh` script, run as root before the first step, that adds
    /// the groups and users to the environment's `/etc/group` and
    /// `/etc/passwd` (made, with a root entry, when missing), makes each
    /// missing home directory owned by its user, and, with a `run-as` user,
    /// gives it `workspace` (recursively, as melange's qemu runner does:
    /// on the qemu runner's overlay that copies the source up into the
    /// VM's writable layer). An entry whose name the
    /// environment already has is kept when its id matches and fails the
    /// script naming both ids when it does not.
    pub fn setup_script(&self, workspace: &str) -> String {
        let mut s = String::from(concat!(
            "set -e\n",
            "umask 022\n",
            "mkdir -p /etc\n",
            "[ -e /etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd\n",
            "[ -e /etc/group ] || echo 'root:x:0:' > /etc/group\n",
            "vmbuild_account() {\n",
            "  old=$(awk -F: -v n=\"$2\" '$1 == n { print $3; exit }' \"$1\")\n",
            "  if [ -z \"$old\" ]; then printf '%s\\n' \"$3\" >> \"$1\"\n",
            "  elif [ \"$old\" != \"$4\" ]; then\n",
            "    echo \"vmbuild: environment.accounts: $2 is in the environment's $1 with id $old, not $4; use id $old or another name\" >&2\n",
            "    exit 1\n",
            "  fi\n",
            "}\n",
        ));
        for g in &self.groups {
            s.push_str(&format!(
                "vmbuild_account /etc/group {} '{}' {}\n",
                g.name,
                g.group_line(),
                g.gid
            ));
        }
        for u in &self.users {
            s.push_str(&format!(
                "vmbuild_account /etc/passwd {} '{}' {}\n",
                u.name,
                u.passwd_line(),
                u.uid
            ));
            s.push_str(&format!(
                "[ -e '{h}' ] || {{ mkdir -p '{h}' && chown {}:{} '{h}'; }}\n",
                u.uid,
                u.gid,
                h = u.home
            ));
        }
        if let Some(r) = &self.run_as {
            s.push_str(&format!(
                "mkdir -p '{workspace}' && chown -R {}:{} '{workspace}'\n",
                r.uid, r.gid
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn decoded(text: &str) -> Result<(AccountsDef, Source), ConfigError> {
        let src = Source::new("a.yaml", text);
        let root = yaml::parse(&src).unwrap().unwrap();
        let def = decode(Cx { src: &src }, &root, "environment.accounts")?;
        Ok((def, src))
    }

    fn resolved(text: &str) -> Result<Accounts, ConfigError> {
        let (def, src) = decoded(text)?;
        resolve(&src, &def, def.run_as.as_ref())
    }

    #[test]
    fn melange_default_build_account_and_no_run_as_is_root() {
        let a = resolved("{}").unwrap();
        assert_eq!(a.run_as, None);
        assert_eq!(a.groups[0].group_line(), "build:x:1000:build");
        assert_eq!(
            a.users[0].passwd_line(),
            "build:x:1000:1000::/home/build:/bin/sh"
        );
        assert_eq!(resolved("run-as: root").unwrap().run_as, None);
        assert_eq!(resolved("run-as: 0").unwrap().run_as, None);
    }

    #[test]
    fn declared_accounts_give_lines_and_run_as_ids() {
        let a = resolved(
            "run-as: maker\ngroups:\n  - groupname: makers\n    gid: 2000\n    members: [maker]\n  - groupname: extra\n    gid: 2001\n    members: [maker, build]\nusers:\n  - username: maker\n    uid: 2000\n    gid: 2000\n    homedir: /srv/maker\n    shell: /bin/bash\n",
        )
        .unwrap();
        let lines: Vec<String> = a.groups.iter().map(Group::group_line).collect();
        assert_eq!(
            lines,
            [
                "makers:x:2000:maker",
                "extra:x:2001:maker,build",
                "build:x:1000:build"
            ]
        );
        let lines: Vec<String> = a.users.iter().map(User::passwd_line).collect();
        assert_eq!(
            lines,
            [
                "maker:x:2000:2000::/srv/maker:/bin/bash",
                "build:x:1000:1000::/home/build:/bin/sh"
            ]
        );
        assert_eq!(
            a.run_as,
            Some(RunAs {
                name: "maker".into(),
                uid: 2000,
                gid: 2000,
                groups: vec![2000, 2001],
            })
        );
        // By uid, and the default user: gid defaults to the uid.
        let a = resolved("run-as: 1000").unwrap();
        assert_eq!(a.run_as.unwrap().name, "build");
        let a = resolved("run-as: u\nusers: [{username: u, uid: 5}]").unwrap();
        let r = a.run_as.unwrap();
        assert_eq!((r.uid, r.gid), (5, 5));
        assert_eq!(a.users[0].home, "/home/u");
    }

    #[test]
    fn a_declared_build_or_id_1000_replaces_the_default() {
        let a = resolved("users: [{username: alice, uid: 1000}]").unwrap();
        assert_eq!(a.users.len(), 1);
        let a = resolved("groups: [{groupname: build, gid: 3000}]").unwrap();
        assert_eq!(a.groups.len(), 1);
        assert_eq!(a.groups[0].gid, 3000);
    }

    #[test]
    fn unknown_run_as_is_located_and_names_the_users() {
        let e = resolved("users:\n  - {username: maker, uid: 2000}\nrun-as: nobody\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a.yaml:3:9: `run-as: nobody` names no user of environment.accounts.users (users: maker (2000), build (1000)); declare it under `users:` or run as one of those"
        );
        let e = resolved("run-as: 4242").unwrap_err().to_string();
        assert!(e.starts_with("a.yaml:1:9: "), "{e}");
    }

    #[test]
    fn clashing_names_and_ids_are_errors() {
        let e = decoded("users:\n  - {username: a, uid: 7}\n  - {username: b, uid: 7}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.yaml:3:5: "), "{e}");
        assert!(
            e.contains("user `b` (uid 7) clashes with user `a` (uid 7)"),
            "{e}"
        );
        let e = decoded("groups:\n  - {groupname: g, gid: 1}\n  - {groupname: g, gid: 2}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("group `g` (gid 2) clashes with group `g` (gid 1)"),
            "{e}"
        );
    }

    #[test]
    fn bad_names_ids_and_paths_are_located() {
        let (mut got, mut ok) = (Vec::new(), true);
        for (text, at, what) in [
            (
                "users: [{username: 'a:b', uid: 1}]",
                "1:20",
                "not a valid account name",
            ),
            ("users: [{username: a, uid: -1}]", "1:28", "not a valid id"),
            (
                "users: [{username: a, uid: 4294967295}]",
                "1:28",
                "not a valid id",
            ),
            (
                "users: [{username: a, uid: 1, homedir: rel}]",
                "1:40",
                "absolute path",
            ),
            (
                "groups: [{groupname: g, gid: 1, members: ['x y']}]",
                "1:43",
                "account name",
            ),
            ("users: [{username: a}]", "1:9", "missing required `uid`"),
            (
                "users: [{username: a, uid: 1, home: /x}]",
                "1:31",
                "unknown key `home`",
            ),
        ] {
            let e = decoded(text).unwrap_err().to_string();
            got.push(format!("{text}: {e}"));
            ok &= e.starts_with(&format!("a.yaml:{at}: ")) && e.contains(what);
        }
        assert!(ok, "{}", got.join("\n"));
    }

    #[test]
    fn setup_script_adds_entries_and_hands_over_the_workspace() {
        let a = resolved("run-as: build").unwrap();
        let s = a.setup_script("/home/build");
        assert!(s.contains("vmbuild_account /etc/group build 'build:x:1000:build' 1000\n"));
        assert!(s.contains(
            "vmbuild_account /etc/passwd build 'build:x:1000:1000::/home/build:/bin/sh' 1000\n"
        ));
        assert!(s.ends_with("chown -R 1000:1000 '/home/build'\n"));
        // Without run-as nothing changes owner.
        let a = resolved("{}").unwrap();
        assert!(!a.declared);
        let s = a.setup_script("/home/build");
        assert!(!s.contains("chown -R"));
    }
}
