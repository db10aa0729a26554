//! The admin listener: `/live`, `/ready`, `/metrics`, the `/admin` page and `/admin/api/*`,
//! and `POST /admin/action`.
//!
//! It runs on its own OS thread with a single-threaded runtime, so a busy data plane cannot
//! starve it and it cannot starve the data plane. It only reads shared state (actions are sent
//! to their owners). When a token is configured (`admin.token_file`) every path except `/live`,
//! `/ready`, the sign-in page and the style sheet requires it: as a bearer token, or — for a
//! browser — through a session cookie that `POST /admin/login` gives for the token
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when `[admin.tls]` is set; 12 h; in memory only).
//!
//! Hostile clients are bounded: at most `admin.max_connections` connections (beyond them only
//! `/live` and `/ready` are answered, then the connection is closed), request heads and bodies
//! within `admin.request_timeout`, idle keep-alive connections closed after
//! `admin.idle_timeout`, bodies of at most 16 KB read only after the cheap checks (Host,
//! Origin, the bearer header, the failed-login limit). Pages and API answers are rendered on a
//! blocking worker, two at a time, so one large answer never stalls `/live` and `/ready`; every
//! answer is bounded in size (the calls and series APIs page with a `Link: rel="next"`).

pub(crate) mod api;
mod guard;
pub mod metrics;
mod page;
pub mod settings;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::allocator::live::AllocatorView;
use crate::forecast::view::ForecastView;
use crate::historian::HistorianView;
use crate::proxy::Proxy;
use crate::proxy::pool::now_ms;
pub use guard::HostPolicy;
use settings::AdminSettings;

/// Largest `POST /admin/action` body.
const MAX_FORM_BYTES: u64 = 16 * 1024;
/// Pages and API answers rendered at once (each on a blocking worker).
const RENDERS: usize = 2;
/// Connections beyond the cap that are still read for a `/live` or `/ready` probe.
const OVERFLOW_PROBES: usize = 64;
/// How long an over-the-cap connection has to send its request line.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the admin thread on an already-bound listener; it stops when `shutdown` fires.
#[allow(clippy::too_many_arguments)] // the composition root hands each view over explicitly
pub fn start(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    historian: Option<HistorianView>,
    forecasts: Option<ForecastView>,
    allocator: Option<AllocatorView>,
    fleet: Option<crate::fleet::FleetView>,
    settings: &AdminSettings,
    clock: crate::clock::SharedClock,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        proxy,
        historian,
        forecasts,
        allocator,
        fleet,
        clock,
        token: settings.token.as_deref().map(Arc::from),
        tls: settings.tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone())),
        sessions: guard::Sessions::default(),
        hosts: HostPolicy { names: settings.hosts.clone() },
        max_connections: settings.max_connections,
        request_timeout: settings.request_timeout,
        idle_timeout: settings.idle_timeout,
        forms: guard::FormSecrets::default(),
        logins: guard::LoginLimiter::new(settings.max_failed_logins),
        messages: guard::Messages::default(),
        renders: Arc::new(Semaphore::new(RENDERS)),
        refused: AtomicU64::new(0),
    });
    std::thread::Builder::new().name("prescale-admin".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(RENDERS + 2)
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "admin runtime failed to start");
                return;
            }
        };
        rt.block_on(serve(listener, shared, shutdown));
    })
}

/// What the admin handlers read.
struct Shared {
    proxy: Arc<Proxy>,
    historian: Option<HistorianView>,
    forecasts: Option<ForecastView>,
    allocator: Option<AllocatorView>,
    /// `[cluster]`: the fleet thread's state.
    fleet: Option<crate::fleet::FleetView>,
    /// The app's clock (the demo's runs fast): the page's "now".
    clock: crate::clock::SharedClock,
    /// Bearer token (`admin.token_file`); without one, actions need a form secret of the page.
    token: Option<Arc<str>>,
    /// `[admin.tls]`: every connection is HTTPS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Browser sessions opened with the token.
    sessions: guard::Sessions,
    /// `Host` values answered (DNS rebinding).
    hosts: HostPolicy,
    max_connections: usize,
    request_timeout: Duration,
    idle_timeout: Duration,
    /// Form secrets handed out per page load (so another site cannot make a browser on this
    /// machine post actions, and a secret read once does not last).
    forms: guard::FormSecrets,
    logins: guard::LoginLimiter,
    messages: guard::Messages,
    /// Bounds the blocking render workers.
    renders: Arc<Semaphore>,
    /// Connections refused at the cap (shown in `/metrics`).
    refused: AtomicU64,
}

