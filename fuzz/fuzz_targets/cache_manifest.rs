//! The reading of a cache export's manifest and config (what whoever can
//! write the cache registry controls): any bytes either give an export
//! whose per-volume layers add up to the manifest's, or an error on one
//! line with no control character — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmbuild_transfer::format;

fuzz_target!(|data: &[u8]| {
    // The first two bytes say where the manifest ends and the config starts.
    let (head, rest) = data.split_at(data.len().min(2));
    let cut = head.iter().fold(0usize, |a, b| a << 8 | *b as usize) % (rest.len() + 1);
    let (manifest, config) = rest.split_at(cut);
    let (m, _cfg) = match format::config_of(manifest) {
        Ok(found) => found,
        Err(e) => {
            assert!(!e.0.chars().any(char::is_control), "{:?}", e.0);
            return;
        }
    };
    match format::export_of(&m, config) {
        Ok(e) => {
            assert_eq!(e.layers.len(), e.config.volumes.len());
            for (v, ls) in e.config.volumes.iter().zip(&e.layers) {
                assert_eq!(v.layers, ls.len(), "volume {}", v.name);
            }
        }
        Err(e) => assert!(!e.0.chars().any(char::is_control), "{:?}", e.0),
    }
});
