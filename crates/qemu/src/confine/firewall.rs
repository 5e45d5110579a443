//! `--network user,restrict-host`: QEMU's user-mode network connects out
//! from QEMU's own process, so the host's firewall can tell a restricted
//! VM's traffic by QEMU's uid. The restricted VMs run QEMU as their own uid
//! ([`super::user::choose_restricted`]); one rule on the host's `OUTPUT`
//! chain sends that uid's packets to the [`CHAIN`] chain, which rejects
//! everything addressed to the host itself (its loopback, reached from the
//! guest at 10.0.2.2, and its other addresses) except DNS, which the
//! user-mode network forwards to the host's resolver. Everything else (the
//! internet) passes. The rules stay installed: they match only that uid.

/// The chain holding the rules.
pub const CHAIN: &str = "VMBUILD-RESTRICT-HOST";

/// One `iptables`/`ip6tables` invocation (arguments after the program).
pub type Rule = Vec<String>;

fn args(a: &[&str]) -> Rule {
    a.iter().map(|s| (*s).to_string()).collect()
}

/// A rule written as one line (no argument has a blank in it).
fn line(l: &str) -> Rule {
    l.split_whitespace().map(str::to_string).collect()
}

/// The chain's contents, in order (after a flush): DNS returns (is
/// accepted); anything else to a host address is rejected — TCP with a
/// reset, so the guest's connect fails at once instead of timing out.
pub fn chain_rules() -> Vec<Rule> {
    let local = "-m addrtype --dst-type LOCAL -j REJECT";
    vec![
        line(&format!("-w -A {CHAIN} -p udp --dport 53 -j RETURN")),
        line(&format!("-w -A {CHAIN} -p tcp --dport 53 -j RETURN")),
        line(&format!(
            "-w -A {CHAIN} -p tcp {local} --reject-with tcp-reset"
        )),
        line(&format!("-w -A {CHAIN} {local}")),
    ]
}

/// The `OUTPUT` rule sending `uid`'s packets to [`CHAIN`]; `op` is `-C`
/// (check) or `-I` (insert).
pub fn jump_rule(op: &str, uid: u32) -> Rule {
    let uid = uid.to_string();
    args(&[
        "-w",
        op,
        "OUTPUT",
        "-m",
        "owner",
        "--uid-owner",
        &uid,
        "-j",
        CHAIN,
    ])
}

/// Installs the rules for `uid` with `iptables` and `ip6tables`
/// (idempotent: the chain is refilled, the jump added once).
///
/// # Errors
/// A message naming the command that failed and what it said.
pub fn ensure(uid: u32) -> Result<(), String> {
    for tool in ["iptables", "ip6tables"] {
        let bin = which::which(tool).map_err(|_| {
            format!("{tool} not found; --network user,restrict-host needs it (apt-get install iptables)")
        })?;
        let run = |a: &[String]| {
            std::process::Command::new(&bin)
                .args(a)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {tool}: {e}"))
        };
        let must = |a: Rule| -> Result<(), String> {
            let o = run(&a)?;
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{tool} {} failed: {}",
                    a.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        };
        // -N fails when the chain exists, which is fine; -F empties it.
        let _ = run(&args(&["-w", "-N", CHAIN]))?;
        must(args(&["-w", "-F", CHAIN]))?;
        for r in chain_rules() {
            must(r)?;
        }
        if !run(&jump_rule("-C", uid))?.status.success() {
            must(jump_rule("-I", uid))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_the_host_but_dns_for_that_uid_only() {
        let rules: Vec<String> = chain_rules().iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            rules,
            [
                "-w -A VMBUILD-RESTRICT-HOST -p udp --dport 53 -j RETURN",
                "-w -A VMBUILD-RESTRICT-HOST -p tcp --dport 53 -j RETURN",
                "-w -A VMBUILD-RESTRICT-HOST -p tcp -m addrtype --dst-type LOCAL -j REJECT --reject-with tcp-reset",
                "-w -A VMBUILD-RESTRICT-HOST -m addrtype --dst-type LOCAL -j REJECT",
            ]
        );
        assert_eq!(
            jump_rule("-I", 64_013).join(" "),
            "-w -I OUTPUT -m owner --uid-owner 64013 -j VMBUILD-RESTRICT-HOST"
        );
    }
}
