//! Unpacking real and hostile layers into a temporary directory.

use super::*;
use std::ffi::CString;
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

/// A raw member header: the tar crate's builder would not write lying sizes.
fn raw_member(kind: u8, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_path("././@header").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    *h.as_bytes()
}

fn with_member(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut data = raw_member(kind, body.len() as u64).to_vec();
    data.extend_from_slice(body);
    data.resize(data.len().div_ceil(512) * 512, 0);
    let mut b = builder();
    add_file(&mut b, "after", b"x", 0o644);
    data.extend(b.into_inner().unwrap());
    data
}

#[test]
fn oversized_pax_and_long_name_headers_are_refused_before_reading() {
    for (kind, name) in [
        (b'x', "PAX"),
        (b'L', "GNU long name"),
        (b'K', "GNU long link"),
    ] {
        let body = vec![b'a'; (1 << 20) + 1];
        let data = with_member(kind, &body);
        // zstd: a few hundred bytes stand for the whole oversized header.
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_layer(&zst[..], dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "layer header refused: a {name} header of 1048577 bytes, more than the 1048576 allowed"
            )
        );
        assert!(!dir.path().join("after").exists());
    }
}

#[test]
fn a_header_claiming_gigabytes_fails_at_once() {
    // The stream ends long before the claimed size: nothing is allocated for it.
    let mut data = raw_member(b'x', 64 << 30).to_vec();
    data.extend_from_slice(&[b'1'; 4096]);
    let dir = tempfile::tempdir().unwrap();
    let err = unpack_layer(&data[..], dir.path()).unwrap_err().to_string();
    assert!(err.contains("PAX header of 68719476736 bytes"), "{err}");
}

#[test]
fn long_names_and_links_within_the_cap_unpack() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(150));
    let mut b = builder();
    add_file(&mut b, &long, b"long", 0o644);
    add_link(&mut b, tar::EntryType::Symlink, "s", &"t".repeat(300));
    b.append_pax_extensions([("path", &b"pax/named"[..])])
        .unwrap();
    add_file(&mut b, "ignored-name", b"pax", 0o644);
    let data = b.into_inner().unwrap();
    unpack_layer(&data[..], dir.path()).unwrap();
    assert_eq!(fs::read(dir.path().join(&long)).unwrap(), b"long");
    assert_eq!(
        fs::read_link(dir.path().join("s")).unwrap(),
        Path::new(&"t".repeat(300))
    );
    assert_eq!(fs::read(dir.path().join("pax/named")).unwrap(), b"pax");
    assert!(!dir.path().join("ignored-name").exists());
}

#[test]
fn entry_count_is_capped() {
    let mut b = builder();
    for i in 0..11 {
        add_file(&mut b, &format!("f{i}"), b"", 0o644);
    }
    let data = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let err = unpack_layer_with(&data[..], dir.path(), &limits).unwrap_err();
    assert_eq!(err.to_string(), "layer has more than 10 entries");
}

#[test]
fn pax_size_disagreeing_with_the_header_is_refused() {
    let mut b = builder();
    b.append_pax_extensions([("size", &b"0"[..])]).unwrap();
    add_file(&mut b, "f", b"hidden", 0o644);
    let data = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = unpack_layer(&data[..], dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        "layer header refused: PAX size \"0\" differs from the header's 6"
    );
}

#[test]
fn file_capabilities_survive_the_chown() {
    // vfs_cap_data revision 2, effective, CAP_NET_BIND_SERVICE (bit 10) permitted.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let mut b = builder();
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])])
        .unwrap();
    let mut h = header(tar::EntryType::Regular, 0o755, 1);
    h.set_uid(1000);
    h.set_gid(1000);
    b.append_data(&mut h, "ping", &b"x"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(&data[..], dir.path()).unwrap();
    let c = cstring(&dir.path().join("ping")).unwrap();
    let n = CString::new("security.capability").unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid strings and a 64-byte buffer.
    let len = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 64) };
    assert_eq!(len, 20, "security.capability was dropped");
    assert_eq!(&buf[..20], &cap[..]);
    let meta = fs::metadata(dir.path().join("ping")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (1000, 0o755));
}
