//! Innermost: the balanced upstream call. Picks a member of the route's pool (see
//! `Pool::pick`), sends on the worker's own connection pool under the response timeout, and
//! tells the member how it went (passive health: consecutive connect failures and timeouts
//! eject it for a while).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Uri, Version, header};
use tower::Service;

use super::{Answer, Failure, Outbound};
use crate::proxy::error::ProxyError;
use crate::proxy::pool::InFlight;
use crate::proxy::upstream::UpstreamError;
use crate::proxy::worker::Worker;

#[derive(Clone)]
pub(crate) struct Upstream {
    worker: Rc<Worker>,
}

impl Upstream {
    pub(crate) fn new(worker: Rc<Worker>) -> Self {
        Self { worker }
    }
}

impl Service<Outbound> for Upstream {
    type Response = Answer;
    type Error = Failure;
    /// The one boxed future on the request path: the call awaits a connection, the response
    /// and a timer, which only `async` writes legibly.
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Failure>>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, out: Outbound) -> Self::Future {
        Box::pin(call(self.worker.clone(), out))
    }
}

/// How often a held request looks for a ready member.
const HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// No member can take the request now: with the endpoint's `hold`, wait for one (a VM resuming
/// or booting and passing its health check) up to the hold time, within the endpoint's bound on
/// requests held at once; else, or after it, 503 with `Retry-After`.
async fn hold(
    pool: &std::sync::Arc<crate::proxy::Pool>,
    out: &Outbound,
) -> Result<std::sync::Arc<crate::proxy::Member>, Failure> {
    use std::sync::atomic::Ordering::Relaxed;
    let no = |secs: u64| Failure::from(ProxyError::NoMember { pool: pool.name.clone(), retry_after_s: secs.max(1) });
    let Some((limit, queue, stats)) = &out.hold else { return Err(no(1)) };
    let retry = limit.as_secs().max(1);
    if stats.held_now.fetch_add(1, Relaxed) >= *queue {
        stats.held_now.fetch_sub(1, Relaxed);
        stats.held_refused.fetch_add(1, Relaxed);
        return Err(no(retry));
    }
    let deadline = tokio::time::Instant::now() + *limit;
    let found = loop {
        if let Some(m) = pool.pick(out.exclude.as_deref()) {
            break Some(m);
        }
        // The whole hold, not a poll interval short of it.
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break None;
        }
        tokio::time::sleep_until((now + HOLD_POLL).min(deadline)).await;
    };
    stats.held_now.fetch_sub(1, Relaxed);
    match found {
        Some(m) => {
            stats.held_served.fetch_add(1, Relaxed);
            Ok(m)
        }
        None => {
            stats.held_timed_out.fetch_add(1, Relaxed);
            Err(no(retry))
        }
    }
}

async fn call(worker: Rc<Worker>, out: Outbound) -> Result<Answer, Failure> {
    let pool = &out.pool;
    let member = match pool.pick(out.exclude.as_deref()) {
        Some(m) => m,
        None => hold(pool, &out).await?,
    };
    let mut up = Request::new(out.body);
    *up.method_mut() = out.method;
    *up.uri_mut() = Uri::from(out.path_q);
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = out.headers;
    if !up.headers().contains_key(header::HOST) {
        // An HTTP/1.0 client may send none; the upstream speaks HTTP/1.1 and needs one.
        if let Ok(h) = header::HeaderValue::from_str(member.addr.as_str()) {
            up.headers_mut().insert(header::HOST, h);
        }
    }
    let inflight = InFlight::new(member.clone());
    let sent = Instant::now();
    let protocol = pool.policy_now().protocol;
    let result = tokio::time::timeout(out.timeout, worker.upstreams.send(&member.addr, protocol, up)).await;
    let fail = |error, retryable| Failure { error, member: Some(member.clone()), retryable };
    match result {
        Err(_) => {
            if member.report_failure(&pool.policy_now().passive) {
                tracing::warn!(pool = %pool.name, member = %member.addr, "member ejected after timeouts");
            }
            Err(fail(ProxyError::Timeout { member: member.addr.to_string(), secs: out.timeout.as_secs_f64() }, false))
        }
        Ok(Err(e)) if e.is_connect() => {
            if member.report_failure(&pool.policy_now().passive) {
                tracing::warn!(pool = %pool.name, member = %member.addr, error = %e, "member ejected after connect failures");
            }
            Err(fail(ProxyError::Connect { member: member.addr.to_string(), source: e }, true))
        }
        Ok(Err(e)) => {
            if is_body_limit(&e) {
                let limit = worker.table().limits.max_body_bytes;
                return Err(fail(ProxyError::BodyTooLarge { limit }, false));
            }
            member.report_failure(&pool.policy_now().passive);
            // The upstream died under the request (reset, closed mid-response): an
            // idempotent request without a body is safe to send once more, elsewhere.
            Err(fail(ProxyError::Upstream { member: member.addr.to_string(), source: e }, true))
        }
        Ok(Ok((resp, lease))) => {
            member.report_success(sent.elapsed());
            Ok(Answer { resp, inflight, lease: Some(lease) })
        }
    }
}

fn is_body_limit(e: &UpstreamError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
