//! Raw structs → [`Settings`], collecting every problem instead of stopping at the first.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::uri::Authority;

use super::ConfigError;
use super::raw::*;
use super::settings::*;

/// Collects errors while validation continues.
struct Check {
    errors: Vec<ConfigError>,
}

impl Check {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), line: None, message: message.into() });
    }

    fn duration(&mut self, path: &str, v: &Option<Dur>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Some(d) if !d.is_zero() => d,
                Some(_) => {
                    self.err(path, "must be greater than zero");
                    default
                }
                None => {
                    self.err(path, format!("{s:?} is not a duration (use e.g. \"500ms\", \"10s\", \"5m\", \"1h\")"));
                    default
                }
            },
        }
    }

    fn count(&mut self, path: &str, v: Option<i64>, min: i64, max: i64, default: i64) -> i64 {
        match v {
            None => default,
            Some(n) if n < min || n > max => {
                self.err(path, format!("{n} is out of range ({min}..={max})"));
                default
            }
            Some(n) => n,
        }
    }

    fn socket_addr(&mut self, path: &str, v: &Option<String>, default: &str) -> SocketAddr {
        let s = v.as_deref().unwrap_or(default);
        s.parse().unwrap_or_else(|_| {
            self.err(path, format!("{s:?} is not an IP:port address"));
            default.parse().expect("default address parses")
        })
    }
}

/// Parses `250ms`, `10s`, `5m`, `1h` (integer amounts).
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

pub(super) fn validate(raw: RawConfig, base: &Path) -> Result<Settings, Vec<ConfigError>> {
    let mut c = Check { errors: Vec::new() };
    let mut listen = listen(&mut c, raw.listen, base);
    if listen.workers == 0 {
        listen.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    let admin = admin(&mut c, raw.admin, base);
    let upstream = upstream(&mut c, raw.upstream);
    let historian = historian(&mut c, raw.historian, base);
    let forecast = forecast(&mut c, raw.forecast, historian.as_ref());
    let mut pools: Vec<PoolSettings> = Vec::new();
    let mut scaling = std::collections::BTreeMap::new();
    for (i, p) in raw.pool.into_iter().enumerate() {
        if let Some((p, sc)) = pool(&mut c, i, p) {
            if let Some(sc) = sc {
                scaling.insert(p.name.clone(), sc);
            }
            pools.push(p);
        }
    }

    let mut pool_names = HashSet::new();
    for (i, p) in pools.iter().enumerate() {
        if !pool_names.insert(p.name.clone()) {
            c.err(format!("pool[{i}].name"), format!("duplicate pool name {:?}", p.name));
        }
    }
    let mut endpoints = Vec::new();
    let mut names = HashSet::new();
    let mut routes = HashSet::new();
    let mut exclusions = Vec::new();
    for (i, mut e) in raw.endpoint.into_iter().enumerate() {
        let excludes = std::mem::take(&mut e.exclude);
        let ep_name = e.name.clone().unwrap_or_default();
        for (j, x) in excludes.into_iter().enumerate() {
            if let Some(x) = exclude(&mut c, &format!("endpoint[{i}].exclude[{j}]"), &ep_name, x) {
                exclusions.push(x);
            }
        }
        if let Some(e) = endpoint(&mut c, i, e, &pool_names) {
            if !names.insert(e.name.clone()) {
                c.err(format!("endpoint[{i}].name"), format!("duplicate endpoint name {:?}", e.name));
            }
            let key = (e.path_prefix.clone(), e.host.clone(), e.methods.clone());
            if !routes.insert(key) {
                c.err(format!("endpoint[{i}].path_prefix"), "another endpoint has the same prefix, host and methods");
            }
            endpoints.push(e);
        }
    }
    let tracing = match raw.tracing.otlp_endpoint.as_deref() {
        None => None,
        Some(u) => match u.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {
                Some(crate::proxy::otlp::OtlpSettings {
                    endpoint: uri,
                    service_name: raw.tracing.service_name.clone().unwrap_or_else(|| "prescale".into()),
                    queue: c.count("tracing.queue", raw.tracing.queue, 1, 1_000_000, 8192) as usize,
                })
            }
            _ => {
                c.err(
                    "tracing.otlp_endpoint",
                    format!("{u:?} is not an http:// URL such as \"http://127.0.0.1:4318/v1/traces\""),
                );
                None
            }
        },
    };
    let mut historian = historian;
    let cluster = raw.cluster.map(|r| cluster(&mut c, r, base));
    if cluster.is_some() {
        match historian.as_mut() {
            Some(h) => h.publish_closed = true,
            None => c.err("cluster", "needs the historian (historian.enabled = true): the fleet shares its history"),
        }
    }
    if listen.addr == admin.addr && listen.addr.port() != 0 {
        c.err("admin.addr", "must differ from listen.addr");
    }
    if c.errors.is_empty() {
        Ok(Settings {
            listen,
            admin,
            upstream,
            historian,
            forecast,
            endpoints,
            pools,
            scaling,
            exclusions,
            tracing,
            cluster,
        })
    } else {
        Err(c.errors)
    }
}

