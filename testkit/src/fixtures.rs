//! Names unique to a test, and what `hack/fixtures` and `hack/clients` prepared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A unique, short name for this test's ids, bridges and directories.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `criox` binary under test. Cargo names it in `CARGO_BIN_EXE_criox` when it runs a
/// test; a test binary started by hand finds it beside its own `deps/` directory.
pub fn criox_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = std::env::var_os("CARGO_BIN_EXE_criox")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let exe = std::env::current_exe().expect("test executable path");
                exe.parent()
                    .and_then(Path::parent)
                    .expect("target directory")
                    .join("criox")
            });
        assert!(
            bin.is_file(),
            "{} is missing: build it first (cargo test builds it for the tests)",
            bin.display()
        );
        bin
    })
}

/// Values that `hack/fixtures` wrote to `$CRIOX_TEST_FIXTURES/fixtures.env`, plus `DIR`.
pub fn fixtures() -> HashMap<String, String> {
    let dir = std::env::var("CRIOX_TEST_FIXTURES").unwrap_or_else(|_| {
        panic!("CRIOX_TEST_FIXTURES is not set: run the tests through hack/test, which builds the fixtures")
    });
    let env_file = Path::new(&dir).join("fixtures.env");
    let text = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run hack/test", env_file.display()));
    let mut values: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    values.insert("DIR".to_string(), dir);
    values
}

/// The busybox root filesystem that `hack/fixtures` built.
pub fn busybox_rootfs() -> PathBuf {
    let dir = PathBuf::from(&fixtures()["DIR"]).join("rootfs");
    assert!(
        dir.join("bin/busybox").exists(),
        "no busybox rootfs in {}",
        dir.display()
    );
    dir
}

/// The busybox image the fixtures pushed to the loopback registry.
pub fn busybox_image() -> String {
    fixtures()["CRIOX_TEST_IMAGE_BUSYBOX"].clone()
}

/// A Go client that `hack/clients` built (kubelet, crictl, kubestream, grpcprobe…) into
/// the directory named by `CRIOX_TEST_GO_CLIENTS`.
pub fn go_client(name: &str) -> PathBuf {
    let dir = std::env::var("CRIOX_TEST_GO_CLIENTS").unwrap_or_else(|_| {
        panic!(
            "CRIOX_TEST_GO_CLIENTS is not set: build the Go clients with `hack/clients target/go` \
             and set it to that directory (hack/test does both)"
        )
    });
    let bin = PathBuf::from(dir).join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `hack/clients <dir> {name}`",
        bin.display()
    );
    bin
}

/// The busybox binary of the fixtures' root filesystem, to run on the host.
pub fn busybox_binary() -> PathBuf {
    busybox_rootfs().join("bin/busybox")
}
