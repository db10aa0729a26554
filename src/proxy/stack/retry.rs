//! Sixth layer: one more attempt, on another member, for a request that is safe to send
//! twice (idempotent, no body, not an upgrade, and the pool's `retry` on) when the first
//! member never answered — it refused the connection, or the connection died under the
//! request. A timeout is not retried: the member may still be working on it.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::Empty;
use tower::Service;

use super::{Answer, Failure, Outbound};
use crate::proxy::worker::Worker;

pub(crate) struct Retry<S> {
    pub(super) worker: Rc<Worker>,
    pub(super) inner: S,
}

impl<S> Service<Outbound> for Retry<S>
where
    S: Service<Outbound, Response = Answer, Error = Failure> + Clone,
{
    type Response = Answer;
    type Error = Failure;
    type Future = Retrying<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, out: Outbound) -> Self::Future {
        // The second attempt's request, kept only when there may be one.
        let again = out.may_retry.then(|| Outbound {
            method: out.method.clone(),
            path_q: out.path_q.clone(),
            headers: out.headers.clone(),
            body: http_body_util::Either::Right(Empty::<Bytes>::new()),
            pool: out.pool.clone(),
            timeout: out.timeout,
            exclude: None,
            may_retry: false,
            // The retry goes to another member now or fails: the first attempt did the holding.
            hold: None,
        });
        let svc = again.as_ref().map(|_| self.inner.clone());
        Retrying { fut: self.inner.call(out), again, svc, worker: self.worker.clone() }
    }
}

pin_project_lite::pin_project! {
    /// The first attempt, then (at most) a second one.
    pub(crate) struct Retrying<S, F> {
        #[pin]
        fut: F,
        again: Option<Outbound>,
        svc: Option<S>,
        worker: Rc<Worker>,
    }
}

impl<S> Future for Retrying<S, S::Future>
where
    S: Service<Outbound, Response = Answer, Error = Failure>,
{
    type Output = Result<Answer, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match ready!(this.fut.as_mut().poll(cx)) {
                Err(f) if f.retryable && this.again.is_some() => {
                    let (Some(mut again), Some(svc)) = (this.again.take(), this.svc.as_mut()) else {
                        return Poll::Ready(Err(f));
                    };
                    this.worker.proxy.global.upstream_retries.fetch_add(1, Relaxed);
                    again.exclude = f.member;
                    this.fut.set(svc.call(again));
                }
                r => return Poll::Ready(r),
            }
        }
    }
}
