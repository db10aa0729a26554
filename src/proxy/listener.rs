//! Data-plane workers: accept loop and per-connection serving (HTTP/1.1, h2c, and both over
//! TLS by ALPN).
//!
//! Thread-per-core: each worker is an OS thread with a current-thread runtime and a
//! `LocalSet`, its own listening socket on the shared address (SO_REUSEPORT: the kernel spreads
//! connections), its own upstream connection pool and its own copy of the request stack (see
//! `proxy::worker`, `proxy::stack`), so a request never crosses threads. Measured on 2 cores
//! with wrk: one multi-thread runtime cost 63 µs of CPU per proxied request, mostly cross-thread
//! wake-ups between the client and upstream connection tasks; a single-threaded runtime 35 µs.
//!
//! Limits enforced here: a connection cap (accepting pauses, back-pressure goes to the kernel's
//! listen queue), the TLS handshake and header read timeouts (slowloris), the header size
//! (hyper answers 431), and an idle timeout (no bytes either way → graceful close). On shutdown
//! every connection is asked to finish its in-flight requests and close.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Proxy;
use super::pool::now_ms;
use super::stack::{self, ConnInfo, Stack};
use super::worker::{LocalExec, Worker};
use crate::proxy::settings::{ListenSettings, UpstreamSettings};

/// Per-connection settings fixed at start (changing them needs a restart).
#[derive(Clone)]
pub struct ConnSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    /// Open-connection cap shared by all workers.
    pub connections: Arc<Semaphore>,
    /// Upgraded connections with no bytes either way for this long are closed.
    pub tunnel_idle_timeout: Duration,
    pub tls: Option<TlsAcceptor>,
    pub upstream: UpstreamSettings,
}

impl ConnSettings {
    pub fn from(l: &ListenSettings, upstream: &UpstreamSettings) -> Self {
        Self {
            header_timeout: l.header_timeout,
            idle_timeout: l.idle_timeout,
            max_header_bytes: l.max_header_bytes,
            connections: Arc::new(Semaphore::new(l.max_connections)),
            tunnel_idle_timeout: l.tunnel_idle_timeout,
            tls: l.tls.as_ref().map(|t| TlsAcceptor::from(t.server_config.clone())),
            upstream: upstream.clone(),
        }
    }
}

/// Binds a non-blocking listening socket with SO_REUSEPORT, so every worker can bind its own
/// on the same address.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Fails with `AddrInUse` when another socket listens on `addr` — also one of another prescale
/// that set SO_REUSEPORT, which [`bind`] would otherwise join (the kernel would split the
/// traffic between the two processes). Port 0 is always free.
pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR only: a port in TIME_WAIT is free, one with a listener is not.
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is listening on this address"))
        }
        Err(e) => Err(e),
    }
}

/// Kernel accept queue per worker socket.
const LISTEN_BACKLOG: i32 = 4096;

/// Runs worker `index` (0, 1, …) on the calling thread: serves until `shutdown`, then lets
/// its open connections finish within `grace`.
pub fn run_worker(
    index: usize,
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    settings: ConnSettings,
    shutdown: CancellationToken,
    grace: Duration,
) {
    super::worker::set_index(1 + index % (super::worker::shards() - 1));
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "worker runtime failed to start");
            return;
        }
    };
    tokio::task::LocalSet::new().block_on(&rt, async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "worker listener unusable");
                return;
            }
        };
        let conns = TaskTracker::new();
        serve(listener, proxy, settings, shutdown, conns.clone()).await;
        conns.close();
        if tokio::time::timeout(grace, conns.wait()).await.is_err() {
            tracing::warn!(left = conns.len(), "grace period over; closing remaining connections");
        }
    });
}

