//! Counts every call on the gRPC server by method and status code and times it.

use std::sync::Arc;
use std::time::Instant;

use super::Metrics;
use crate::call_layer::{AroundCall, Body, Call, CallFuture, CallLayer};

/// The layer that counts and times every call into `metrics`.
pub fn rpc_metrics_layer(metrics: Arc<Metrics>) -> CallLayer<RpcMetrics> {
    CallLayer(RpcMetrics { metrics })
}

#[derive(Clone)]
pub struct RpcMetrics {
    metrics: Arc<Metrics>,
}

impl AroundCall for RpcMetrics {
    /// The method's name, where to count the call, and when it started.
    type Taken = (String, Arc<Metrics>, Instant);

    fn take<B>(&self, request: &http::Request<B>) -> Self::Taken {
        // "/runtime.v1.RuntimeService/Version" -> "Version"
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        (method, self.metrics.clone(), Instant::now())
    }

    fn around<R: Body, E: Send + 'static>(
        (method, metrics, started): Self::Taken,
        call: impl Call<R, E>,
    ) -> CallFuture<R, E> {
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                // An error status travels in the headers of a trailers-only response; a
                // success leaves it to the trailers, which this layer does not wait for.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(|c| format!("{:?}", tonic::Code::from_i32(c)))
                    .unwrap_or_else(|| "OK".to_string()),
                Err(_) => "Transport".to_string(),
            };
            metrics.observe_rpc(&method, &code, started.elapsed().as_secs_f64());
            result
        })
    }
}
