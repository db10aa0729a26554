//! Fifth layer: the request as the upstream sees it, and the response as the client does.
//! The declared body size is checked against `listen.max_body_bytes` (the streamed size is
//! limited too); hop-by-hop headers go both ways; `X-Forwarded-*`, `Via` and the request id
//! are added on the way up; an `Upgrade` handshake that the upstream accepts becomes a tunnel.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Version};
use http_body::Body;
use http_body_util::{Empty, Limited};
use hyper_util::rt::TokioIo;
use tower::Service;

use super::{Answer, ConnInfo, Failure, Outbound, Routed};
use crate::proxy::body::Counting;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::proxy::listener::{IdleIo, IoState};
use crate::proxy::pool::now_ms;
use crate::proxy::stats::GlobalStats;
use crate::proxy::worker::Worker;

const VIA: &str = "1.1 prescale";

pub(crate) struct Rewrite<S> {
    pub(super) worker: Rc<Worker>,
    pub(super) inner: S,
}

impl<S> Service<Routed> for Rewrite<S>
where
    S: Service<Outbound, Response = Answer, Error = Failure>,
{
    type Response = Answer;
    type Error = Failure;
    type Future = Rewritten<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, r: Routed) -> Self::Future {
        match self.outbound(r) {
            Err(e) => Rewritten::Refused { error: Some(e) },
            Ok((out, upgrade)) => Rewritten::Sent { fut: self.inner.call(out), upgrade },
        }
    }
}

/// The client side of an upgrade handshake, for the tunnel if the upstream agrees.
pub(crate) struct Upgrade {
    client: hyper::upgrade::OnUpgrade,
    conn: Rc<ConnInfo>,
    global: Arc<GlobalStats>,
    tasks: tokio_util::task::TaskTracker,
}

impl<S> Rewrite<S> {
    fn outbound(&self, r: Routed) -> Result<(Outbound, Option<Upgrade>), ProxyError> {
        let limit = r.table.limits.max_body_bytes;
        let mut req = r.req;
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
        let route = &r.table.router.routes()[r.route];
        let bodiless = body.is_end_stream();
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
        );
        let may_retry = route.pool.policy_now().retry && idempotent && bodiless && upgrade.is_none();

        let mut headers = parts.headers;
        // HTTP/2 clients send `:authority` instead of Host; upstreams speak HTTP/1.1 and need Host.
        let fwd_host = headers
            .get(header::HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        headers::strip_hop_by_hop(&mut headers, upgrade);
        headers::add_forwarding(
            &mut headers,
            r.conn.peer.ip(),
            r.conn.https,
            fwd_host.as_ref().and_then(|h| h.to_str().ok()),
            r.table.limits.trust_forwarded,
            VIA,
        );
        headers.insert(X_REQUEST_ID.clone(), r.rid);
        r.trace.write(&mut headers);
        if let Some(h) = fwd_host {
            headers.insert(header::HOST, h);
        }
        let body = if bodiless {
            http_body_util::Either::Right(Empty::<Bytes>::new())
        } else {
            let count = r.bytes_in.unwrap_or_else(|| Arc::new(AtomicU64::new(0)));
            http_body_util::Either::Left(Counting::new(Limited::new(body, limit as usize), count))
        };
        let proxy = &self.worker.proxy;
        let upgrade = client_upgrade.map(|client| Upgrade {
            client,
            conn: r.conn.clone(),
            global: proxy.global.clone(),
            tasks: proxy.tasks.clone(),
        });
        let out = Outbound {
            method: parts.method,
            path_q,
            headers,
            body,
            pool: route.pool.clone(),
            timeout: r.table.limits.response_timeout,
            exclude: None,
            may_retry,
            hold: (!route.hold.is_zero()).then(|| (route.hold, route.hold_queue, route.stats.clone())),
        };
        Ok((out, upgrade))
    }
}

pin_project_lite::pin_project! {
    /// The upstream's response with its headers made fit for the client.
    #[project = RewrittenProj]
    pub(crate) enum Rewritten<F> {
        Refused { error: Option<ProxyError> },
        Sent { #[pin] fut: F, upgrade: Option<Upgrade> },
    }
}

impl<F> Future for Rewritten<F>
where
    F: Future<Output = Result<Answer, Failure>>,
{
    type Output = Result<Answer, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RewrittenProj::Refused { error } => {
                Poll::Ready(Err(Failure::from(error.take().expect("polled after completion"))))
            }
            RewrittenProj::Sent { fut, upgrade } => {
                let mut answer = ready!(fut.poll(cx))?;
                let resp = &mut answer.resp;
                // The client's connection speaks its own version: an HTTP/1.0 upstream must not
                // downgrade it (hyper would answer `HTTP/1.0` and close a keep-alive connection).
                *resp.version_mut() = Version::HTTP_11;
                let resp_upgrade = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let value = resp.headers().get(header::UPGRADE).cloned();
                    if let (Some(u), Some(_)) = (upgrade.take(), &value) {
                        let upstream_side = hyper::upgrade::on(&mut *resp);
                        let permit = u.conn.slot.take();
                        u.tasks.spawn(tunnel(u.client, upstream_side, u.conn.tunnel_idle, permit, u.global));
                        // The connection is the tunnel's now, not the pool's.
                        answer.lease = None;
                    }
                    value
                } else {
                    None
                };
                let rh = answer.resp.headers_mut();
                headers::strip_hop_by_hop(rh, resp_upgrade);
                headers::append_via(rh, VIA);
                Poll::Ready(Ok(answer))
            }
        }
    }
}

/// Copies bytes both ways between an upgraded client connection and the upstream one. The
/// tunnel holds its connection's slot under `max_connections` and counts as an open
/// connection; no byte either way for `idle` closes it.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: std::time::Duration,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    global: Arc<GlobalStats>,
) {
    let (Ok(c), Ok(u)) = tokio::join!(client, upstream) else {
        tracing::debug!("upgrade handshake did not complete");
        return;
    };
    global.tunnels_total.fetch_add(1, Relaxed);
    global.tunnels_active.fetch_add(1, Relaxed);
    global.connections_active.fetch_add(1, Relaxed);
    let state = IoState::new();
    let mut c = IdleIo::new(TokioIo::new(c), state.clone());
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
                if now_ms().saturating_sub(state.last.load(Relaxed)) >= idle_ms {
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
