//! Validated, typed settings: what the rest of prescale is built from.
//!
//! Every value here has passed validation; defaults are the named constants below, so a
//! reader can see every limit in one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::uri::Authority;

/// Slowloris guard: a client must send its request headers within this time.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no bytes read or written for this long is closed gracefully.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Larger request heads get 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's HTTP/1 parser cannot work with a smaller buffer.
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Larger request bodies get 413.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Accepting stops (back-pressure on the listen queue) beyond this many open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long in-flight requests may run after SIGTERM before prescale exits anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Upstream TCP connect timeout; a refused or timed-out connect may be retried elsewhere.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for an upstream to send response headers; beyond it the client gets 504.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle upstream keep-alive connections are closed after this.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle upstream keep-alive connections kept per member.
pub const DEFAULT_MAX_IDLE_PER_MEMBER: usize = 1024;
/// Default admin listener: loopback only.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9901";
/// Admin connections open at once (the admin must never take the data plane's descriptors).
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// An admin request's head and body must arrive within this.
pub const DEFAULT_ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle admin keep-alive connections are closed after this.
pub const DEFAULT_ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest admin token accepted (bytes).
pub const MIN_TOKEN_BYTES: usize = 16;
/// Default data-plane listener.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";
/// Health check defaults.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_CHECK_RISE: u32 = 2;
pub const DEFAULT_CHECK_FALL: u32 = 3;
/// Passive ejection defaults.
pub const DEFAULT_MAX_FAILURES: u32 = 3;
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);

/// Everything prescale needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: ListenSettings,
    pub admin: AdminSettings,
    pub upstream: UpstreamSettings,
    /// `None` when recording is switched off.
    pub historian: Option<crate::historian::HistorianConfig>,
    /// `None` when forecasting is off (or the historian is).
    pub forecast: Option<crate::forecast::settings::ForecastConfig>,
    pub endpoints: Vec<EndpointSettings>,
    pub pools: Vec<PoolSettings>,
}

#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub addr: SocketAddr,
    /// Present when the listener speaks HTTPS (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Option<TlsSettings>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// Data-plane threads, each with its own runtime, listener (SO_REUSEPORT) and upstream
    /// connection pool.
    pub workers: usize,
    pub access_log: Option<AccessLog>,
    /// Paths with dot-segments: normalised before routing (default) or refused with 400.
    pub dot_segments: crate::proxy::target::DotSegments,
    /// An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
}

/// Loaded certificate chain and key, ready for the acceptor.
#[derive(Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").field("cert", &self.cert).field("key", &self.key).finish()
    }
}

/// Where access-log lines go (off when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub addr: SocketAddr,
    /// Present when the admin listener speaks HTTPS (`[admin.tls]`); session cookies are then
    /// `Secure`.
    pub tls: Option<TlsSettings>,
    /// Bearer token; required when `addr` is not loopback.
    pub token: Option<String>,
    /// Host names the admin answers besides IP literals and `localhost` (DNS rebinding guard).
    pub hosts: Vec<String>,
    /// Admin connections open at once; beyond them only `/live` and `/ready` are answered.
    pub max_connections: usize,
    /// A request's head and body must arrive within this.
    pub request_timeout: Duration,
    /// Keep-alive admin connections silent this long are closed.
    pub idle_timeout: Duration,
    /// Wrong tokens or form secrets one address may present per minute before it gets 429.
    pub max_failed_logins: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub max_idle_per_member: usize,
}

#[derive(Debug, Clone)]
pub struct EndpointSettings {
    pub name: String,
    pub path_prefix: String,
    /// `None` matches every method.
    pub methods: Option<Vec<Method>>,
    /// `None` matches every host; compared case-insensitively without the port.
    pub host: Option<String>,
    pub pool: String,
    /// Query parameter whose values are request classes (else detected from latency).
    pub class_param: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub name: String,
    pub members: Vec<MemberSettings>,
    pub balance: Balance,
    /// Retry a connect failure of an idempotent, bodiless request once on another member.
    pub retry: bool,
    pub health_check: Option<HealthCheckSettings>,
    pub passive: PassiveSettings,
    /// `[pool.scaling]`, when the allocator manages this pool's VMs.
    pub scaling: Option<crate::allocator::ScalingSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSettings {
    pub addr: Authority,
    pub weight: u32,
}

/// How a pool picks a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Power of two random choices on outstanding requests ÷ weight, EWMA latency breaks ties.
    P2c,
    RoundRobin,
    /// Random, proportional to weight.
    Weighted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that bring an unhealthy member back.
    pub rise: u32,
    /// Consecutive failures that take a healthy member out.
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveSettings {
    /// Consecutive connect failures/timeouts that eject a member; 0 disables.
    pub max_failures: u32,
    pub eject_for: Duration,
}

impl Default for PassiveSettings {
    fn default() -> Self {
        Self { max_failures: DEFAULT_MAX_FAILURES, eject_for: DEFAULT_EJECT_FOR }
    }
}

impl Settings {
    /// One line for `prescale check`.
    pub fn summary(&self) -> String {
        let members: usize = self.pools.iter().map(|p| p.members.len()).sum();
        format!(
            "ok: listen {}{}, admin {}, {} endpoint(s), {} pool(s), {} member(s)",
            self.listen.addr,
            if self.listen.tls.is_some() { " (tls)" } else { "" },
            self.admin.addr,
            self.endpoints.len(),
            self.pools.len(),
            members
        )
    }
}