fn listen(c: &mut Check, r: RawListen, base: &Path) -> ListenSettings {
    let addr = c.socket_addr("listen.addr", &r.addr, DEFAULT_LISTEN_ADDR);
    let tls = r.tls.and_then(|t| tls(c, t, base, "listen.tls"));
    let max_header_bytes = c.count(
        "listen.max_header_bytes",
        r.max_header_bytes,
        MIN_MAX_HEADER_BYTES as i64,
        16 * 1024 * 1024,
        DEFAULT_MAX_HEADER_BYTES as i64,
    ) as usize;
    let access_log = match r.access_log.as_deref() {
        None | Some("off") => None,
        Some("stdout") => Some(AccessLog::Stdout),
        Some("") => {
            c.err("listen.access_log", "must be \"off\", \"stdout\" or a file path");
            None
        }
        Some(p) => Some(AccessLog::File(resolve(base, p))),
    };
    let fields = match &r.access_log_fields {
        None => crate::proxy::access::Field::ALL.to_vec(),
        Some(names) => {
            let mut out = Vec::new();
            for (i, n) in names.iter().enumerate() {
                match crate::proxy::access::Field::from_name(n) {
                    Some(f) if !out.contains(&f) => out.push(f),
                    Some(_) => c.err(format!("listen.access_log_fields[{i}]"), format!("{n:?} is listed twice")),
                    None => c.err(
                        format!("listen.access_log_fields[{i}]"),
                        format!("{n:?}: use one of {}", crate::proxy::access::Field::names()),
                    ),
                }
            }
            if names.is_empty() {
                c.err("listen.access_log_fields", "must list at least one field");
            }
            out
        }
    };
    let access_log_format = match r.access_log_format.as_deref() {
        None | Some("text") => {
            if r.access_log_fields.is_some() {
                c.err("listen.access_log_fields", "applies to access_log_format = \"json\" only");
            }
            crate::proxy::settings::AccessFormat::Text
        }
        Some("json") => crate::proxy::settings::AccessFormat::Json(fields),
        Some(other) => {
            c.err("listen.access_log_format", format!("{other:?}: use \"text\" or \"json\""));
            crate::proxy::settings::AccessFormat::Text
        }
    };
    let dot_segments = match r.dot_segments.as_deref() {
        None | Some("normalize") => crate::proxy::target::DotSegments::Normalize,
        Some("reject") => crate::proxy::target::DotSegments::Reject,
        Some(other) => {
            c.err("listen.dot_segments", format!("{other:?}: use \"normalize\" or \"reject\""));
            crate::proxy::target::DotSegments::Normalize
        }
    };
    let idle_timeout = c.duration("listen.idle_timeout", &r.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    ListenSettings {
        addr,
        tls,
        dot_segments,
        tunnel_idle_timeout: c.duration("listen.tunnel_idle_timeout", &r.tunnel_idle_timeout, idle_timeout),
        header_timeout: c.duration("listen.header_timeout", &r.header_timeout, DEFAULT_HEADER_TIMEOUT),
        idle_timeout,
        max_header_bytes,
        max_body_bytes: c.count("listen.max_body_bytes", r.max_body_bytes, 0, i64::MAX, DEFAULT_MAX_BODY_BYTES as i64)
            as u64,
        max_connections: c.count(
            "listen.max_connections",
            r.max_connections,
            1,
            1_000_000,
            DEFAULT_MAX_CONNECTIONS as i64,
        ) as usize,
        shutdown_grace: c.duration("listen.shutdown_grace", &r.shutdown_grace, DEFAULT_SHUTDOWN_GRACE),
        workers: c.count("listen.workers", r.workers, 0, 256, 0) as usize,
        access_log,
        access_log_format,
    }
}

fn tls(c: &mut Check, t: RawTls, base: &Path, key_path: &str) -> Option<TlsSettings> {
    let (Some(cert), Some(key)) = (t.cert.as_deref(), t.key.as_deref()) else {
        if t.cert.is_none() {
            c.err(format!("{key_path}.cert"), "missing (PEM certificate chain)");
        }
        if t.key.is_none() {
            c.err(format!("{key_path}.key"), "missing (PEM private key)");
        }
        return None;
    };
    let (cert, key) = (resolve(base, cert), resolve(base, key));
    match crate::proxy::tls::server_config(&cert, &key) {
        Ok(server_config) => Some(TlsSettings { cert, key, server_config: Arc::new(server_config) }),
        Err(crate::proxy::tls::TlsError::Cert(msg)) => {
            c.err(format!("{key_path}.cert"), msg);
            None
        }
        Err(crate::proxy::tls::TlsError::Key(msg)) => {
            c.err(format!("{key_path}.key"), msg);
            None
        }
        Err(crate::proxy::tls::TlsError::Config(msg)) => {
            c.err(key_path, msg);
            None
        }
    }
}

/// The admin token from its file: at least [`MIN_TOKEN_BYTES`], in a file others cannot write,
/// nor read when this process owns it (a secret mounted by a container runtime belongs to
/// someone else and may need to be readable by all to reach this user).
fn token_from_file(c: &mut Check, f: &str, base: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let path = resolve(base, f);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            c.err("admin.token_file", format!("cannot read {f:?}: {e}"));
            return None;
        }
    };
    let token = text.trim();
    if token.is_empty() {
        c.err("admin.token_file", format!("{f:?} is empty"));
        return None;
    }
    if token.len() < MIN_TOKEN_BYTES {
        c.err(
            "admin.token_file",
            format!(
                "{f:?} holds {} bytes: use at least {MIN_TOKEN_BYTES} (e.g. head -c 24 /dev/urandom | base64)",
                token.len()
            ),
        );
        return None;
    }
    if let Ok(meta) = std::fs::metadata(&path) {
        let mode = meta.mode();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = meta.uid() == unsafe { libc::geteuid() };
        if mode & 0o002 != 0 {
            c.err("admin.token_file", format!("{f:?} is writable by everyone (mode {:o}): chmod 600", mode & 0o777));
            return None;
        }
        if ours && mode & 0o004 != 0 {
            c.err("admin.token_file", format!("{f:?} is readable by everyone (mode {:o}): chmod 600", mode & 0o777));
            return None;
        }
    }
    Some(token.to_string())
}

