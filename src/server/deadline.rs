//! The caller's deadline (the `grpc-timeout` header) ends a call with DEADLINE_EXCEEDED, as
//! gRPC specifies and clients check. The transport's own enforcement of the header answers
//! CANCELLED ("Timeout expired") instead; this layer sits inside it and answers first.

use std::time::Duration;

use crate::call_layer::{AroundCall, Body, Call, CallFuture};

/// Answers this much before the transport's timer, which starts a little earlier. Timers
/// tick in milliseconds, so a margin of one tick would leave the order to chance; ten
/// also covers the client's own timer, which starts before the request reaches us.
const MARGIN: Duration = Duration::from_millis(10);

/// Ends each call at its caller's deadline, in a [`crate::call_layer::CallLayer`].
#[derive(Clone, Copy, Default)]
pub struct CallerDeadline;

impl AroundCall for CallerDeadline {
    type Taken = Option<Duration>;

    fn take<B>(&self, request: &http::Request<B>) -> Option<Duration> {
        request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout)
    }

    fn around<R: Body, E: Send + 'static>(
        timeout: Option<Duration>,
        call: impl Call<R, E>,
    ) -> CallFuture<R, E> {
        Box::pin(async move {
            let Some(timeout) = timeout else {
                return call.await;
            };
            match tokio::time::timeout(timeout - MARGIN.min(timeout / 2), call).await {
                Ok(result) => result,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the caller's deadline of {timeout:?} passed"
                ))
                .into_http()),
            }
        })
    }
}

/// gRPC's TimeoutValue: at most eight digits and a unit (H, M, S, m, u, n).
fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use tower::{Layer, Service};

    use super::*;
    use crate::call_layer::CallLayer;

    /// A call that never ends, as a pull that outlives its caller's deadline.
    struct Endless;

    impl Service<http::Request<()>> for Endless {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Pending<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::pending()
        }
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_answers_deadline_exceeded() {
        let mut service = CallLayer(CallerDeadline).layer(Endless);
        let request = http::Request::builder()
            .header("grpc-timeout", "30m")
            .body(())
            .unwrap();
        let started = std::time::Instant::now();
        let response = service.call(request).await.unwrap();
        // Before the transport's own timer, which would answer CANCELLED at 30 ms.
        assert!(started.elapsed() < Duration::from_millis(30));
        let status = tonic::Status::from_header_map(response.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    }

    #[test]
    fn timeout_values_follow_the_grpc_wire_format() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("999u"), Some(Duration::from_micros(999)));
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("12"), None);
        assert_eq!(parse_timeout("S"), None);
        assert_eq!(parse_timeout("123456789S"), None);
    }
}
