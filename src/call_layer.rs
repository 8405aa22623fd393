//! The tower plumbing of the layers on the gRPC server that look at a request on its way
//! in and at its call's future on the way out (the caller's deadline, the RPC metrics):
//! each says only what it takes from the request and what it does around the call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

pub type CallFuture<R, E> = Pin<Box<dyn Future<Output = Result<http::Response<R>, E>> + Send>>;

/// The call of the service a layer wraps, answering with body `R` or failing with `E`.
pub trait Call<R, E>: Future<Output = Result<http::Response<R>, E>> + Send + 'static {}

impl<F, R, E> Call<R, E> for F where
    F: Future<Output = Result<http::Response<R>, E>> + Send + 'static
{
}

/// A response body a layer can build an answer of its own with.
pub trait Body: Default + Send + 'static {}

impl<T: Default + Send + 'static> Body for T {}

pub trait AroundCall: Clone {
    /// What is taken from the request before it goes on to the handler.
    type Taken: Send + 'static;

    fn take<B>(&self, request: &http::Request<B>) -> Self::Taken;

    fn around<R: Body, E: Send + 'static>(
        taken: Self::Taken,
        call: impl Call<R, E>,
    ) -> CallFuture<R, E>;
}

/// Runs `A` around every call of the service it wraps.
#[derive(Clone)]
pub struct CallLayer<A>(pub A);

impl<A: Clone, S> Layer<S> for CallLayer<A> {
    type Service = Around<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Around {
            around: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Around<A, S> {
    around: A,
    inner: S,
}

impl<A, S, B, R> Service<http::Request<B>> for Around<A, S>
where
    A: AroundCall,
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CallFuture<R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let taken = self.around.take(&request);
        A::around(taken, self.inner.call(request))
    }
}
