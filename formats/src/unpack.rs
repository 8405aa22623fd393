//! Unpacks one image layer (a tar stream, plain, gzip or zstd) into a directory that
//! overlayfs can use as a lower layer: OCI whiteouts become overlay whiteouts (a 0:0
//! character device, or the `trusted.overlay.opaque` xattr on a directory), and no entry
//! may reach outside the directory, neither with `..` nor through a symlink.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

mod headers;
mod sys;

use headers::Extended;
pub use headers::Limits;
use sys::{cstring, lchown, lsetxattr, mknod, set_mtime};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer stream: {0}")]
    Read(#[source] io::Error),
    #[error("layer entry {entry:?} escapes the layer directory")]
    Escape { entry: String },
    #[error("layer entry {entry:?}: {source}")]
    Entry {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?} has unsupported type {kind:?}")]
    UnsupportedEntry { entry: String, kind: u8 },
    #[error("layer header refused: {detail}")]
    Header { detail: String },
    #[error("layer has more than {max} entries")]
    TooManyEntries { max: u64 },
}

impl UnpackError {
    /// Whether reading or writing failed, rather than the layer's content being refused.
    pub fn is_io(&self) -> bool {
        matches!(self, UnpackError::Read(_) | UnpackError::Entry { .. })
    }
}

/// What the unpacker learned from the uncompressed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed tar: the layer's diff id.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Unpacks `stream` into `dest` (an empty, private directory). The compression is taken
/// from the stream's first bytes, so a media type that lies about it does no harm.
pub fn unpack_layer(stream: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
    unpack_layer_with(stream, dest, &Limits::default())
}

/// [`unpack_layer`] with explicit limits on what the layer may make the unpacker hold.
pub fn unpack_layer_with(
    stream: impl Read,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, stream);
    let head = buffered.fill_buf().map_err(UnpackError::Read)?.to_vec();
    if head.starts_with(GZIP_MAGIC) {
        unpack_tar(flate2::read::MultiGzDecoder::new(buffered), dest, limits)
    } else if head.starts_with(ZSTD_MAGIC) {
        let decoder =
            zstd::stream::read::Decoder::with_buffer(buffered).map_err(UnpackError::Read)?;
        unpack_tar(decoder, dest, limits)
    } else {
        unpack_tar(buffered, dest, limits)
    }
}

/// Counts and hashes what passes through, for the diff id.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

fn unpack_tar(
    tar_stream: impl Read,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    let hashing = Hashing {
        inner: tar_stream,
        hasher: Sha256::new(),
        size: 0,
    };
    let mut archive = tar::Archive::new(hashing);
    // Directory times change as their children arrive: set them once all are in.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    // Large writes: far fewer syscalls than io::copy's 8 KiB for big layers.
    let mut buf = vec![0u8; 256 * 1024];
    // Raw: the tar crate would read extended headers of any claimed size into memory.
    let mut extended = Extended::default();
    let mut count = 0u64;
    for entry in archive.entries().map_err(UnpackError::Read)?.raw(true) {
        let mut entry = entry.map_err(UnpackError::Read)?;
        count += 1;
        if count > limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        if extended.absorb(&mut entry, limits)? {
            continue;
        }
        let ext = extended.take();
        if let Some((path, mtime)) = unpack_entry(&mut entry, &ext, dest, &mut buf)? {
            dir_times.push((path, mtime));
        }
    }
    if extended.is_pending() {
        return Err(UnpackError::Header {
            detail: "the layer ends with headers describing no entry".to_string(),
        });
    }
    let mut hashing = archive.into_inner();
    // The diff id covers the whole stream, padding after the end marker included.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    for (path, mtime) in dir_times.iter().rev() {
        let _ = set_mtime(path, *mtime);
    }
    Ok(Unpacked {
        diff_id: format!("sha256:{:x}", hashing.hasher.finalize()),
        size: hashing.size,
    })
}

/// The entry's path relative to the layer root, or an error if it climbs out of it.
fn clean_path(raw: &Path, shown: &str) -> Result<PathBuf, UnpackError> {
    let mut clean = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    entry: shown.to_string(),
                });
            }
        }
    }
    Ok(clean)
}

