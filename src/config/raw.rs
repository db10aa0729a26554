//! Serde structs that mirror `proxy.toml` key for key.
//!
//! Nothing here is checked beyond TOML types: values stay strings or numbers until
//! [`super::validate`] turns them into typed settings and reports every problem with its key
//! path. Unknown keys are not rejected by serde (that would stop at the first one); the loader
//! collects them all through `serde_ignored` instead.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub listen: RawListen,
    pub admin: RawAdmin,
    pub upstream: RawUpstream,
    pub historian: RawHistorian,
    pub forecast: RawForecast,
    pub endpoint: Vec<RawEndpoint>,
    pub pool: Vec<RawPool>,
}

/// `[listen]`: the data-plane socket and its per-connection limits.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawListen {
    pub addr: Option<String>,
    pub tls: Option<RawTls>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<i64>,
    pub max_body_bytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub shutdown_grace: Option<String>,
    pub workers: Option<i64>,
    pub access_log: Option<String>,
    pub dot_segments: Option<String>,
    pub tunnel_idle_timeout: Option<String>,
}

/// `[listen.tls]`: PEM files for HTTPS.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `[admin]`: the separate admin/metrics socket.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub addr: Option<String>,
    pub token_file: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub max_connections: Option<i64>,
    pub request_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_failed_logins: Option<i64>,
}

/// `[upstream]`: how prescale talks to pool members.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUpstream {
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub max_idle_per_member: Option<i64>,
}

/// `[[endpoint]]`: a route, the unit that is recorded and forecast.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawEndpoint {
    pub name: Option<String>,
    pub path_prefix: Option<String>,
    pub pool: Option<String>,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub class_param: Option<String>,
}

/// `[[pool]]`: an upstream pool.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPool {
    pub name: Option<String>,
    /// Each member is `"host:port"` or `{ addr = "host:port", weight = N }`; kept as TOML
    /// values so validation can say exactly what is wrong with each one.
    pub members: Vec<toml::Value>,
    pub balance: Option<String>,
    pub retry: Option<bool>,
    pub health_check: Option<RawHealthCheck>,
    pub passive: Option<RawPassive>,
    pub scaling: Option<RawScaling>,
}

/// `[pool.scaling]`: the allocator's policy and hypervisor for this pool.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawScaling {
    pub hypervisor: Option<String>,
    pub uri: Option<String>,
    pub uris: Option<Vec<String>>,
    pub template: Option<String>,
    pub min_vms: Option<i64>,
    pub max_vms: Option<i64>,
    pub vcpus: Option<Vec<i64>>,
    pub memory_mib: Option<Vec<i64>>,
    pub capacity_rps_per_vcpu: Option<f64>,
    pub target_utilization: Option<f64>,
    pub headroom: Option<f64>,
    pub headroom_bounds: Option<Vec<f64>>,
    pub lead_time: Option<String>,
    pub window: Option<String>,
    pub cooldown: Option<String>,
    pub scale_in_stabilization: Option<String>,
    pub max_step: Option<i64>,
    pub launch_vcpus: Option<i64>,
    pub mode: Option<String>,
    pub ports: Option<Vec<i64>>,
    pub health_path: Option<String>,
    pub drain_timeout: Option<String>,
    pub stats_interval: Option<String>,
    pub boot_timeout: Option<String>,
    pub auto_enable: Option<bool>,
    pub auto_enable_after: Option<String>,
}

/// `[pool.health_check]`: active HTTP checks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
}

/// `[pool.passive]`: ejection after consecutive failures seen on real traffic.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPassive {
    pub max_failures: Option<i64>,
    pub eject_for: Option<String>,
}

/// `[historian]`: call recording and its time series.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHistorian {
    pub enabled: Option<bool>,
    pub data_dir: Option<String>,
    pub recent_calls: Option<i64>,
    pub channel_capacity: Option<i64>,
    pub params_max_len: Option<i64>,
    pub path_max_len: Option<i64>,
    pub redact: Option<Vec<String>>,
    pub redact_paths: Option<Vec<String>>,
    pub trusted_hops: Option<i64>,
    pub close_after: Option<String>,
    pub tiers: Option<Vec<RawTier>>,
}

/// One resolution of the per-endpoint series.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTier {
    pub step: Option<String>,
    pub keep: Option<String>,
    pub persist: Option<bool>,
}

/// `[forecast]`: per-endpoint forecasts from the historian's 1-minute series.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawForecast {
    pub enabled: Option<bool>,
    pub horizon: Option<String>,
    pub refit_every: Option<String>,
    pub select_every: Option<String>,
    pub history: Option<String>,
    pub cpu_ms_per_request: Option<f64>,
    pub memory_mib_per_request: Option<f64>,
}
