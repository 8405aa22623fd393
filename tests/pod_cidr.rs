//! UpdateRuntimeConfig: the kubelet hands over the node's pod CIDR, a configured CNI
//! template is rendered with it, the network becomes ready and pods get addresses there.

use std::path::Path;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::Daemon;
use criox_testkit::pods::{PodLeftovers, TestNetwork, pod_config, run_pod, stop_and_remove_pod};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

async fn network_ready(rt: &mut Rt) -> RuntimeCondition {
    criox_testkit::runtime_status(rt, false)
        .await
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady condition")
}

async fn update(rt: &mut Rt, pod_cidr: &str) -> Result<(), tonic::Status> {
    rt.update_runtime_config(UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: pod_cidr.to_string(),
            }),
        }),
    })
    .await
    .map(|_| ())
}

/// The test network's conflist with its subnet and routes left to the template.
fn template(network: &TestNetwork) -> String {
    let conflist = network.conflist();
    let mut value: serde_json::Value = serde_json::from_str(&conflist).unwrap();
    value["plugins"][0]["ipam"]["ranges"] = serde_json::Value::String("@RANGES@".into());
    value["plugins"][0]["ipam"]["routes"] = serde_json::Value::String("@ROUTES@".into());
    value.to_string()
        .replace(
            "\"@RANGES@\"",
            r#"[{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$range}}"}]{{end}}]"#,
        )
        .replace(
            "\"@ROUTES@\"",
            r#"[{{- range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end -}}]"#,
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_cidr_renders_the_template_and_pods_get_addresses_from_it() {
    let network = TestNetwork::new(Path::new("/tmp"));
    let conf = tempfile::tempdir().unwrap();
    let template_path = conf.path().join("template.conflist");
    std::fs::write(&template_path, template(&network)).unwrap();
    let daemon = Daemon::builder()
        .drop_in(
            "20-template.toml",
            &format!(
                "[network]\ncni_config_template = {:?}\n",
                template_path.display().to_string()
            ),
        )
        .start()
        .await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    let mut rt = daemon.runtime().await;

    let before = network_ready(&mut rt).await;
    assert!(!before.status, "{before:?}");

    for bad in ["not-a-cidr", "10.0.0.0/33", "10.1.0.0/16,nope"] {
        let err = update(&mut rt, bad).await.unwrap_err();
        criox_testkit::assert_invalid(&err, "runtime_config.network_config.pod_cidr");
    }
    // Bad input leaves nothing behind and the network stays not ready.
    assert!(criox_testkit::dir_entries(&daemon.cni_dir).is_empty());
    assert!(!network_ready(&mut rt).await.status);

    let cidr = format!("{}.0/24", network.prefix);
    update(&mut rt, &cidr).await.expect("UpdateRuntimeConfig");
    let after = network_ready(&mut rt).await;
    assert!(after.status, "{after:?}");
    assert_eq!(
        criox_testkit::dir_entries(&daemon.cni_dir),
        ["10-criox-net.conflist"]
    );
    let status = criox_testkit::runtime_status(&mut rt, true).await;
    let cidrs: Vec<String> = serde_json::from_str(&status.info["podCIDRs"]).unwrap();
    assert_eq!(cidrs, std::slice::from_ref(&cidr));

    let pod = run_pod(&mut rt, pod_config("cidr", &criox_testkit::unique("uid"))).await;
    let ip = criox_testkit::pods::pod_status(&mut rt, &pod)
        .await
        .network
        .unwrap()
        .ip;
    assert!(
        ip.starts_with(&format!("{}.", network.prefix)),
        "pod address {ip} outside {cidr}"
    );
    stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_template_the_pod_cidr_is_accepted_and_remembered() {
    let daemon = Daemon::start().await;
    let mut rt = daemon.runtime().await;
    update(&mut rt, "10.244.3.0/24, fd00:10:244:3::/64")
        .await
        .expect("UpdateRuntimeConfig");
    // An empty CIDR is a no-op, as the kubelet sends before it knows the node's.
    update(&mut rt, "")
        .await
        .expect("empty UpdateRuntimeConfig");
    assert!(!network_ready(&mut rt).await.status);
    assert!(criox_testkit::dir_entries(&daemon.cni_dir).is_empty());
    let status = criox_testkit::runtime_status(&mut rt, true).await;
    let cidrs: Vec<String> = serde_json::from_str(&status.info["podCIDRs"]).unwrap();
    assert_eq!(cidrs, ["10.244.3.0/24", "fd00:10:244:3::/64"]);
    assert!(daemon.log().contains("10.244.3.0/24"), "{}", daemon.log());
}
