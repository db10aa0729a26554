//! `prescale demo`: the embedded default of the Quick start. It starts small local backends
//! (in-process HTTP servers standing in for VMs) and a proxy in front of them, configured
//! through the same `proxy.toml` parser as a real deployment.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError, Settings};

/// The demo's configuration; `{ORDERS_1}` etc. are replaced by the backends' ports.
pub const DEMO_CONFIG: &str = r#"
[listen]
addr = "{LISTEN}"

[admin]
addr = "{ADMIN}"

[[endpoint]]
name = "orders"
path_prefix = "/api/orders"
pool = "orders"

[[endpoint]]
name = "search"
path_prefix = "/api/search"
methods = ["GET"]
pool = "search"

[[pool]]
name = "orders"
members = ["{ORDERS_1}", "{ORDERS_2}"]
health_check = { path = "/health", interval = "2s", timeout = "500ms" }

[[pool]]
name = "search"
members = ["{SEARCH_1}"]
"#;

/// Starts one demo backend named `name` on a free loopback port; it answers JSON describing
/// the request, `/health` with 200, and honours `?delay_ms=N` (capped at 5 s).
pub async fn start_backend(name: &'static str, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
            };
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(name, req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(name: &'static str, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = req.uri().query().unwrap_or("");
    let delay = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("delay_ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(5000);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let body = serde_json::json!({
        "backend": name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": query,
        "request_id": req.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
        "forwarded_for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Builds the demo settings for the given listener addresses and backend addresses.
pub fn settings(listen: &str, admin: &str, backends: [SocketAddr; 3]) -> Result<Settings, Vec<ConfigError>> {
    let text = DEMO_CONFIG
        .replace("{LISTEN}", listen)
        .replace("{ADMIN}", admin)
        .replace("{ORDERS_1}", &backends[0].to_string())
        .replace("{ORDERS_2}", &backends[1].to_string())
        .replace("{SEARCH_1}", &backends[2].to_string());
    config::parse(&text, std::path::Path::new("."))
}
