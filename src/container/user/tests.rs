use super::*;

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
    alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
    nohome:x:1001:1001::::\n\
    broken line\n";
pub const GROUP: &str = "root:x:0:\n\
    daemon:x:1:\n\
    alice:x:1000:\n\
    wheel:x:10:alice,bob\n\
    audio:x:29:bob, alice\n\
    staff:x:50:\n";

pub fn image_rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
    dir
}

fn resolve(req: UserRequest<'_>) -> Result<ResolvedUser> {
    let root = image_rootfs();
    ImageUsers::load(root.path()).unwrap().resolve(&req)
}

fn image(user: &str) -> Result<ResolvedUser> {
    resolve(UserRequest {
        image_user: user,
        ..Default::default()
    })
}

#[test]
fn empty_image_user_is_root_with_its_home() {
    let u = image("").unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    assert_eq!(u.additional_gids, vec![0]);
}

#[test]
fn image_user_by_name_gets_groups_from_etc_group() {
    let u = image("alice").unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/alice"));
    assert_eq!(u.additional_gids, vec![1000, 10, 29]);
}

#[test]
fn image_user_by_uid_known_and_unknown() {
    let u = image("1").unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (1, 1, "/usr/sbin"));
    let u = image("4242").unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
    assert_eq!(u.additional_gids, vec![0]);
}

#[test]
fn image_user_with_group_forms() {
    let u = image("alice:staff").unwrap();
    assert_eq!((u.uid, u.gid), (1000, 50));
    let u = image("1000:77").unwrap();
    assert_eq!((u.uid, u.gid), (1000, 77));
    let u = image("4242:staff").unwrap();
    assert_eq!((u.uid, u.gid), (4242, 50));
}

#[test]
fn image_user_missing_is_an_error_naming_the_field() {
    let e = image("mallory").unwrap_err().to_string();
    assert_eq!(
        e,
        "image config User: user \"mallory\" not found in image /etc/passwd"
    );
    let e = image("alice:nogroup").unwrap_err().to_string();
    assert!(e.starts_with("image config User: group \"nogroup\" not found"));
}

#[test]
fn run_as_user_overrides_image_user_and_takes_gid_from_passwd() {
    let u = resolve(UserRequest {
        run_as_user: Some(1000),
        image_user: "daemon",
        ..Default::default()
    })
    .unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/alice"));
    assert_eq!(u.additional_gids, vec![1000, 10, 29]);
}

#[test]
fn run_as_username_and_group() {
    let u = resolve(UserRequest {
        run_as_username: "alice",
        run_as_group: Some(50),
        supplemental_groups: &[60, 10],
        ..Default::default()
    })
    .unwrap();
    assert_eq!((u.uid, u.gid), (1000, 50));
    assert_eq!(u.additional_gids, vec![50, 10, 29, 60]);
}

#[test]
fn run_as_username_missing_names_the_field() {
    let e = resolve(UserRequest {
        run_as_username: "x",
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.security_context.run_as_username: user \"x\" not found in image /etc/passwd"
    );
}

#[test]
fn strict_policy_skips_image_groups() {
    let u = resolve(UserRequest {
        run_as_username: "alice",
        supplemental_groups: &[5],
        strict_groups: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(u.additional_gids, vec![1000, 5]);
}

#[test]
fn user_without_home_gets_slash() {
    let u = image("nohome").unwrap();
    assert_eq!(u.home, "/");
}

#[test]
fn invalid_combinations_and_values() {
    let e = resolve(UserRequest {
        run_as_group: Some(5),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().starts_with(FIELD_RUN_AS_GROUP));
    let e = resolve(UserRequest {
        run_as_user: Some(-1),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().starts_with(FIELD_RUN_AS_USER));
    let e = resolve(UserRequest {
        run_as_user: Some(1),
        run_as_username: "alice",
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().starts_with(FIELD_RUN_AS_USERNAME));
    let e = resolve(UserRequest {
        run_as_user: Some(1),
        supplemental_groups: &[-3],
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().starts_with(FIELD_SUPPLEMENTAL_GROUPS));
}

#[test]
fn passwd_through_symlinked_etc_inside_rootfs() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    std::fs::write(root.path().join("data/passwd"), PASSWD).unwrap();
    std::os::unix::fs::symlink("/data", root.path().join("etc")).unwrap();
    let users = ImageUsers::load(root.path()).unwrap();
    let u = users
        .resolve(&UserRequest {
            image_user: "alice",
            ..Default::default()
        })
        .unwrap();
    assert_eq!(u.uid, 1000);
}

fn load_err(root: &Path) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = root.to_path_buf();
    // A blocking open would hang the test: fail it on a timer instead.
    std::thread::spawn(move || {
        let _ = tx.send(ImageUsers::load(&root).map(|_| ()));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("loading the user database blocked")
        .expect_err("a hostile user database was accepted")
        .to_string()
}

#[test]
fn fifo_passwd_is_refused_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let c = std::ffi::CString::new(root.path().join("etc/passwd").to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let e = load_err(root.path());
    assert_eq!(e, "image /etc/passwd: is a FIFO, not a regular file");
}

#[test]
fn device_group_through_symlink_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/passwd"), PASSWD).unwrap();
    // Resolved inside the rootfs: /dev/zero of the image, a character device there.
    std::fs::create_dir(root.path().join("dev")).unwrap();
    let dev = std::ffi::CString::new(root.path().join("dev/zero").to_str().unwrap()).unwrap();
    // SAFETY: dev is a valid NUL-terminated path.
    let made = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
    if made != 0 {
        // Without CAP_MKNOD a symlink to a directory stands in for a non-regular file.
        std::fs::create_dir(root.path().join("dev/zero")).unwrap();
    }
    std::os::unix::fs::symlink("/dev/zero", root.path().join("etc/group")).unwrap();
    let e = load_err(root.path());
    assert!(e.starts_with("image /etc/group: is a "), "{e}");
    assert!(e.ends_with(", not a regular file"), "{e}");
}

#[test]
fn huge_passwd_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let f = std::fs::File::create(root.path().join("etc/passwd")).unwrap();
    // Sparse: the check must come before any read.
    f.set_len(8 << 30).unwrap();
    let e = load_err(root.path());
    assert_eq!(
        e,
        "image /etc/passwd: is 8589934592 bytes, more than the 1048576 allowed"
    );
}

#[test]
fn scratch_image_without_passwd_runs_numeric_users_only() {
    let root = tempfile::tempdir().unwrap();
    let users = ImageUsers::load(root.path()).unwrap();
    let u = users
        .resolve(&UserRequest {
            image_user: "65532",
            ..Default::default()
        })
        .unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (65532, 0, "/"));
    assert!(
        users
            .resolve(&UserRequest {
                image_user: "nobody",
                ..Default::default()
            })
            .is_err()
    );
}
