//! Exec, Attach and PortForward: URLs on the streaming server.

use criox_proto::v1::*;
use tonic::Status;

use super::{CriServer, unimplemented};

pub async fn exec(_server: &CriServer, _req: ExecRequest) -> Result<ExecResponse, Status> {
    Err(unimplemented(
        "Exec",
        "the exec/attach/port-forward streaming server is not available",
    ))
}

pub async fn attach(_server: &CriServer, _req: AttachRequest) -> Result<AttachResponse, Status> {
    Err(unimplemented(
        "Attach",
        "the exec/attach/port-forward streaming server is not available",
    ))
}

pub async fn port_forward(
    _server: &CriServer,
    _req: PortForwardRequest,
) -> Result<PortForwardResponse, Status> {
    Err(unimplemented(
        "PortForward",
        "the exec/attach/port-forward streaming server is not available",
    ))
}
