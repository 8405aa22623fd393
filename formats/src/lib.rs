//! What criox reads from peers it cannot trust, parsed without any I/O of its own (the
//! layer unpacker writes only below the directory it is given): image references,
//! manifests and configs, registries.conf, the trust policy and its keys, layer tars,
//! SPDY/3 frames and header blocks, the Kubernetes channel protocol over WebSocket, and
//! the fields of CRI requests.
//!
//! The daemon re-exports these modules where they used to live (`image::reference`,
//! `storage::unpack`, ...); the fuzz targets under `fuzz/` build this crate alone.

pub mod cri_fields;
pub mod manifest;
pub mod policy;
pub mod reference;
pub mod registries;
pub mod sigstore_key;
pub mod spdy;
pub mod unpack;
pub mod websocket;
