//! Manifests, indexes and image configs come from registries as JSON.
#![no_main]

use criox_formats::manifest::{OciImageConfig, parse as parse_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for header in [
        "",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ] {
        let _ = parse_manifest(data, header);
    }
    let _ = OciImageConfig::parse(data);
});
