//! Listing sysfs class directories (virtio ports, NICs, block devices).

use std::path::Path;

/// The sorted entry names of `dir`; empty when it cannot be read.
pub fn entry_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The same, joined with ", " for error messages ("what was there").
pub fn seen(dir: &Path) -> String {
    entry_names(dir).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sorted_names_and_tolerates_missing_dirs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("vport2p1")).unwrap();
        std::fs::create_dir(d.path().join("vport1p1")).unwrap();
        assert_eq!(entry_names(d.path()), ["vport1p1", "vport2p1"]);
        assert_eq!(seen(d.path()), "vport1p1, vport2p1");
        assert!(entry_names(&d.path().join("missing")).is_empty());
    }
}
