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

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
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
use super::stats::GlobalStats;
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

/// The HTTP/1.1 and HTTP/2 connection builders, made once per worker.
pub(crate) struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<LocalExec>,
}

fn builders(s: &ConnSettings) -> Builders {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new()).header_read_timeout(s.header_timeout).max_buf_size(s.max_header_bytes).keep_alive(true);
    let mut h2 = http2::Builder::new(LocalExec);
    h2.timer(TokioTimer::new())
        .max_header_list_size(s.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    Builders { h1, h2 }
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
    let limit = settings.connections.clone();
    let worker = Worker::new(proxy.clone(), &settings.upstream);
    let shared = std::rc::Rc::new(Shared {
        builders: builders(&settings),
        stack: std::rc::Rc::new(std::cell::RefCell::new(stack::build(&worker))),
        global: proxy.global.clone(),
        settings,
    });
    let settings = &shared.settings;
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
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        conns.spawn_local(async move {
            shared.global.connections_active.fetch_add(1, Relaxed);
            shared.global.connections_total.fetch_add(1, Relaxed);
            let slot = ConnSlot(std::sync::Mutex::new(Some(permit)));
            serve_conn(stream, peer, slot, &shared, shutdown).await;
            shared.global.connections_active.fetch_sub(1, Relaxed);
        });
    }
    sweeper.abort();
}

/// What a worker's connections share, made once per worker.
struct Shared {
    builders: Builders,
    settings: ConnSettings,
    /// The worker's request stack.
    stack: std::rc::Rc<std::cell::RefCell<Stack>>,
    global: Arc<GlobalStats>,
}

async fn serve_conn(stream: TcpStream, peer: SocketAddr, slot: ConnSlot, shared: &Shared, shutdown: CancellationToken) {
    let settings = &shared.settings;
    match &settings.tls {
        None => {
            // HTTP/2 with prior knowledge opens with its preface; anything else is HTTP/1.
            let h2 = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(settings.header_timeout, h2_preface(&stream)) => match r {
                    Ok(Ok(h2)) => h2,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "connection failed before its first request"),
                    Err(_) => return tracing::debug!(%peer, "no request within the header timeout"),
                },
            };
            let info = ConnInfo::new(peer, false, slot, settings.tunnel_idle_timeout);
            let service = stack::Connection::new(shared.stack.clone(), info);
            if h2 {
                // Boxed: an HTTP/2 connection's state is large; most connections are HTTP/1.1.
                Box::pin(serve_h2(stream, service, shared, shutdown)).await
            } else {
                serve_h1(stream, service, shared, shutdown).await
            }
        }
        // Boxed: the TLS state is large, and a plain connection's task need not hold its room.
        Some(acceptor) => Box::pin(serve_tls(acceptor, stream, peer, slot, shared, shutdown)).await,
    }
}

