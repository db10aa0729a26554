//! Composition root: binds the listeners, builds the components from settings, starts and
//! stops them in order, and applies reloads.
//!
//! Tests and the binary share this one path: [`App::start`] takes validated settings (port 0
//! is fine) and returns the bound addresses; [`App::run_until_signal`] adds the Unix signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;

use crate::allocator::{controller::ManagedPool, live::Allocator};
use crate::clock::RealClock;
use crate::config::{self, Settings};
use crate::forecast::thread::Forecaster;
use crate::historian::Historian;
use crate::proxy::listener::{self, ConnSettings};
use crate::proxy::stats::GlobalStats;
use crate::proxy::{Proxy, access};

/// Why the app could not start (bad config is reported before this, by `config`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `what` names the setting (`listen.addr`, `admin.addr`); the OS error is the source
    /// (printed once, after this).
    #[error("cannot listen on {addr} ({what})")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot start the admin thread: {0}")]
    Admin(std::io::Error),
    #[error("cannot start the allocator thread: {0}")]
    Allocator(std::io::Error),
    #[error("cannot start the forecast thread: {0}")]
    Forecast(std::io::Error),
    #[error("cannot start the historian (data_dir): {0}")]
    Historian(std::io::Error),
    #[error("cannot start a worker thread: {0}")]
    Worker(std::io::Error),
    #[error("cannot start the fleet thread ([cluster]): {0}")]
    Fleet(std::io::Error),
}

/// One setting a reload found changed, with both values as written in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub old: String,
    pub new: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} → {}", self.key, self.old, self.new)
    }
}

/// What a reload did: the changes now in force, and those that wait for a restart (their old
/// values stay in force, and are what the next reload compares against).
#[derive(Debug, Default)]
pub struct ReloadReport {
    pub applied: Vec<Change>,
    pub needs_restart: Vec<Change>,
}

/// Collects changed values, formatted with `Debug` (durations as `10s`, strings quoted) and
/// cut to a readable length.
fn diff(out: &mut Vec<Change>, key: impl Into<String>, old: &dyn std::fmt::Debug, new: &dyn std::fmt::Debug) {
    let (old, new) = (format!("{old:?}"), format!("{new:?}"));
    if old != new {
        let cut = |mut s: String| {
            crate::historian::record::truncate_marked(&mut s, 160);
            s
        };
        out.push(Change { key: key.into(), old: cut(old), new: cut(new) });
    }
}

/// A running prescale.
pub struct App {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    settings: Settings,
    shutdown: CancellationToken,
    /// Data-plane worker threads; each drains its own connections on shutdown.
    workers: Vec<JoinHandle<()>>,
    admin: Option<JoinHandle<()>>,
    historian: Option<Historian>,
    forecaster: Option<Forecaster>,
    allocator: Option<Allocator>,
    fleet: Option<crate::fleet::Fleet>,
}

/// Makes a pool's hypervisor from its name and scaling settings.
pub type HypervisorFactory =
    Arc<dyn Fn(&str, &crate::allocator::ScalingSettings) -> Box<dyn crate::hypervisor::Hypervisor> + Send + Sync>;

/// What [`App::start_with`] may replace.
#[derive(Default, Clone)]
pub struct Options {
    /// The clock of the historian, the forecast thread and the allocator (default: real).
    pub clock: Option<crate::clock::SharedClock>,
    /// Hypervisors for scaled pools (default: libvirt on the pool's URIs).
    pub hypervisor: Option<HypervisorFactory>,
}

