//! Second layer: what a request target must be before it is routed — one valid Host
//! (required in HTTP/1.1), a valid authority, a path without dot-segments (normalised in
//! place, or refused, per `listen.dot_segments`), and not CONNECT (which would make prescale a
//! tunnel to anywhere). A refusal is a 400 or 405, counted and logged, never routed.

use std::borrow::Cow;
use std::convert::Infallible;
use std::rc::Rc;
use std::task::{Context, Poll};

use http::header;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tower::Service;

use super::{Checked, Either, Identified, refuse};
use crate::proxy::RouteTable;
use crate::proxy::body::ProxyBody;
use crate::proxy::error::ProxyError;
use crate::proxy::target;
use crate::proxy::worker::Worker;

pub(crate) struct Limits<S> {
    pub(super) worker: Rc<Worker>,
    pub(super) inner: S,
}

impl<S> Service<Identified> for Limits<S>
where
    S: Service<Checked, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut r: Identified) -> Self::Future {
        let table = self.worker.table();
        let checked = if r.req.method() == Method::CONNECT {
            Err(ProxyError::MethodNotAllowed)
        } else {
            check_target(&mut r.req, &table)
        };
        match checked {
            Err(e) => Either::now(refuse(&self.worker, &r.req, &r.conn, &r.rid, &r.trace, r.start, &e)),
            Ok(()) => Either::later(self.inner.call(Checked {
                req: r.req,
                conn: r.conn,
                start: r.start,
                rid: r.rid,
                trace: r.trace,
                table,
            })),
        }
    }
}

/// Checks the request target: one valid Host (required in HTTP/1.1), a valid authority, and a
/// path without dot-segments (normalised in place, or refused).
pub(crate) fn check_target(req: &mut Request<Incoming>, table: &RouteTable) -> Result<(), ProxyError> {
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
