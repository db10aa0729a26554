//! The response body prescale sends to clients, and the one place a call is accounted for.
//!
//! Every response — forwarded or generated — carries a [`CallDone`]. It is consumed exactly
//! once: when the body ends (complete), when the upstream breaks it (aborted), or when hyper
//! drops the body early because the client went away (cancelled). Latency is therefore measured
//! to the end of the response body, and the member's in-flight count is released at that point.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::InFlight;
use super::stats::{EndpointStats, Outcome};

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// What to account for when the call ends.
#[derive(Debug)]
pub struct CallDone {
    pub stats: Arc<EndpointStats>,
    pub status: u16,
    pub start: Instant,
    /// Held until the body ends so balancing sees the member as busy while it streams.
    pub inflight: Option<InFlight>,
    pub access: Option<super::access::Pending>,
}

impl CallDone {
    fn finish(self, outcome: Outcome, bytes_out: u64) {
        let latency = self.start.elapsed();
        self.stats.record(self.status, latency, outcome);
        if let Some(a) = self.access {
            a.send(self.status, latency, bytes_out, outcome);
        }
        drop(self.inflight);
    }
}

enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

/// Response body: an upstream stream or a small generated one.
pub struct ProxyBody {
    inner: Inner,
    done: Option<CallDone>,
    bytes_out: u64,
}

impl ProxyBody {
    pub fn upstream(body: Incoming, done: Option<CallDone>) -> Self {
        Self { inner: Inner::Upstream(body), done, bytes_out: 0 }
    }

    pub fn full(bytes: impl Into<Bytes>, done: Option<CallDone>) -> Self {
        let b = bytes.into();
        Self { inner: Inner::Full(if b.is_empty() { None } else { Some(b) }), done, bytes_out: 0 }
    }

    pub fn empty() -> Self {
        Self { inner: Inner::Full(None), done: None, bytes_out: 0 }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(d) = self.done.take() {
            d.finish(outcome, self.bytes_out);
        }
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