fn admin(c: &mut Check, r: RawAdmin, base: &Path) -> AdminSettings {
    let addr = c.socket_addr("admin.addr", &r.addr, DEFAULT_ADMIN_ADDR);
    let token = r.token_file.and_then(|f| token_from_file(c, &f, base));
    if !addr.ip().is_loopback() && token.is_none() && c.errors.iter().all(|e| e.path != "admin.token_file") {
        c.err("admin.addr", format!("{addr} is not loopback: set admin.token_file to require a bearer token"));
    }
    let mut hosts = Vec::new();
    for (i, h) in r.hosts.unwrap_or_default().iter().enumerate() {
        if crate::proxy::target::valid_host(h.as_bytes()) && !h.contains(':') {
            hosts.push(h.to_ascii_lowercase());
        } else {
            c.err(format!("admin.hosts[{i}]"), format!("{h:?} is not a host name (no port, no scheme)"));
        }
    }
    // The admin speaks HTTP/1.1 only: offer just that by ALPN.
    let tls = r.tls.and_then(|t| tls(c, t, base, "admin.tls")).map(|mut t| {
        let mut sc = (*t.server_config).clone();
        sc.alpn_protocols = vec![b"http/1.1".to_vec()];
        t.server_config = Arc::new(sc);
        t
    });
    AdminSettings {
        addr,
        tls,
        token,
        hosts,
        max_connections: c.count(
            "admin.max_connections",
            r.max_connections,
            1,
            10_000,
            DEFAULT_ADMIN_MAX_CONNECTIONS as i64,
        ) as usize,
        request_timeout: c.duration("admin.request_timeout", &r.request_timeout, DEFAULT_ADMIN_REQUEST_TIMEOUT),
        idle_timeout: c.duration("admin.idle_timeout", &r.idle_timeout, DEFAULT_ADMIN_IDLE_TIMEOUT),
        max_failed_logins: c.count("admin.max_failed_logins", r.max_failed_logins, 1, 1_000_000, 10) as u32,
    }
}

fn upstream(c: &mut Check, r: RawUpstream) -> UpstreamSettings {
    UpstreamSettings {
        connect_timeout: c.duration("upstream.connect_timeout", &r.connect_timeout, DEFAULT_CONNECT_TIMEOUT),
        response_timeout: c.duration("upstream.response_timeout", &r.response_timeout, DEFAULT_RESPONSE_TIMEOUT),
        pool_idle_timeout: c.duration("upstream.pool_idle_timeout", &r.pool_idle_timeout, DEFAULT_POOL_IDLE_TIMEOUT),
        max_idle_per_member: c.count(
            "upstream.max_idle_per_member",
            r.max_idle_per_member,
            0,
            100_000,
            DEFAULT_MAX_IDLE_PER_MEMBER as i64,
        ) as usize,
    }
}

fn historian(c: &mut Check, r: RawHistorian, base: &Path) -> Option<crate::historian::HistorianConfig> {
    use crate::historian::{HistorianConfig, Redaction, StoreConfig, TierSpec};
    let d = HistorianConfig::default();
    let tiers = match r.tiers {
        None => d.store.tiers.clone(),
        Some(ts) => {
            if ts.is_empty() || ts.len() > 6 {
                c.err("historian.tiers", "must list 1 to 6 tiers");
            }
            let mut out: Vec<TierSpec> = Vec::new();
            for (i, t) in ts.iter().enumerate() {
                let p = format!("historian.tiers[{i}]");
                let (Some(step), Some(keep)) = (&t.step, &t.keep) else {
                    c.err(&p, "needs step and keep (e.g. { step = \"1m\", keep = \"35d\" })");
                    continue;
                };
                let step_d = c.duration(&format!("{p}.step"), &Some(step.clone()), Duration::from_secs(60));
                let keep_d = c.duration(&format!("{p}.keep"), &Some(keep.clone()), Duration::from_secs(3600));
                let (step_s, keep_s) = (step_d.as_secs(), keep_d.as_secs());
                if step_s == 0 || step_d.subsec_nanos() != 0 {
                    c.err(format!("{p}.step"), "must be a whole number of seconds");
                    continue;
                }
                if keep_s < step_s {
                    c.err(format!("{p}.keep"), "must be at least one step");
                    continue;
                }
                if out.last().is_some_and(|prev| prev.step_s >= step_s) {
                    c.err(format!("{p}.step"), "tiers must be listed from finest to coarsest");
                }
                out.push(TierSpec { step_s, keep_s, persist: t.persist.unwrap_or(false) });
            }
            out
        }
    };
    let redaction = Redaction {
        keys: r.redact.map(|v| v.iter().map(|k| k.to_ascii_lowercase()).collect()).unwrap_or(d.store.redaction.keys),
        max_len: c.count("historian.params_max_len", r.params_max_len, 0, 65_536, 256) as usize,
        path_max_len: c.count("historian.path_max_len", r.path_max_len, 16, 65_536, 256) as usize,
        path_patterns: r
            .redact_paths
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.parse() {
                Ok(p) => Some(p),
                Err(e) => {
                    c.err(format!("historian.redact_paths[{i}]"), format!("{e} (e.g. \"/reset/{{token}}\")"));
                    None
                }
            })
            .collect(),
    };
    let cfg = HistorianConfig {
        store: StoreConfig {
            tiers,
            recent_calls: c.count("historian.recent_calls", r.recent_calls, 1, 10_000_000, 100_000) as usize,
            redaction,
            close_after_us: c
                .duration("historian.close_after", &r.close_after, Duration::from_micros(d.store.close_after_us))
                .as_micros() as u64,
        },
        data_dir: r.data_dir.map(|p| resolve(base, &p)).inspect(|d| {
            if d.exists() && !d.is_dir() {
                c.err("historian.data_dir", format!("{} exists and is not a directory", d.display()));
            }
        }),
        channel_capacity: c.count("historian.channel_capacity", r.channel_capacity, 1, 16_777_216, 65_536) as usize,
        trusted_hops: c.count("historian.trusted_hops", r.trusted_hops, 0, 16, 0) as usize,
        publish_closed: false,
    };
    r.enabled.unwrap_or(true).then_some(cfg)
}

