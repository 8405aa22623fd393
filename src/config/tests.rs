use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn missing_default_file_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::load(&dir.path().join("criox.toml"), false, &Overrides::default()).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.listen_path(), PathBuf::from("/run/criox/criox.sock"));
}

#[test]
fn missing_explicit_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load(&dir.path().join("nope.toml"), true, &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[test]
fn drop_ins_apply_in_name_order_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "criox.toml",
        "root = \"/a\"\n[streaming]\nport = 1\n",
    );
    write(
        dir.path(),
        "criox.conf.d/20-late.toml",
        "[streaming]\nport = 3\n",
    );
    write(
        dir.path(),
        "criox.conf.d/10-early.toml",
        "[streaming]\nport = 2\naddress = \"::1\"\n",
    );
    write(dir.path(), "criox.conf.d/ignored.txt", "not toml at all");
    let overrides = Overrides {
        state: Some(PathBuf::from("/s")),
        ..Default::default()
    };
    let config = Config::load(&main, true, &overrides).unwrap();
    assert_eq!(config.root, PathBuf::from("/a"));
    assert_eq!(config.state, PathBuf::from("/s"));
    assert_eq!(config.streaming.port, 3);
    assert_eq!(config.streaming.address, "::1");
    assert_eq!(config.listen_path(), PathBuf::from("/s/criox.sock"));
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "criox.toml",
        "root = \"/a\"\n\n[network]\nbogus_key = 1\n",
    );
    let err = Config::load(&main, true, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("criox.toml"), "{err}");
    assert!(err.contains("bogus_key"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn wrong_type_in_drop_in_names_the_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "criox.toml", "");
    write(
        dir.path(),
        "criox.conf.d/50-x.toml",
        "[streaming]\nport = \"eighty\"\n",
    );
    let err = Config::load(&main, true, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("50-x.toml"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn handlers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "criox.toml", "[runtime.handlers.runc]\n");
    let err = Config::load(&main, true, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("runtime.handlers.runc.path"), "{err}");

    let main = write(
        dir.path(),
        "criox.toml",
        "[runtime]\ndefault_handler = \"kata\"\n",
    );
    let err = Config::load(&main, true, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("kata"), "{err}");
}

#[test]
fn rendered_config_reads_back_identically_and_comments_every_key() {
    let mut config = Config::default();
    config.runtime.handlers.insert(
        "runc".to_string(),
        HandlerConfig {
            path: Some(PathBuf::from("/usr/sbin/runc")),
        },
    );
    let text = config.render();
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, config);
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" = ") && !l.starts_with('#') {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "key without comment: {l}"
            );
        }
    }
}
