//! Bad input to the runtime: clear errors naming the id and the field, nothing left behind.

use criox_runtime::RuntimeError;
use criox_testkit::dir_entries;
use criox_testkit::runtime::{Env, Kind, container_cgroups};

/// Nothing of `id` remains: no state dir content, no runtime state, no cgroup.
fn assert_nothing_left(env: &Env, id: &str) {
    assert_eq!(
        dir_entries(&env.state_dir(id)),
        Vec::<String>::new(),
        "state dir"
    );
    let runtime_entries: Vec<String> = dir_entries(env.rt.root())
        .into_iter()
        .filter(|n| n.contains(id))
        .collect();
    assert_eq!(runtime_entries, Vec::<String>::new(), "runtime root");
    assert_eq!(
        container_cgroups(id),
        Vec::<std::path::PathBuf>::new(),
        "cgroups"
    );
}

fn invalid_message(err: RuntimeError) -> String {
    match err {
        RuntimeError::InvalidArgument { message, .. } => message,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn missing_bundle(kind: Kind) {
    let env = Env::new(kind, "nobundle");
    let id = env.id(1);
    let req = env.request(&id, &env.path("no-such-bundle"));
    let msg = invalid_message(env.launch(&req).unwrap_err());
    assert!(msg.contains(&id) && msg.contains("bundle"), "{msg}");
    assert_nothing_left(&env, &id);
}

fn malformed_config(kind: Kind) {
    let env = Env::new(kind, "badjson");
    let id = env.id(1);
    let bundle = env.bundle(&id, &["true"], |_| {});
    std::fs::write(
        bundle.join("config.json"),
        b"{\"ociVersion\": \"1.0.2\", \"root\": ",
    )
    .unwrap();
    let msg = invalid_message(env.launch(&env.request(&id, &bundle)).unwrap_err());
    assert!(msg.contains(&id) && msg.contains("config.json"), "{msg}");
    assert_nothing_left(&env, &id);
}

fn rootfs_outside_the_bundle(kind: Kind) {
    let env = Env::new(kind, "outside");
    let id = env.id(1);
    let outside = env.path("elsewhere");
    criox_testkit::runtime::copy_rootfs(&outside);
    let bundle = env.bundle(&id, &["true"], |v| {
        v["root"]["path"] = serde_json::json!(outside);
    });
    let msg = invalid_message(env.launch(&env.request(&id, &bundle)).unwrap_err());
    assert!(msg.contains(&id) && msg.contains("root.path"), "{msg}");
    // A relative path that climbs out is refused the same way.
    let bundle2 = env.bundle(&env.id(2), &["true"], |v| {
        v["root"]["path"] = serde_json::json!("../elsewhere");
    });
    let msg = invalid_message(env.launch(&env.request(&env.id(2), &bundle2)).unwrap_err());
    assert!(msg.contains("root.path"), "{msg}");
    assert_nothing_left(&env, &id);
    assert_nothing_left(&env, &env.id(2));
}

fn unknown_id(kind: Kind) {
    let env = Env::new(kind, "unknown");
    let id = env.id(1);
    for result in [
        env.rt.start(&id),
        env.rt.kill(&id, libc::SIGTERM, false),
        env.rt.pause(&id),
        env.rt.state(&id).map(drop),
        env.rt.delete(&id, &env.state_dir(&id), true),
    ] {
        match result {
            Err(RuntimeError::NotFound { id: got }) => assert_eq!(got, id),
            other => panic!("expected NotFound for {id}, got {other:?}"),
        }
    }
}

fn duplicate_id(kind: Kind) {
    let env = Env::new(kind, "dup");
    let id = env.id(1);
    let first = env.run(&id, &["sleep", "1000"], |_| {});
    // Same id, a state dir of its own: the runtime refuses it.
    let bundle = env.bundle(&format!("{id}-again"), &["true"], |_| {});
    let mut req = env.request(&id, &bundle);
    req.state_dir = env.path("other-state");
    req.log_path = Some(env.path("other.log"));
    match env.rt.launch(&req) {
        Err(RuntimeError::AlreadyExists { id: got }) => assert_eq!(got, id),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(dir_entries(&req.state_dir), Vec::<String>::new());
    // Same state dir: refused before the runtime is asked, and the first is untouched.
    let again = env.request(&id, &bundle);
    assert!(matches!(
        env.rt.launch(&again),
        Err(RuntimeError::AlreadyExists { .. })
    ));
    let state = env.rt.state(&id).unwrap();
    assert_eq!(
        (state.pid, state.status),
        (first.pid, criox_runtime::Status::Running)
    );
    assert!(criox_runtime::monitor_pid(&env.state_dir(&id)).is_some());
}

fn terminal_mismatch(kind: Kind) {
    let env = Env::new(kind, "ttymismatch");
    let id = env.id(1);
    let bundle = env.bundle(&id, &["true"], |_| {});
    let mut req = env.request(&id, &bundle);
    req.terminal = true;
    let msg = invalid_message(env.launch(&req).unwrap_err());
    assert!(
        msg.contains(&id) && msg.contains("process.terminal"),
        "{msg}"
    );
    assert_nothing_left(&env, &id);
}

fn failing_process_is_a_create_error(kind: Kind) {
    let env = Env::new(kind, "noexe");
    let id = env.id(1);
    let bundle = env.bundle(&id, &["/no/such/program"], |_| {});
    let req = env.request(&id, &bundle);
    // runc reports a missing executable at create, libcontainer at create or start.
    let result = env.launch(&req).and_then(|_| env.rt.start(&id));
    if let Err(e) = &result {
        assert!(e.to_string().contains(&id), "{e}");
    } else {
        let rec = env.wait_exit(&id);
        assert_ne!(rec.exit_code, 0);
    }
    let _ = env.rt.delete(&id, &env.state_dir(&id), true);
    assert_nothing_left(&env, &id);
}

criox_testkit::on_both_backends!(
    missing_bundle,
    malformed_config,
    rootfs_outside_the_bundle,
    unknown_id,
    duplicate_id,
    terminal_mismatch,
    failing_process_is_a_create_error,
);
