//! The request path: route, pick a member, forward, stream the response back.
//!
//! Nothing here blocks, locks or panics: every failure becomes a [`ProxyError`] and a
//! generated response, and every call — forwarded or refused — is accounted for once through
//! [`CallDone`].

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::{Either, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{CLIENT_CLOSED, CallDone, CallState, Counting, ProxyBody};
use super::error::ProxyError;
use super::headers::{self, X_REQUEST_ID};
use super::pool::{InFlight, Member, now_ms};
use super::router::{Route, host_without_port};
use super::target;
use super::{Proxy, RouteTable};

/// What the listener knows about the connection a request came on.
#[derive(Debug)]
pub(super) struct ConnInfo {
    pub peer: SocketAddr,
    pub https: bool,
    /// The worker's own upstream client (connection pool); never shared across threads.
    pub client: super::UpstreamClient,
    /// The connection's slot under `max_connections`, which an upgrade hands to its tunnel.
    pub slot: super::listener::ConnSlot,
    /// An upgraded connection with no bytes either way for this long is closed.
    pub tunnel_idle: std::time::Duration,
}

const VIA: &str = "1.1 prescale";

/// Checks the request target before routing: one valid Host (required in HTTP/1.1), a valid
/// authority, and a path without dot-segments (normalised in place, or refused).
fn check_target(req: &mut Request<Incoming>, table: &RouteTable) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    // More than one Host is ambiguous about the target (RFC 9112 §3.2: 400), and a cache or
    // router behind us might read the other one.
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    match host {
        Some(h) if !target::valid_host(h.as_bytes()) => return Err(ProxyError::BadRequest("invalid Host")),
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered with 400.
        None if req.version() == Version::HTTP_11 && req.uri().authority().is_none() => {
            return Err(ProxyError::BadRequest("missing Host"));
        }
        _ => {}
    }
    if let Some(a) = req.uri().authority()
        && !target::valid_host(a.as_str().as_bytes())
    {
        return Err(ProxyError::BadRequest("invalid authority"));
    }
    let normalized = match target::normalize_path(req.uri().path(), table.limits.dot_segments) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(p)) => p,
        Err(target::PathError::DotSegments) => return Err(ProxyError::BadRequest("dot-segments in the path")),
        Err(target::PathError::Ambiguous) => return Err(ProxyError::BadRequest("ambiguous path")),
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| ProxyError::BadRequest("path"))?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("path"))?;
    Ok(())
}

/// A call refused before routing: answered, counted, and written to the access log under
/// endpoint `-` (the historian records only routed calls).
fn refuse(
    proxy: &Proxy,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    e: &ProxyError,
    rid: HeaderValue,
    start: Instant,
) -> Response<ProxyBody> {
    if matches!(e, ProxyError::NoRoute | ProxyError::MethodNotAllowed) {
        proxy.global.unrouted.fetch_add(1, Relaxed);
    }
    if let Some(a) = &proxy.access {
        static NONE: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        let line = a.pending(
            conn.peer.ip(),
            req.method(),
            req.uri().path(),
            NONE.get_or_init(|| Arc::from("-")),
            None,
            rid.to_str().unwrap_or("-"),
        );
        line.send(e.status().as_u16(), start.elapsed(), 0, super::stats::Outcome::Complete);
    }
    error_response(e, rid, CallDone::default())
}

pub(super) async fn handle(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let table = proxy.table.load_full();
    let rid = headers::request_id(req.headers());
    if let Err(e) = check_target(&mut req, &table) {
        return Ok(refuse(&proxy, &conn, &req, &e, rid, start));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(host_without_port);
    // CONNECT would make prescale a tunnel to anywhere: refused before routing.
    if req.method() == Method::CONNECT {
        return Ok(refuse(&proxy, &conn, &req, &ProxyError::MethodNotAllowed, rid, start));
    }
    let Some(route) = table.router.find(req.method(), host, req.uri().path()) else {
        return Ok(refuse(&proxy, &conn, &req, &ProxyError::NoRoute, rid, start));
    };
    let recorder = proxy.recorder.clone();
    let client = match &recorder {
        Some(r) if r.trusted_hops > 0 => forwarded_client(req.headers(), r.trusted_hops).unwrap_or(conn.peer.ip()),
        _ => conn.peer.ip(),
    };
    // From here on the call is accounted for exactly once, whatever happens (see CallDone).
    let mut call = CallDone::new(CallState {
        stats: route.stats.clone(),
        status: CLIENT_CLOSED,
        start,
        start_us: recorder.as_ref().map_or_else(crate::clock::now_us, |r| r.now_us()),
        inflight: None,
        access: None,
        recorder,
        endpoint: route.name.clone(),
        method: req.method().clone(),
        target: req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
        client,
        bytes_in: None,
        timeout: false,
    });
    match forward(&proxy, &table, route, &conn, req, &rid, &mut call).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            tracing::debug!(endpoint = %route.name, side = ?e.side(), error = %e, "request failed");
            if let Some(s) = call.state_mut() {
                s.status = e.status().as_u16();
                s.timeout = matches!(e, ProxyError::Timeout { .. });
                // prescale's own 413/502/504 are calls like any other in the access log.
                s.access = proxy.access.as_ref().map(|a| {
                    a.pending(
                        conn.peer.ip(),
                        &s.method,
                        s.target.path(),
                        &route.name,
                        None,
                        rid.to_str().unwrap_or("-"),
                    )
                });
            }
            Ok(error_response(&e, rid, call))
        }
    }
}

