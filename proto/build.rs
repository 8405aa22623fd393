//! Compiles the vendored CRI api.proto with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let descriptors = protox::compile(["api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // crictl-style JSON configs (pod and container configs) use the proto field names;
        // absent fields take their proto defaults.
        .type_attribute(".", "#[derive(serde::Deserialize, serde::Serialize)]")
        .message_attribute(".", "#[serde(default)]")
        // `KeyValue.value` became `bytes` in cri-api v0.37; crictl-style configs still
        // write environment values as plain strings.
        .field_attribute(
            ".runtime.v1.KeyValue.value",
            "#[serde(with = \"crate::text_bytes\")]",
        )
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
