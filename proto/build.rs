//! Compiles the vendored CRI api.proto with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let descriptors = protox::compile(["api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // crictl-style JSON configs (pod and container configs) use the proto field names;
        // absent fields take their proto defaults.
        .type_attribute(".", "#[derive(serde::Deserialize, serde::Serialize)]")
        .message_attribute(".", "#[serde(default)]")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
