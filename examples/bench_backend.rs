//! The backend for `benches/wrk.sh`: a minimal hyper HTTP/1.1 server with keep-alive that
//! answers `/` with a ~100-byte body and `/16k` with a 16 KiB body. The same backend serves
//! every peer (direct, prescale, nginx, HAProxy) in one run.
//!
//! Usage: `bench_backend ADDR` (e.g. 127.0.0.1:18000).

use std::convert::Infallible;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18000".into());
    let small = Bytes::from(format!("{{\"ok\":true,\"pad\":\"{}\"}}\n", "x".repeat(80)));
    let large = Bytes::from(vec![b'y'; 16 * 1024]);
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (small, large) = (small.clone(), large.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/16k" { large.clone() } else { small.clone() };
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
