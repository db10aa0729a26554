//! One worker's upstream connections: HTTP/1.1 connections made with
//! `hyper::client::conn::http1`, kept idle per member in a worker-local LIFO.
//!
//! Nothing here is shared between workers or locked: the pool lives in the worker's
//! `RefCell`, connections run as tasks on the worker's own thread, and a request never wakes
//! another thread. A connection goes back to the pool when its response body has been read to
//! the end ([`Lease`] rides in the response body); a response abandoned halfway closes it.
//! The most recently used connection is reused first, so a burst's extra connections age out
//! of the back of the list and are closed after `pool_idle_timeout`.
//!
//! A pool with `protocol = "h2c"` gets one multiplexed HTTP/2 connection per member per worker
//! (`hyper::client::conn::http2`), shared by all of that worker's calls to the member.

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
use hyper::client::conn::http2;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::UpstreamBody;
use super::pool::now_ms;
use super::settings::{Protocol, UpstreamSettings};
use super::worker::LocalExec;

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

/// A member's HTTP/2 connection and `now_ms()` of its last call — or the connection being
/// made, which concurrent calls wait for instead of each opening their own.
enum Idle2 {
    Ready { tx: http2::SendRequest<UpstreamBody>, used: u64 },
    Connecting(Rc<tokio::sync::Notify>),
}

/// Ends a connect that calls wait for: removes the `Connecting` entry if no connection replaced
/// it, and wakes the waiters.
struct Connecting<'a> {
    pool: &'a Upstreams,
    addr: &'a Authority,
    done: Rc<tokio::sync::Notify>,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        let mut h2 = self.pool.h2.borrow_mut();
        if let Some(Idle2::Connecting(d)) = h2.get(self.addr)
            && Rc::ptr_eq(d, &self.done)
        {
            h2.remove(self.addr);
        }
        drop(h2);
        self.done.notify_waiters();
    }
}

/// A worker's upstream connection pool.
pub struct Upstreams {
    idle: RefCell<HashMap<Authority, Vec<Idle>>>,
    /// The HTTP/2 connection to each member of an `h2c` pool, and when it was last used.
    h2: RefCell<HashMap<Authority, Idle2>>,
    connect_timeout: Duration,
    idle_timeout_ms: u64,
    max_idle: usize,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").field("idle", &self.idle_count()).finish_non_exhaustive()
    }
}

/// A connection lent to one call: an HTTP/1.1 one goes back to its worker's pool when the
/// response body has been read to its end, and is closed if the body is abandoned (dropped
/// unfinished); an HTTP/2 stream needs nothing back.
pub struct Lease(Option<H1Lease>);

struct H1Lease {
    pool: Weak<Upstreams>,
    addr: Authority,
    tx: SendRequest<UpstreamBody>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("addr", &self.0.as_ref().map(|l| &l.addr)).finish_non_exhaustive()
    }
}

impl Lease {
    /// The response ended cleanly: the connection can carry the next request.
    pub fn release(self) {
        if let Some(l) = self.0
            && let Some(pool) = l.pool.upgrade()
        {
            pool.put(l.addr, l.tx);
        }
    }
}

impl Upstreams {
    pub fn new(s: &UpstreamSettings) -> Rc<Self> {
        Rc::new(Self {
            idle: RefCell::new(HashMap::new()),
            h2: RefCell::new(HashMap::new()),
            connect_timeout: s.connect_timeout,
            idle_timeout_ms: s.pool_idle_timeout.as_millis() as u64,
            max_idle: s.max_idle_per_member,
        })
    }

    /// Sends `req` to `addr` in `protocol`, on an idle (HTTP/1.1) or the shared (HTTP/2)
    /// connection, or a new one. A reused connection that turns out closed before the request
    /// was written is replaced transparently (the request is handed back by hyper, so this is
    /// safe for any method).
    pub async fn send(
        self: &Rc<Self>,
        addr: &Authority,
        protocol: Protocol,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        match protocol {
            Protocol::Http1 => self.send_h1(addr, req).await,
            Protocol::H2c => Ok((self.send_h2(addr, req).await?, Lease(None))),
        }
    }

