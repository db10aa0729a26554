//! Third layer: request → endpoint, by host, method and longest path prefix (see
//! `proxy::router`). No match is a 404, counted as unrouted and logged under endpoint `-`.

use std::convert::Infallible;
use std::rc::Rc;
use std::task::{Context, Poll};

use http::{Response, header};
use tower::Service;

use super::{Checked, Either, Routed, refuse};
use crate::proxy::body::ProxyBody;
use crate::proxy::error::ProxyError;
use crate::proxy::router::host_without_port;
use crate::proxy::worker::Worker;

pub(crate) struct Routing<S> {
    pub(super) worker: Rc<Worker>,
    pub(super) inner: S,
}

impl<S> Service<Checked> for Routing<S>
where
    S: Service<Routed, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, c: Checked) -> Self::Future {
        let host = c
            .req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| c.req.uri().authority().map(|a| a.as_str()))
            .map(host_without_port);
        let found = c.table.router.position(c.req.method(), host, c.req.uri().path());
        match found {
            None => Either::now(refuse(&self.worker, &c.req, &c.conn, &c.rid, &c.trace, c.start, &ProxyError::NoRoute)),
            Some(route) => Either::later(self.inner.call(Routed {
                req: c.req,
                conn: c.conn,
                start: c.start,
                rid: c.rid,
                trace: c.trace,
                table: c.table,
                route,
                bytes_in: None,
            })),
        }
    }
}