/// `[cluster]`: the etcd endpoints and this instance's place in the fleet.
fn cluster(c: &mut Check, r: RawCluster, base: &Path) -> crate::fleet::ClusterSettings {
    let d = crate::fleet::ClusterSettings::default();
    let etcd = r.etcd.unwrap_or_default();
    if etcd.is_empty() {
        c.err("cluster.etcd", "list at least one etcd endpoint, e.g. [\"http://127.0.0.1:2379\"]");
    }
    for (i, e) in etcd.iter().enumerate() {
        let ok = e.parse::<http::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() && u.path() == "/"
        });
        if !ok {
            c.err(
                format!("cluster.etcd[{i}]"),
                format!("{e:?} is not an etcd endpoint such as \"http://127.0.0.1:2379\""),
            );
        }
    }
    let name = r.name.unwrap_or(d.name);
    if !crate::fleet::valid_name(&name) {
        c.err("cluster.name", format!("{name:?}: use 1-64 letters, digits, '-', '_' or '.'"));
    }
    if let Some(id) = &r.id
        && !crate::fleet::valid_name(id)
    {
        c.err("cluster.id", format!("{id:?}: use 1-64 letters, digits, '-', '_' or '.'"));
    }
    let lease_ttl = c.duration("cluster.lease_ttl", &r.lease_ttl, d.lease_ttl);
    if lease_ttl < Duration::from_secs(2) {
        c.err("cluster.lease_ttl", "must be at least 2s (etcd leases are granted in whole seconds)");
    }
    let history = c.duration("cluster.history", &r.history, d.history);
    let tls = r.ca.is_some() || r.cert.is_some() || r.key.is_some();
    if r.cert.is_some() != r.key.is_some() {
        c.err(
            if r.cert.is_some() { "cluster.key" } else { "cluster.cert" },
            "cert and key go together (client certificate)",
        );
    }
    if tls && etcd.iter().any(|e| e.starts_with("http://")) {
        c.err("cluster.etcd", "TLS options (ca, cert, key) need https:// endpoints");
    }
    if r.username.is_some() != r.password_file.is_some() {
        c.err(
            if r.username.is_some() { "cluster.password_file" } else { "cluster.username" },
            "username and password_file go together",
        );
    }
    let file = |c: &mut Check, key: &str, p: Option<String>| {
        p.map(|p| resolve(base, &p)).inspect(|p| {
            if !p.is_file() {
                c.err(format!("cluster.{key}"), format!("{} is not a readable file", p.display()));
            }
        })
    };
    crate::fleet::ClusterSettings {
        etcd,
        name,
        id: r.id,
        lease_ttl,
        history,
        username: r.username,
        password_file: file(c, "password_file", r.password_file),
        ca: file(c, "ca", r.ca),
        cert: file(c, "cert", r.cert),
        key: file(c, "key", r.key),
    }
}

fn forecast(
    c: &mut Check,
    r: RawForecast,
    historian: Option<&crate::historian::HistorianConfig>,
) -> Option<crate::forecast::settings::ForecastConfig> {
    use crate::forecast::settings::ForecastConfig;
    let d = ForecastConfig::default();
    let horizon = c.duration("forecast.horizon", &r.horizon, Duration::from_secs(d.horizon_min as u64 * 60));
    if !horizon.as_secs().is_multiple_of(60) || horizon.as_secs() > 86_400 {
        c.err("forecast.horizon", "must be whole minutes, at most 1 day");
    }
    let history = c.duration("forecast.history", &r.history, Duration::from_secs(d.history_days * 86_400));
    if !history.as_secs().is_multiple_of(86_400) || history.as_secs() < 2 * 86_400 {
        c.err("forecast.history", "must be whole days, at least 2d (a daily season needs two)");
    }
    let mut positive = |path: &str, v: Option<f64>, default: f64| match v {
        Some(x) if !(x.is_finite() && x > 0.0) => {
            c.err(path, format!("{x} must be a positive number"));
            default
        }
        Some(x) => x,
        None => default,
    };
    let cost = crate::forecast::settings::CostModel {
        cpu_ms_per_request: positive("forecast.cpu_ms_per_request", r.cpu_ms_per_request, d.cost.cpu_ms_per_request),
        memory_mib_per_request: positive(
            "forecast.memory_mib_per_request",
            r.memory_mib_per_request,
            d.cost.memory_mib_per_request,
        ),
    };
    let refit_every = c.duration("forecast.refit_every", &r.refit_every, d.refit_every);
    let select_every = c.duration("forecast.select_every", &r.select_every, d.select_every);
    if refit_every < Duration::from_secs(60) {
        c.err("forecast.refit_every", "must be at least 1m");
    }
    if select_every < refit_every {
        c.err("forecast.select_every", "must be at least refit_every");
    }
    let cfg = ForecastConfig {
        horizon_min: (horizon.as_secs() / 60).max(1) as usize,
        refit_every,
        select_every,
        history_days: (history.as_secs() / 86_400).max(2),
        cost,
        class_params: Default::default(),
    };
    let enabled = r.enabled.unwrap_or(true);
    if enabled && historian.is_some_and(|h| !h.store.tiers.iter().any(|t| t.step_s == 60)) {
        c.err("forecast.enabled", "needs a 1-minute historian tier (historian.tiers)");
    }
    (enabled && historian.is_some()).then_some(cfg)
}

