//! The request path as one ordered `tower` stack, built once per worker with static types (no
//! `BoxService`, no `Buffer`):
//!
//! ```text
//! request_id → limits → route → record → rewrite → retry → upstream
//! ```
//!
//! - [`request_id`]: keeps a safe client `X-Request-Id` or makes one; stamps every response.
//! - [`limits`]: the target's checks before routing (one valid Host, no dot-segments, no
//!   CONNECT); a refusal is answered here.
//! - [`route`]: request → endpoint (404/405 here).
//! - [`record`]: from here on the call is accounted for exactly once ([`CallDone`]): counters,
//!   access log, historian; turns failures into prescale's own 413/502/503/504.
//! - [`rewrite`]: the body limit, hop-by-hop and forwarding headers both ways, upgrades.
//! - [`retry`]: an idempotent request without a body is sent once more, to another member,
//!   after a connect failure or a connection that died under it.
//! - [`upstream`]: the balanced call — pick a member, send on the worker's own connection pool
//!   under the response timeout, report passive health.
//!
//! Each layer takes the request as the layer before it left it (a type per stage: [`Arrived`],
//! [`Identified`], [`Checked`], [`Routed`], [`Outbound`]), so the order is checked by the
//! compiler. Every layer is always ready (`poll_ready` returns at once): back-pressure is the
//! connection cap's and the kernel's.

pub(crate) mod limits;
pub(crate) mod record;
pub(crate) mod request_id;
pub(crate) mod retry;
pub(crate) mod rewrite;
pub(crate) mod route;
pub(crate) mod upstream;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

use super::body::{CallDone, ProxyBody};
use super::error::ProxyError;
use super::headers::X_REQUEST_ID;
use super::listener::ConnSlot;
use super::pool::{InFlight, Member, Pool};
use super::upstream::Lease;
use super::worker::Worker;

/// What the listener knows about the connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub https: bool,
    /// The connection's slot under `max_connections`, which an upgrade hands to its tunnel.
    pub slot: ConnSlot,
    /// An upgraded connection with no bytes either way for this long is closed.
    pub tunnel_idle: Duration,
    /// Requests called and not yet answered to the end of their body.
    in_flight: std::cell::Cell<usize>,
    /// The connection's I/O activity (bytes read, when, parking).
    pub io: Arc<super::listener::IoState>,
    /// The I/O's count of reads with data when the last answer ended with no other request in
    /// flight: equal to the count now means nothing was read since.
    reads_at_answer: std::cell::Cell<u64>,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, https: bool, slot: ConnSlot, tunnel_idle: Duration) -> Self {
        Self {
            peer,
            https,
            slot,
            tunnel_idle,
            in_flight: std::cell::Cell::new(0),
            io: super::listener::IoState::new(),
            reads_at_answer: std::cell::Cell::new(0),
        }
    }

    /// Idle: no request in flight, and nothing read since the last answer (a request head
    /// arriving in parts is not idle).
    pub(crate) fn idle(&self) -> bool {
        self.in_flight.get() == 0 && self.io.reads() == self.reads_at_answer.get()
    }
}

/// One request in flight on its connection, from hyper's call to the end of the response body
/// (it rides in the body).
pub(crate) struct Busy(Rc<ConnInfo>);

