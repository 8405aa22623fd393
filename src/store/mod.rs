//! Persistent typed records: one JSON file per record under a directory, each written
//! atomically (write, fsync, rename, fsync of the directory) before the caller answers,
//! plus the in-memory indexes that resolve ids by unique prefix and names to ids.

mod index;
mod records;

pub use index::{IdIndex, IdLookupError, NameIndex};
pub use records::{RecordStore, StoreError};
