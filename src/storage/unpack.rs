//! Unpacks one image layer (a tar stream, plain, gzip or zstd) into a directory that
//! overlayfs can use as a lower layer: OCI whiteouts become overlay whiteouts (a 0:0
//! character device, or the `trusted.overlay.opaque` xattr on a directory), and no entry
//! may reach outside the directory, neither with `..` nor through a symlink.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

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
    let mut buffered = BufReader::with_capacity(256 * 1024, stream);
    let head = buffered.fill_buf().map_err(UnpackError::Read)?.to_vec();
    if head.starts_with(GZIP_MAGIC) {
        unpack_tar(flate2::read::MultiGzDecoder::new(buffered), dest)
    } else if head.starts_with(ZSTD_MAGIC) {
        let decoder =
            zstd::stream::read::Decoder::with_buffer(buffered).map_err(UnpackError::Read)?;
        unpack_tar(decoder, dest)
    } else {
        unpack_tar(buffered, dest)
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

fn unpack_tar(tar_stream: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
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
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        if let Some((path, mtime)) = unpack_entry(&mut entry, dest, &mut buf)? {
            dir_times.push((path, mtime));
        }
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
                fs::create_dir(&current).map_err(|e| entry_error(shown, e))?;
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

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path has a NUL byte"))
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = cstring(path)?;
    let n = CString::new(name).map_err(|_| io::Error::other("xattr name has a NUL byte"))?;
    // SAFETY: both strings are NUL-terminated; value points to value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn lchown(path: &Path, uid: u64, gid: u64) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::lchown(c.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let c = cstring(path)?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: c is NUL-terminated and times holds two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Writes one entry; returns a directory and its mtime to set at the end.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    dest: &Path,
    buf: &mut [u8],
) -> Result<Option<(PathBuf, i64)>, UnpackError> {
    let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
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
    let uid = header.uid().map_err(UnpackError::Read)?;
    let gid = header.gid().map_err(UnpackError::Read)?;
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
            let target = entry
                .link_name()
                .map_err(UnpackError::Read)?
                .ok_or_else(|| err(io::Error::other("symlink without a target")))?
                .into_owned();
            clear_target(&path, false).map_err(err)?;
            symlink(&target, &path).map_err(err)?;
        }
        EntryType::Link => {
            let target_raw = entry
                .link_name()
                .map_err(UnpackError::Read)?
                .ok_or_else(|| err(io::Error::other("hard link without a target")))?
                .into_owned();
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

    if let Some(extensions) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for ext in extensions {
            let ext = ext.map_err(UnpackError::Read)?;
            let Ok(key) = ext.key() else { continue };
            // overlayfs's own attributes (opaque, redirect, metacopy) may only come from
            // whiteouts: a layer that carried them could reshape the container's view.
            if let Some(xattr) = key.strip_prefix("SCHILY.xattr.")
                && !xattr.starts_with("trusted.overlay.")
            {
                lsetxattr(&path, xattr, ext.value_bytes()).map_err(err)?;
            }
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
    if kind == EntryType::Directory {
        return Ok(Some((path, mtime)));
    }
    set_mtime(&path, mtime).map_err(err)?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn builder() -> tar::Builder<Vec<u8>> {
        tar::Builder::new(Vec::new())
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, path, io::empty()).unwrap();
    }

    fn add_link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = header(kind, 0o777, 0);
        b.append_link(&mut h, path, target).unwrap();
    }

    /// Writes a raw path the tar crate would refuse to add.
    fn add_raw_name(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder();
        add_dir(&mut b, "etc/");
        add_file(&mut b, "etc/.wh.passwd", b"", 0o644);
        add_dir(&mut b, "opaque/");
        add_file(&mut b, "opaque/.wh..wh..opq", b"", 0o644);
        add_file(&mut b, "opaque/kept", b"kept", 0o644);
        let data = b.into_inner().unwrap();
        unpack_layer(&data[..], dir.path()).unwrap();
        let meta = fs::symlink_metadata(dir.path().join("etc/passwd")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), 0);
        assert!(!dir.path().join("etc/.wh.passwd").exists());
        let mut buf = [0u8; 4];
        let c = cstring(&dir.path().join("opaque")).unwrap();
        let name = CString::new("trusted.overlay.opaque").unwrap();
        // SAFETY: valid strings and a 4-byte buffer.
        let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 4) };
        assert_eq!(n, 1, "opaque xattr missing");
        assert_eq!(buf[0], b'y');
        assert_eq!(fs::read(dir.path().join("opaque/kept")).unwrap(), b"kept");
    }

    #[test]
    fn metadata_links_and_devices_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder();
        let mut h = header(tar::EntryType::Regular, 0o4750, 3);
        h.set_uid(1000);
        h.set_gid(2000);
        b.append_data(&mut h, "bin/tool", &b"abc"[..]).unwrap();
        add_link(&mut b, tar::EntryType::Link, "bin/tool-link", "bin/tool");
        add_link(&mut b, tar::EntryType::Symlink, "bin/abs", "/etc/passwd");
        let mut dev = header(tar::EntryType::Char, 0o666, 0);
        dev.set_device_major(1).unwrap();
        dev.set_device_minor(3).unwrap();
        b.append_data(&mut dev, "dev/null", io::empty()).unwrap();
        let data = b.into_inner().unwrap();
        let unpacked = unpack_layer(&data[..], dir.path()).unwrap();
        assert_eq!(
            unpacked.diff_id,
            format!("sha256:{:x}", Sha256::digest(&data))
        );
        let meta = fs::metadata(dir.path().join("bin/tool")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 2000));
        assert_eq!(meta.mode() & 0o7777, 0o4750);
        assert_eq!(meta.mtime(), 1_700_000_000);
        let link = fs::metadata(dir.path().join("bin/tool-link")).unwrap();
        assert_eq!(link.ino(), meta.ino());
        assert_eq!(
            fs::read_link(dir.path().join("bin/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        let null = fs::symlink_metadata(dir.path().join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
    }

    #[test]
    fn gzip_and_zstd_streams_unpack_to_the_same_diff_id() {
        let mut b = builder();
        add_file(&mut b, "a/b", b"hello", 0o644);
        let plain = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        let mut ids = Vec::new();
        for data in [&plain, &gz, &zst] {
            let dir = tempfile::tempdir().unwrap();
            ids.push(unpack_layer(&data[..], dir.path()).unwrap().diff_id);
            assert_eq!(fs::read(dir.path().join("a/b")).unwrap(), b"hello");
        }
        assert!(ids.iter().all(|id| id == &ids[0]));
    }

    #[test]
    fn dotdot_entries_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let mut b = builder();
        add_raw_name(&mut b, "../escaped", b"x");
        let data = b.into_inner().unwrap();
        let err = unpack_layer(&data[..], &dest).unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
        assert!(!outer.path().join("escaped").exists());
    }

    #[test]
    fn writes_through_symlinks_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        let victim = outer.path().join("victim");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(&victim).unwrap();
        let mut b = builder();
        add_link(
            &mut b,
            tar::EntryType::Symlink,
            "link",
            victim.to_str().unwrap(),
        );
        add_file(&mut b, "link/escaped", b"x", 0o644);
        let data = b.into_inner().unwrap();
        let err = unpack_layer(&data[..], &dest).unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
        assert!(!victim.join("escaped").exists());
        // A hard link may not point out either.
        let mut b = builder();
        add_link(&mut b, tar::EntryType::Link, "h", "../victim/x");
        let data = b.into_inner().unwrap();
        let dest2 = outer.path().join("layer2");
        fs::create_dir(&dest2).unwrap();
        assert!(matches!(
            unpack_layer(&data[..], &dest2).unwrap_err(),
            UnpackError::Escape { .. }
        ));
    }

    #[test]
    fn bad_whiteouts_and_overlay_xattrs_are_refused_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder();
        add_dir(&mut b, "keep/");
        add_file(&mut b, "keep/.wh.", b"", 0o644);
        let data = b.into_inner().unwrap();
        assert!(matches!(
            unpack_layer(&data[..], dir.path()).unwrap_err(),
            UnpackError::Escape { .. }
        ));
        assert!(dir.path().join("keep").is_dir());

        let dir = tempfile::tempdir().unwrap();
        let mut b = builder();
        let mut h = header(tar::EntryType::Regular, 0o644, 1);
        b.append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
            ("SCHILY.xattr.user.criox", &b"kept"[..]),
        ])
        .unwrap();
        b.append_data(&mut h, "f", &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        unpack_layer(&data[..], dir.path()).unwrap();
        let get = |name: &str| {
            let c = cstring(&dir.path().join("f")).unwrap();
            let n = CString::new(name).unwrap();
            let mut buf = [0u8; 16];
            // SAFETY: valid strings and a 16-byte buffer.
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 16) }
        };
        assert_eq!(get("trusted.overlay.redirect"), -1);
        assert_eq!(get("user.criox"), 4);
    }

    #[test]
    fn truncated_stream_fails() {
        let mut b = builder();
        add_file(&mut b, "big", &vec![7u8; 100_000], 0o644);
        let data = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &data).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert!(unpack_layer(&gz[..gz.len() / 2], dir.path()).is_err());
    }
}