fn builder(s: &ConnSettings) -> auto::Builder<LocalExec> {
    let mut b = auto::Builder::new(LocalExec);
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_timeout)
        .max_buf_size(s.max_header_bytes)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(s.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves connections from `listener` until `shutdown` fires; connections are spawned on
/// `conns` (on the calling thread's `LocalSet`), which the caller waits on (with a grace
/// period) to drain them.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    settings: ConnSettings,
    shutdown: CancellationToken,
    conns: TaskTracker,
) {
    // The worker's own token: every connection's `cancelled()` registers with it, so a wake-up
    // on one worker never takes a lock the other workers' connections use.
    let shutdown = shutdown.child_token();
    let builder = std::rc::Rc::new(builder(&settings));
    let limit = settings.connections.clone();
    let worker = Worker::new(proxy.clone(), &settings.upstream);
    let stack = std::rc::Rc::new(std::cell::RefCell::new(stack::build(&worker)));
    let settings = std::rc::Rc::new(settings);
    // Idle upstream connections past `pool_idle_timeout` are closed even when no request
    // comes to notice them.
    let sweeper = {
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        let every = (settings.upstream.pool_idle_timeout / 2).max(Duration::from_millis(100));
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => worker.upstreams.sweep(),
                }
            }
        })
    };
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The permit is taken for a connection in hand, not before accepting: a worker waiting
        // in accept() must not hold a place another worker's connection needs (with N workers,
        // N − 1 places were held that way, so a connection could wait below the cap). At the
        // cap this worker stops accepting until a place frees: back-pressure stays in the
        // kernel's queue, plus at most this one connection per worker.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let _ = stream.set_nodelay(true);
        let (proxy, builder, settings, shutdown) = (proxy.clone(), builder.clone(), settings.clone(), shutdown.clone());
        let stack = stack.clone();
        conns.spawn_local(async move {
            proxy.global.connections_active.fetch_add(1, Relaxed);
            proxy.global.connections_total.fetch_add(1, Relaxed);
            let slot = ConnSlot(std::sync::Mutex::new(Some(permit)));
            serve_conn(stream, peer, stack, slot, &builder, &settings, shutdown).await;
            proxy.global.connections_active.fetch_sub(1, Relaxed);
        });
    }
    sweeper.abort();
}

async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    stack: std::rc::Rc<std::cell::RefCell<Stack>>,
    slot: ConnSlot,
    builder: &auto::Builder<LocalExec>,
    settings: &ConnSettings,
    shutdown: CancellationToken,
) {
    match &settings.tls {
        None => {
            let info = ConnInfo { peer, https: false, slot, tunnel_idle: settings.tunnel_idle_timeout };
            serve_io(stream, stack::Connection::new(stack, info), builder, settings, shutdown).await
        }
        Some(acceptor) => {
            let handshake = Box::pin(tokio::time::timeout(settings.header_timeout, acceptor.accept(stream)));
            let tls = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = handshake => r,
            };
            match tls {
                Ok(Ok(tls)) => {
                    let info = ConnInfo { peer, https: true, slot, tunnel_idle: settings.tunnel_idle_timeout };
                    // Boxed: the TLS state is large, and a plain connection's task need not be.
                    Box::pin(serve_io(tls, stack::Connection::new(stack, info), builder, settings, shutdown)).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(
    io: I,
    service: stack::Connection,
    builder: &auto::Builder<LocalExec>,
    settings: &ConnSettings,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let last = Arc::new(AtomicU64::new(now_ms()));
    let blocked = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(IdleIo { inner: io, last: last.clone(), blocked: blocked.clone() });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let idle_ms = settings.idle_timeout.as_millis() as u64;
    let mut tick = tokio::time::interval(settings.idle_timeout / 4 + Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        // A client that stopped reading (our writes blocked for the idle timeout) is cut off:
        // a graceful close would wait for the response it is not reading.
        let since = blocked.load(Relaxed);
        if since != 0 && now_ms().saturating_sub(since) >= idle_ms {
            tracing::debug!("client stopped reading: connection closed");
            return;
        }
        tokio::select! {
            // The connection first: it is what wakes this task almost every time.
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick() => {
                let silent = now_ms().saturating_sub(last.load(Relaxed));
                // Still silent a whole idle timeout after the graceful close began (an HTTP/2
                // client that never acknowledges the GOAWAY's PING, a response nobody reads):
                // drop it.
                if closing && silent >= 2 * idle_ms {
                    tracing::debug!("connection silent after its graceful close: dropped");
                    return;
                }
                if !closing && silent >= idle_ms {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// A connection's place under `max_connections`: released when the connection ends, or handed
/// to the tunnel when the connection is upgraded (so a WebSocket keeps counting). Locked once
/// per upgrade, never per request.
pub struct ConnSlot(std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>);

impl ConnSlot {
    /// The connection's permit, for the tunnel that outlives the connection.
    pub fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSlot").finish_non_exhaustive()
    }
}

/// Stamps the time of the last byte moved in either direction, and since when writes have been
/// blocked (the peer is not reading; 0 when not blocked).
pub(crate) struct IdleIo<I> {
    inner: I,
    last: Arc<AtomicU64>,
    blocked: Arc<AtomicU64>,
}

impl<I> IdleIo<I> {
    /// Wraps `inner`; `last` is stamped with the time of every byte moved.
    pub(crate) fn new(inner: I, last: Arc<AtomicU64>) -> Self {
        Self { inner, last, blocked: Arc::new(AtomicU64::new(0)) }
    }

    fn wrote<T>(&self, r: &Poll<T>) {
        if r.is_ready() {
            self.last.store(now_ms(), Relaxed);
            self.blocked.store(0, Relaxed);
        } else if self.blocked.load(Relaxed) == 0 {
            self.blocked.store(now_ms(), Relaxed);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for IdleIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.last.store(now_ms(), Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for IdleIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
