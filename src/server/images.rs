//! The ImageService: pull, list, inspect and remove images.

use criox_proto::v1::image_service_server::ImageService;
use criox_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{CriServer, unimplemented};

#[tonic::async_trait]
impl ImageService for CriServer {
    async fn list_images(
        &self,
        _request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        Err(unimplemented(
            "ListImages",
            "the image service (pull, store, unpack) is not available",
        ))
    }

    async fn image_status(
        &self,
        _request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        Err(unimplemented(
            "ImageStatus",
            "the image service (pull, store, unpack) is not available",
        ))
    }

    async fn pull_image(
        &self,
        _request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        Err(unimplemented(
            "PullImage",
            "the image service (pull, store, unpack) is not available",
        ))
    }

    async fn remove_image(
        &self,
        _request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        Err(unimplemented(
            "RemoveImage",
            "the image service (pull, store, unpack) is not available",
        ))
    }

    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        Err(unimplemented(
            "ImageFsInfo",
            "the image service (pull, store, unpack) is not available",
        ))
    }
}
