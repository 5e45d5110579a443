//! Cache volumes for the bubblewrap runner: each host directory is bound
//! read-write at its target (melange's semantics: writes persist), after
//! its `mode=` is applied to the directory itself — what a virtiofs build
//! does through the guest, done on the host. `uid=`/`gid=` are refused:
//! the sandbox maps only the invoking user, so another owner would lock
//! the command out of its own volume.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
            existing_dir("--cache", dir)?;
            let what =
                |op: &str| format!("{op} volume directory {} (for {})", dir.display(), v.target);
            if v.owner.is_some() {
                // The CLI refuses uid=/gid= first (vmbuild's volumes::check).
                return Err(RunError::Flag {
                    flag: "--cache".into(),
                    why: format!("{}: an owner cannot apply under bubblewrap, whose commands run as the invoking user", v.target),
                });
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

/// Refuses a directory given by `flag` that is not an existing absolute one
/// (the CLI has created and checked it; this guards other callers).
pub(crate) fn existing_dir(flag: &str, dir: &Path) -> Result<(), RunError> {
    if dir.is_absolute() && dir.is_dir() {
        return Ok(());
    }
    Err(RunError::Flag {
        flag: flag.into(),
        why: format!(
            "{} is not an existing absolute directory; create it or pass another",
            dir.display()
        ),
    })
}