async fn serve_tls(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnSlot,
    shared: &Shared,
    shutdown: CancellationToken,
) {
    let settings = &shared.settings;
    let handshake = tokio::time::timeout(settings.header_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = handshake => r,
    };
    match tls {
        Ok(Ok(tls)) => {
            let info = ConnInfo::new(peer, true, slot, settings.tunnel_idle_timeout);
            let service = stack::Connection::new(shared.stack.clone(), info);
            // Over TLS, ALPN names the protocol.
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_h2(tls, service, shared, shutdown).await
            } else {
                serve_h1(tls, service, shared, shutdown).await
            }
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// The HTTP/2 connection preface a client with prior knowledge opens with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opened with the HTTP/2 preface, read with `MSG_PEEK` (the bytes stay in
/// the socket for the protocol's own parser). A client that has sent part of it is waited for.
async fn h2_preface(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: the socket stays readable, so look again shortly.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A connection idle (no request in flight, no byte either way) for this long gives back its
/// HTTP/1.1 state and buffers (about 16 KiB) until its client sends again.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(500);

/// Parked connections freed their buffers, but the C allocator keeps freed memory for reuse:
/// once a second, after connections parked, its free pages go back to the system (glibc's
/// `malloc_trim`; elsewhere nothing is done).
pub(crate) async fn give_back_parked_memory(global: Arc<GlobalStats>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let parks = global.parks_total.load(Relaxed);
        if parks != seen {
            seen = parks;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only releases free memory; it is safe to call from any thread.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// A stream an HTTP/1.1 connection is served on. A plain TCP socket can park: wait for its
/// client's next bytes without buffers. A TLS stream cannot (rustls may hold decrypted bytes
/// the socket no longer shows), so its connections are never parked.
pub(crate) trait Parkable: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    const PARKS: bool;
    /// Waits until bytes (or an end of stream) can be read; only called when `PARKS`.
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
}

impl Parkable for TcpStream {
    const PARKS: bool = true;
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        TcpStream::readable(self)
    }
}

impl Parkable for tokio_rustls::server::TlsStream<TcpStream> {
    const PARKS: bool = false;
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        std::future::pending()
    }
}

/// How a run of hyper's connection ended.
enum Ended {
    /// Closed (or upgraded to a tunnel, which owns the socket now): nothing left to do.
    Closed,
    /// Idle: hyper was handed an end of stream so that it let go of the socket.
    Parked,
}

async fn serve_h1<I: Parkable>(io: I, service: stack::Connection, shared: &Shared, shutdown: CancellationToken) {
    let (builders, settings, global) = (&shared.builders, &shared.settings, &shared.global);
    let info = service.info();
    let state = info.io.clone();
    let idle_ms = settings.idle_timeout.as_millis() as u64;
    let (mut io, mut service) = (io, service);
    loop {
        // Boxed: hyper's connection is large, and a parked connection's task holds none.
        let mut conn = Box::new(
            builders.h1.serve_connection(TokioIo::new(IdleIo::new(io, state.clone())), service).with_upgrades(),
        );
        match drive(&mut *conn, settings, &shutdown, &state, I::PARKS.then_some(&*info)).await {
            Ended::Closed => return,
            Ended::Parked => {}
        }
        // hyper saw an end of stream while idle: take the socket and the service back.
        let Some(http1::Parts { io: wrapped, read_buf, service: back, .. }) = (*conn).into_parts() else { return };
        if !read_buf.is_empty() {
            // Part of a request arrived a park interval ago and no more since: give up on it.
            return;
        }
        // Dropped before the wait: even empty, it holds hyper's read buffer.
        drop(read_buf);
        state.park.store(false, Relaxed);
        io = wrapped.into_inner().inner;
        service = back;
        let quiet_for = idle_ms.saturating_sub(now_ms().saturating_sub(state.last.load(Relaxed)));
        global.connections_parked.fetch_add(1, Relaxed);
        global.parks_total.fetch_add(1, Relaxed);
        let woken = tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(Duration::from_millis(quiet_for)) => {
                tracing::debug!("idle connection closed");
                false
            }
            r = io.readable() => r.is_ok(),
        };
        global.connections_parked.fetch_sub(1, Relaxed);
        if !woken {
            return;
        }
    }
}

async fn serve_h2<I>(io: I, service: stack::Connection, shared: &Shared, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = service.info().io.clone();
    let mut conn = shared.builders.h2.serve_connection(TokioIo::new(IdleIo::new(io, state.clone())), service);
    drive(&mut conn, &shared.settings, &shutdown, &state, None).await;
}

/// A served connection as [`drive`] needs it: hyper's HTTP/1.1 or HTTP/2 connection.
trait Served: Future<Output = hyper::Result<()>> + Unpin {
    fn close_gracefully(&mut self);
}

/// hyper's connection over one of ours.
type Io<I> = TokioIo<IdleIo<I>>;

impl<I: Parkable> Served for http1::UpgradeableConnection<Io<I>, stack::Connection> {
    fn close_gracefully(&mut self) {
        Pin::new(self).graceful_shutdown();
    }
}

impl<I> Served for http2::Connection<Io<I>, stack::Connection, LocalExec>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn close_gracefully(&mut self) {
        Pin::new(self).graceful_shutdown();
    }
}