async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin listener unusable");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(shared.max_connections));
    let probes = Arc::new(Semaphore::new(OVERFLOW_PROBES));
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let shutdown = shutdown.clone();
                conns.spawn(async move {
                    match &shared.tls {
                        None => serve_conn(stream, peer, &shared, shutdown).await,
                        Some(tls) => {
                            if let Some(s) = handshake(tls, stream, shared.request_timeout).await {
                                serve_conn(s, peer, &shared, shutdown).await;
                            }
                        }
                    }
                    drop(slot);
                });
            }
            Err(_) => {
                shared.refused.fetch_add(1, Relaxed);
                // Over the cap: probes still get their answer, everything else a 503; the
                // connection is closed either way, so it holds no descriptor for long.
                if let Ok(p) = probes.clone().try_acquire_owned() {
                    conns.spawn(async move {
                        match &shared.tls {
                            None => probe_only(stream, &shared).await,
                            Some(tls) => {
                                if let Some(s) = handshake(tls, stream, PROBE_TIMEOUT).await {
                                    probe_only(s, &shared).await;
                                }
                            }
                        }
                        drop(p);
                    });
                }
            }
        }
    }
    conns.close();
    conns.wait().await;
}

/// A TLS handshake within `limit` (a client that stalls it holds nothing for long).
async fn handshake(
    tls: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    limit: Duration,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "admin TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// Answers `/live` and `/ready` on a connection beyond the cap, anything else with 503.
async fn probe_only<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, shared: &Shared) {
    let mut buf = [0u8; 64];
    let mut n = 0;
    let read = tokio::time::timeout(PROBE_TIMEOUT, async {
        while n < buf.len() && !buf[..n].contains(&b'\n') {
            match stream.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    });
    let _ = read.await;
    let mut words = buf[..n].split(|b| *b == b' ');
    let (method, path) = (words.next(), words.next().and_then(|p| std::str::from_utf8(p).ok()));
    let (status, body) = match path {
        Some(p @ ("/live" | "/ready")) if matches!(method, Some(b"GET" | b"HEAD")) => probe_answer(shared, p),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "admin connection limit reached\n".into()),
    };
    let resp = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = tokio::time::timeout(PROBE_TIMEOUT, stream.write_all(resp.as_bytes())).await;
}

