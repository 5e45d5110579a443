//! Cache volumes for the bubblewrap runner: each host directory is bound
//! read-write at its target (melange's semantics: writes persist), after
//! its `uid=`/`gid=`/`mode=` are applied to the directory itself — what a
//! virtiofs build does through the guest, done on the host.

use std::os::unix::fs::PermissionsExt;

use vmbuild_cache::SharedDir;

use super::args::VolumeBind;
use crate::error::RunError;

/// Checks each volume's host directory and applies its owner and mode;
/// returns the binds.
pub(crate) fn prepare(volumes: &[SharedDir]) -> Result<Vec<VolumeBind>, RunError> {
    volumes
        .iter()
        .map(|v| {
            let dir = &v.host_dir;
            if !dir.is_absolute() || !dir.is_dir() {
                return Err(RunError::Flag {
                    flag: "--cache".into(),
                    why: format!(
                        "volume directory {} is not an existing absolute directory",
                        dir.display()
                    ),
                });
            }
            let what =
                |op: &str| format!("{op} volume directory {} (for {})", dir.display(), v.target);
            if let Some((uid, gid)) = v.owner {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .map_err(|e| RunError::io(what(&format!("chown {uid}:{gid}")), e))?;
            }
            if let Some(mode) = v.root_mode {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| RunError::io(what(&format!("chmod {mode:o}")), e))?;
            }
            Ok(VolumeBind {
                host: dir.clone(),
                target: v.target.clone(),
            })
        })
        .collect()
}
