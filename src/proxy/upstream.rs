//! One worker's upstream connections: HTTP/1.1 connections made with
//! `hyper::client::conn::http1`, kept idle per member in a worker-local LIFO.
//!
//! Nothing here is shared between workers or locked: the pool lives in the worker's
//! `RefCell`, connections run as tasks on the worker's own thread, and a request never wakes
//! another thread. A connection goes back to the pool when its response body has been read to
//! the end ([`Lease`] rides in the response body); a response abandoned halfway closes it.
//! The most recently used connection is reused first, so a burst's extra connections age out
//! of the back of the list and are closed after `pool_idle_timeout`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::UpstreamBody;
use super::pool::now_ms;
use super::settings::UpstreamSettings;

/// Why an upstream call failed, and whether the request reached the member.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made: the request was never sent.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The connection failed under the request (reset, closed mid-response, body limit).
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// An idle connection and when it went idle (`now_ms()`).
struct Idle {
    tx: SendRequest<UpstreamBody>,
    since: u64,
}

/// A worker's upstream connection pool.
pub struct Upstreams {
    idle: RefCell<HashMap<Authority, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout_ms: u64,
    max_idle: usize,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").field("idle", &self.idle_count()).finish_non_exhaustive()
    }
}

/// A connection lent to one call: back to its worker's pool when the response body has been
/// read to its end, closed if the body is abandoned (dropped unfinished).
pub struct Lease {
    pool: Weak<Upstreams>,
    addr: Authority,
    tx: SendRequest<UpstreamBody>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Lease {
    /// The response ended cleanly: the connection can carry the next request.
    pub fn release(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.addr, self.tx);
        }
    }
}

impl Upstreams {
    pub fn new(s: &UpstreamSettings) -> Rc<Self> {
        Rc::new(Self {
            idle: RefCell::new(HashMap::new()),
            connect_timeout: s.connect_timeout,
            idle_timeout_ms: s.pool_idle_timeout.as_millis() as u64,
            max_idle: s.max_idle_per_member,
        })
    }

    /// Sends `req` to `addr` on an idle connection, or a new one. A reused connection that
    /// turns out closed before the request was written is replaced transparently (the request
    /// is handed back by hyper, so this is safe for any method).
    pub async fn send(
        self: &Rc<Self>,
        addr: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        loop {
            let (mut tx, reused) = match self.checkout(addr) {
                Some(tx) => (tx, true),
                None => (self.connect(addr).await?, false),
            };
            if reused && tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease { pool: Rc::downgrade(self), addr: addr.clone(), tx })),
                Err(mut e) => match e.take_message() {
                    // Not written: the connection had closed under us. Another one.
                    Some(back) if reused => req = back,
                    _ => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used live connection to `addr`; stale ones are closed on the way.
    fn checkout(&self, addr: &Authority) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(addr)?;
        let now = now_ms();
        while let Some(c) = list.pop() {
            if !c.tx.is_closed() && now.saturating_sub(c.since) < self.idle_timeout_ms {
                return Some(c.tx);
            }
        }
        None
    }

    fn put(&self, addr: Authority, tx: SendRequest<UpstreamBody>) {
        if tx.is_closed() || self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_idle {
            // Keep the most recent; the oldest idle one is closed.
            list.remove(0);
        }
        list.push(Idle { tx, since: now_ms() });
    }