impl Busy {
    fn new(conn: &Rc<ConnInfo>) -> Self {
        conn.in_flight.set(conn.in_flight.get() + 1);
        Self(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let left = self.0.in_flight.get() - 1;
        self.0.in_flight.set(left);
        if left == 0 {
            self.0.reads_at_answer.set(self.0.io.reads());
        }
    }
}

/// A request as hyper hands it over.
pub(crate) struct Arrived {
    pub req: Request<Incoming>,
    pub conn: Rc<ConnInfo>,
    pub start: Instant,
}

/// … with its request id.
pub(crate) struct Identified {
    pub req: Request<Incoming>,
    pub conn: Rc<ConnInfo>,
    pub start: Instant,
    pub rid: HeaderValue,
    pub trace: super::traceparent::TraceContext,
}

/// … its target checked against the route table in force.
pub(crate) struct Checked {
    pub req: Request<Incoming>,
    pub conn: Rc<ConnInfo>,
    pub start: Instant,
    pub rid: HeaderValue,
    pub trace: super::traceparent::TraceContext,
    pub table: Rc<super::worker::TableRef>,
}

/// … routed to an endpoint (`table.router.routes()[route]`).
pub(crate) struct Routed {
    pub req: Request<Incoming>,
    pub conn: Rc<ConnInfo>,
    pub start: Instant,
    pub rid: HeaderValue,
    pub trace: super::traceparent::TraceContext,
    pub table: Rc<super::worker::TableRef>,
    pub route: usize,
    /// Request body bytes, counted as they stream upstream (set by `record` for a body).
    pub bytes_in: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Routed {
    pub(crate) fn route(&self) -> &super::router::Route {
        &self.table.router.routes()[self.route]
    }
}

/// The request as it goes upstream: headers rewritten, body under the limit.
pub(crate) struct Outbound {
    pub method: http::Method,
    pub path_q: http::uri::PathAndQuery,
    pub headers: http::HeaderMap,
    pub body: super::UpstreamBody,
    pub pool: Arc<Pool>,
    pub timeout: Duration,
    /// A member not to pick (the one a first attempt failed on).
    pub exclude: Option<Arc<Member>>,
    /// Safe to send again: idempotent, no body, not an upgrade, and the pool allows retries.
    pub may_retry: bool,
    /// Hold it while no member is ready: for how long, at most how many at once, and the
    /// endpoint's counters.
    pub hold: Option<(Duration, usize, Arc<super::stats::EndpointStats>)>,
}

/// What an upstream answered.
pub(crate) struct Answer {
    pub resp: Response<Incoming>,
    /// Holds the member busy until the response body ends.
    pub inflight: InFlight,
    /// The connection, back to the worker's pool when the body ends.
    pub lease: Option<Lease>,
}

/// A failed upstream call.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: ProxyError,
    /// The member it failed on, if one was picked.
    pub member: Option<Arc<Member>>,
    /// The member never answered (connect failure, or the connection died under the
    /// request): another member may be tried.
    pub retryable: bool,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Self { error, member: None, retryable: false }
    }
}

/// The whole stack, as one worker builds it.
pub(crate) type Stack = request_id::RequestId<
    limits::Limits<route::Routing<record::Record<rewrite::Rewrite<retry::Retry<upstream::Upstream>>>>>,
>;

/// Builds the worker's stack (once).
pub(crate) fn build(worker: &Rc<Worker>) -> Stack {
    // Each layer is its service type with the worker and the next service inside.
    let w = || worker.clone();
    ServiceBuilder::new()
        .layer_fn(|inner| request_id::RequestId { worker: w(), inner })
        .layer_fn(|inner| limits::Limits { worker: w(), inner })
        .layer_fn(|inner| route::Routing { worker: w(), inner })
        .layer_fn(|inner| record::Record { worker: w(), inner })
        .layer_fn(|inner| rewrite::Rewrite { worker: w(), inner })
        .layer_fn(|inner| retry::Retry { worker: w(), inner })
        .service(upstream::Upstream::new(w()))
}

/// The stack as hyper's per-connection service: hyper's `call(&self)` borrows the stack for
/// the synchronous part of `tower::Service::call` only (the futures own what they need).
pub(crate) struct Connection {
    stack: Rc<RefCell<Stack>>,
    conn: Rc<ConnInfo>,
}

impl Connection {
    pub(crate) fn new(stack: Rc<RefCell<Stack>>, conn: ConnInfo) -> Self {
        Self { stack, conn: Rc::new(conn) }
    }

    /// The connection's own state.
    pub(crate) fn info(&self) -> Rc<ConnInfo> {
        self.conn.clone()
    }
}

impl hyper::service::Service<Request<Incoming>> for Connection {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Answering<<Stack as Service<Arrived>>::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let start = Instant::now();
        let busy = Busy::new(&self.conn);
        let mut stack = self.stack.borrow_mut();
        // Every layer is always ready; polled anyway, as tower's contract asks.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = stack.poll_ready(&mut cx);
        debug_assert!(matches!(ready, Poll::Ready(Ok(()))));
        OnResponse::new(stack.call(Arrived { req, conn: self.conn.clone(), start }), busy, |r, b| r.body_mut().hold(b))
    }
}

