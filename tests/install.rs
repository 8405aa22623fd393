//! `hack/install` staged into a temporary DESTDIR: the binary and its runc name on the
//! PATH, the units, a configuration whose every key is commented so the binary's
//! defaults apply, and an operator's edited files never overwritten.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn install(destdir: &Path) -> String {
    install_args(destdir, &[])
}

#[test]
fn installs_binary_units_and_commented_defaults() {
    let stage = tempfile::tempdir().unwrap();
    let root = stage.path();
    install(root);

    let bin = root.join("usr/local/bin/criox");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(criox_testkit::criox_bin()).unwrap(),
        "the installed binary is the one built"
    );
    assert_eq!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/local/bin/criox-runc")).unwrap(),
        Path::new("criox")
    );
    // Invoked by its runc name, the binary speaks runc's command line.
    let runc = Command::new(root.join("usr/local/bin/criox-runc"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&runc.stdout).starts_with("criox-runc "),
        "{}",
        String::from_utf8_lossy(&runc.stdout)
    );

    let unit = std::fs::read_to_string(root.join("etc/systemd/system/criox.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/criox\n"));
    assert!(root.join("etc/systemd/system/criox.socket").is_file());

    // Every key commented: the staged file loads to exactly the built-in defaults.
    let config = root.join("etc/criox/criox.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("#root = \"/var/lib/criox\""), "{text}");
    assert!(
        text.lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')),
        "an uncommented line:\n{text}"
    );
    let render = |path: &Path| {
        criox_testkit::output_ok(
            Command::new(criox_testkit::criox_bin())
                .arg("--config")
                .arg(path)
                .arg("config"),
        )
    };
    assert_eq!(render(&config), render(Path::new("/dev/null")));
    assert!(root.join("etc/criox/criox.conf.d").is_dir());
}

#[test]
fn an_operators_files_are_kept() {
    let stage = tempfile::tempdir().unwrap();
    let root = stage.path();
    install(root);
    let config = root.join("etc/criox/criox.toml");
    let unit = root.join("etc/systemd/system/criox.service");
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    std::fs::write(&unit, "[Service]\nExecStart=/opt/criox\n").unwrap();

    let said = install(root);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "log_level = \"debug\"\n"
    );
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        "[Service]\nExecStart=/opt/criox\n"
    );
    assert!(
        said.contains(&format!("kept {}", config.display())),
        "{said}"
    );
    assert!(
        std::fs::read_to_string(config.with_extension("toml.new"))
            .unwrap()
            .contains("#log_level"),
        "the shipped configuration is offered beside the operator's"
    );
    // A third run finds nothing new to say about the unchanged socket unit.
    let again = install(root);
    assert!(again.contains("criox.socket (unchanged)"), "{again}");
}

fn install_args(destdir: &Path, args: &[&str]) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/install"))
        .args(args)
        .env("DESTDIR", destdir)
        .env("PREFIX", "/usr/local")
        .env("CRIOX_BIN", criox_testkit::criox_bin())
        .output()
        .expect("run hack/install");
    assert!(
        out.status.success(),
        "hack/install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_default_network_goes_only_where_there_is_none() {
    // Without --network nothing is placed: a node on a CIDR template needs the directory empty.
    let stage = tempfile::tempdir().unwrap();
    let root = stage.path();
    install_args(root, &["--binary-only"]);
    assert!(!root.join("etc/cni/net.d").exists());

    let said = install_args(root, &["--binary-only", "--network"]);
    let conflist = root.join("etc/cni/net.d/10-criox-bridge.conflist");
    assert!(said.contains("installed"), "{said}");
    let net: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conflist).unwrap()).unwrap();
    assert_eq!(net["name"], "criox");
    let types: Vec<&str> = net["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["bridge", "portmap"]);
    // The plugins it names are those the test set-up installs, where the daemon looks.
    for plugin in types {
        assert!(
            ["/opt/cni/bin", "/usr/lib/cni"]
                .iter()
                .any(|d| Path::new(d).join(plugin).is_file()),
            "no {plugin} plugin installed"
        );
    }

    // An operator's network is never joined by ours.
    let other = tempfile::tempdir().unwrap();
    let dir = other.path().join("etc/cni/net.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("99-mine.conf"), "{}").unwrap();
    let said = install_args(other.path(), &["--binary-only", "--network"]);
    assert!(said.contains("kept the CNI network in"), "{said}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}
