//! The daemon's parsers of untrusted input, compiled from the daemon's own source files
//! so that the fuzz targets exercise exactly the code that runs. Every target imports
//! from here and nowhere else: if the daemon gains a library target, only this file
//! changes. The modules sit at the root because they refer to each other as siblings
//! (`super::reference`), as they do under `image/`.
#![allow(dead_code, unused_imports)]

#[path = "../../src/image/manifest.rs"]
pub mod manifest;
#[path = "../../src/image/policy.rs"]
pub mod policy;
#[path = "../../src/image/reference.rs"]
pub mod reference;
#[path = "../../src/image/registries.rs"]
pub mod registries;
/// Only the key parsing the trust policy needs; verification talks to registries.
#[path = "../../src/image/sigstore/key.rs"]
pub mod sigstore;
#[path = "../../src/storage/unpack.rs"]
pub mod unpack;

pub use manifest::{OciImageConfig, parse as parse_manifest};
pub use policy::Policy;
pub use reference::Reference;
pub use registries::RegistriesConf;
pub use unpack::{Limits, unpack_layer_with};
