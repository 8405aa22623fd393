//! The ImageService: pull, list, inspect and remove images.

use std::collections::HashMap;

use base64::Engine;
use criox_proto::v1::image_service_server::ImageService;
use criox_proto::v1::*;
use tonic::{Request, Response, Status};

use super::CriServer;
use super::edge::{self, Subject};
use super::grpc_errors::task_failed;
use super::list_stream;
use crate::image::{Credentials, ImageError, ImageRecord};

fn image_name(spec: Option<&ImageSpec>, field: &str) -> Result<String, Status> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Status::invalid_argument(format!("{field} is required"))),
    }
}

fn credentials(auth: Option<&AuthConfig>) -> Result<Option<Credentials>, Status> {
    let Some(auth) = auth else { return Ok(None) };
    if !auth.registry_token.is_empty() {
        return Ok(Some(Credentials::Bearer(auth.registry_token.clone())));
    }
    if !auth.identity_token.is_empty() {
        return Err(Status::unimplemented(
            "auth.identity_token (an OAuth2 refresh token) is not supported yet: use username and password or registry_token",
        ));
    }
    if !auth.username.is_empty() || !auth.password.is_empty() {
        return Ok(Some(Credentials::Basic {
            username: auth.username.clone(),
            password: auth.password.clone(),
        }));
    }
    if !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::invalid_argument("auth.auth is not base64 of user:password"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("auth.auth is not base64 of user:password"))?;
        return Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    Ok(None)
}

/// CRI's uid or username from the image's `USER` (`uid[:gid]` or `name[:group]`).
fn user_of(user: &str) -> (Option<Int64Value>, String) {
    let user = user.split(':').next().unwrap_or("");
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(Int64Value { value: uid }), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

impl CriServer {
    fn cri_image(
        &self,
        record: &ImageRecord,
    ) -> Result<(Image, Option<crate::image::OciImageConfig>), Status> {
        let config = self.images.config(record)?;
        let (uid, username) = user_of(&config.config.user);
        let image = Image {
            id: record.id.clone(),
            repo_tags: record.repo_tags.clone(),
            repo_digests: record.repo_digests.clone(),
            size: record.size,
            uid,
            username,
            spec: Some(ImageSpec {
                image: record.id.clone(),
                ..Default::default()
            }),
            pinned: false,
        };
        Ok((image, Some(config)))
    }
}

#[tonic::async_trait]
impl ImageService for CriServer {
    type StreamImagesStream = list_stream::Chunks<StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let filter = request.into_inner().filter;
        let span = edge::span("StreamImages", Subject::Node);
        edge::read(span, async {
            let list = list_images(self, ListImagesRequest { filter }).await?;
            Ok(list_stream::chunks(list.images, |images| {
                StreamImagesResponse { images }
            }))
        })
        .await
    }

    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let span = edge::span("ListImages", Subject::Node);
        edge::read(span, list_images(self, request.into_inner())).await
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ImageStatus", Subject::Image(image_of(req.image.as_ref())));
        edge::read(span, image_status(self, req)).await
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("PullImage", Subject::Image(image_of(req.image.as_ref())));
        let server = self.clone();
        edge::change(span, async move { pull_image(&server, req).await }).await
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("RemoveImage", Subject::Image(image_of(req.image.as_ref())));
        let server = self.clone();
        edge::change(span, async move { remove_image(&server, req).await }).await
    }

    async fn image_fs_info(
        &self,
        request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let span = edge::span("ImageFsInfo", Subject::Node);
        edge::read(span, image_fs_info(self, request.into_inner())).await
    }
}

/// The image a request names, for its span.
fn image_of(spec: Option<&ImageSpec>) -> &str {
    spec.map(|s| s.image.as_str()).unwrap_or_default()
}