    async fn send_h1(
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
                Ok(resp) => {
                    return Ok((resp, Lease(Some(H1Lease { pool: Rc::downgrade(self), addr: addr.clone(), tx }))));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: the connection had closed under us. Another one.
                    Some(back) if reused => req = back,
                    _ => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        self: &Rc<Self>,
        addr: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // HTTP/2 names the target in `:scheme` and `:authority`, from an absolute URI.
        let host = req.headers_mut().remove(http::header::HOST);
        let authority = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(addr.as_str());
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = http::Uri::builder().scheme("http").authority(authority).path_and_query(pq).build() {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = http::Version::HTTP_2;
        loop {
            let entry = match self.h2.borrow_mut().get_mut(addr) {
                Some(Idle2::Ready { tx, used }) if !tx.is_closed() => {
                    *used = now_ms();
                    Ok(tx.clone())
                }
                Some(Idle2::Connecting(done)) => Err(Some(done.clone())),
                _ => Err(None),
            };
            let (mut tx, reused) = match entry {
                Ok(tx) => (tx, true),
                Err(Some(done)) => {
                    done.notified().await;
                    continue;
                }
                Err(None) => {
                    let done = Rc::new(tokio::sync::Notify::new());
                    self.h2.borrow_mut().insert(addr.clone(), Idle2::Connecting(done.clone()));
                    // Whatever happens to this call (connected, failed, or dropped mid-connect),
                    // the waiters are woken and a stale `Connecting` is not left behind.
                    let _wake = Connecting { pool: self, addr, done };
                    let tx = self.connect_h2(addr).await?;
                    self.h2.borrow_mut().insert(addr.clone(), Idle2::Ready { tx: tx.clone(), used: now_ms() });
                    (tx, false)
                }
            };
            if reused && tx.ready().await.is_err() {
                self.h2.borrow_mut().remove(addr);
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(back) if reused => {
                        self.h2.borrow_mut().remove(addr);
                        req = back;
                    }
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
        let stream = self.tcp(addr).await?;
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

    async fn connect_h2(&self, addr: &Authority) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError> {
        let stream = self.tcp(addr).await?;
        let (tx, conn) = http2::Builder::new(LocalExec)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Connect(io::Error::other(e)))?;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(tx)
    }

    async fn tcp(&self, addr: &Authority) -> Result<TcpStream, UpstreamError> {
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
        Ok(stream)
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
        // An HTTP/2 connection unused for the idle timeout is let go (streams still open on it
        // finish first: hyper closes it when the last handle and stream are gone).
        self.h2.borrow_mut().retain(|_, c| match c {
            Idle2::Ready { tx, used } => !tx.is_closed() && now.saturating_sub(*used) < self.idle_timeout_ms,
            Idle2::Connecting(_) => true,
        });
    }

    /// Idle connections now, all members.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// One request on a fresh HTTP/1.1 connection, for the control plane's own calls (the OTLP
/// exporter, `prescale status`): the whole response body, then the connection is dropped.
pub async fn request_once<I>(
    io: I,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<(http::StatusCode, bytes::Bytes), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(conn);
    let resp = tx.send_request(req).await;
    let out = match resp {
        Ok(r) => {
            let status = r.status();
            r.into_body().collect().await.map(|b| (status, b.to_bytes()))
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
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
        let (resp, lease) = pool.send(addr, Protocol::Http1, get(addr)).await.unwrap();
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
            let (a, la) = pool.send(&addr, Protocol::Http1, get(&addr)).await.unwrap();
            let (b, lb) = pool.send(&addr, Protocol::Http1, get(&addr)).await.unwrap();
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
                let (r, l) = pool.send(&addr, Protocol::Http1, get(&addr)).await.unwrap();
                r.into_body().collect().await.unwrap();
                open.push(l);
            }
            for l in open {
                l.release();
            }
            assert_eq!(pool.idle_count(), 2);
            let stale =
                Rc::new(Upstreams { idle_timeout_ms: 0, ..Rc::try_unwrap(Upstreams::new(&settings(2))).unwrap() });
            let (r, l) = stale.send(&addr, Protocol::Http1, get(&addr)).await.unwrap();
            r.into_body().collect().await.unwrap();
            l.release();
            assert_eq!(stale.idle_count(), 1);
            stale.sweep();
            assert_eq!(stale.idle_count(), 0);
        });
    }

    #[test]
    fn an_h2c_member_gets_one_multiplexed_connection_for_concurrent_calls() {
        local(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let acc = accepted.clone();
            tokio::task::spawn_local(async move {
                loop {
                    let (s, _) = l.accept().await.unwrap();
                    acc.fetch_add(1, Relaxed);
                    tokio::task::spawn_local(async move {
                        let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                            // Slow enough that the calls overlap.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let text = format!("{:?} {}", req.version(), req.uri());
                            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(text),
                            )))
                        });
                        let _ = hyper::server::conn::http2::Builder::new(LocalExec)
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
            let pool = Upstreams::new(&settings(8));
            let calls = (0..20).map(|i| {
                let (pool, addr) = (pool.clone(), addr.clone());
                async move {
                    let req = Request::builder()
                        .uri(format!("/n/{i}"))
                        .header("host", "api.example")
                        .body(Either::Right(Empty::new()))
                        .unwrap();
                    let (resp, lease) = pool.send(&addr, Protocol::H2c, req).await.unwrap();
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    lease.release();
                    String::from_utf8(body.to_vec()).unwrap()
                }
            });
            let answers = futures_join_all(calls).await;
            for (i, a) in answers.iter().enumerate() {
                assert_eq!(a, &format!("HTTP/2.0 http://api.example/n/{i}"));
            }
            assert_eq!(accepted.load(Relaxed), 1, "one connection carried the 20 calls");
        });
    }

    /// Awaits every future (all on this task), in order.
    async fn futures_join_all<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + 'static,
        F::Output: 'static,
    {
        let handles: Vec<_> = fs.map(tokio::task::spawn_local).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    #[test]
    fn a_refused_connection_is_a_connect_error() {
        local(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
            drop(l);
            let pool = Upstreams::new(&settings(2));
            let e = pool.send(&addr, Protocol::Http1, get(&addr)).await.unwrap_err();
            assert!(e.is_connect(), "{e}");
        });
    }
}
