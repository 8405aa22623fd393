//! The caller's deadline (the `grpc-timeout` header) ends a call with DEADLINE_EXCEEDED, as
//! gRPC specifies and clients check. The transport's own enforcement of the header answers
//! CANCELLED ("Timeout expired") instead; this layer sits inside it and answers first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

/// Answers this much before the transport's timer, which starts a little earlier. Timers
/// tick in milliseconds, so a margin of one tick would leave the order to chance; ten
/// also covers the client's own timer, which starts before the request reaches us.
const MARGIN: Duration = Duration::from_millis(10);

#[derive(Clone, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner }
    }
}

#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout);
        let future = self.inner.call(request);
        Box::pin(async move {
            let Some(timeout) = timeout else {
                return future.await;
            };
            match tokio::time::timeout(timeout - MARGIN.min(timeout / 2), future).await {
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
    use super::*;

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
        let mut service = DeadlineLayer.layer(Endless);
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
