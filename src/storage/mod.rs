//! Filesystems for containers: overlay root filesystems over unpacked image layers.

pub mod rootfs;
