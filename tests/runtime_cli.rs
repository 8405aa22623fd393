//! Differential test of the runc command line: the same bundles and verbs through
//! `criox-runc` (this binary under that name) and Debian's runc must give the same exit
//! codes, state JSON fields, pid files, hook order and failures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use criox_testkit::criox_bin;
use criox_testkit::runtime::{RUNC, copy_rootfs, default_config};
use serde_json::{Value, json};

struct Cli {
    name: &'static str,
    program: PathBuf,
    root: PathBuf,
}

impl Cli {
    /// Runs a verb; output goes through files because a created container keeps the
    /// runtime's stdio open for as long as it lives.
    fn run(&self, args: &[&str]) -> Output {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = Command::new(&self.program)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .unwrap();
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut v = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut v).unwrap();
            v
        };
        Output {
            status,
            stdout: read(out),
            stderr: read(err),
        }
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_slice(&self.ok(&["state", id]).stdout).unwrap()
    }
}

struct World {
    dir: tempfile::TempDir,
    clis: Vec<Cli>,
    ids: Vec<String>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("criox-cli-")
            .tempdir()
            .unwrap();
        let link = dir.path().join("criox-runc");
        std::os::unix::fs::symlink(criox_bin(), &link).unwrap();
        let clis = vec![
            Cli {
                name: "criox-runc",
                program: link,
                root: dir.path().join("root-criox"),
            },
            Cli {
                name: "runc",
                program: RUNC.into(),
                root: dir.path().join("root-runc"),
            },
        ];
        World {
            dir,
            clis,
            ids: Vec::new(),
        }
    }

    /// A bundle per runtime (hooks write into the bundle directory).
    fn bundle(
        &self,
        name: &str,
        cli: &Cli,
        args: &[&str],
        tweak: impl Fn(&mut Value, &Path),
    ) -> PathBuf {
        let bundle = self.dir.path().join(format!("{name}-{}", cli.name));
        std::fs::create_dir_all(&bundle).unwrap();
        copy_rootfs(&bundle.join("rootfs"));
        let mut config = default_config(&format!("{name}-{}", cli.name), args);
        tweak(&mut config, &bundle);
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        bundle
    }

    fn id(&mut self, name: &str) -> String {
        let id = criox_testkit::unique(&format!("cli-{name}-"));
        self.ids.push(id.clone());
        id
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for cli in &self.clis {
            for id in &self.ids {
                let _ = cli.run(&["delete", "--force", id]);
            }
        }
    }
}

#[test]
fn run_returns_the_exit_code() {
    let mut w = World::new();
    let id = w.id("run");
    for cli in &w.clis {
        let bundle = w.bundle("run", cli, &["sh", "-c", "echo hi; exit 3"], |_, _| {});
        let out = cli.run(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        assert_eq!(out.status.code(), Some(3), "{}", cli.name);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{}", cli.name);
        assert!(
            !cli.run(&["state", &id]).status.success(),
            "{}: deleted after run",
            cli.name
        );
    }
}

#[test]
fn lifecycle_state_pid_file_and_hooks_agree() {
    let mut w = World::new();
    let id = w.id("life");
    let mut seen = Vec::new();
    for cli in &w.clis {
        let bundle = w.bundle("life", cli, &["sleep", "1000"], |v, b| {
            let hook = |name: &str| {
                json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat >/dev/null; echo {name} >> {}/hooks.log", b.display())]})
            };
            v["hooks"] = json!({
                "createRuntime": [hook("createRuntime")],
                "prestart": [hook("prestart")],
                "poststart": [hook("poststart")],
                "poststop": [hook("poststop")],
            });
        });
        let pid_file = bundle.join("pid");
        cli.ok(&[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ]);
        let created = cli.state(&id);
        let pid: i64 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(created["pid"].as_i64(), Some(pid), "{}: pid file", cli.name);
        assert_eq!(created["status"], "created", "{}", cli.name);
        assert_eq!(created["id"], json!(id));
        assert_eq!(created["bundle"], json!(bundle), "{}", cli.name);
        assert!(created["ociVersion"].is_string() && created["created"].is_string());

        // Deleting a running container without --force fails the same way.
        cli.ok(&["start", &id]);
        assert_eq!(cli.state(&id)["status"], "running", "{}", cli.name);
        assert!(!cli.run(&["delete", &id]).status.success(), "{}", cli.name);
        // A second create with the same id fails.
        let again = cli.run(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
        assert!(!again.status.success(), "{}: duplicate id", cli.name);

        cli.ok(&["pause", &id]);
        assert_eq!(cli.state(&id)["status"], "paused", "{}", cli.name);
        cli.ok(&["resume", &id]);
        cli.ok(&["kill", &id, "KILL"]);
        for _ in 0..500 {
            if cli.state(&id)["status"] == "stopped" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(cli.state(&id)["status"], "stopped", "{}", cli.name);
        cli.ok(&["delete", &id]);
        assert!(!cli.run(&["state", &id]).status.success());
        seen.push(std::fs::read_to_string(bundle.join("hooks.log")).unwrap());
    }
    assert!(
        seen[1].ends_with("poststart\npoststop\n"),
        "runc: {}",
        seen[1]
    );
    assert_eq!(seen[1].lines().count(), 4, "runc: {}", seen[1]);
    assert_eq!(seen[0], seen[1], "hook order");
}

#[test]
fn exec_and_errors_agree() {
    let mut w = World::new();
    let id = w.id("exec");
    for cli in &w.clis {
        let bundle = w.bundle("exec", cli, &["sleep", "1000"], |_, _| {});
        cli.ok(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
        let out = cli.run(&["exec", &id, "sh", "-c", "echo in; exit 4"]);
        assert_eq!(out.status.code(), Some(4), "{}", cli.name);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "in\n", "{}", cli.name);
        let ps = cli.ok(&["ps", "--format", "json", &id]);
        let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
        assert_eq!(pids.len(), 1, "{}: {pids:?}", cli.name);
        cli.ok(&["delete", "--force", &id]);
        for args in [
            vec!["state", "no-such-id"],
            vec!["start", "no-such-id"],
            vec!["kill", "no-such-id", "TERM"],
            vec!["delete", "no-such-id"],
            vec!["create", "--bundle", "/nonexistent-bundle", "x-bad"],
        ] {
            let out = cli.run(&args);
            assert!(!out.status.success(), "{} {args:?} must fail", cli.name);
            assert!(!out.stderr.is_empty(), "{} {args:?} says why", cli.name);
        }
    }
}
