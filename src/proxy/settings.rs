//! The data plane's settings, validated (built by [`crate::config`] from `proxy.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::uri::Authority;

/// Passive ejection defaults.
pub const DEFAULT_MAX_FAILURES: u32 = 3;
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);

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
    /// Plain lines or JSON objects with the chosen fields.
    pub access_log_format: AccessFormat,
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

/// How access-log lines are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessFormat {
    /// One line of space-separated values (the default).
    #[default]
    Text,
    /// One JSON object per line with these fields, in this order.
    Json(Vec<super::access::Field>),
}

/// Where access-log lines go (off when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    File(PathBuf),
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
    /// When no member of the pool can take a request: hold it this long for one to become
    /// ready (a VM resuming or booting) instead of answering 503 at once; zero: no holding.
    pub hold: std::time::Duration,
    /// Requests held at once at most; beyond, 503 with `Retry-After` at once.
    pub hold_queue: usize,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub name: String,
    pub members: Vec<MemberSettings>,
    pub balance: Balance,
    /// What prescale speaks to the members.
    pub protocol: Protocol,
    /// Retry a connect failure of an idempotent, bodiless request once on another member.
    pub retry: bool,
    pub health_check: Option<HealthCheckSettings>,
    pub passive: PassiveSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSettings {
    pub addr: Authority,
    pub weight: u32,
}

/// What prescale speaks to a pool's members (`pool.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1: a request per connection at a time; idle connections kept per worker.
    #[default]
    Http1,
    /// HTTP/2 without TLS (prior knowledge): one multiplexed connection per member per worker.
    /// Upgrade handshakes (WebSocket) are not carried over it.
    H2c,
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

/// What the data plane is built from: borrowed from the whole configuration.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub listen: &'a ListenSettings,
    pub upstream: &'a UpstreamSettings,
    pub endpoints: &'a [EndpointSettings],
    pub pools: &'a [PoolSettings],
    /// Forwarded client addresses are trusted (the historian's `trusted_hops` > 0).
    pub trust_forwarded: bool,
}
