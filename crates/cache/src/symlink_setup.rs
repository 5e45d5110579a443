//! Which [`SymlinkDefault`]s apply to a command environment. The guest init
//! creates them natively during Setup (`vmbuild_proto::SymlinkSpec`), so no
//! shell is needed in the guest for them.

use crate::env_defaults::SymlinkDefault;

/// The symlink defaults that apply to a command environment: those whose
/// `skip_if_env` variable is not set in `env`.
pub fn applicable_symlinks<'a>(
    defaults: &'a [SymlinkDefault],
    env: &[(String, String)],
) -> Vec<&'a SymlinkDefault> {
    defaults
        .iter()
        .filter(|d| match d.skip_if_env {
            Some(var) => !env.iter().any(|(k, _)| k == var),
            None => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env_defaults::symlink_defaults;

    #[test]
    fn cargo_links_are_skipped_when_cargo_home_is_set() {
        let d = symlink_defaults("/c", "/h");
        let all = applicable_symlinks(&d, &[]);
        assert_eq!(all.len(), 3);
        let env = vec![("CARGO_HOME".to_string(), "/opt/cargo".to_string())];
        let some = applicable_symlinks(&d, &env);
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].tool, "maven");
    }
}
