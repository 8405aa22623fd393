//! Runtime-wide commands: version, info.

use anyhow::Result;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::{StatusRequest, VersionRequest};
use serde_json::json;
use tonic::transport::Channel;

pub async fn version(rt: &mut RuntimeServiceClient<Channel>) -> Result<()> {
    let v = rt.version(VersionRequest::default()).await?.into_inner();
    println!("Version:  {}", v.version);
    println!("RuntimeName:  {}", v.runtime_name);
    println!("RuntimeVersion:  {}", v.runtime_version);
    println!("RuntimeApiVersion:  {}", v.runtime_api_version);
    Ok(())
}

pub async fn info(rt: &mut RuntimeServiceClient<Channel>) -> Result<()> {
    let status = rt
        .status(StatusRequest { verbose: true })
        .await?
        .into_inner();
    let conditions: Vec<_> = status
        .status
        .map(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({
                "type": c.r#type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
            })
        })
        .collect();
    let mut out = json!({ "status": { "conditions": conditions } });
    for (key, value) in status.info {
        // Verbose values are JSON documents; show them as such where they are.
        let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        out[key] = value;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