/// Longest endpoint or pool name (it is a label in metrics and a key in every recorded bucket).
pub(super) const MAX_NAME_BYTES: usize = 64;
/// What a name must look like, for error messages.
pub(super) const NAME_RULE: &str = "must be 1 to 64 letters, digits, '-', '_' or '.'";

/// Why `n` is not a valid endpoint or pool name (see [`NAME_RULE`]), quoting at most 40
/// characters of it; `None` when it is valid.
pub fn name_problem(n: &str) -> Option<String> {
    let valid = !n.is_empty()
        && n.len() <= MAX_NAME_BYTES
        && n.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if valid {
        return None;
    }
    let shown: String = n.chars().take(40).collect();
    let more = if shown.len() < n.len() { "…" } else { "" };
    Some(format!("{shown:?}{more} {NAME_RULE}"))
}

fn name(c: &mut Check, path: String, v: Option<String>) -> Option<String> {
    match v {
        None => {
            c.err(path, "missing");
            None
        }
        Some(n) if let Some(problem) = name_problem(&n) => {
            c.err(path, problem);
            None
        }
        Some(n) => Some(n),
    }
}

/// One of an endpoint's `exclude` entries.
fn exclude(
    c: &mut Check,
    p: &str,
    endpoint: &str,
    x: crate::config::raw::RawExclude,
) -> Option<crate::forecast::exclusions::Exclusion> {
    let mut time = |key: &str, v: Option<String>| match v {
        None => {
            c.err(format!("{p}.{key}"), "missing (a time such as \"2026-11-27T08:00:00Z\")");
            None
        }
        Some(s) => crate::historian::import::parse_time(&s)
            .map_err(|_| c.err(format!("{p}.{key}"), format!("{s:?} is not a time such as \"2026-11-27T08:00:00Z\"")))
            .ok(),
    };
    let (from, to) = (time("from", x.from), time("to", x.to));
    let reason = match x.reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() && r.len() <= 200 => Some(r.to_string()),
        _ => {
            c.err(format!("{p}.reason"), "required: why the period is excluded (≤ 200 bytes)");
            None
        }
    };
    let (from, to, reason) = (from?, to?, reason?);
    if to <= from {
        c.err(format!("{p}.to"), "must be after from");
        return None;
    }
    Some(crate::forecast::exclusions::Exclusion {
        endpoint: endpoint.into(),
        from,
        to,
        reason,
        source: "config".into(),
    })
}

fn endpoint(c: &mut Check, i: usize, e: RawEndpoint, pools: &HashSet<String>) -> Option<EndpointSettings> {
    let p = format!("endpoint[{i}]");
    let name = name(c, format!("{p}.name"), e.name);
    let path_prefix = match e.path_prefix {
        None => {
            c.err(format!("{p}.path_prefix"), "missing");
            None
        }
        Some(s) if !s.starts_with('/') => {
            c.err(format!("{p}.path_prefix"), format!("{s:?} must start with '/'"));
            None
        }
        Some(s) if s.contains(['?', '#']) || s.chars().any(|ch| ch.is_ascii_control() || ch == ' ') => {
            c.err(format!("{p}.path_prefix"), format!("{s:?} must be a plain path (no query, fragment or spaces)"));
            None
        }
        Some(s) => Some(s),
    };
    let pool = match e.pool {
        None => {
            c.err(format!("{p}.pool"), "missing");
            None
        }
        Some(s) if !pools.contains(&s) => {
            c.err(format!("{p}.pool"), format!("no pool named {s:?}"));
            None
        }
        Some(s) => Some(s),
    };
    let methods = e.methods.map(|ms| {
        let mut out = Vec::new();
        for (j, m) in ms.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) => out.push(method),
                Err(_) => c.err(format!("{p}.methods[{j}]"), format!("{m:?} is not an HTTP method")),
            }
        }
        if ms.is_empty() {
            c.err(format!("{p}.methods"), "must not be empty (omit it to match every method)");
        }
        out
    });
    let host = match e.host {
        Some(h) if h.is_empty() || h.parse::<Authority>().is_err() || h.contains(':') => {
            c.err(format!("{p}.host"), format!("{h:?} is not a host name (without port)"));
            None
        }
        h => h.map(|h| h.to_ascii_lowercase()),
    };
    let class_param = e.class_param.filter(|k| {
        let ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic() && b != b'&' && b != b'=');
        if !ok {
            c.err(format!("{p}.class_param"), format!("{k:?} is not a query parameter name"));
        }
        ok
    });
    let hold = c.duration(&format!("{p}.hold"), &e.hold, std::time::Duration::ZERO);
    if hold > std::time::Duration::from_secs(600) {
        c.err(format!("{p}.hold"), "at most 10m: a client waits that long");
    }
    let hold_queue = c.count(&format!("{p}.hold_queue"), e.hold_queue, 1, 1_000_000, 1000) as usize;
    Some(EndpointSettings {
        name: name?,
        path_prefix: path_prefix?,
        methods,
        host,
        pool: pool?,
        class_param,
        hold,
        hold_queue,
    })
}