impl App {
    /// Binds the listeners and starts the worker and admin threads. Runs on the control
    /// runtime (any tokio runtime), which also hosts health checks and signal handling.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        Self::start_with(settings, Options::default()).await
    }

    /// [`App::start`] with another clock and hypervisors (the demo's accelerated time and
    /// in-process VMs).
    pub async fn start_with(settings: Settings, opts: Options) -> Result<Self, StartError> {
        let clock = opts.clock.clone().unwrap_or_else(|| Arc::new(RealClock));
        let listen = settings.listen.addr;
        let bind_err = |what, addr| move |source| StartError::Bind { what, addr, source };
        // Workers share the address through SO_REUSEPORT, which would also let a second
        // prescale (same user) share it and take half the traffic: refuse a taken address first.
        listener::ensure_free(listen).map_err(bind_err("listen.addr", listen))?;
        let first = listener::bind(listen).map_err(bind_err("listen.addr", listen))?;
        let proxy_addr = first.local_addr().map_err(bind_err("listen.addr", listen))?;
        let mut listeners = vec![first];
        for _ in 1..settings.listen.workers {
            listeners.push(listener::bind(proxy_addr).map_err(bind_err("listen.addr", proxy_addr))?);
        }
        let admin = settings.admin.addr;
        let admin_listener = std::net::TcpListener::bind(admin).map_err(bind_err("admin.addr", admin))?;
        let admin_addr = admin_listener.local_addr().map_err(bind_err("admin.addr", admin))?;

        let global = Arc::new(GlobalStats::default());
        let access = match &settings.listen.access_log {
            None => None,
            // The writer thread ends by itself when the last logger handle is dropped.
            Some(target) => Some(
                access::AccessLogger::start(target, &settings.listen.access_log_format, global.clone())
                    .map_err(StartError::AccessLog)?
                    .0,
            ),
        };
        let shutdown = CancellationToken::new();
        let historian = match &settings.historian {
            None => None,
            Some(cfg) => Some(Historian::start(cfg.clone(), clock.clone()).map_err(StartError::Historian)?),
        };
        if let Some(h) = &historian {
            h.register(settings.endpoints.iter().map(|e| Arc::from(e.name.as_str())).collect());
        }
        let recorder = historian.as_ref().map(Historian::recorder);
        let otlp = match &settings.tracing {
            None => None,
            // The exporter thread ends by itself when the last handle is dropped.
            Some(t) => Some(crate::proxy::otlp::Exporter::start(t).map_err(StartError::AccessLog)?.0),
        };
        let proxy = Proxy::new(settings.plane(), access, global, shutdown.clone(), recorder, otlp);
        let view = historian.as_ref().map(Historian::view);
        let forecaster = match (&settings.forecast, &view) {
            (Some(cfg), Some(v)) => Some(
                Forecaster::start(
                    forecast_config(cfg, &settings),
                    v.clone(),
                    clock.clone(),
                    routes(&settings),
                    crate::forecast::exclusions::ExclusionStore::open(
                        settings.exclusions.clone(),
                        settings.historian.as_ref().and_then(|h| h.data_dir.clone()),
                    ),
                )
                .map_err(StartError::Forecast)?,
            ),
            _ => None,
        };
        let forecasts = forecaster.as_ref().map(Forecaster::view);
        let fleet = match &settings.cluster {
            None => None,
            Some(c) => {
                let data_dir = settings.historian.as_ref().and_then(|h| h.data_dir.as_deref());
                let id = crate::fleet::instance_id(c, data_dir, proxy_addr.port()).map_err(StartError::Fleet)?;
                Some(
                    crate::fleet::Fleet::start(crate::fleet::Start {
                        settings: c.clone(),
                        id,
                        admin: admin_addr.to_string(),
                        pools: settings.scaling.keys().cloned().collect(),
                        closed: historian.as_ref().and_then(Historian::closed_minutes),
                        peers: historian.as_ref().map(Historian::peer_sink),
                        historian: view.clone(),
                    })
                    .map_err(StartError::Fleet)?,
                )
            }
        };
        let coordinator = fleet.as_ref().map(|f| Arc::new(f.view()) as Arc<dyn crate::allocator::live::Coordinator>);
        let allocator = allocator(&settings, &proxy, forecasts.clone(), view.clone(), &opts, coordinator)
            .map_err(StartError::Allocator)?;
        let admin = crate::admin::start(
            admin_listener,
            proxy.clone(),
            view,
            forecasts,
            allocator.as_ref().map(Allocator::view),
            fleet.as_ref().map(crate::fleet::Fleet::view),
            &settings.admin,
            clock.clone(),
            shutdown.clone(),
        )
        .map_err(StartError::Admin)?;
        let conn_settings = ConnSettings::from(&settings.listen, &settings.upstream);
        let mut workers = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let (proxy, cs, stop, grace) =
                (proxy.clone(), conn_settings.clone(), shutdown.clone(), settings.listen.shutdown_grace);
            let handle = std::thread::Builder::new()
                .name(format!("prescale-worker-{i}"))
                .spawn(move || listener::run_worker(i, l, proxy, cs, stop, grace))
                .map_err(StartError::Worker)?;
            workers.push(handle);
        }
        tracing::info!(%proxy_addr, %admin_addr, endpoints = settings.endpoints.len(), pools = settings.pools.len(), "prescale started");
        Ok(Self {
            proxy_addr,
            admin_addr,
            proxy,
            settings,
            shutdown,
            workers,
            admin: Some(admin),
            historian,
            forecaster,
            allocator,
            fleet,
        })
    }

    /// Swaps in new routing, pools and limits atomically. Listener, admin, upstream-client,
    /// historian, forecast and scaling settings cannot change without a restart: they are
    /// reported with their old and new values and the old ones stay in force.
    pub fn reload(&mut self, new: Settings) -> ReloadReport {
        let mut report = ReloadReport::default();
        let (old, n) = (&self.settings, &new);
        let r = &mut report.needs_restart;
        let (l0, l1) = (&old.listen, &n.listen);
        diff(r, "listen.addr", &l0.addr, &l1.addr);
        let tls = |l: &config::ListenSettings| l.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone()));
        diff(r, "listen.tls", &tls(l0), &tls(l1));
        diff(r, "listen.header_timeout", &l0.header_timeout, &l1.header_timeout);
        diff(r, "listen.idle_timeout", &l0.idle_timeout, &l1.idle_timeout);
        diff(r, "listen.max_header_bytes", &l0.max_header_bytes, &l1.max_header_bytes);
        diff(r, "listen.max_connections", &l0.max_connections, &l1.max_connections);
        diff(r, "listen.shutdown_grace", &l0.shutdown_grace, &l1.shutdown_grace);
        diff(r, "listen.workers", &l0.workers, &l1.workers);
        diff(r, "listen.access_log", &l0.access_log, &l1.access_log);
        diff(r, "listen.access_log_format", &l0.access_log_format, &l1.access_log_format);
        diff(r, "tracing", &old.tracing, &n.tracing);
        diff(r, "cluster", &old.cluster, &n.cluster);
        diff(r, "listen.tunnel_idle_timeout", &l0.tunnel_idle_timeout, &l1.tunnel_idle_timeout);
        let (a0, a1) = (&old.admin, &n.admin);
        diff(r, "admin.addr", &a0.addr, &a1.addr);
        let tls = |a: &config::AdminSettings| a.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone()));
        diff(r, "admin.tls", &tls(a0), &tls(a1));
        // The token itself is never printed: only whether it is set, or that it changed.
        let token = |t: &Option<String>| match t {
            None => "none",
            Some(_) => "a token",
        };
        if a0.token != a1.token {
            let new = if a0.token.is_some() && a1.token.is_some() { "another token" } else { token(&a1.token) };
            r.push(Change { key: "admin.token_file".into(), old: token(&a0.token).into(), new: new.into() });
        }
        diff(r, "admin.hosts", &a0.hosts, &a1.hosts);
        diff(r, "admin.max_connections", &a0.max_connections, &a1.max_connections);
        diff(r, "admin.request_timeout", &a0.request_timeout, &a1.request_timeout);
        diff(r, "admin.idle_timeout", &a0.idle_timeout, &a1.idle_timeout);
        diff(r, "admin.max_failed_logins", &a0.max_failed_logins, &a1.max_failed_logins);
        let (u0, u1) = (&old.upstream, &n.upstream);
        diff(r, "upstream.connect_timeout", &u0.connect_timeout, &u1.connect_timeout);
        diff(r, "upstream.pool_idle_timeout", &u0.pool_idle_timeout, &u1.pool_idle_timeout);
        diff(r, "upstream.max_idle_per_member", &u0.max_idle_per_member, &u1.max_idle_per_member);
        match (&old.historian, &n.historian) {
            (Some(h0), Some(h1)) => {
                diff(r, "historian.data_dir", &h0.data_dir, &h1.data_dir);
                diff(r, "historian.tiers", &h0.store.tiers, &h1.store.tiers);
                diff(r, "historian.recent_calls", &h0.store.recent_calls, &h1.store.recent_calls);
                diff(r, "historian (redaction)", &h0.store.redaction, &h1.store.redaction);
                diff(r, "historian.close_after", &h0.store.close_after_us, &h1.store.close_after_us);
                diff(r, "historian.channel_capacity", &h0.channel_capacity, &h1.channel_capacity);
            }
            (h0, h1) => diff(r, "historian.enabled", &h0.is_some(), &h1.is_some()),
        }
        diff(r, "forecast", &old.forecast, &n.forecast);
        // [pool.scaling]: applied live by the pool's controller, except its hosts and network
        // (and a pool starting or stopping to scale), which need a restart.
        let mut reconfigure = Vec::new();
        for p1 in &n.pools {
            let s0 = old.scaling(&p1.name);
            let k = |what: &str| format!("pool {:?} scaling.{what}", p1.name);
            match (s0, n.scaling(&p1.name)) {
                (Some(a), Some(b)) => {
                    diff(r, k("uri"), &a.uris, &b.uris);
                    diff(r, k("network"), &a.network, &b.network);
                    let applied = &mut report.applied;
                    diff(applied, k("mode"), &a.mode, &b.mode);
                    diff(applied, k("template"), &a.template, &b.template);
                    diff(applied, k("policy"), &a.policy, &b.policy);
                    diff(applied, k("lead_time"), &a.lead_time, &b.lead_time);
                    diff(applied, k("ports"), &a.ports, &b.ports);
                    diff(applied, k("health_path"), &a.health_path, &b.health_path);
                    diff(applied, k("drain_timeout"), &a.drain_timeout, &b.drain_timeout);
                    diff(applied, k("boot_timeout"), &a.boot_timeout, &b.boot_timeout);
                    diff(applied, k("headroom_bounds"), &a.headroom_bounds, &b.headroom_bounds);
                    diff(applied, k("stats_interval"), &a.stats_interval, &b.stats_interval);
                    diff(
                        applied,
                        k("auto_enable"),
                        &(a.auto_enable, a.auto_enable_after),
                        &(b.auto_enable, b.auto_enable_after),
                    );
                    if a != b && self.allocator.is_some() {
                        reconfigure.push((p1.name.clone(), b.clone()));
                    }
                }
                (s0, s1) => diff(r, format!("pool {:?} [pool.scaling]", p1.name), &s0.is_some(), &s1.is_some()),
            }
        }

        let a = &mut report.applied;
        diff(a, "listen.max_body_bytes", &l0.max_body_bytes, &l1.max_body_bytes);
        diff(a, "listen.dot_segments", &l0.dot_segments, &l1.dot_segments);
        diff(a, "upstream.response_timeout", &u0.response_timeout, &u1.response_timeout);
        diff(
            a,
            "historian.trusted_hops",
            &old.historian.as_ref().map(|h| h.trusted_hops),
            &n.historian.as_ref().map(|h| h.trusted_hops),
        );
        for e in &n.endpoints {
            let before = old.endpoints.iter().find(|o| o.name == e.name);
            diff(a, format!("endpoint {:?}", e.name), &before, &Some(e));
        }
        for e in old.endpoints.iter().filter(|o| !n.endpoints.iter().any(|e| e.name == o.name)) {
            diff(a, format!("endpoint {:?}", e.name), &Some(e), &None::<&config::EndpointSettings>);
        }
        for p1 in &n.pools {
            match old.pools.iter().find(|p| p.name == p1.name) {
                Some(p0) => {
                    let k = |what: &str| format!("pool {:?} {what}", p1.name);
                    diff(a, k("members"), &p0.members, &p1.members);
                    diff(a, k("balance"), &p0.balance, &p1.balance);
                    diff(a, k("protocol"), &p0.protocol, &p1.protocol);
                    diff(a, k("retry"), &p0.retry, &p1.retry);
                    diff(a, k("health_check"), &p0.health_check, &p1.health_check);
                    diff(a, k("passive"), &p0.passive, &p1.passive);
                }
                None => diff(a, format!("pool {:?}", p1.name), &"absent", &"added"),
            }
        }
        for p0 in old.pools.iter().filter(|o| !n.pools.iter().any(|p| p.name == o.name)) {
            diff(a, format!("pool {:?}", p0.name), &"present", &"removed");
        }

        self.proxy.apply(new.plane());
        if let Some(h) = &self.historian {
            h.register(new.endpoints.iter().map(|e| Arc::from(e.name.as_str())).collect());
        }
        if let Some(f) = &self.forecaster {
            f.set_routes(routes(&new));
        }
        // Remember the values actually in force, so that reverting a change that waited for a
        // restart is not reported again: what cannot change live stays as started.
        let mut kept = new;
        let live_listen = (kept.listen.max_body_bytes, kept.listen.dot_segments);
        kept.listen = self.settings.listen.clone();
        (kept.listen.max_body_bytes, kept.listen.dot_segments) = live_listen;
        kept.admin = self.settings.admin.clone();
        let response_timeout = kept.upstream.response_timeout;
        kept.upstream = self.settings.upstream.clone();
        kept.upstream.response_timeout = response_timeout;
        let trusted_hops = kept.historian.as_ref().map(|h| h.trusted_hops);
        kept.historian = self.settings.historian.clone();
        if let (Some(h), Some(t)) = (kept.historian.as_mut(), trusted_hops) {
            h.trusted_hops = t;
        }
        kept.forecast = self.settings.forecast.clone();
        kept.cluster = self.settings.cluster.clone();
        // A pool starts or stops scaling only with a restart; in a scaled pool, everything but
        // the hosts and the network is live.
        let mut scaling = self.settings.scaling.clone();
        for (pool, s0) in scaling.iter_mut() {
            if let Some(s1) = kept.scaling.get(pool) {
                *s0 = s0.reloaded(s1);
            }
        }
        kept.scaling = scaling;
        if let Some(a) = &self.allocator {
            let view = a.view();
            for (pool, settings) in reconfigure {
                let c = crate::allocator::controller::Command::Reconfigure { pool, settings: Box::new(settings) };
                if let Err(e) = view.send(c) {
                    tracing::warn!(error = %e, "reloaded [pool.scaling] not handed to the allocator");
                }
            }
        }
        self.settings = kept;
        report
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, stops the
    /// background tasks and the admin thread.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join()))).await;
        self.proxy.tasks.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.proxy.tasks.wait()).await;
        // After the workers: every finished call has been handed over; closed buckets are
        // written and synced.
        if let Some(a) = self.allocator.take() {
            a.stop();
        }
        // After the allocator (nothing acts any more): leadership is handed over at once.
        if let Some(f) = self.fleet.take() {
            let _ = tokio::task::spawn_blocking(move || f.stop()).await;
        }
        if let Some(f) = self.forecaster.take() {
            let _ = tokio::task::spawn_blocking(move || f.stop()).await;
        }
        if let Some(h) = self.historian.take() {
            let _ = tokio::task::spawn_blocking(move || h.stop()).await;
        }
        if let Some(admin) = self.admin.take() {
            let _ = tokio::task::spawn_blocking(move || admin.join()).await;
        }
        tracing::info!("prescale stopped");
    }

    /// Serves until SIGTERM or SIGINT (graceful stop); SIGHUP re-reads `config_path`.
    pub async fn run_until_signal(mut self, config_path: Option<PathBuf>) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match &config_path {
                    None => tracing::warn!("SIGHUP ignored: no configuration file to reload"),
                    Some(path) => match config::load(path) {
                        Ok(new) => {
                            let report = self.reload(new);
                            tracing::info!(
                                config = %path.display(),
                                applied = report.applied.len(),
                                waiting = report.needs_restart.len(),
                                "configuration reloaded"
                            );
                            for c in &report.applied {
                                tracing::info!(key = %c.key, old = %c.old, new = %c.new, "applied");
                            }
                            for c in &report.needs_restart {
                                tracing::warn!(
                                    key = %c.key,
                                    old = %c.old,
                                    new = %c.new,
                                    "changed, but takes effect only after a restart (the old value stays in force)"
                                );
                            }
                        }
                        Err(errors) => {
                            for e in &errors.errors {
                                tracing::error!("{}: {e}", errors.source_name);
                            }
                            tracing::error!("reload refused: the previous configuration stays in force");
                        }
                    },
                },
            }
        }
        tracing::info!("shutting down");
        self.stop().await;
        Ok(())
    }
}

