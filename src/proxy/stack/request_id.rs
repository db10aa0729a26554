//! First layer: the request id. A client's `X-Request-Id` is kept when it is safe to echo
//! (see `headers::request_id`), else the worker makes one; every response carries it, refusals
//! and prescale's own errors included. The W3C trace context is read here too: continued when
//! the client sent one, else started (see `traceparent`).

use std::convert::Infallible;
use std::rc::Rc;
use std::task::{Context, Poll};

use http::{HeaderValue, Response};
use tower::Service;

use super::{Arrived, Identified, stamp};
use crate::proxy::body::ProxyBody;
use crate::proxy::headers;
use crate::proxy::traceparent::TraceContext;
use crate::proxy::worker::Worker;

pub(crate) struct RequestId<S> {
    pub(super) worker: Rc<Worker>,
    pub(super) inner: S,
}

impl<S> Service<Arrived> for RequestId<S>
where
    S: Service<Identified, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Stamped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, a: Arrived) -> Self::Future {
        let trace = TraceContext::from_headers(a.req.headers());
        let rid = headers::client_request_id(a.req.headers()).unwrap_or_else(|| self.worker.next_request_id());
        let inner = self.inner.call(Identified { req: a.req, conn: a.conn, start: a.start, rid: rid.clone(), trace });
        Stamped::new(inner, rid, stamp)
    }
}

/// The inner response, with the request id set.
pub(crate) type Stamped<F> = super::OnResponse<F, HeaderValue>;