/// The stack's answer, with the request counted in flight until its body ends.
pub(crate) type Answering<F> = OnResponse<F, Busy>;

pin_project_lite::pin_project! {
    /// The inner service's response with `value` applied to it once by `apply` (the request id
    /// stamped, the in-flight count moved into the body).
    pub(crate) struct OnResponse<F, T> {
        #[pin]
        inner: F,
        value: Option<T>,
        apply: fn(&mut Response<ProxyBody>, T),
    }
}

impl<F, T> OnResponse<F, T> {
    pub(crate) fn new(inner: F, value: T, apply: fn(&mut Response<ProxyBody>, T)) -> Self {
        Self { inner, value: Some(value), apply }
    }
}

impl<F, T> Future for OnResponse<F, T>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut resp) = ready!(this.inner.poll(cx));
        if let Some(v) = this.value.take() {
            (this.apply)(&mut resp, v);
        }
        Poll::Ready(Ok(resp))
    }
}

pin_project_lite::pin_project! {
    /// A future that is either an answer known at once or the inner service's.
    #[project = EitherProj]
    pub(crate) enum Either<F> {
        Now { resp: Option<Response<ProxyBody>> },
        Later { #[pin] fut: F },
    }
}

impl<F> Either<F> {
    pub(crate) fn now(resp: Response<ProxyBody>) -> Self {
        Either::Now { resp: Some(resp) }
    }
    pub(crate) fn later(fut: F) -> Self {
        Either::Later { fut }
    }
}

impl<F> Future for Either<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EitherProj::Now { resp } => Poll::Ready(Ok(resp.take().expect("polled after completion"))),
            EitherProj::Later { fut } => fut.poll(cx),
        }
    }
}

/// A generated response for a refused or failed call. Details stay in the log: clients learn
/// the status (and, from `request_id`, the request id), not upstream addresses.
pub(crate) fn error_response(e: &ProxyError, done: CallDone) -> Response<ProxyBody> {
    let status = e.status();
    let reason = status.canonical_reason().unwrap_or("");
    let text = match e {
        // The operator reading a client's report needs the pool; addresses stay private.
        ProxyError::NoMember { pool, .. } => {
            format!("{} {reason}: no member of pool \"{pool}\" can take requests\n", status.as_u16())
        }
        _ => format!("{} {reason}\n", status.as_u16()),
    };
    let mut resp = Response::new(ProxyBody::full(text, done));
    *resp.status_mut() = status;
    // Capacity is on its way (or will be): say when to come back.
    if let ProxyError::NoMember { retry_after_s, .. } = e {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
    }
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// A call refused before routing: counted, written to the access log under endpoint `-` (the
/// historian records only routed calls) and answered.
pub(crate) fn refuse(
    worker: &Worker,
    req: &Request<Incoming>,
    conn: &ConnInfo,
    rid: &HeaderValue,
    trace: &super::traceparent::TraceContext,
    start: Instant,
    e: &ProxyError,
) -> Response<ProxyBody> {
    let proxy = &worker.proxy;
    if matches!(e, ProxyError::NoRoute | ProxyError::MethodNotAllowed) {
        proxy.global.unrouted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(a) = &proxy.access {
        static NONE: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        let line = a.pending(
            conn.peer.ip(),
            req.method(),
            req.uri().path(),
            NONE.get_or_init(|| Arc::from("-")),
            None,
            super::access::Ids { request_id: rid.to_str().unwrap_or("-"), trace_id: trace.trace_id },
        );
        line.send(e.status().as_u16(), start.elapsed(), 0, super::stats::Outcome::Complete);
    }
    error_response(e, CallDone::default())
}

/// Sets the request id on a response.
pub(crate) fn stamp(resp: &mut Response<ProxyBody>, rid: HeaderValue) {
    resp.headers_mut().insert(X_REQUEST_ID.clone(), rid);
}