/// `[forecast]` with each endpoint's `class_param`.
fn forecast_config(
    cfg: &crate::forecast::settings::ForecastConfig,
    s: &Settings,
) -> crate::forecast::settings::ForecastConfig {
    let mut cfg = cfg.clone();
    cfg.class_params = s.endpoints.iter().filter_map(|e| Some((e.name.clone(), e.class_param.clone()?))).collect();
    cfg
}

/// Endpoint → pool, for the forecast's pool sums.
fn routes(s: &Settings) -> std::collections::HashMap<String, String> {
    s.endpoints.iter().map(|e| (e.name.clone(), e.pool.clone())).collect()
}

/// The allocator thread, when a pool has `[pool.scaling]`: each such pool with its libvirt
/// hosts. Decisions are appended to `decisions.jsonl` in the historian's data_dir, if it has one.
fn allocator(
    s: &Settings,
    proxy: &Arc<Proxy>,
    forecasts: Option<crate::forecast::view::ForecastView>,
    historian: Option<crate::historian::HistorianView>,
    opts: &Options,
    coordinator: Option<Arc<dyn crate::allocator::live::Coordinator>>,
) -> std::io::Result<Option<Allocator>> {
    let pools: Vec<ManagedPool> = s
        .pools
        .iter()
        .filter_map(|p| {
            let sc = s.scaling(&p.name)?.clone();
            Some(ManagedPool {
                name: p.name.clone(),
                hypervisor: match &opts.hypervisor {
                    Some(make) => make(&p.name, &sc),
                    None => {
                        Box::new(crate::hypervisor::libvirt::Libvirt::new(&sc.uris).with_network(sc.network.clone()))
                    }
                },
                settings: sc,
                endpoints: s.endpoints.iter().filter(|e| e.pool == p.name).map(|e| e.name.clone()).collect(),
                memory_mib_per_request: s.forecast.as_ref().map_or(8.0, |f| f.cost.memory_mib_per_request),
            })
        })
        .collect();
    if pools.is_empty() {
        return Ok(None);
    }
    let log = s.historian.as_ref().and_then(|h| h.data_dir.as_ref()).map(|d| d.join("decisions.jsonl"));
    let clock = opts.clock.clone().unwrap_or_else(|| Arc::new(RealClock));
    Allocator::start(pools, proxy.clone(), forecasts, historian, clock, log, coordinator).map(Some)
}

/// Raises this process's soft open-file limit to its hard limit (a proxy holds two descriptors
/// per proxied connection) and returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
    }
    r.rlim_cur
}
