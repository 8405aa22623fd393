//! A layer is whatever a registry sends: any bytes must unpack or fail cleanly, and
//! nothing may appear outside the layer directory.
#![no_main]

use criox_formats::unpack::{Limits, unpack_layer_with};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("layer");
    std::fs::create_dir(&dest).unwrap();
    // Small limits keep each run fast; the checks are the same ones.
    let limits = Limits {
        max_header: 64 << 10,
        max_entries: 4096,
    };
    let _ = unpack_layer_with(data, &dest, &limits);
    let escaped: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "layer")
        .collect();
    assert!(escaped.is_empty(), "written outside the layer: {escaped:?}");
});