fn pool(c: &mut Check, i: usize, r: RawPool) -> Option<(PoolSettings, Option<crate::allocator::ScalingSettings>)> {
    let p = format!("pool[{i}]");
    let name = name(c, format!("{p}.name"), r.name);
    let mut members = Vec::new();
    let mut seen = HashSet::new();
    for (j, m) in r.members.iter().enumerate() {
        let mp = format!("{p}.members[{j}]");
        let (addr, weight) = match m {
            toml::Value::String(s) => (Some(s.clone()), 1),
            toml::Value::Table(t) => {
                for k in t.keys().filter(|k| *k != "addr" && *k != "weight") {
                    c.err(format!("{mp}.{k}"), "unknown key");
                }
                let weight = match t.get("weight") {
                    None => 1,
                    Some(toml::Value::Integer(w)) if (1..=1000).contains(w) => *w as u32,
                    Some(w) => {
                        c.err(format!("{mp}.weight"), format!("{w} is not an integer in 1..=1000"));
                        1
                    }
                };
                match t.get("addr") {
                    Some(toml::Value::String(s)) => (Some(s.clone()), weight),
                    _ => {
                        c.err(format!("{mp}.addr"), "missing (\"host:port\")");
                        (None, weight)
                    }
                }
            }
            other => {
                c.err(&mp, format!("{other} is neither \"host:port\" nor {{ addr = \"host:port\", weight = N }}"));
                (None, 1)
            }
        };
        let Some(addr) = addr else { continue };
        match parse_member(&addr) {
            Some(a) => {
                if !seen.insert(a.clone()) {
                    c.err(&mp, format!("{addr:?} is listed twice"));
                }
                members.push(MemberSettings { addr: a, weight });
            }
            None => c.err(&mp, format!("{addr:?} is not host:port")),
        }
    }
    let balance = match r.balance.as_deref() {
        None | Some("p2c") => Balance::P2c,
        Some("round_robin") => Balance::RoundRobin,
        Some("weighted") => Balance::Weighted,
        Some(b) => {
            c.err(format!("{p}.balance"), format!("{b:?} is not one of \"p2c\", \"round_robin\", \"weighted\""));
            Balance::P2c
        }
    };
    let protocol = match r.protocol.as_deref() {
        None | Some("http1") => Protocol::Http1,
        Some("h2c") => Protocol::H2c,
        Some(v) => {
            c.err(format!("{p}.protocol"), format!("{v:?} is not one of \"http1\", \"h2c\""));
            Protocol::Http1
        }
    };
    let health_check = r.health_check.map(|h| {
        let hp = format!("{p}.health_check");
        let path = h.path.unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            c.err(format!("{hp}.path"), format!("{path:?} must start with '/'"));
        }
        let interval = c.duration(&format!("{hp}.interval"), &h.interval, DEFAULT_CHECK_INTERVAL);
        let timeout = c.duration(&format!("{hp}.timeout"), &h.timeout, DEFAULT_CHECK_TIMEOUT);
        if timeout > interval {
            c.err(format!("{hp}.timeout"), "must not exceed the interval");
        }
        HealthCheckSettings {
            path,
            interval,
            timeout,
            rise: c.count(&format!("{hp}.rise"), h.rise, 1, 100, DEFAULT_CHECK_RISE as i64) as u32,
            fall: c.count(&format!("{hp}.fall"), h.fall, 1, 100, DEFAULT_CHECK_FALL as i64) as u32,
        }
    });
    let passive = r
        .passive
        .map(|ps| PassiveSettings {
            max_failures: c.count(
                &format!("{p}.passive.max_failures"),
                ps.max_failures,
                0,
                1000,
                DEFAULT_MAX_FAILURES as i64,
            ) as u32,
            eject_for: c.duration(&format!("{p}.passive.eject_for"), &ps.eject_for, DEFAULT_EJECT_FOR),
        })
        .unwrap_or_default();
    if members.is_empty() && r.members.is_empty() && r.scaling.is_none() {
        c.err(
            format!("{p}.members"),
            "no members and no [pool.scaling] to launch VMs into the pool: every request to it would get 503 \
             (list \"host:port\" members, or add [pool.scaling])",
        );
    }
    let mut scaling = r.scaling.map(|sc| scaling(c, &p, sc, health_check.as_ref()));
    for (j, e) in r.schedule.iter().enumerate() {
        match (e.check(), &mut scaling) {
            (Ok(ev), Some(sc)) => sc.policy.schedule.push(ev),
            (Ok(_), None) => c.err(format!("{p}.schedule[{j}]"), "known events need [pool.scaling] to act on"),
            (Err(errs), _) => {
                for (k, m) in errs {
                    c.err(format!("{p}.schedule[{j}].{k}"), m);
                }
            }
        }
    }
    Some((
        PoolSettings { name: name?, members, balance, protocol, retry: r.retry.unwrap_or(true), health_check, passive },
        scaling,
    ))
}

