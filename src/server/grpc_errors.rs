//! The one place a manager's error becomes a gRPC status: NotFound for unknown ids,
//! InvalidArgument for bad input, AlreadyExists for a name a live pod holds,
//! FailedPrecondition for a state that forbids the call, Internal for this node's faults.
//! Handlers return these errors with `?`.

use tonic::{Code, Status};

use crate::container::manager::ContainerError;
use crate::container::spec::SpecError;
use crate::image::client::ClientError;
use crate::image::fetch::FetchError;
use crate::image::{ImageError, PullError, fetch_error_is_integrity};
use crate::sandbox::{Invalid, SandboxError};
use crate::store::StoreError;
use crate::streaming::{RuntimeError, StreamingError};

impl From<SandboxError> for Status {
    fn from(e: SandboxError) -> Status {
        let code = match &e {
            SandboxError::Invalid(_) | SandboxError::Ambiguous(_) => Code::InvalidArgument,
            SandboxError::NameTaken { .. } => Code::AlreadyExists,
            SandboxError::NotFound(_) => Code::NotFound,
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

impl From<ContainerError> for Status {
    fn from(e: ContainerError) -> Status {
        use criox_runtime::RuntimeError as Oci;
        let code = match &e {
            ContainerError::Invalid { .. } | ContainerError::UnknownHandler(_) => {
                Code::InvalidArgument
            }
            ContainerError::Spec(spec) if spec.is_invalid_argument() => Code::InvalidArgument,
            ContainerError::ImageVolume(volume) if volume.is_invalid_argument() => {
                Code::InvalidArgument
            }
            ContainerError::FailedPrecondition { .. } => Code::FailedPrecondition,
            ContainerError::Spec(SpecError::NodeLacks { .. }) => Code::FailedPrecondition,
            ContainerError::ExecTimeout { .. } => Code::DeadlineExceeded,
            ContainerError::Store(StoreError::NotFound(..)) => Code::NotFound,
            ContainerError::Store(StoreError::Ambiguous(..)) => Code::InvalidArgument,
            ContainerError::Store(StoreError::NameTaken { .. }) => Code::AlreadyExists,
            ContainerError::Runtime(Oci::InvalidArgument { .. }) => Code::InvalidArgument,
            ContainerError::Runtime(Oci::NotFound { .. }) => Code::NotFound,
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

impl From<ImageError> for Status {
    fn from(e: ImageError) -> Status {
        let code = match &e {
            ImageError::Reference(_) => Code::InvalidArgument,
            ImageError::NotFound { .. } => Code::NotFound,
            ImageError::InUse { .. } => Code::FailedPrecondition,
            ImageError::Policy(_) | ImageError::Registries(_) => Code::FailedPrecondition,
            ImageError::Timeout { .. } => Code::DeadlineExceeded,
            ImageError::Pull { source, .. } => match source {
                PullError::Client(ClientError::NotFound { .. }) => Code::NotFound,
                PullError::Client(ClientError::Unauthorized { .. }) => Code::Unauthenticated,
                PullError::Client(ClientError::Connect { .. }) => Code::Unavailable,
                PullError::Manifest(_) | PullError::NestedIndex(_) | PullError::Signature(_) => {
                    Code::FailedPrecondition
                }
                PullError::ManifestDigest { .. } => Code::DataLoss,
                PullError::Fetch(f) if fetch_error_is_integrity(f) => Code::DataLoss,
                PullError::Fetch(FetchError::Unpack { source, .. }) if !source.is_io() => {
                    Code::FailedPrecondition
                }
                _ => Code::Internal,
            },
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

impl From<StreamingError> for Status {
    fn from(e: StreamingError) -> Status {
        match e {
            StreamingError::Invalid(m) => Status::invalid_argument(m),
            StreamingError::Runtime(RuntimeError::NotFound(id)) => {
                Status::not_found(format!("container {id} not found"))
            }
            StreamingError::Runtime(RuntimeError::PodNotFound(id)) => {
                Status::not_found(format!("pod sandbox {id} not found"))
            }
            StreamingError::Runtime(RuntimeError::NotRunning(id)) => {
                Status::failed_precondition(format!("container {id} is not running"))
            }
            StreamingError::Runtime(RuntimeError::PodNotReady(id)) => {
                Status::failed_precondition(format!("pod sandbox {id} is not ready"))
            }
            StreamingError::Cache(e) => Status::resource_exhausted(e.to_string()),
            other => Status::internal(other.to_string()),
        }
    }
}

/// A blocking helper task that panicked or was cancelled: a fault of this node.
pub fn task_failed(what: &str, e: tokio::task::JoinError) -> Status {
    Status::internal(format!("{what}: the task failed: {e}"))
}

/// The same status with the request field it concerns named in front of its message.
pub fn in_field(field: &str, status: Status) -> Status {
    Status::new(status.code(), format!("{field}: {}", status.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_errors_map_to_the_codes_clients_act_on() {
        let taken = SandboxError::NameTaken {
            name: "web_ns_u_0".into(),
            holder: "p1".into(),
        };
        assert_eq!(Status::from(taken).code(), Code::AlreadyExists);
        let unknown = Status::from(SandboxError::NotFound("p9".into()));
        assert_eq!(unknown.code(), Code::NotFound);
        assert!(unknown.message().contains("p9"), "{unknown:?}");
        let stopped = StreamingError::Runtime(RuntimeError::NotRunning("c1".into()));
        assert_eq!(Status::from(stopped).code(), Code::FailedPrecondition);
        let field = in_field("mounts[0].image", Status::not_found("image x not found"));
        assert_eq!(field.message(), "mounts[0].image: image x not found");
    }
}
