//! The admin listener: `/live`, `/ready`, `/metrics` (later `/admin` and `/admin/api/*`).
//!
//! It runs on its own OS thread with a single-threaded runtime, so a busy data plane cannot
//! starve it and it cannot starve the data plane. It only reads shared state. When a bearer
//! token is configured every path except `/live` and `/ready` requires it.

mod api;
mod metrics;

use std::convert::Infallible;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::allocator::manager::AllocatorView;
use crate::forecast::thread::ForecastView;
use crate::historian::HistorianView;
use crate::proxy::Proxy;

/// Starts the admin thread on an already-bound listener; it stops when `shutdown` fires.
pub fn start(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    historian: Option<HistorianView>,
    forecasts: Option<ForecastView>,
    allocator: Option<AllocatorView>,
    token: Option<String>,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("prescale-admin".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "admin runtime failed to start");
                return;
            }
        };
        rt.block_on(serve(
            listener,
            Arc::new(Shared { proxy, historian, forecasts, allocator }),
            token.map(Arc::from),
            shutdown,
        ));
    })
}

/// What the admin handlers read.
struct Shared {
    proxy: Arc<Proxy>,
    historian: Option<HistorianView>,
    forecasts: Option<ForecastView>,
    allocator: Option<AllocatorView>,
}

async fn serve(
    listener: std::net::TcpListener,
    proxy: Arc<Shared>,
    token: Option<Arc<str>>,
    shutdown: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin listener unusable");
            return;
        }
    };
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (proxy, token, shutdown) = (proxy.clone(), token.clone(), shutdown.clone());
        conns.spawn(async move {
            let service = service_fn(move |req| {
                let (proxy, token) = (proxy.clone(), token.clone());
                async move { Ok::<_, Infallible>(route(&proxy, token.as_deref(), req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
                }
            }
        });
    }
    conns.close();
    conns.wait().await;
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

fn json_response(r: api::ApiResult) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    match r {
        Ok(body) => text(StatusCode::OK, JSON, body),
        Err((status, msg)) => text(status, JSON, serde_json::json!({ "error": msg }).to_string()),
    }
}

fn authorized(token: Option<&str>, req: &Request<Incoming>) -> bool {
    let Some(token) = token else { return true };
    let Some(given) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant-time comparison: the token is a secret.
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn route(shared: &Shared, token: Option<&str>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let proxy = &shared.proxy;
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "method not allowed\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, PLAIN, "live\n"),
        "/ready" => {
            if proxy.is_ready() {
                text(StatusCode::OK, PLAIN, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready: a pool has no healthy member\n")
            }
        }
        _ if !authorized(token, &req) => {
            let mut r = text(StatusCode::UNAUTHORIZED, PLAIN, "bearer token required\n");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            r
        }
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(proxy, shared.historian.as_ref(), shared.forecasts.as_ref(), shared.allocator.as_ref()),
        ),
        path @ ("/admin/api/pools" | "/admin/api/decisions") => {
            let params = api::query_params(req.uri().query());
            json_response(api::allocator(shared.allocator.as_ref(), path, &params))
        }
        path if path.starts_with("/admin/api/") => {
            let Some(h) = &shared.historian else {
                return json_response(Err((StatusCode::NOT_FOUND, "the historian is disabled".into())));
            };
            let params = api::query_params(req.uri().query());
            json_response(match &path["/admin/api/".len()..] {
                "endpoints" => api::endpoints(h),
                "series" => api::series(h, &params),
                "calls" => api::calls(h, &params),
                "forecast" => api::forecast(shared.forecasts.as_ref(), &params),
                "accuracy" => api::accuracy(shared.forecasts.as_ref(), &params),
                other => Err((StatusCode::NOT_FOUND, format!("no API named {other:?}"))),
            })
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
    }
}
