//! Fourth layer: accounting. From here on a routed call is accounted for exactly once,
//! whatever happens — answered, failed, or abandoned by the client — through [`CallDone`]:
//! the endpoint's counters, the access log and the historian. It also turns a failed call
//! into prescale's own response (413, 502, 503, 504).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, ready};

use http::uri::PathAndQuery;
use http::{HeaderValue, Response};
use http_body::Body;
use tower::Service;

use super::{Answer, Failure, Routed, error_response};
use crate::proxy::access::Ids;
use crate::proxy::body::{CLIENT_CLOSED, CallDone, CallState, ProxyBody};
use crate::proxy::error::ProxyError;
use crate::proxy::worker::Worker;

pub(crate) struct Record<S> {
    pub(super) worker: Rc<Worker>,
    pub(super) inner: S,
}

impl<S> Service<Routed> for Record<S>
where
    S: Service<Routed, Response = Answer, Error = Failure>,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Always ready: the inner layers are.
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut r: Routed) -> Self::Future {
        let proxy = &self.worker.proxy;
        let recorder = proxy.recorder.clone();
        let client = match &recorder {
            Some(rec) if rec.trusted_hops > 0 => {
                forwarded_client(r.req.headers(), rec.trusted_hops).unwrap_or(r.conn.peer.ip())
            }
            _ => r.conn.peer.ip(),
        };
        if !r.req.body().is_end_stream() {
            r.bytes_in = Some(Arc::new(AtomicU64::new(0)));
        }
        let route = r.route();
        let done = CallDone::new(CallState {
            stats: route.stats.clone(),
            status: CLIENT_CLOSED,
            start: r.start,
            start_us: recorder.as_ref().map_or_else(crate::clock::now_us, |rec| rec.now_us()),
            inflight: None,
            access: None,
            lease: None,
            recorder,
            endpoint: route.name.clone(),
            method: r.req.method().clone(),
            target: r.req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
            client,
            bytes_in: r.bytes_in.clone(),
            timeout: false,
            trace: r.trace,
            otlp: proxy.otlp.clone(),
        });
        let log = proxy.access.is_some().then(|| (r.conn.peer.ip(), r.rid.clone()));
        Recorded { worker: self.worker.clone(), done, log, inner: self.inner.call(r) }
    }
}

pin_project_lite::pin_project! {
    /// The upstream's answer, or prescale's own, with the call's accounting attached to the
    /// response body. Dropped before that (the client left), the call is recorded as 499.
    pub(crate) struct Recorded<F> {
        #[pin]
        inner: F,
        worker: Rc<Worker>,
        done: CallDone,
        // Client address and request id, when the access log is on.
        log: Option<(IpAddr, HeaderValue)>,
    }
}

impl<F> Future for Recorded<F>
where
    F: Future<Output = Result<Answer, Failure>>,
{
    type Output = Result<Response<ProxyBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut done = std::mem::take(this.done);
        // The access-log line, once the status is known (prescale's own 413/502/504 are calls
        // like any other in it).
        let access = this.worker.proxy.access.as_ref();
        let line = |s: &CallState, member: Option<&http::uri::Authority>| {
            let ((peer, rid), a) = (this.log.as_ref()?, access?);
            let member = member.map(|m| m.to_string());
            Some(a.pending(
                *peer,
                &s.method,
                s.target.path(),
                &s.endpoint,
                member,
                Ids { request_id: rid.to_str().unwrap_or("-"), trace_id: s.trace.trace_id },
            ))
        };
        Poll::Ready(Ok(match result {
            Ok(Answer { resp, inflight, lease }) => {
                if let Some(s) = done.state_mut() {
                    s.status = resp.status().as_u16();
                    s.access = line(s, Some(&inflight.member().addr));
                    s.inflight = Some(inflight);
                    s.lease = lease;
                }
                resp.map(|b| ProxyBody::upstream(b, done))
            }
            Err(Failure { error, member, .. }) => {
                if let Some(s) = done.state_mut() {
                    tracing::debug!(endpoint = %s.endpoint, member = ?member.map(|m| m.addr.to_string()), side = ?error.side(), error = %error, "request failed");
                    s.status = error.status().as_u16();
                    s.timeout = matches!(error, ProxyError::Timeout { .. });
                    s.access = line(s, None);
                }
                error_response(&error, done)
            }
        }))
    }
}

/// The client address `hops` entries from the right of `X-Forwarded-For` (each trusted proxy
/// in front of prescale appended the address it saw), or the leftmost if there are fewer.
fn forwarded_client(h: &http::HeaderMap, hops: usize) -> Option<IpAddr> {
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
