//! The response body prescale sends to clients, and the one place a call is accounted for.
//!
//! Every routed call carries a [`CallDone`] from the moment it is routed. It is consumed exactly
//! once: when the body ends (complete), when the upstream breaks it (aborted), or when hyper
//! drops the body — or the whole request future — early because the client went away
//! (cancelled). Latency is therefore measured
//! to the end of the response body, and the member's in-flight count is released at that point.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use http::uri::PathAndQuery;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::InFlight;
use super::stats::{EndpointStats, Outcome};
use crate::historian::{CallOutcome, CallRecord, Recorder};

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// What to account for when the call ends: the one place a call is recorded. Dropped
/// without `finish` (the client went away before the response started), it records the call
/// as cancelled with status 499.
#[derive(Debug, Default)]
pub struct CallDone(Option<CallState>);

/// Status recorded for a call the client abandoned before the response started.
pub const CLIENT_CLOSED: u16 = 499;

#[derive(Debug)]
pub struct CallState {
    pub stats: Arc<EndpointStats>,
    pub status: u16,
    pub start: Instant,
    /// Start as wall-clock microseconds since the epoch (for the historian).
    pub start_us: u64,
    /// Held until the body ends so balancing sees the member as busy while it streams.
    pub inflight: Option<InFlight>,
    /// The upstream connection: back to the worker's pool when the body ended cleanly.
    pub lease: Option<super::upstream::Lease>,
    pub access: Option<super::access::Pending>,
    pub recorder: Option<Recorder>,
    pub endpoint: Arc<str>,
    pub method: Method,
    pub target: PathAndQuery,
    pub client: IpAddr,
    /// Request body bytes, counted while they stream upstream.
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// The response is prescale's 504.
    pub timeout: bool,
    /// The W3C trace the call belongs to, and prescale's span in it.
    pub trace: super::traceparent::TraceContext,
    /// Exports the call's span (a sampled trace, `[tracing]` on).
    pub otlp: Option<super::otlp::Exporter>,
}

impl CallDone {
    pub fn new(state: CallState) -> Self {
        Self(Some(state))
    }

    pub fn state_mut(&mut self) -> Option<&mut CallState> {
        self.0.as_mut()
    }

    fn finish(&mut self, outcome: Outcome, bytes_out: u64) {
        let Some(mut s) = self.0.take() else { return };
        let latency = s.start.elapsed();
        if let Some(lease) = s.lease.take()
            && outcome == Outcome::Complete
        {
            lease.release();
        }
        s.stats.record(s.status, latency, outcome);
        if let Some(a) = s.access {
            a.send(s.status, latency, bytes_out, outcome);
        }
        if let Some(x) = &s.otlp
            && s.trace.sampled()
        {
            use super::otlp::{Attr, SpanRecord};
            let upstream = s.inflight.as_ref().map(|i| i.member().addr.to_string());
            let mut attributes = vec![
                ("http.request.method", Attr::Str(s.method.to_string())),
                ("url.path", Attr::Str(s.target.path().to_string())),
                ("http.response.status_code", Attr::Int(i64::from(s.status))),
                ("prescale.endpoint", Attr::Str(s.endpoint.to_string())),
                ("client.address", Attr::Str(s.client.to_string())),
            ];
            if let Some(u) = upstream {
                attributes.push(("server.address", Attr::Str(u)));
            }
            if outcome != Outcome::Complete {
                attributes.push(("prescale.outcome", Attr::Str(format!("{outcome:?}").to_lowercase())));
            }
            x.send(SpanRecord {
                trace_id: s.trace.trace_id,
                span_id: s.trace.span_id,
                parent_id: s.trace.parent_id,
                name: format!("{} {}", s.method, s.endpoint),
                server: true,
                start_us: s.start_us,
                end_us: s.start_us + latency.as_micros() as u64,
                error: s.status >= 500 || outcome == Outcome::UpstreamAborted,
                attributes,
            });
        }
        if let Some(rec) = &s.recorder {
            let outcome = match outcome {
                Outcome::Cancelled => CallOutcome::Cancelled,
                Outcome::UpstreamAborted => CallOutcome::UpstreamError,
                Outcome::Complete if s.timeout => CallOutcome::Timeout,
                Outcome::Complete if s.status >= 500 => CallOutcome::UpstreamError,
                Outcome::Complete if s.status >= 400 => CallOutcome::ClientError,
                Outcome::Complete => CallOutcome::Ok,
            };
            rec.record(CallRecord {
                start_us: s.start_us,
                endpoint: s.endpoint,
                method: s.method,
                target: s.target,
                status: s.status,
                outcome,
                latency_us: latency.as_micros().min(u64::MAX as u128) as u64,
                bytes_in: s.bytes_in.map_or(0, |b| b.load(Relaxed)),
                bytes_out,
                client: s.client,
                upstream: s.inflight.as_ref().map(|i| i.member().addr.clone()),
                trace_id: s.trace.trace_id,
            });
        }
    }
}

impl Drop for CallDone {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled, 0);
    }
}

/// Request body wrapper that counts the bytes sent upstream.
pub struct Counting<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counting<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counting<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &r
            && let Some(d) = f.data_ref()
        {
            self.count.fetch_add(d.len() as u64, Relaxed);
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

/// Response body: an upstream stream or a small generated one.
pub struct ProxyBody {
    inner: Inner,
    done: CallDone,
    bytes_out: u64,
    /// The request counted in flight on its client connection until this body is dropped.
    busy: Option<crate::proxy::stack::Busy>,
}

impl ProxyBody {
    pub fn upstream(body: Incoming, done: CallDone) -> Self {
        Self { inner: Inner::Upstream(body), done, bytes_out: 0, busy: None }
    }

    pub fn full(bytes: impl Into<Bytes>, done: CallDone) -> Self {
        let b = bytes.into();
        Self { inner: Inner::Full(if b.is_empty() { None } else { Some(b) }), done, bytes_out: 0, busy: None }
    }

    pub fn empty() -> Self {
        Self { inner: Inner::Full(None), done: CallDone::default(), bytes_out: 0, busy: None }
    }

    /// Keeps `busy` (its request in flight on the client connection) until this body is dropped.
    pub(crate) fn hold(&mut self, busy: crate::proxy::stack::Busy) {
        self.busy = Some(busy);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.done.finish(outcome, self.bytes_out);
    }

    fn inner_ended(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(b) => b.is_none(),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Upstream(b) => ready!(Pin::new(b).poll_frame(cx)).map(|r| r.map_err(BoxError::from)),
            Inner::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
        };
        match polled {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes_out += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.finish(Outcome::UpstreamAborted);
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.finish(Outcome::Complete);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner_ended()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper stops polling once `is_end_stream` says so, so a fully sent body may be
        // dropped without a final poll: that is a completed call, not a cancelled one.
        let outcome = if self.inner_ended() { Outcome::Complete } else { Outcome::Cancelled };
        self.finish(outcome);
    }
}