async fn forward(
    proxy: &Arc<Proxy>,
    table: &RouteTable,
    route: &Route,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    rid: &HeaderValue,
    call: &mut CallDone,
) -> Result<Response<ProxyBody>, ProxyError> {
    let limit = table.limits.max_body_bytes;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: u64 =
            len.to_str().ok().and_then(|s| s.parse().ok()).ok_or(ProxyError::BadRequest("content-length"))?;
        if len > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
    }
    let upgrade = if req.version() == Version::HTTP_11 { headers::upgrade_request(req.headers()) } else { None };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let path_q = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let bodiless = body.is_end_stream();
    let pool = &route.pool;
    let policy = pool.policy();
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let may_retry = policy.retry && idempotent && bodiless && upgrade.is_none();

    let mut headers = parts.headers;
    // HTTP/2 clients send `:authority` instead of Host; upstreams speak HTTP/1.1 and need Host.
    let fwd_host = headers
        .get(header::HOST)
        .cloned()
        .or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    headers::strip_hop_by_hop(&mut headers, upgrade.clone());
    headers::add_forwarding(
        &mut headers,
        conn.peer.ip(),
        conn.https,
        fwd_host.as_ref().and_then(|h| h.to_str().ok()),
        table.limits.trust_forwarded,
        VIA,
    );
    headers.insert(X_REQUEST_ID.clone(), rid.clone());
    if let Some(h) = fwd_host {
        headers.insert(header::HOST, h);
    }

    let mut body: Option<super::UpstreamBody> = Some(if bodiless {
        Either::Right(Empty::new())
    } else {
        let count = Arc::new(AtomicU64::new(0));
        if let Some(s) = call.state_mut() {
            s.bytes_in = Some(count.clone());
        }
        Either::Left(Counting::new(Limited::new(body, limit as usize), count))
    });
    let mut failed: Option<Arc<Member>> = None;
    loop {
        let member = pool.pick(failed.as_deref()).ok_or_else(|| ProxyError::NoMember { pool: pool.name.clone() })?;
        let uri = Uri::builder()
            .scheme("http")
            .authority(member.addr.clone())
            .path_and_query(path_q.clone())
            .build()
            .map_err(|_| ProxyError::BadRequest("uri"))?;
        let mut up = Request::new(body.take().unwrap_or_else(|| Either::Right(Empty::new())));
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = if may_retry && failed.is_none() { headers.clone() } else { std::mem::take(&mut headers) };

        let inflight = InFlight::new(member.clone());
        let sent = Instant::now();
        let result = tokio::time::timeout(table.limits.response_timeout, conn.client.request(up)).await;
        let passive = &policy.passive;
        let mut resp = match result {
            Err(_) => {
                if member.report_failure(passive) {
                    tracing::warn!(pool = %pool.name, member = %member.addr, "member ejected after timeouts");
                }
                return Err(ProxyError::Timeout {
                    member: member.addr.to_string(),
                    secs: table.limits.response_timeout.as_secs_f64(),
                });
            }
            Ok(Err(e)) if e.is_connect() => {
                if member.report_failure(passive) {
                    tracing::warn!(pool = %pool.name, member = %member.addr, error = %e, "member ejected after connect failures");
                }
                if may_retry && failed.is_none() {
                    proxy.global.upstream_retries.fetch_add(1, Relaxed);
                    failed = Some(member);
                    continue;
                }
                return Err(ProxyError::Connect { member: member.addr.to_string(), source: e });
            }
            Ok(Err(e)) => {
                if is_body_limit(&e) {
                    return Err(ProxyError::BodyTooLarge { limit });
                }
                member.report_failure(passive);
                // The upstream died under the request (reset, closed mid-response): an
                // idempotent request without a body is safe to send once more, elsewhere.
                if may_retry && failed.is_none() {
                    proxy.global.upstream_retries.fetch_add(1, Relaxed);
                    failed = Some(member);
                    continue;
                }
                return Err(ProxyError::Upstream { member: member.addr.to_string(), source: e });
            }
            Ok(Ok(resp)) => resp,
        };
        member.report_success(sent.elapsed());
        // The client's connection speaks its own version: an HTTP/1.0 upstream must not
        // downgrade it (hyper would answer `HTTP/1.0` and close a keep-alive connection).
        *resp.version_mut() = Version::HTTP_11;

        let status = resp.status();
        let resp_upgrade = if status == StatusCode::SWITCHING_PROTOCOLS {
            let value = resp.headers().get(header::UPGRADE).cloned();
            if let (Some(client_side), Some(_)) = (client_upgrade, &value) {
                let upstream_side = hyper::upgrade::on(&mut resp);
                let permit = conn.slot.take();
                proxy.tasks.spawn(tunnel(client_side, upstream_side, conn.tunnel_idle, permit, proxy.global.clone()));
            }
            value
        } else {
            None
        };
        let rh = resp.headers_mut();
        headers::strip_hop_by_hop(rh, resp_upgrade);
        headers::append_via(rh, VIA);
        rh.insert(X_REQUEST_ID.clone(), rid.clone());
        let access = proxy.access.as_ref().map(|a| {
            a.pending(
                conn.peer.ip(),
                &parts.method,
                path_q.path(),
                &route.name,
                Some(member.addr.to_string()),
                rid.to_str().unwrap_or("-"),
            )
        });
        if let Some(s) = call.state_mut() {
            s.status = status.as_u16();
            s.inflight = Some(inflight);
            s.access = access;
        }
        let done = std::mem::take(call);
        return Ok(resp.map(|b| ProxyBody::upstream(b, done)));
    }
}