pub async fn list_images(
    server: &CriServer,
    request: ListImagesRequest,
) -> Result<ListImagesResponse, Status> {
    let filter = request
        .filter
        .and_then(|f| f.image)
        .map(|s| s.image)
        .filter(|s| !s.is_empty());
    let records = match filter {
        Some(name) => server.images.find(&name).into_iter().collect(),
        None => server.images.list(),
    };
    let mut images = Vec::with_capacity(records.len());
    for record in &records {
        images.push(server.cri_image(record)?.0);
    }
    Ok(ListImagesResponse { images })
}

pub async fn image_status(
    server: &CriServer,
    request: ImageStatusRequest,
) -> Result<ImageStatusResponse, Status> {
    let name = image_name(request.image.as_ref(), "image.image")?;
    // CRI: an unknown image is not an error, just no image.
    let Some(record) = server.images.find(&name) else {
        return Ok(ImageStatusResponse::default());
    };
    let (image, config) = server.cri_image(&record)?;
    let mut info = HashMap::new();
    if request.verbose {
        let detail = serde_json::json!({
            "id": record.id,
            "manifestDigest": record.manifest_digest,
            "chainIDs": record.chain_ids,
            "pulledAt": record.pulled_at,
            "imageSpec": config,
        });
        info.insert("info".to_string(), detail.to_string());
    }
    Ok(ImageStatusResponse {
        image: Some(image),
        info,
    })
}

pub async fn pull_image(
    server: &CriServer,
    request: PullImageRequest,
) -> Result<PullImageResponse, Status> {
    let name = image_name(request.image.as_ref(), "image.image")?;
    let credentials = credentials(request.auth.as_ref())?;
    let pulled = server.images.pull(&name, credentials).await;
    match &pulled {
        Ok(record) => server.metrics.image_pulled(true, record.size),
        Err(_) => server.metrics.image_pulled(false, 0),
    }
    let record = pulled?;
    Ok(PullImageResponse {
        image_ref: record.id,
    })
}

pub async fn remove_image(
    server: &CriServer,
    request: RemoveImageRequest,
) -> Result<RemoveImageResponse, Status> {
    let name = image_name(request.image.as_ref(), "image.image")?;
    let containers = server
        .containers
        .list(&crate::container::record::Filter::default());
    let user_of = |id: &str| {
        containers
            .iter()
            .find(|c| c.image_id == id)
            .map(|c| c.id.clone())
    };
    match server.images.remove(&name, user_of).await {
        // CRI: removing an image that is not there succeeds.
        Ok(_) | Err(ImageError::NotFound { .. }) => Ok(RemoveImageResponse {}),
        Err(e) => Err(e.into()),
    }
}

pub async fn image_fs_info(
    server: &CriServer,
    _request: ImageFsInfoRequest,
) -> Result<ImageFsInfoResponse, Status> {
    let images = server.images.clone();
    let (usage, mountpoint) = tokio::task::spawn_blocking(move || images.usage())
        .await
        .map_err(|e| task_failed("measuring the image store", e))?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let fs = FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: mountpoint.display().to_string(),
        }),
        used_bytes: Some(UInt64Value { value: usage.bytes }),
        inodes_used: Some(UInt64Value {
            value: usage.inodes,
        }),
    };
    Ok(ImageFsInfoResponse {
        image_filesystems: vec![fs],
        container_filesystems: vec![],
    })
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn user_maps_to_uid_or_name() {
        assert_eq!(user_of("1000:1000").0.unwrap().value, 1000);
        assert_eq!(user_of("daemon").1, "daemon");
        assert_eq!(user_of("daemon:daemon").1, "daemon");
        assert!(user_of("").0.is_none());
    }

    #[test]
    fn auth_config_forms() {
        let a = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:x"),
            ..Default::default()
        };
        match credentials(Some(&a)).unwrap() {
            Some(Credentials::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("u", "p:x"))
            }
            other => panic!("{other:?}"),
        }
        let t = AuthConfig {
            identity_token: "x".into(),
            ..Default::default()
        };
        assert_eq!(
            credentials(Some(&t)).unwrap_err().code(),
            Code::Unimplemented
        );
    }
}