    async fn connect(&self, addr: &Authority) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
        let connecting = async {
            let port = addr.port_u16().unwrap_or(80);
            let stream = match addr.host().trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await?,
                Err(_) => TcpStream::connect((addr.host(), port)).await?,
            };
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
            Err(_) => return Err(UpstreamError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))),
        };
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Connect(io::Error::other(e)))?;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }

    /// Closes connections idle for longer than `pool_idle_timeout` (the worker calls this
    /// periodically, so a quiet worker does not hold connections forever).
    pub fn sweep(&self) {
        let now = now_ms();
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain(|c| !c.tx.is_closed() && now.saturating_sub(c.since) < self.idle_timeout_ms);
        }
        idle.retain(|_, l| !l.is_empty());
    }

    /// Idle connections now, all members.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Either, Empty};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// A real HTTP/1.1 server on loopback counting the connections it accepted.
    async fn server(accepted: Arc<AtomicUsize>, close_after_each: bool) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::task::spawn_local(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                accepted.fetch_add(1, Relaxed);
                tokio::task::spawn_local(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"hello"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(!close_after_each)
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn settings(max_idle: usize) -> UpstreamSettings {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(30),
            max_idle_per_member: max_idle,
        }
    }

    fn get(addr: &Authority) -> Request<UpstreamBody> {
        Request::builder().uri("/").header("host", addr.as_str()).body(Either::Right(Empty::new())).unwrap()
    }

    async fn call(pool: &Rc<Upstreams>, addr: &Authority) -> String {
        let (resp, lease) = pool.send(addr, get(addr)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        lease.release();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn local<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn sequential_calls_reuse_one_connection() {
        local(async {
            let accepted = Arc::new(AtomicUsize::new(0));
            let addr: Authority = server(accepted.clone(), false).await.to_string().parse().unwrap();
            let pool = Upstreams::new(&settings(8));
            for _ in 0..20 {
                assert_eq!(call(&pool, &addr).await, "hello");
            }
            assert_eq!(accepted.load(Relaxed), 1);
            assert_eq!(pool.idle_count(), 1);
        });
    }

    #[test]
    fn an_abandoned_response_closes_its_connection_and_concurrent_calls_use_their_own() {
        local(async {
            let accepted = Arc::new(AtomicUsize::new(0));
            let addr: Authority = server(accepted.clone(), false).await.to_string().parse().unwrap();
            let pool = Upstreams::new(&settings(8));
            // Two calls in flight at once need two connections.
            let (a, la) = pool.send(&addr, get(&addr)).await.unwrap();
            let (b, lb) = pool.send(&addr, get(&addr)).await.unwrap();
            assert_eq!(accepted.load(Relaxed), 2);
            drop((a, la)); // abandoned: not returned
            b.into_body().collect().await.unwrap();
            lb.release();
            assert_eq!(pool.idle_count(), 1);
            assert_eq!(call(&pool, &addr).await, "hello");
            assert_eq!(accepted.load(Relaxed), 2, "the released connection was reused");
        });
    }

    #[test]
    fn a_connection_the_server_closed_is_replaced_without_failing_the_call() {
        local(async {
            let accepted = Arc::new(AtomicUsize::new(0));
            let addr: Authority = server(accepted.clone(), true).await.to_string().parse().unwrap();
            let pool = Upstreams::new(&settings(8));
            for _ in 0..5 {
                assert_eq!(call(&pool, &addr).await, "hello");
                tokio::task::yield_now().await;
            }
            assert_eq!(accepted.load(Relaxed), 5);
        });
    }

    #[test]
    fn idle_connections_are_capped_per_member_and_swept_when_stale() {
        local(async {
            let accepted = Arc::new(AtomicUsize::new(0));
            let addr: Authority = server(accepted.clone(), false).await.to_string().parse().unwrap();
            let pool = Upstreams::new(&settings(2));
            let mut open = Vec::new();
            for _ in 0..4 {
                let (r, l) = pool.send(&addr, get(&addr)).await.unwrap();
                r.into_body().collect().await.unwrap();
                open.push(l);
            }
            for l in open {
                l.release();
            }
            assert_eq!(pool.idle_count(), 2);
            let stale =
                Rc::new(Upstreams { idle_timeout_ms: 0, ..Rc::try_unwrap(Upstreams::new(&settings(2))).unwrap() });
            let (r, l) = stale.send(&addr, get(&addr)).await.unwrap();
            r.into_body().collect().await.unwrap();
            l.release();
            assert_eq!(stale.idle_count(), 1);
            stale.sweep();
            assert_eq!(stale.idle_count(), 0);
        });
    }

    #[test]
    fn a_refused_connection_is_a_connect_error() {
        local(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
            drop(l);
            let pool = Upstreams::new(&settings(2));
            let e = pool.send(&addr, get(&addr)).await.unwrap_err();
            assert!(e.is_connect(), "{e}");
        });
    }
}
