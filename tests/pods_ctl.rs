//! `criox ctl runp|pods|inspectp|stopp|rmp` against the daemon, with a crictl YAML config.

use criox_testkit::Daemon;

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn ctl_runs_lists_inspects_stops_and_removes_a_pod() {
    let daemon = Daemon::start().await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let config = daemon.dir.join("pod.yaml");
    std::fs::write(
        &config,
        format!(
            "metadata:\n  name: ctl-pod\n  namespace: test\n  uid: {}\nhostname: ctl-pod\nlabels:\n  tier: web\n",
            criox_testkit::unique("ucl")
        ),
    )
    .unwrap();
    let id = ok(daemon.ctl(&["runp", config.to_str().unwrap()]))
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");

    let listed = ok(daemon.ctl(&["pods", "--label", "tier=web"]));
    // The pod's own row, with "Ready" as a whole cell: "NotReady" must not pass.
    let row = listed
        .lines()
        .find(|l| l.contains(&id[..13]))
        .unwrap_or_else(|| panic!("pod {id} not listed: {listed}"));
    assert!(row.split_whitespace().any(|cell| cell == "Ready"), "{row}");
    assert!(ok(daemon.ctl(&["pods", "-q", "--label", "tier=db"])).is_empty());

    let inspected: serde_json::Value =
        serde_json::from_str(&ok(daemon.ctl(&["inspectp", &id[..10]]))).unwrap();
    assert_eq!(inspected["status"]["id"], id.as_str());
    let ip = inspected["status"]["network"]["ip"].as_str().unwrap();
    assert!(ip.starts_with(&net.prefix), "{inspected}");
    assert!(
        inspected["info"]["namespaces"]["network"]
            .as_str()
            .unwrap()
            .starts_with(daemon.state.to_str().unwrap())
    );

    ok(daemon.ctl(&["stopp", &id]));
    let stopped = ok(daemon.ctl(&["pods", "-s", "notready", "-q"]));
    assert_eq!(stopped.trim(), id);
    ok(daemon.ctl(&["rmp", &id]));
    assert!(ok(daemon.ctl(&["pods", "-q"])).is_empty());
    let missing = daemon.ctl(&["inspectp", &id]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
