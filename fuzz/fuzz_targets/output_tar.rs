//! The hardened unpacker of build outputs and cache commits: any tar
//! stream a guest sends either unpacks inside the staging directory or
//! fails — it never panics and never creates anything beside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmbuild_runner::output::OutputSink;
use vmbuild_runner::{ExportLimits, TarExtractor};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let stage = dir.path().join("stage");
    std::fs::create_dir(&stage).expect("stage");
    let limits = ExportLimits {
        max_entries: 1000,
        max_bytes: 1 << 20,
    };
    let mut x = TarExtractor::with_limits(&stage, limits).expect("extractor");
    // Fed in two pieces, as frames arrive.
    let (a, b) = data.split_at(data.len() / 2);
    x.stdout(a);
    x.stdout(b);
    let _ = x.finish();
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, ["stage"], "nothing may appear beside the staging dir");
});
