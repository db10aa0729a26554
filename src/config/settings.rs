//! Validated, typed settings: what the rest of prescale is built from.
//!
//! Every value here has passed validation; defaults are the named constants below, so a
//! reader can see every limit in one place.

use std::time::Duration;

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
pub use crate::proxy::settings::{DEFAULT_EJECT_FOR, DEFAULT_MAX_FAILURES};

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
    /// `[pool.scaling]` by pool name: the pools whose VMs the allocator manages.
    pub scaling: std::collections::BTreeMap<String, crate::allocator::ScalingSettings>,
    /// `[tracing]`: OTLP export of spans (off when absent).
    pub tracing: Option<crate::proxy::otlp::OtlpSettings>,
    /// Excluded periods from the endpoints' `exclude = [...]`.
    pub exclusions: Vec<crate::forecast::exclusions::Exclusion>,
    /// `[cluster]`: coordinated through etcd with other instances (a lone instance when absent).
    pub cluster: Option<crate::fleet::ClusterSettings>,
}

pub use crate::admin::settings::AdminSettings;
pub use crate::proxy::settings::{
    AccessLog, Balance, EndpointSettings, HealthCheckSettings, ListenSettings, MemberSettings, PassiveSettings, Plane,
    PoolSettings, Protocol, TlsSettings, UpstreamSettings,
};

impl Settings {
    /// What the data plane is built from.
    pub fn plane(&self) -> Plane<'_> {
        Plane {
            listen: &self.listen,
            upstream: &self.upstream,
            endpoints: &self.endpoints,
            pools: &self.pools,
            trust_forwarded: self.historian.as_ref().is_some_and(|h| h.trusted_hops > 0),
        }
    }

    /// A pool's `[pool.scaling]`, if it has one.
    pub fn scaling(&self, pool: &str) -> Option<&crate::allocator::ScalingSettings> {
        self.scaling.get(pool)
    }

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
