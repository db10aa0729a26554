//! The admin listener: `/live`, `/ready`, `/metrics` (later `/admin` and `/admin/api/*`).
//!
//! It runs on its own OS thread with a single-threaded runtime, so a busy data plane cannot
//! starve it and it cannot starve the data plane. It only reads shared state. When a bearer
//! token is configured every path except `/live` and `/ready` requires it.

pub mod api;
mod metrics;
mod page;

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
#[allow(clippy::too_many_arguments)] // the composition root hands each view over explicitly
pub fn start(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    historian: Option<HistorianView>,
    forecasts: Option<ForecastView>,
    allocator: Option<AllocatorView>,
    token: Option<String>,
    clock: crate::clock::SharedClock,
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
            Arc::new(Shared {
                proxy,
                historian,
                forecasts,
                allocator,
                clock,
                csrf: format!("{:032x}", fastrand::u128(..)),
            }),
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
    /// The app's clock (the demo's runs fast): the page's "now".
    clock: crate::clock::SharedClock,
    /// Per-process secret the page's forms carry when no admin token is configured (so another
    /// site cannot make a browser on this machine post actions).
    csrf: String,
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
                async move {
                    let mut r = if req.method() == Method::POST {
                        action(&proxy, token.as_deref(), req).await
                    } else {
                        route(&proxy, token.as_deref(), req)
                    };
                    secure(&mut r);
                    Ok::<_, Infallible>(r)
                }
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

/// Headers on every admin response: nothing from elsewhere, no framing, no sniffing.
fn secure(r: &mut Response<Full<Bytes>>) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
}

fn see_other(msg: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let loc = format!("/admin?refresh=0&msg={}#pools", api::encode(msg));
    if let Ok(v) = header::HeaderValue::from_str(&loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `POST /admin/action` (form fields): `action=mode&pool=P&mode=enabled|dry_run`,
/// `action=scale&pool=P&delta=1|-1`, `action=refit&endpoint=E`. Needs the admin token (the
/// `Authorization: Bearer` header or a `token` field) when one is configured, else the page's
/// per-process `csrf` field. Every action is logged as a decision.
async fn action(shared: &Shared, token: Option<&str>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/admin/action" {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "method not allowed\n");
    }
    let header_ok = token.is_some() && authorized(token, &req);
    let body = match http_body_util::Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, PLAIN, "form too large or unreadable\n"),
    };
    let form = api::query_params(std::str::from_utf8(&body).ok());
    let same =
        |a: &str, b: &str| a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |x, (p, q)| x | (p ^ q)) == 0;
    let allowed = match token {
        Some(t) => header_ok || form.get("token").is_some_and(|g| same(g, t)),
        None => form.get("csrf").is_some_and(|g| same(g, &shared.csrf)),
    };
    if !allowed {
        let mut r =
            text(StatusCode::FORBIDDEN, PLAIN, "actions need the admin token (or, without one, the page's form)\n");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return r;
    }
    use crate::allocator::manager::Command;
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let alloc = |c: Command| match &shared.allocator {
        None => Err("no pool is scaled (no [pool.scaling])".to_string()),
        Some(a) => {
            let pool = match &c {
                Command::SetMode { pool, .. } | Command::Scale { pool, .. } | Command::Note { pool, .. } => pool,
            };
            if a.state().pools.iter().any(|p| &p.pool == pool) {
                a.send(c)
            } else {
                Err(format!("no scaled pool named {pool:?}"))
            }
        }
    };
    let result = match get("action") {
        "mode" => {
            let mode = match get("mode") {
                "enabled" => crate::allocator::Mode::Enabled,
                "dry_run" => crate::allocator::Mode::DryRun,
                m => return text(StatusCode::BAD_REQUEST, PLAIN, format!("mode {m:?}: use enabled or dry_run\n")),
            };
            alloc(Command::SetMode { pool: get("pool").into(), mode })
                .map(|_| format!("pool {}: mode {}", get("pool"), get("mode")))
        }
        "scale" => {
            let delta = match get("delta") {
                "1" | "+1" => 1,
                "-1" => -1,
                d => return text(StatusCode::BAD_REQUEST, PLAIN, format!("delta {d:?}: use 1 or -1\n")),
            };
            alloc(Command::Scale { pool: get("pool").into(), delta })
                .map(|_| format!("pool {}: scale {delta:+}", get("pool")))
        }
        "refit" => {
            let e = get("endpoint");
            match shared.forecasts.as_ref().filter(|f| f.get(e).is_some()) {
                None => Err(format!("no forecast for endpoint {e:?}")),
                Some(f) => f.refit(e).map(|_| {
                    // Logged as a decision of the endpoint's pool, when it is scaled.
                    let pool = shared
                        .proxy
                        .table()
                        .router
                        .routes()
                        .iter()
                        .find(|r| &*r.name == e)
                        .map(|r| r.pool.name.clone());
                    if let (Some(a), Some(pool)) = (&shared.allocator, pool) {
                        let _ = a.send(Command::Note { pool, reason: format!("refit of endpoint {e} asked") });
                    }
                    tracing::info!(endpoint = e, "admin: refit asked");
                    format!("endpoint {e}: the model will be chosen again")
                }),
            }
        }
        a => return text(StatusCode::BAD_REQUEST, PLAIN, format!("action {a:?}: use mode, scale or refit\n")),
    };
    match result {
        Ok(msg) => see_other(&msg),
        Err(e) => text(StatusCode::CONFLICT, PLAIN, format!("{e}\n")),
    }
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
        "/admin" | "/admin/" => {
            let params = api::query_params(req.uri().query());
            let now = shared.clock.now_us() / 1_000_000;
            text(StatusCode::OK, "text/html; charset=utf-8", page::render(shared, &params, &shared.csrf, now))
        }
        "/admin/style.css" => text(StatusCode::OK, "text/css; charset=utf-8", page::STYLE),
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
