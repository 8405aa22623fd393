//! The Kubernetes Container Runtime Interface, `runtime.v1`, as tonic services and prost
//! messages. Generated at build time from `proto/api.proto`.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

/// Serde for a protobuf `bytes` field that JSON and YAML configs write as text.
mod text_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&String::from_utf8_lossy(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(deserializer)?.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{ContainerConfig, PodSandboxConfig};

    #[test]
    fn crictl_style_configs_parse_with_proto_field_names() {
        let pod: PodSandboxConfig = serde_json::from_str(
            r#"{"metadata": {"name": "web", "namespace": "default", "attempt": 1, "uid": "u1"},
                "log_directory": "/tmp/pods",
                "port_mappings": [{"container_port": 80, "host_port": 8080}],
                "linux": {"security_context": {"namespace_options": {"network": 2}}}}"#,
        )
        .unwrap();
        let metadata = pod.metadata.unwrap();
        assert_eq!((metadata.name.as_str(), metadata.attempt), ("web", 1));
        assert_eq!(pod.port_mappings[0].host_port, 8080);
        let options = pod
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(options.network, 2);

        let ctr: ContainerConfig = serde_json::from_str(
            r#"{"metadata": {"name": "app"}, "image": {"image": "busybox"},
                "command": ["sleep", "60"], "log_path": "app.log"}"#,
        )
        .unwrap();
        assert_eq!(ctr.command, ["sleep", "60"]);
        assert_eq!(ctr.image.unwrap().image, "busybox");
    }

    #[test]
    fn environment_values_are_text_in_configs() {
        let ctr: ContainerConfig =
            serde_json::from_str(r#"{"envs": [{"key": "A", "value": "b c"}]}"#).unwrap();
        assert_eq!(ctr.envs[0].value, b"b c");
        let json = serde_json::to_string(&ctr.envs[0]).unwrap();
        assert_eq!(json, r#"{"key":"A","value":"b c"}"#);
    }
}
