//! Serde structs that mirror `proxy.toml` key for key.
//!
//! Nothing here is checked beyond TOML types: values stay strings or numbers until
//! [`super::validate`] turns them into typed settings and reports every problem with its key
//! path. Unknown keys are not rejected by serde (that would stop at the first one); the loader
//! collects them all through `serde_ignored` instead.

use serde::Deserialize;

/// A duration as written (`"10s"`), checked by validation. Its own type so that a number or a
/// boolean in its place reads "expected a duration such as \"10s\"", not "expected a string".
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Dur(pub String);

impl std::ops::Deref for Dur {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"10s\" (a string with a unit: ms, s, m, h, d)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Ok(Dur(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawConfig {
    pub listen: RawListen,
    pub admin: RawAdmin,
    pub upstream: RawUpstream,
    pub historian: RawHistorian,
    pub forecast: RawForecast,
    pub endpoint: Vec<RawEndpoint>,
    pub pool: Vec<RawPool>,
    pub tracing: RawTracing,
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`: several instances coordinated through etcd.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawCluster {
    pub etcd: Option<Vec<String>>,
    pub name: Option<String>,
    pub id: Option<String>,
    pub lease_ttl: Option<Dur>,
    pub history: Option<Dur>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `[tracing]`: OTLP/HTTP export of spans.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub queue: Option<i64>,
}

/// `[listen]`: the data-plane socket and its per-connection limits.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawListen {
    pub addr: Option<String>,
    pub tls: Option<RawTls>,
    pub header_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub max_header_bytes: Option<i64>,
    pub max_body_bytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub shutdown_grace: Option<Dur>,
    pub workers: Option<i64>,
    pub access_log: Option<String>,
    pub access_log_format: Option<String>,
    pub access_log_fields: Option<Vec<String>>,
    pub dot_segments: Option<String>,
    pub tunnel_idle_timeout: Option<Dur>,
}

/// `[listen.tls]`: PEM files for HTTPS.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `[admin]`: the separate admin/metrics socket.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAdmin {
    pub addr: Option<String>,
    pub tls: Option<RawTls>,
    pub token_file: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub max_connections: Option<i64>,
    pub request_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub max_failed_logins: Option<i64>,
}

/// `[upstream]`: how prescale talks to pool members.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawUpstream {
    pub connect_timeout: Option<Dur>,
    pub response_timeout: Option<Dur>,
    pub pool_idle_timeout: Option<Dur>,
    pub max_idle_per_member: Option<i64>,
}

/// `[[endpoint]]`: a route, the unit that is recorded and forecast.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawEndpoint {
    pub name: Option<String>,
    pub path_prefix: Option<String>,
    pub pool: Option<String>,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub class_param: Option<String>,
    /// Periods the models skip: `[{ from = "…", to = "…", reason = "…" }]`.
    pub exclude: Vec<RawExclude>,
    pub hold: Option<Dur>,
    pub hold_queue: Option<i64>,
}

/// One of an endpoint's `exclude` entries.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawExclude {
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: Option<String>,
}

/// `[[pool]]`: an upstream pool.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawPool {
    pub name: Option<String>,
    /// Each member is `"host:port"` or `{ addr = "host:port", weight = N }`; kept as TOML
    /// values so validation can say exactly what is wrong with each one.
    pub members: Vec<toml::Value>,
    pub balance: Option<String>,
    pub protocol: Option<String>,
    pub retry: Option<bool>,
    pub health_check: Option<RawHealthCheck>,
    pub passive: Option<RawPassive>,
    pub scaling: Option<RawScaling>,
    /// `[[pool.schedule]]`: known events.
    pub schedule: Vec<crate::allocator::schedule::RawEvent>,
}

/// `[pool.scaling]`: the allocator's policy and hypervisor for this pool.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawScaling {
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
    pub violation_minute_price: Option<f64>,
    pub vcpu_hour_price: Option<f64>,
    pub lead_time: Option<Dur>,
    pub window: Option<Dur>,
    pub cooldown: Option<Dur>,
    pub scale_in_stabilization: Option<Dur>,
    pub max_step: Option<i64>,
    pub launch_vcpus: Option<i64>,
    pub warm_spares: Option<i64>,
    pub cpu_caps: Option<bool>,
    pub mode: Option<String>,
    pub ports: Option<Vec<i64>>,
    pub network: Option<String>,
    pub port: Option<i64>,
    pub address_sources: Option<Vec<String>>,
    pub health_path: Option<String>,
    pub drain_timeout: Option<Dur>,
    pub stats_interval: Option<Dur>,
    pub boot_timeout: Option<Dur>,
    pub auto_enable: Option<bool>,
    pub auto_enable_after: Option<Dur>,
}

/// `[pool.health_check]`: active HTTP checks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
}

/// `[pool.passive]`: ejection after consecutive failures seen on real traffic.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawPassive {
    pub max_failures: Option<i64>,
    pub eject_for: Option<Dur>,
}

/// `[historian]`: call recording and its time series.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawHistorian {
    pub enabled: Option<bool>,
    pub data_dir: Option<String>,
    pub recent_calls: Option<i64>,
    pub channel_capacity: Option<i64>,
    pub params_max_len: Option<i64>,
    pub path_max_len: Option<i64>,
    pub redact: Option<Vec<String>>,
    pub redact_paths: Option<Vec<String>>,
    pub trusted_hops: Option<i64>,
    pub close_after: Option<Dur>,
    pub tiers: Option<Vec<RawTier>>,
}

/// One resolution of the per-endpoint series.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTier {
    pub step: Option<Dur>,
    pub keep: Option<Dur>,
    pub persist: Option<bool>,
}

/// `[forecast]`: per-endpoint forecasts from the historian's 1-minute series.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawForecast {
    pub enabled: Option<bool>,
    pub horizon: Option<Dur>,
    pub refit_every: Option<Dur>,
    pub select_every: Option<Dur>,
    pub history: Option<Dur>,
    pub cpu_ms_per_request: Option<f64>,
    pub memory_mib_per_request: Option<f64>,
}

/// The keys a table of the file accepts, by the table's key path with indices left out
/// (`["pool", "scaling"]`), read from the serde structs themselves so the list cannot drift.
pub(super) fn known_keys(table: &[&str]) -> Option<&'static [&'static str]> {
    Some(match table {
        [] => fields_of::<RawConfig>(),
        ["listen"] => fields_of::<RawListen>(),
        ["listen", "tls"] => fields_of::<RawTls>(),
        ["admin"] => fields_of::<RawAdmin>(),
        ["upstream"] => fields_of::<RawUpstream>(),
        ["endpoint"] => fields_of::<RawEndpoint>(),
        ["pool"] => fields_of::<RawPool>(),
        ["pool", "scaling"] => fields_of::<RawScaling>(),
        ["pool", "health_check"] => fields_of::<RawHealthCheck>(),
        ["pool", "passive"] => fields_of::<RawPassive>(),
        ["historian"] => fields_of::<RawHistorian>(),
        ["historian", "tiers"] => fields_of::<RawTier>(),
        ["forecast"] => fields_of::<RawForecast>(),
        _ => return None,
    })
}

/// The field names a derived `Deserialize` struct asks for: a deserializer that records them
/// from `deserialize_struct` and stops.
fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use std::cell::Cell;
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field capture")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Capture<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Capture<'_> {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let cell = Cell::new(&[][..]);
    let _ = T::deserialize(Capture(&cell));
    cell.get()
}

/// The known key closest to `key` (edit distance at most 2, or a third of its length), for a
/// "did you mean" hint.
pub(super) fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 2);
    known.iter().map(|k| (edit_distance(key, k), *k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
