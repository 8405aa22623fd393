//! The Kubernetes Container Runtime Interface, `runtime.v1`, as tonic services and prost
//! messages. Generated at build time from `proto/api.proto`.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
