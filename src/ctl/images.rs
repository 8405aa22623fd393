//! Image commands: pull, images, inspecti, rmi, imagefsinfo (crictl's names and output).

use anyhow::{Context, Result, bail};
use clap::Args;
use criox_proto::v1::image_service_client::ImageServiceClient;
use criox_proto::v1::*;
use serde_json::json;
use tonic::transport::Channel;

use super::table::{Table, print_json};

type Client = ImageServiceClient<Channel>;

#[derive(Debug, Args)]
pub struct PullArgs {
    pub image: String,
    /// Registry credentials as USERNAME:PASSWORD.
    #[arg(long)]
    pub creds: Option<String>,
    /// A registry token, sent as a bearer token.
    #[arg(long)]
    pub registry_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only this image (name, id or digest).
    pub image: Option<String>,
    /// Print only image ids.
    #[arg(long, short)]
    pub quiet: bool,
    /// Output format: table or json.
    #[arg(long, short, default_value = "table")]
    pub output: String,
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

fn image_json(i: &Image) -> serde_json::Value {
    json!({
        "id": i.id,
        "repoTags": i.repo_tags,
        "repoDigests": i.repo_digests,
        "size": i.size.to_string(),
        "uid": i.uid.as_ref().map(|u| json!({"value": u.value.to_string()})),
        "username": i.username,
        "pinned": i.pinned,
    })
}

pub async fn pull(client: &mut Client, args: PullArgs) -> Result<()> {
    let mut auth = None;
    if let Some(creds) = &args.creds {
        let (username, password) = creds
            .split_once(':')
            .context("--creds must be USERNAME:PASSWORD")?;
        auth = Some(AuthConfig {
            username: username.to_string(),
            password: password.to_string(),
            ..Default::default()
        });
    }
    if let Some(token) = &args.registry_token {
        auth = Some(AuthConfig {
            registry_token: token.clone(),
            ..Default::default()
        });
    }
    let resp = client
        .pull_image(PullImageRequest {
            image: spec(&args.image),
            auth,
            sandbox_config: None,
        })
        .await
        .with_context(|| format!("pulling image {}", args.image))?
        .into_inner();
    println!("Image is up to date for {}", resp.image_ref);
    Ok(())
}

pub async fn images(client: &mut Client, args: ImagesArgs) -> Result<()> {
    let filter = args
        .image
        .as_deref()
        .map(|i| ImageFilter { image: spec(i) });
    let list = client
        .list_images(ListImagesRequest { filter })
        .await?
        .into_inner()
        .images;
    if args.output == "json" {
        let all: Vec<_> = list.iter().map(image_json).collect();
        return print_json("images", all);
    }
    if args.output != "table" {
        bail!("unknown output format {:?}: use table or json", args.output);
    }
    if args.quiet {
        for i in &list {
            println!("{}", i.id);
        }
        return Ok(());
    }
    let mut table = Table::new(&["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
    for i in &list {
        let short_id: String =
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(13)
                .collect();
        let size = format!("{:.1}MB", i.size as f64 / 1_000_000.0);
        let mut rows: Vec<(String, String)> = i
            .repo_tags
            .iter()
            .map(|t| match t.rsplit_once(':') {
                Some((n, tag)) if !tag.contains('/') => (n.to_string(), tag.to_string()),
                _ => (t.clone(), "<none>".to_string()),
            })
            .collect();
        if rows.is_empty() {
            let name = i
                .repo_digests
                .first()
                .and_then(|d| d.split('@').next())
                .unwrap_or("<none>");
            rows.push((name.to_string(), "<none>".to_string()));
        }
        for (name, tag) in rows {
            table.row(vec![name, tag, short_id.clone(), size.clone()]);
        }
    }
    table.print();
    Ok(())
}

pub async fn inspect(client: &mut Client, image: &str) -> Result<()> {
    let resp = client
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose: true,
        })
        .await?
        .into_inner();
    let Some(found) = resp.image else {
        bail!("image {image} not found");
    };
    let mut out = json!({ "status": image_json(&found) });
    for (key, value) in resp.info {
        let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        out[key] = value;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub async fn remove(client: &mut Client, images: &[String]) -> Result<()> {
    for image in images {
        client
            .remove_image(RemoveImageRequest { image: spec(image) })
            .await
            .with_context(|| format!("removing image {image}"))?;
        println!("Deleted: {image}");
    }
    Ok(())
}

pub async fn fs_info(client: &mut Client) -> Result<()> {
    let resp = client
        .image_fs_info(ImageFsInfoRequest::default())
        .await?
        .into_inner();
    let fs: Vec<_> = resp
        .image_filesystems
        .iter()
        .map(|f| {
            json!({
                "timestamp": f.timestamp.to_string(),
                "fsId": {"mountpoint": f.fs_id.as_ref().map(|i| i.mountpoint.clone()).unwrap_or_default()},
                "usedBytes": {"value": f.used_bytes.as_ref().map(|v| v.value).unwrap_or(0).to_string()},
                "inodesUsed": {"value": f.inodes_used.as_ref().map(|v| v.value).unwrap_or(0).to_string()},
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "status": { "imageFilesystems": fs } }))?
    );
    Ok(())
}