/// `[pool.scaling]`.
fn scaling(
    c: &mut Check,
    p: &str,
    r: crate::config::raw::RawScaling,
    hc: Option<&HealthCheckSettings>,
) -> crate::allocator::ScalingSettings {
    use crate::allocator::{LeadTime, Mode, ScalingSettings};
    let sp = format!("{p}.scaling");
    let d = ScalingSettings::default();
    let k = |key: &str| format!("{sp}.{key}");
    match r.hypervisor.as_deref() {
        None | Some("libvirt") => {}
        Some(h) => c.err(k("hypervisor"), format!("{h:?} is not supported (use \"libvirt\")")),
    }
    let uris = match (r.uri, r.uris) {
        (Some(_), Some(_)) => {
            c.err(k("uris"), "give uri or uris, not both");
            Vec::new()
        }
        (Some(u), None) => vec![u],
        (None, Some(v)) if !v.is_empty() => v,
        _ => {
            c.err(k("uri"), "missing (a libvirt URI such as \"qemu:///system\", or uris = [...])");
            Vec::new()
        }
    };
    for (i, u) in uris.iter().enumerate() {
        if !u.contains("://") {
            c.err(format!("{sp}.uris[{i}]"), format!("{u:?} is not a libvirt URI"));
        }
    }
    let template = r.template.unwrap_or_else(|| {
        c.err(k("template"), "missing (the name of the template domain)");
        String::new()
    });
    let min_vms = c.count(&k("min_vms"), r.min_vms, 0, 1000, d.policy.min_vms as i64) as u32;
    let max_vms = c.count(&k("max_vms"), r.max_vms, 1, 1000, d.policy.max_vms as i64) as u32;
    if min_vms > max_vms {
        c.err(k("min_vms"), format!("{min_vms} is above max_vms {max_vms}"));
    }
    let mut pair = |key: &str, v: Option<Vec<i64>>, lo: i64, hi: i64, def: (u64, u64)| -> (u64, u64) {
        match v {
            None => def,
            Some(v) if v.len() == 2 && lo <= v[0] && v[0] <= v[1] && v[1] <= hi => (v[0] as u64, v[1] as u64),
            Some(v) => {
                c.err(k(key), format!("{v:?} is not [min, max] with {lo} <= min <= max <= {hi}"));
                def
            }
        }
    };
    let vcpus = pair("vcpus", r.vcpus, 1, 1024, (d.policy.vcpus.0 as u64, d.policy.vcpus.1 as u64));
    let memory = pair("memory_mib", r.memory_mib, 16, 16 << 20, d.policy.memory_mib);
    let ports_given = r.ports.is_some();
    let ports = pair("ports", r.ports, 1, 65535, (d.ports.0 as u64, d.ports.1 as u64));
    let mut frac = |key: &str, v: Option<f64>, lo: f64, hi: f64, def: f64| match v {
        Some(x) if !(x.is_finite() && lo < x && x <= hi) => {
            c.err(k(key), format!("{x} is out of range ({lo} < x <= {hi})"));
            def
        }
        Some(x) => x,
        None => def,
    };
    let capacity = frac("capacity_rps_per_vcpu", r.capacity_rps_per_vcpu, 0.0, 1e9, d.policy.capacity_rps_per_vcpu);
    let target = frac("target_utilization", r.target_utilization, 0.0, 1.0, d.policy.target_utilization);
    let headroom = match r.headroom {
        Some(x) if !(x.is_finite() && (0.0..=10.0).contains(&x)) => {
            c.err(k("headroom"), format!("{x} is out of range (0..=10)"));
            d.policy.headroom
        }
        Some(x) => x,
        None => d.policy.headroom,
    };
    let price = |c: &mut Check, key: &str, v: Option<f64>, def: f64, zero_ok: bool| match v {
        Some(x) if !(x.is_finite() && (x > 0.0 || zero_ok && x == 0.0)) => {
            let want = if zero_ok { "a finite price, 0 or more" } else { "a finite price above 0" };
            c.err(k(key), format!("{x} is not {want}"));
            def
        }
        Some(x) => x,
        None => def,
    };
    let violation_minute_price = price(
        c,
        "violation_minute_price",
        r.violation_minute_price,
        crate::allocator::DEFAULT_VIOLATION_MINUTE_PRICE,
        true,
    );
    let vcpu_hour_price =
        price(c, "vcpu_hour_price", r.vcpu_hour_price, crate::allocator::DEFAULT_VCPU_HOUR_PRICE, false);
    let headroom_bounds = match r.headroom_bounds {
        None => d.headroom_bounds,
        Some(v) if v.len() == 2 && v.iter().all(|x| x.is_finite()) && 0.0 <= v[0] && v[0] <= v[1] && v[1] <= 10.0 => {
            (v[0], v[1])
        }
        Some(v) => {
            c.err(k("headroom_bounds"), format!("{v:?} is not [low, high] with 0 <= low <= high <= 10"));
            d.headroom_bounds
        }
    };
    let lead_time = match r.lead_time.as_deref() {
        None => d.lead_time,
        Some("auto") => LeadTime::Auto,
        Some(s) => match parse_duration(s) {
            Some(v) => LeadTime::Fixed(v.as_secs()),
            None => {
                c.err(k("lead_time"), format!("{s:?} is neither \"auto\" nor a duration like \"90s\""));
                d.lead_time
            }
        },
    };
    let mode = match r.mode.as_deref() {
        None | Some("dry_run") => Mode::DryRun,
        Some("enabled") => Mode::Enabled,
        Some(m) => {
            c.err(k("mode"), format!("{m:?} is not one of \"dry_run\", \"enabled\""));
            Mode::DryRun
        }
    };
    // Only a health_path the user wrote is checked here; one taken from [pool.health_check] was
    // checked (and reported under its own key) there.
    if let Some(hp) = r.health_path.as_deref().filter(|hp| !hp.starts_with('/')) {
        c.err(k("health_path"), format!("{hp:?} must start with '/'"));
    }
    let health_path = r.health_path.or_else(|| hc.map(|h| h.path.clone())).unwrap_or_else(|| "/".into());
    let secs = |c: &mut Check, key: &str, v: &Option<Dur>, def: u64| {
        c.duration(&k(key), v, std::time::Duration::from_secs(def)).as_secs()
    };
    let policy = crate::allocator::plan::Policy {
        min_vms,
        max_vms,
        vcpus: (vcpus.0 as u32, vcpus.1 as u32),
        memory_mib: memory,
        capacity_rps_per_vcpu: capacity,
        target_utilization: target,
        quantile: crate::allocator::plan::plan_quantile(violation_minute_price, vcpu_hour_price),
        headroom,
        lead_time_s: match lead_time {
            LeadTime::Fixed(s) => s,
            LeadTime::Auto => d.policy.lead_time_s,
        },
        window_s: secs(c, "window", &r.window, d.policy.window_s),
        cooldown_s: secs(c, "cooldown", &r.cooldown, d.policy.cooldown_s),
        scale_in_stabilization_s: secs(
            c,
            "scale_in_stabilization",
            &r.scale_in_stabilization,
            d.policy.scale_in_stabilization_s,
        ),
        max_step: c.count(&k("max_step"), r.max_step, 1, 100, d.policy.max_step as i64) as u32,
        launch_vcpus: c.count(&k("launch_vcpus"), r.launch_vcpus, 1, 1024, vcpus.1 as i64) as u32,
        warm_spares: c.count(&k("warm_spares"), r.warm_spares, 0, 1000, d.policy.warm_spares as i64) as u32,
        cpu_caps: r.cpu_caps.unwrap_or(d.policy.cpu_caps),
        schedule: Vec::new(),
    };
    if !(vcpus.0..=vcpus.1).contains(&(policy.launch_vcpus as u64)) {
        c.err(k("launch_vcpus"), format!("{} is outside vcpus [{}, {}]", policy.launch_vcpus, vcpus.0, vcpus.1));
    }
    use crate::hypervisor::{AddressSource, Network};
    let network = match r.network.as_deref() {
        None | Some("user") => {
            for (key, given) in [("port", r.port.is_some()), ("address_sources", r.address_sources.is_some())] {
                if given {
                    c.err(k(key), "only with network = \"bridge\" (user networking uses ports)");
                }
            }
            Network::User
        }
        Some("bridge") => {
            if ports_given {
                c.err(
                    k("ports"),
                    "only with network = \"user\" (on a bridge the VM's own address and `port` are used)",
                );
            }
            let port = c.count(&k("port"), r.port, 1, 65_535, 80) as u16;
            let mut sources = Vec::new();
            for (i, s) in r
                .address_sources
                .clone()
                .unwrap_or_else(|| vec!["lease".into(), "agent".into(), "arp".into()])
                .iter()
                .enumerate()
            {
                match AddressSource::ALL.iter().find(|a| a.name() == s) {
                    Some(a) if !sources.contains(a) => sources.push(*a),
                    Some(_) => c.err(format!("{}[{i}]", k("address_sources")), format!("{s:?} is listed twice")),
                    None => c.err(
                        format!("{}[{i}]", k("address_sources")),
                        format!("{s:?} is not one of \"lease\", \"agent\", \"arp\""),
                    ),
                }
            }
            if sources.is_empty() && c.errors.iter().all(|e| !e.path.starts_with(&k("address_sources"))) {
                c.err(k("address_sources"), "must list at least one of \"lease\", \"agent\", \"arp\"");
            }
            Network::Bridge { port, sources }
        }
        Some(n) => {
            c.err(
                k("network"),
                format!("{n:?} is not one of \"user\" (a host port forward), \"bridge\" (an address on a network)"),
            );
            Network::User
        }
    };
    ScalingSettings {
        uris,
        template,
        policy,
        lead_time,
        mode,
        network,
        ports: (ports.0 as u16, ports.1 as u16),
        health_path,
        drain_timeout: c.duration(&k("drain_timeout"), &r.drain_timeout, d.drain_timeout),
        headroom_bounds,
        stats_interval: c.duration(&k("stats_interval"), &r.stats_interval, d.stats_interval),
        boot_timeout: c.duration(&k("boot_timeout"), &r.boot_timeout, d.boot_timeout),
        auto_enable: r.auto_enable.unwrap_or(d.auto_enable),
        auto_enable_after: c.duration(&k("auto_enable_after"), &r.auto_enable_after, d.auto_enable_after),
    }
}

/// `host:port` with a non-zero port and nothing else (no scheme, path or userinfo).
pub(super) fn parse_member(s: &str) -> Option<Authority> {
    let a: Authority = s.parse().ok()?;
    if a.as_str().contains('@') || a.host().is_empty() {
        return None;
    }
    match a.port_u16() {
        Some(p) if p > 0 => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
    }

    #[test]
    fn members() {
        assert!(parse_member("127.0.0.1:9001").is_some());
        assert!(parse_member("backend.internal:80").is_some());
        assert!(parse_member("[::1]:80").is_some());
        assert!(parse_member("10.0.0.1").is_none());
        assert!(parse_member("10.0.0.1:0").is_none());
        assert!(parse_member("user@h:1").is_none());
        assert!(parse_member("http://h:1").is_none());
    }
}