/// Polls a connection until it ends, enforcing the idle timeout, cutting off a client that
/// stopped reading, closing gracefully on shutdown — and, for a parkable HTTP/1.1 connection
/// (`park`: the connection, which says when it is idle), parking it once idle for [`PARK_AFTER`].
async fn drive<C: Served>(
    conn: &mut C,
    settings: &ConnSettings,
    shutdown: &CancellationToken,
    state: &IoState,
    park: Option<&ConnInfo>,
) -> Ended {
    let idle_ms = settings.idle_timeout.as_millis() as u64;
    let mut every = settings.idle_timeout / 4 + Duration::from_millis(1);
    if park.is_some() {
        every = every.min(PARK_AFTER / 2);
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        // A client that stopped reading (our writes blocked for the idle timeout) is cut off:
        // a graceful close would wait for the response it is not reading.
        let since = state.blocked.load(Relaxed);
        if since != 0 && now_ms().saturating_sub(since) >= idle_ms {
            tracing::debug!("client stopped reading: connection closed");
            return Ended::Closed;
        }
        tokio::select! {
            // The connection first: it is what wakes this task almost every time.
            biased;
            r = &mut *conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                    return Ended::Closed;
                }
                let parked = park.is_some() && state.park.load(Relaxed);
                return if parked { Ended::Parked } else { Ended::Closed };
            }
            _ = shutdown.cancelled(), if !closing => {
                conn.close_gracefully();
                closing = true;
            }
            _ = tick.tick() => {
                let silent = now_ms().saturating_sub(state.last.load(Relaxed));
                // Still silent a whole idle timeout after the graceful close began (an HTTP/2
                // client that never acknowledges the GOAWAY's PING, a response nobody reads):
                // drop it.
                if closing && silent >= 2 * idle_ms {
                    tracing::debug!("connection silent after its graceful close: dropped");
                    return Ended::Closed;
                }
                if !closing && silent >= idle_ms {
                    conn.close_gracefully();
                    closing = true;
                }
                // Idle means nothing in flight and nothing read since the last answer: a client
                // halfway through a request head is the header timeout's.
                if let Some(info) = park
                    && !closing
                    && silent >= PARK_AFTER.as_millis() as u64
                    && info.idle()
                {
                    // hyper reads an end of stream next and lets the socket go (the socket is
                    // neither read nor shut down on the way).
                    state.park.store(true, Relaxed);
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

/// A connection's activity, shared by its I/O wrapper and the task that serves it: when a
/// byte last moved either way, since when writes have been blocked (the peer is not reading;
/// 0 when not), and whether the connection is being parked.
#[derive(Debug)]
pub(crate) struct IoState {
    pub(crate) last: AtomicU64,
    /// Reads that returned data (written by the connection's own thread only).
    reads: AtomicU64,
    blocked: AtomicU64,
    park: AtomicBool,
}

impl IoState {
    /// Reads that returned data so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Relaxed)
    }

    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            last: AtomicU64::new(now_ms()),
            reads: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            park: AtomicBool::new(false),
        })
    }
}

/// Stamps [`IoState`] as bytes move. Once the state says `park`, reads see an end of stream and
/// a shutdown leaves the socket open, so that hyper lets go of an idle connection whose socket
/// stays with its task.
pub(crate) struct IdleIo<I> {
    inner: I,
    state: Arc<IoState>,
}

impl<I> IdleIo<I> {
    pub(crate) fn new(inner: I, state: Arc<IoState>) -> Self {
        Self { inner, state }
    }

    fn wrote<T>(&self, r: &Poll<T>) {
        if r.is_ready() {
            self.state.last.store(now_ms(), Relaxed);
            self.state.blocked.store(0, Relaxed);
        } else if self.state.blocked.load(Relaxed) == 0 {
            self.state.blocked.store(now_ms(), Relaxed);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for IdleIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.state.park.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            let now = now_ms();
            self.state.last.store(now, Relaxed);
            if buf.filled().len() > before {
                self.state.reads.store(self.state.reads.load(Relaxed) + 1, Relaxed);
            }
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
        if self.state.park.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