/// The client address `hops` entries from the right of `X-Forwarded-For` (each trusted proxy
/// in front of prescale appended the address it saw), or the leftmost if there are fewer.
fn forwarded_client(h: &http::HeaderMap, hops: usize) -> Option<std::net::IpAddr> {
    let all: Vec<&str> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let i = all.len().saturating_sub(hops);
    all.get(i).and_then(|s| s.parse().ok())
}

/// Copies bytes both ways between an upgraded client connection and the upstream one. The
/// tunnel holds its connection's slot under `max_connections` and counts as an open
/// connection; no byte either way for `idle` closes it.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: std::time::Duration,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    global: Arc<super::stats::GlobalStats>,
) {
    let (Ok(c), Ok(u)) = tokio::join!(client, upstream) else {
        tracing::debug!("upgrade handshake did not complete");
        return;
    };
    global.tunnels_total.fetch_add(1, Relaxed);
    global.tunnels_active.fetch_add(1, Relaxed);
    global.connections_active.fetch_add(1, Relaxed);
    let last = Arc::new(AtomicU64::new(now_ms()));
    let mut c = super::listener::IdleIo::new(TokioIo::new(c), last.clone());
    let mut u = TokioIo::new(u);
    let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
    tokio::pin!(copy);
    let idle_ms = idle.as_millis() as u64;
    let mut tick = tokio::time::interval(idle / 4 + std::time::Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = copy.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
                break;
            }
            _ = tick.tick() => {
                if now_ms().saturating_sub(last.load(Relaxed)) >= idle_ms {
                    tracing::debug!("idle tunnel closed");
                    global.tunnels_idle_closed.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
    }
    global.connections_active.fetch_sub(1, Relaxed);
    global.tunnels_active.fetch_sub(1, Relaxed);
    drop(permit);
}

fn is_body_limit(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A generated response for a refused or failed call. Details stay in the log: clients learn
/// the status and the request id, not upstream addresses.
pub(super) fn error_response(e: &ProxyError, rid: HeaderValue, done: CallDone) -> Response<ProxyBody> {
    let status = e.status();
    let reason = status.canonical_reason().unwrap_or("");
    let text = match e {
        // The operator reading a client's report needs the pool; addresses stay private.
        ProxyError::NoMember { pool } => {
            format!("{} {reason}: no member of pool \"{pool}\" can take requests\n", status.as_u16())
        }
        _ => format!("{} {reason}\n", status.as_u16()),
    };
    let mut resp = Response::new(ProxyBody::full(text, done));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(X_REQUEST_ID.clone(), rid);
    resp
}
