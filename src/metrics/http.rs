//! The `/metrics` HTTP endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Metrics;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Connections served at once; a scraper needs one, so 64 leaves room for several
/// Prometheus servers and curl while bounding what an idle-connection flood can hold.
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent a whole request head within this time is dropped, so
/// connections that send nothing cannot keep a connection slot forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `address` and serves metrics until the task is dropped; returns the bound
/// address (the port may have been 0).
pub async fn serve(
    metrics: Arc<Metrics>,
    address: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_limited(metrics, address, MAX_CONNECTIONS, HEADER_READ_TIMEOUT).await
}

async fn serve_limited(
    metrics: Arc<Metrics>,
    address: SocketAddr,
    max_connections: usize,
    header_read_timeout: Duration,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(max_connections));
    let task = tokio::spawn(async move {
        loop {
            // Wait for a free slot before accepting: further clients queue in the
            // kernel's backlog instead of each costing a task and a buffer here.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |request| answer(metrics.clone(), request));
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

async fn answer(
    metrics: Arc<Metrics>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = if request.method() == Method::GET && request.uri().path() == "/metrics" {
        Response::builder()
            .header("content-type", CONTENT_TYPE)
            .body(Full::new(Bytes::from(metrics.render())))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"only /metrics is served here\n",
            )))
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn scrape(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Reads until the server closes the connection; the time it took.
    async fn time_until_closed(mut stream: TcpStream) -> Duration {
        let started = Instant::now();
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    }

    #[tokio::test]
    async fn silent_clients_are_dropped_and_do_not_starve_others() {
        let timeout = Duration::from_millis(500);
        let (address, task) =
            serve_limited(Metrics::new(), "127.0.0.1:0".parse().unwrap(), 2, timeout)
                .await
                .unwrap();
        // Two clients take every slot and send nothing.
        let silent_a = TcpStream::connect(address).await.unwrap();
        let silent_b = TcpStream::connect(address).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(time_until_closed(silent_a), time_until_closed(silent_b))
        })
        .await
        .expect("a client that sends nothing must be dropped after the header timeout");
        println!(
            "silent clients dropped after {:?} and {:?}",
            closed.0, closed.1
        );
        assert!(closed.0 >= timeout / 2 && closed.1 >= timeout / 2);
        // Their slots are free again: a scrape is answered.
        let answer = tokio::time::timeout(Duration::from_secs(5), scrape(address))
            .await
            .expect("a scrape after silent clients were dropped must be answered");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        task.abort();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_slot() {
        let (address, task) = serve_limited(
            Metrics::new(),
            "127.0.0.1:0".parse().unwrap(),
            1,
            Duration::from_millis(800),
        )
        .await
        .unwrap();
        let silent = TcpStream::connect(address).await.unwrap();
        // Let the server take the silent client into its only slot.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), scrape(address))
            .await
            .expect("the waiting scrape is served once the silent client is dropped");
        let waited = started.elapsed();
        println!("second client served after {waited:?}");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            waited >= Duration::from_millis(500),
            "served after {waited:?}"
        );
        drop(silent);
        task.abort();
    }
}