/// Creates the parents of `rel` inside `dest` as directories, refusing any that is a
/// symlink: following one would write outside the layer.
fn prepare_parents(dest: &Path, rel: &Path, shown: &str) -> Result<(), UnpackError> {
    let mut current = dest.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for part in parents {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(UnpackError::Escape {
                    entry: shown.to_string(),
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(entry_error(
                    shown,
                    io::Error::other(format!("parent {} is not a directory", current.display())),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A parent the layer does not list gets the mode image tools give it,
                // not the daemon's private umask: containers' non-root users walk it.
                fs::create_dir(&current)
                    .and_then(|()| {
                        fs::set_permissions(
                            &current,
                            std::os::unix::fs::PermissionsExt::from_mode(0o755),
                        )
                    })
                    .map_err(|e| entry_error(shown, e))?;
            }
            Err(e) => return Err(entry_error(shown, e)),
        }
    }
    Ok(())
}

fn entry_error(entry: &str, source: io::Error) -> UnpackError {
    UnpackError::Entry {
        entry: entry.to_string(),
        source,
    }
}

/// Removes whatever is at `path` unless both it and the new entry are directories.
fn clear_target(path: &Path, new_is_dir: bool) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() && new_is_dir => Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Writes one entry; returns a directory and its mtime to set at the end.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    ext: &Extended,
    dest: &Path,
    buf: &mut [u8],
) -> Result<Option<(PathBuf, i64)>, UnpackError> {
    let raw = ext.path(entry.header());
    let shown = raw.display().to_string();
    let rel = clean_path(&raw, &shown)?;
    if rel.as_os_str().is_empty() {
        return Ok(None);
    }
    prepare_parents(dest, &rel, &shown)?;
    let path = dest.join(&rel);
    let name = rel.file_name().unwrap_or(OsStr::new("")).to_string_lossy();

    if name == OPAQUE_WHITEOUT {
        let dir = path.parent().unwrap_or(dest);
        lsetxattr(dir, "trusted.overlay.opaque", b"y").map_err(|e| entry_error(&shown, e))?;
        return Ok(None);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other AUFS metadata (.wh..wh.plnk and the like) means nothing to overlayfs.
            return Ok(None);
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(UnpackError::Escape { entry: shown });
        }
        let target = path.with_file_name(hidden);
        clear_target(&target, false).map_err(|e| entry_error(&shown, e))?;
        mknod(&target, libc::S_IFCHR, 0).map_err(|e| entry_error(&shown, e))?;
        return Ok(None);
    }

    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
    ext.check_size(header)?;
    let uid = ext.id("uid", header.uid().map_err(UnpackError::Read)?)?;
    let gid = ext.id("gid", header.gid().map_err(UnpackError::Read)?)?;
    let mtime = header.mtime().map_err(UnpackError::Read)? as i64;
    let err = |e| entry_error(&shown, e);

    use tar::EntryType;
    match kind {
        EntryType::Regular | EntryType::Continuous => {
            clear_target(&path, false).map_err(err)?;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&path)
                .map_err(err)?;
            loop {
                let n = match entry.read(buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(err(e)),
                };
                io::Write::write_all(&mut file, &buf[..n]).map_err(err)?;
            }
        }
        EntryType::Directory => {
            clear_target(&path, true).map_err(err)?;
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err(e)),
            }
        }
        EntryType::Symlink => {
            let target = ext
                .link(entry.header())
                .ok_or_else(|| err(io::Error::other("symlink without a target")))?;
            clear_target(&path, false).map_err(err)?;
            symlink(&target, &path).map_err(err)?;
        }
        EntryType::Link => {
            let target_raw = ext
                .link(entry.header())
                .ok_or_else(|| err(io::Error::other("hard link without a target")))?;
            let target_rel = clean_path(&target_raw, &shown)?;
            prepare_parents(dest, &target_rel, &shown)?;
            clear_target(&path, false).map_err(err)?;
            fs::hard_link(dest.join(target_rel), &path).map_err(err)?;
            // A hard link shares the target's metadata: nothing more to set.
            return Ok(None);
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            // Writers leave the device fields of a FIFO empty.
            let (file_type, dev) = match kind {
                EntryType::Fifo => (libc::S_IFIFO, 0),
                _ => {
                    let major = header
                        .device_major()
                        .map_err(UnpackError::Read)?
                        .unwrap_or(0);
                    let minor = header
                        .device_minor()
                        .map_err(UnpackError::Read)?
                        .unwrap_or(0);
                    let file_type = if kind == EntryType::Char {
                        libc::S_IFCHR
                    } else {
                        libc::S_IFBLK
                    };
                    (file_type, libc::makedev(major, minor))
                }
            };
            clear_target(&path, false).map_err(err)?;
            mknod(&path, file_type | 0o600, dev).map_err(err)?;
        }
        EntryType::XGlobalHeader
        | EntryType::XHeader
        | EntryType::GNULongName
        | EntryType::GNULongLink => {
            return Ok(None);
        }
        other => {
            return Err(UnpackError::UnsupportedEntry {
                entry: shown,
                kind: other.as_byte(),
            });
        }
    }

    lchown(&path, uid, gid).map_err(err)?;
    if kind != EntryType::Symlink {
        // After chown, which clears set-id bits.
        let c = cstring(&path).map_err(err)?;
        // SAFETY: c is a valid NUL-terminated path; the entry is not a symlink.
        if unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) } != 0 {
            return Err(err(io::Error::last_os_error()));
        }
    }
    // After chown too, which drops `security.capability`: file capabilities survive.
    for (name, value) in ext.xattrs() {
        // overlayfs's own attributes (opaque, redirect, metacopy) may only come from
        // whiteouts: a layer that carried them could reshape the container's view.
        if !name.starts_with("trusted.overlay.") {
            lsetxattr(&path, name, value).map_err(err)?;
        }
    }
    if kind == EntryType::Directory {
        return Ok(Some((path, mtime)));
    }
    set_mtime(&path, mtime).map_err(err)?;
    Ok(None)
}

#[cfg(test)]
mod tests;