async fn serve_conn<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: CancellationToken,
) {
    let state = crate::proxy::listener::IoState::new();
    let io = TokioIo::new(crate::proxy::listener::IdleIo::new(stream, state.clone()));
    let for_service = shared.clone();
    let service = service_fn(move |req| {
        let shared = for_service.clone();
        async move {
            let mut r = dispatch(shared, peer.ip(), req).await;
            secure(&mut r);
            Ok::<_, Infallible>(r)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.request_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let idle_ms = shared.idle_timeout.as_millis() as u64;
    let hard_ms = idle_ms + shared.request_timeout.as_millis() as u64;
    let mut tick = tokio::time::interval(shared.idle_timeout / 4 + Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            _ = conn.as_mut() => return,
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick() => {
                let silent = now_ms().saturating_sub(state.last.load(Relaxed));
                // Silent past the idle timeout: close after the request in flight; still
                // silent a request timeout later (a body that never comes): drop it.
                if silent >= hard_ms {
                    return;
                }
                if silent >= idle_ms && !closing {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

const HTML: &str = "text/html; charset=utf-8";

impl Shared {
    /// The request carries the cookie of an open session (only meaningful with a token).
    fn session(&self, headers: &http::HeaderMap, now_s: u64) -> bool {
        self.token.is_some() && guard::session_cookie(headers).is_some_and(|id| self.sessions.valid(id, now_s))
    }

    fn cookie(&self, value: &str, max_age_s: u64) -> header::HeaderValue {
        let secure = if self.tls.is_some() { "; Secure" } else { "" };
        let c = format!(
            "{}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}",
            guard::SESSION_COOKIE
        );
        header::HeaderValue::from_str(&c).unwrap_or_else(|_| header::HeaderValue::from_static("invalid=1"))
    }
}

/// 303 to a path of the admin page, optionally setting a cookie.
fn redirect(to: &str, cookie: Option<header::HeaderValue>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = header::HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

/// `POST /admin/login` (`token`, `next`): the right token opens a session and goes on to
/// `next`; a wrong one counts as a failed login and shows the form again.
async fn login(shared: &Shared, ip: IpAddr, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let Some(token) = shared.token.as_deref() else { return redirect("/admin", None) };
    let form = match read_form(shared, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let now_s = crate::clock::now_us() / 1_000_000;
    let next = guard::safe_next(form.get("next").map(String::as_str));
    match form.get("token") {
        Some(given) if guard::same(given.trim(), token) => {
            let id = shared.sessions.open(now_s);
            tracing::info!(client = %ip, "admin sign-in");
            redirect(next, Some(shared.cookie(&id, guard::SESSION_TTL_S)))
        }
        Some(_) => {
            shared.logins.failed(ip, now_s);
            tracing::warn!(client = %ip, "admin sign-in with a wrong token");
            text(StatusCode::UNAUTHORIZED, HTML, page::login(next, true))
        }
        None => text(StatusCode::BAD_REQUEST, PLAIN, "token: required\n"),
    }
}

/// `POST /admin/logout`: closes the session and clears the cookie.
fn logout(shared: &Shared, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(id) = guard::session_cookie(req.headers()) {
        shared.sessions.close(id);
    }
    redirect("/admin/login", Some(shared.cookie("", 0)))
}

/// Reads a small form after the cheap check of its declared size; the body must arrive within
/// `admin.request_timeout`. (The origin was checked in `dispatch`.)
async fn read_form(
    shared: &Shared,
    req: hyper::Request<Incoming>,
) -> Result<std::collections::HashMap<String, String>, Response<Full<Bytes>>> {
    use http_body_util::BodyExt;
    const PLAIN: &str = "text/plain; charset=utf-8";
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        None => return Err(text(StatusCode::LENGTH_REQUIRED, PLAIN, "a form with a Content-Length is required\n")),
        Some(n) if n > MAX_FORM_BYTES => return Err(text(StatusCode::PAYLOAD_TOO_LARGE, PLAIN, "form too large\n")),
        _ => {}
    }
    let read = http_body_util::Limited::new(req.into_body(), MAX_FORM_BYTES as usize).collect();
    match tokio::time::timeout(shared.request_timeout, read).await {
        Ok(Ok(b)) => Ok(api::query_params(std::str::from_utf8(&b.to_bytes()).ok())),
        Ok(Err(_)) => Err(text(StatusCode::PAYLOAD_TOO_LARGE, PLAIN, "form too large or unreadable\n")),
        Err(_) => {
            let mut r = text(StatusCode::REQUEST_TIMEOUT, PLAIN, "the form did not arrive in time\n");
            r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

/// One request: the probes at once; everything else after the Host, auth and rate checks, the
/// action on this thread (it only sends commands), pages and APIs on a blocking worker.
async fn dispatch(shared: Arc<Shared>, ip: IpAddr, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let path = req.uri().path();
    if matches!(*req.method(), Method::GET | Method::HEAD) && (path == "/live" || path == "/ready") {
        return probe(&shared, path);
    }
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    if !shared.hosts.allows(host) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            PLAIN,
            "this Host is not one of the admin's names (admin.hosts); use the address or a configured name\n",
        );
    }
    let now_s = crate::clock::now_us() / 1_000_000;
    if let Some(wait) = shared.logins.blocked(ip, now_s) {
        let mut r = text(StatusCode::TOO_MANY_REQUESTS, PLAIN, "too many failed logins; try again later\n");
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        return r;
    }
    if req.method() == Method::POST {
        if !matches!(path, "/admin/login" | "/admin/logout" | "/admin/action") {
            return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "method not allowed\n");
        }
        // One origin check for every form post (sign-in, sign-out, actions).
        let h = req.headers();
        let str_of = |name: header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
        if !guard::same_origin(str_of(header::HOST), str_of(header::ORIGIN), str_of(header::REFERER)) {
            return text(StatusCode::FORBIDDEN, PLAIN, "cross-origin actions are refused\n");
        }
        return match req.uri().path() {
            "/admin/login" => login(&shared, ip, req).await,
            "/admin/logout" => logout(&shared, req),
            _ => action(&shared, ip, req).await,
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "method not allowed\n");
    }
    if path == "/admin/style.css" {
        return text(StatusCode::OK, "text/css; charset=utf-8", page::STYLE);
    }
    let session = shared.session(req.headers(), now_s);
    if path == "/admin/login" {
        if shared.token.is_none() || session {
            return redirect("/admin", None);
        }
        let params = api::query_params(req.uri().query());
        let next = guard::safe_next(params.get("next").map(String::as_str));
        return text(StatusCode::OK, HTML, page::login(next, params.contains_key("failed")));
    }
    match bearer(shared.token.as_deref(), req.headers()) {
        Auth::Ok => {}
        // The cookie is scoped to /admin (its Path): /metrics and the rest take the bearer.
        Auth::Missing if session && path.starts_with("/admin") => {}
        auth => {
            if auth == Auth::Wrong {
                shared.logins.failed(ip, now_s);
            }
            // A browser asking for the page gets the sign-in form; scripts get the bearer hint.
            if auth == Auth::Missing && (path == "/admin" || path == "/admin/") {
                let next = guard::safe_next(req.uri().path_and_query().map(|p| p.as_str()));
                let mut r = text(StatusCode::UNAUTHORIZED, HTML, page::login(next, false));
                r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                return r;
            }
            let mut r = text(StatusCode::UNAUTHORIZED, PLAIN, "bearer token required (or sign in at /admin/login)\n");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let Ok(Ok(permit)) = tokio::time::timeout(shared.request_timeout, shared.renders.clone().acquire_owned()).await
    else {
        return text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "the admin is busy; try again\n");
    };
    let (parts, _) = req.into_parts();
    let worker = shared.clone();
    // The permit goes with the work: a render that outlives its answer still counts.
    let job = tokio::task::spawn_blocking(move || {
        let r = route(&worker, &parts);
        drop(permit);
        r
    });
    match tokio::time::timeout(shared.request_timeout, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, "the page failed to render\n"),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "the answer took too long; try a smaller page\n"),
    }
}

/// The answer to `/live` or `/ready` (shared by connections under and over the cap).
fn probe_answer(shared: &Shared, path: &str) -> (StatusCode, String) {
    if path == "/live" {
        return (StatusCode::OK, "live\n".into());
    }
    let unready = shared.proxy.unready_pools();
    if unready.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        let names: Vec<String> = unready.iter().map(|p| format!("pool \"{p}\"")).collect();
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: no member can take requests in {}\n", names.join(", ")))
    }
}

fn probe(shared: &Shared, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = probe_answer(shared, path);
    text(status, "text/plain; charset=utf-8", body)
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
        Ok(page) => {
            let mut resp = text(StatusCode::OK, JSON, page.json);
            // RFC 8288: where the rest of a paged answer is.
            if let Some(next) = page.next
                && let Ok(v) = header::HeaderValue::from_str(&format!("<{next}>; rel=\"next\""))
            {
                resp.headers_mut().insert(header::LINK, v);
            }
            resp
        }
        Err((status, msg)) => text(status, JSON, serde_json::json!({ "error": msg }).to_string()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Auth {
    /// No token configured, or the right bearer token.
    Ok,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token, and not the right one.
    Wrong,
}

fn bearer(token: Option<&str>, headers: &http::HeaderMap) -> Auth {
    let Some(token) = token else { return Auth::Ok };
    let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Auth::Missing;
    };
    let Some(given) = given.strip_prefix("Bearer ") else {
        return Auth::Wrong;
    };
    // Constant-time comparison: the token is a secret.
    if guard::same(given, token) { Auth::Ok } else { Auth::Wrong }
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
    // Not `no-referrer`: under it a browser sends `Origin: null` with the page's own form
    // posts, which the same-origin check must refuse. `same-origin` keeps the page's URLs from
    // other sites and lets its forms say where they come from.
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
}

/// Back to the page, which shows `msg` (by id: the page never shows text from its URL).
fn see_other(shared: &Shared, msg: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let loc = format!("/admin?refresh=0&msg={}#pools", shared.messages.put(msg));
    if let Ok(v) = header::HeaderValue::from_str(&loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `POST /admin/action` (form fields): `action=mode&pool=P&mode=enabled|dry_run`,
/// `action=scale&pool=P&delta=1|-1`, `action=refit&endpoint=E`. Needs the admin token (the
/// `Authorization: Bearer` header or a `token` field) when one is configured, else a form
/// secret from a page load of the last hour. Checked before the body is read: the path, the
/// origin (a browser's `Origin`/`Referer` must name this Host), a wrong bearer header, the
/// body's declared size; the body itself must arrive within `admin.request_timeout`. Every
/// action is logged as a decision; failed logins count against the client's address.
async fn action(shared: &Shared, ip: IpAddr, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let h = req.headers();
    let now_s = crate::clock::now_us() / 1_000_000;
    // `presented`: a wrong credential was sent (counts as a failed login), not just none.
    let forbidden = |shared: &Shared, presented: bool| {
        if presented {
            shared.logins.failed(ip, now_s);
        }
        let mut r =
            text(StatusCode::FORBIDDEN, PLAIN, "actions need the admin token (or, without one, the page's form)\n");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        r
    };
    let header_auth = bearer(shared.token.as_deref(), h);
    if shared.token.is_some() && header_auth == Auth::Wrong {
        return forbidden(shared, true);
    }
    let session = shared.session(h, now_s);
    let form = match read_form(shared, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let csrf_ok = form.get("csrf").is_some_and(|g| shared.forms.valid(g, now_s));
    let allowed = match shared.token.as_deref() {
        // A signed-in browser posts the page's form: its session and the form's secret.
        Some(t) => {
            header_auth == Auth::Ok || form.get("token").is_some_and(|g| guard::same(g, t)) || session && csrf_ok
        }
        None => csrf_ok,
    };
    if !allowed {
        let presented = form.contains_key("token") || form.contains_key("csrf");
        return forbidden(shared, presented);
    }
    use crate::allocator::controller::Command;
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let alloc = |c: Command| match &shared.allocator {
        None => Err("no pool is scaled (no [pool.scaling])".to_string()),
        Some(a) => {
            let pool = c.pool().to_string();
            let state = a.state();
            match state.pools.iter().find(|p| p.pool == pool).map(|p| p.fleet.as_ref()) {
                None => Err(format!("no scaled pool named {pool:?}")),
                // In a fleet only the pool's leader acts: say who that is.
                Some(Some(f)) if f.role == "follower" => Err(match (&f.leader, &f.leader_admin) {
                    (Some(l), Some(adm)) => {
                        format!("pool {pool} is led by instance {l}: send actions to its admin, http://{adm}")
                    }
                    _ => format!("pool {pool} has no leader yet; try again in a few seconds"),
                }),
                Some(Some(f)) if f.role == "paused" => Err(format!(
                    "scaling of pool {pool} is paused here ({})",
                    f.detail.as_deref().unwrap_or("etcd unreachable")
                )),
                Some(_) => a.send(c).map_err(|e| e.to_string()),
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
                Some(f) => f
                    .refit(e)
                    .map(|_| {
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
                    })
                    .map_err(|b| b.to_string()),
            }
        }
        "exclude" => {
            let e = get("endpoint");
            let time = |k: &str| {
                crate::historian::import::parse_time(get(k))
                    .map_err(|_| format!("{k}: {:?} is not a time such as 2026-11-27T08:00:00Z", get(k)))
            };
            match (shared.forecasts.as_ref(), time("from"), time("to")) {
                (None, ..) => Err("forecasting is disabled".to_string()),
                (_, Err(m), _) | (_, _, Err(m)) => Err(m),
                (Some(f), Ok(from), Ok(to)) if f.get(e).is_some() => {
                    f.exclude(e, from, to, get("reason")).map_err(|x| x.to_string()).map(|_| {
                        tracing::info!(endpoint = e, from, to, reason = get("reason"), "admin: period excluded");
                        format!("endpoint {e}: {from}–{to} excluded; its model is fitted again")
                    })
                }
                (Some(_), ..) => Err(format!("no forecast for endpoint {e:?}")),
            }
        }
        a => return text(StatusCode::BAD_REQUEST, PLAIN, format!("action {a:?}: use mode, scale, refit or exclude\n")),
    };
    match result {
        Ok(msg) => see_other(shared, msg),
        Err(e) => text(StatusCode::CONFLICT, PLAIN, format!("{e}\n")),
    }
}

/// Pages and APIs (after the Host and auth checks), on a blocking worker.
fn route(shared: &Shared, req: &http::request::Parts) -> Response<Full<Bytes>> {
    let proxy = &shared.proxy;
    const PLAIN: &str = "text/plain; charset=utf-8";
    match req.uri.path() {
        "/admin" | "/admin/" => {
            let params = api::query_params(req.uri.query());
            let now = shared.clock.now_us() / 1_000_000;
            let csrf = shared.forms.issue(crate::clock::now_us() / 1_000_000);
            text(StatusCode::OK, "text/html; charset=utf-8", page::render(shared, &params, &csrf, now))
        }
        "/admin/style.css" => text(StatusCode::OK, "text/css; charset=utf-8", page::STYLE),
        "/metrics" => {
            let format =
                metrics::Format::from_accept(req.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()));
            let sources = metrics::Sources {
                proxy,
                historian: shared.historian.as_ref(),
                forecasts: shared.forecasts.as_ref(),
                allocator: shared.allocator.as_ref(),
                fleet: shared.fleet.as_ref(),
                admin_refused: shared.refused.load(Relaxed),
            };
            text(StatusCode::OK, format.content_type(), metrics::render(&sources, format))
        }
        "/admin/api/fleet" => json_response(match &shared.fleet {
            Some(f) => serde_json::to_string(&*f.state())
                .map(api::Page::from)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
            None => Err((StatusCode::NOT_FOUND, "this instance runs alone (no [cluster])".to_string())),
        }),
        path @ ("/admin/api/pools" | "/admin/api/decisions") => {
            let params = api::query_params(req.uri.query());
            json_response(api::allocator(shared.allocator.as_ref(), path, &params))
        }
        path if path.starts_with("/admin/api/") => {
            let Some(h) = &shared.historian else {
                return json_response(Err((StatusCode::NOT_FOUND, "the historian is disabled".into())));
            };
            let params = api::query_params(req.uri.query());
            json_response(match &path["/admin/api/".len()..] {
                "endpoints" => api::endpoints(h),
                "series" => api::series(h, &params),
                "calls" => api::calls(h, &params),
                "forecast" => api::forecast(shared.forecasts.as_ref(), &params),
                "accuracy" => api::accuracy(shared.forecasts.as_ref(), &params),
                "exclusions" => match &shared.forecasts {
                    Some(f) => serde_json::to_string(&*f.exclusions())
                        .map(api::Page::from)
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
                    None => Err((StatusCode::NOT_FOUND, "forecasting is disabled".to_string())),
                },
                other => Err((StatusCode::NOT_FOUND, format!("no API named {other:?}"))),
            })
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
    }
}
