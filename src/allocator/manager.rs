//! The live manager: one `prescale-allocator` thread (libvirt calls block) that, every second,
//! for each pool with `[pool.scaling]`:
//!
//! 1. lists the pool's VMs through the hypervisor (adopting those whose metadata names the
//!    pool — after a restart nothing leaks) and tracks what each is doing;
//! 2. health-checks booting VMs (HTTP GET of `health_path` on their address) and adds a VM to
//!    the upstream pool only once it answers 2xx — timing clone→healthy;
//! 3. finishes drains: a draining VM is stopped once it has no request in flight (or after
//!    `drain_timeout`), and leaves the upstream pool before it is stopped;
//! 4. plans ([`plan::plan`]) from the pool's forecast and measured rate and, in `enabled` mode,
//!    executes; in `dry_run` mode it only logs what it would do.
//!
//! Every decision goes to a ring (served at `/admin/api/decisions`) and, with a `log` path, to a
//! JSON-lines file. The lead time in `auto` mode is the p90 of measured clone→healthy durations
//! plus 30 s once there is one, the configured default before.
//!
//! A hypervisor that fails (host down, libvirt error) marks the pool degraded with the error;
//! the loop retries (the libvirt layer backs off), never panics.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;
use serde::Serialize;

use super::plan::{self, Action, ForecastInput, Phase, PoolState, VmView};
use super::{LeadTime, Mode, ScalingSettings, percentile};
use crate::clock::SharedClock;
use crate::feedback::score::HorizonAccuracy;
use crate::forecast::thread::ForecastView;
use crate::historian::HistorianView;
use crate::hypervisor::stats::{DomainStats, Usage};
use crate::hypervisor::{CloneSpec, HostInfo, Hypervisor, VmInfo, VmState};
use crate::proxy::Proxy;

const TICK: Duration = Duration::from_secs(1);
const RING: usize = 2000;

/// One pool the manager runs.
pub struct ManagedPool {
    pub name: String,
    pub settings: ScalingSettings,
    pub hypervisor: Box<dyn Hypervisor>,
    /// Endpoints routed to this pool (their measured rate is the pool's load).
    pub endpoints: Vec<String>,
    /// Prior of the memory model (the forecast's `memory_mib_per_request`).
    pub memory_mib_per_request: f64,
}

/// A logged decision.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedDecision {
    pub t: u64,
    pub pool: String,
    pub mode: Mode,
    /// `null` for a decision to hold (every record has the key, so readers need no guesswork).
    pub action: Option<Action>,
    pub reason: String,
    pub reactive: bool,
    pub inputs: plan::Inputs,
    /// `"ok"`, `"dry_run"`, `"skipped"`, or `"error: …"`.
    pub outcome: String,
    /// How long the action took, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    #[serde(flatten)]
    pub info: VmInfo,
    pub phase: Phase,
    pub in_pool: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeadStats {
    pub lead_time_s: u64,
    pub auto: bool,
    /// Measured clone/start → healthy durations, seconds.
    pub launches: usize,
    pub launch_p50_s: Option<f64>,
    pub launch_p90_s: Option<f64>,
    /// Measured hot-plug → visible durations, milliseconds.
    pub hotplug_p50_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub pool: String,
    pub mode: Mode,
    /// How its VMs are reached (`{"mode": "user"}` or `{"mode": "bridge", "port": …,
    /// "sources": […]}`); each VM's `addr` is the forwarded or the discovered address.
    pub network: crate::hypervisor::Network,
    /// Set while the hypervisor cannot be reached or fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    pub hosts: Vec<HostInfo>,
    pub vms: Vec<VmStatus>,
    pub capacity_rps: f64,
    pub required_rps: f64,
    pub forecast_hi_rps: Option<f64>,
    pub measured_rps: f64,
    pub lead: LeadStats,
    pub cost: CostStatus,
    /// With `auto_enable` in dry-run: since when (epoch s) the forecasts have been accurate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accurate_since: Option<u64>,
    /// Measured usage of the pool's VMs at the last stats reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<PoolUsage>,
}

/// What the pool's VMs used between the last two stats readings (libvirt domain stats).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PoolUsage {
    /// Epoch seconds of the reading.
    pub t: u64,
    pub cores: f64,
    pub rss_mib: Option<f64>,
    pub balloon_mib: Option<f64>,
    pub block_bytes_per_s: Option<f64>,
    pub net_bytes_per_s: Option<f64>,
    pub measured_rps: f64,
    /// Requests/s weighted by the cost of each endpoint's current class mix (what the cost
    /// model is fitted against).
    pub weighted_rps: f64,
    /// Requests in flight by Little's law (rate × mean latency of recent calls).
    pub concurrency: f64,
    /// How long the stats call took, ms.
    pub poll_ms: f64,
    pub vms: Vec<Usage>,
}

#[derive(Debug, Default)]
pub struct AllocatorState {
    pub pools: Vec<PoolStatus>,
    pub decisions: VecDeque<LoggedDecision>,
}

impl LoggedDecision {
    /// A decision of `pool` at `t` with no planner inputs: `"ok"`, no action, not reactive
    /// (other fields set by the caller as needed).
    fn note(pool: &str, mode: Mode, t: u64, reason: String) -> Self {
        LoggedDecision {
            t,
            pool: pool.to_string(),
            mode,
            action: None,
            reason,
            reactive: false,
            inputs: Default::default(),
            outcome: "ok".into(),
            duration_ms: None,
        }
    }
}

/// What an operator asks of the allocator (admin POSTs); each is logged as a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Switch a pool between dry-run and enabled.
    SetMode { pool: String, mode: Mode },
    /// Launch one VM (+1) or drain the newest serving one (−1), now.
    Scale { pool: String, delta: i32 },
    /// Record something done elsewhere (a forecast refit) in the pool's decision log.
    Note { pool: String, reason: String },
}

#[derive(Clone)]
pub struct AllocatorView(Arc<ArcSwap<AllocatorState>>, Sender<Command>);

impl AllocatorView {
    pub fn state(&self) -> Arc<AllocatorState> {
        self.0.load_full()
    }

    /// Queues a command for the allocator's next tick (within a second).
    pub fn send(&self, c: Command) -> Result<(), String> {
        self.1.try_send(c).map_err(|e| format!("the allocator is busy or stopped: {e}"))
    }
}

pub struct Allocator {
    view: AllocatorView,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// What the manager knows of a VM beyond the hypervisor's view.
#[derive(Debug, Clone)]
struct Track {
    phase: Phase,
    /// Action in flight and when it started.
    busy: Option<(String, Instant)>,
    drain_started: Option<Instant>,
    /// Set when we started it: timing clone/start → healthy.
    launched_at: Option<Instant>,
    weight: u32,
}

struct PoolRun {
    p: ManagedPool,
    tracks: HashMap<String, Track>,
    state: PoolState,
    launches: Vec<f64>,
    hotplugs: Vec<f64>,
    degraded: Option<String>,
    hosts: Vec<HostInfo>,
    last_vms: Vec<VmInfo>,
    last_plan: Option<plan::Plan>,
    last_reason: HashMap<String, String>,
    hosts_checked: Option<Instant>,
    /// Online cost model (cores vs requests/s) and the last CPU readings per VM.
    cost: crate::feedback::cost::LinearCost,
    /// Memory (MiB, host RSS of the pool's VMs) against requests in flight.
    memory: crate::feedback::cost::LinearCost,
    /// Last stats reading per VM, and when it was taken (epoch ns).
    readings: HashMap<String, (DomainStats, u64)>,
    last_sample: Option<Instant>,
    usage: Option<PoolUsage>,
    /// Headroom in force (calibrated) and when it last changed.
    headroom: f64,
    calibrated_at: Option<Instant>,
    /// Since when (epoch s) the forecasts have been accurate without a break (`auto_enable`).
    accurate_since: Option<u64>,
    /// Launched VMs that never became healthy, in a row; launches pause until this instant
    /// after [`BOOT_FAILURES_PAUSE`] of them.
    boot_failures: u32,
    launches_paused_until: Option<Instant>,
    last_cores: f64,
}

/// Consecutive launches that never became healthy before launches pause (for a boot timeout).
const BOOT_FAILURES_PAUSE: u32 = 2;

/// Samples before the learned cost replaces the configured capacity prior.
const COST_MIN_SAMPLES: u64 = 30;

/// The cost model as shown in `/admin/api/pools`.
#[derive(Debug, Clone, Serialize)]
pub struct CostStatus {
    /// `"prior"` (configured capacity_rps_per_vcpu) or `"learned"`.
    pub source: &'static str,
    pub capacity_rps_per_vcpu: f64,
    pub learned: crate::feedback::cost::LinearCost,
    /// Cores the pool's VMs used over the last sample.
    pub cores_used: f64,
    pub headroom: f64,
    /// Memory model: MiB per VM = base + per_request × requests in flight per VM (host RSS);
    /// `"prior"` until it has enough samples (the forecast's `memory_mib_per_request`).
    pub memory_source: &'static str,
    pub memory: crate::feedback::cost::LinearCost,
}

impl Allocator {
    /// Starts the thread; `log` is the JSON-lines decision file, if any.
    pub fn start(
        pools: Vec<ManagedPool>,
        proxy: Arc<Proxy>,
        forecasts: Option<ForecastView>,
        historian: Option<HistorianView>,
        clock: SharedClock,
        log: Option<std::path::PathBuf>,
    ) -> std::io::Result<Self> {
        let (commands, inbox) = crossbeam_channel::bounded::<Command>(64);
        let view = AllocatorView(Arc::new(ArcSwap::from_pointee(AllocatorState::default())), commands);
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let publish = view.0.clone();
        let thread = std::thread::Builder::new().name("prescale-allocator".into()).spawn(move || {
            let mut runs: Vec<PoolRun> = pools
                .into_iter()
                .map(|p| PoolRun {
                    tracks: HashMap::new(),
                    state: PoolState::default(),
                    launches: Vec::new(),
                    hotplugs: Vec::new(),
                    degraded: None,
                    hosts: Vec::new(),
                    last_vms: Vec::new(),
                    last_plan: None,
                    last_reason: HashMap::new(),
                    hosts_checked: None,
                    cost: crate::feedback::cost::LinearCost::prior(
                        1.0 / p.settings.policy.capacity_rps_per_vcpu.max(1e-9),
                    ),
                    memory: crate::feedback::cost::LinearCost::prior(p.memory_mib_per_request),
                    readings: HashMap::new(),
                    last_sample: None,
                    usage: None,
                    headroom: p.settings.policy.headroom,
                    calibrated_at: None,
                    accurate_since: None,
                    boot_failures: 0,
                    launches_paused_until: None,
                    last_cores: 0.0,
                    p,
                })
                .collect();
            let mut decisions: VecDeque<LoggedDecision> = VecDeque::new();
            let mut file = log.and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(|e| tracing::warn!(path = %p.display(), error = %e, "cannot open the decision log"))
                    .ok()
            });
            loop {
                let now_us = clock.now_us();
                let now = now_us / 1_000_000;
                let mut manual: Vec<LoggedDecision> = Vec::new();
                while let Ok(c) = inbox.try_recv() {
                    manual.extend(command(&mut runs, &proxy, c, now));
                }
                for r in &mut runs {
                    let mine: Vec<LoggedDecision> = manual.iter().filter(|d| d.pool == r.p.name).cloned().collect();
                    let new = mine.into_iter().chain(tick(r, &proxy, forecasts.as_ref(), historian.as_ref(), now_us));
                    for d in new {
                        if let Some(f) = file.as_mut()
                            && let Ok(line) = serde_json::to_string(&d)
                        {
                            let _ = writeln!(f, "{line}");
                        }
                        decisions.push_front(d);
                        decisions.truncate(RING);
                    }
                }
                publish.store(Arc::new(AllocatorState {
                    pools: runs.iter().map(status).collect(),
                    decisions: decisions.clone(),
                }));
                if !matches!(stopped.recv_timeout(TICK), Err(crossbeam_channel::RecvTimeoutError::Timeout)) {
                    return;
                }
            }
        })?;
        Ok(Self { view, stop, thread: Some(thread) })
    }

    pub fn view(&self) -> AllocatorView {
        self.view.clone()
    }

    pub fn stop(mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
    }
}

/// Carries out an operator's command; the decision it logs.
fn command(runs: &mut [PoolRun], proxy: &Proxy, c: Command, now: u64) -> Option<LoggedDecision> {
    let name = match &c {
        Command::SetMode { pool, .. } | Command::Scale { pool, .. } | Command::Note { pool, .. } => pool.clone(),
    };
    let r = runs.iter_mut().find(|r| r.p.name == name)?;
    let mut d = LoggedDecision::note(&r.p.name, r.p.settings.mode, now, String::new());
    match c {
        Command::SetMode { mode, .. } => {
            d.reason = format!("admin: mode {:?} → {mode:?}", r.p.settings.mode);
            r.p.settings.mode = mode;
            r.accurate_since = None;
            d.mode = mode;
        }
        Command::Note { reason, .. } => d.reason = format!("admin: {reason}"),
        Command::Scale { delta, .. } => {
            let vms = r.last_vms.clone();
            let action = if delta > 0 {
                Some(Action::Launch { count: 1, vcpus: r.p.settings.policy.launch_vcpus })
            } else {
                r.tracks
                    .iter()
                    .filter(|(_, t)| t.phase == Phase::Serving && t.busy.is_none())
                    .filter_map(|(n, _)| vms.iter().find(|v| &v.name == n))
                    .max_by_key(|v| (v.created_at, v.name.clone()))
                    .map(|v| Action::Drain { vm: v.name.clone() })
            };
            let Some(a) = action else {
                d.reason = "admin: scale in asked, but no idle serving VM to drain".into();
                d.outcome = "skipped".into();
                return Some(d);
            };
            d.reason = format!("admin: manual scale {}", if delta > 0 { "out" } else { "in" });
            if r.p.settings.mode == Mode::DryRun {
                d.outcome = "dry_run".into();
            } else {
                let pool = proxy.pool(&r.p.name);
                let started = Instant::now();
                d.outcome = match execute(r, pool.as_deref(), &vms, &a) {
                    Ok(()) => "ok".into(),
                    Err(e) => format!("error: {e}"),
                };
                d.duration_ms = Some(started.elapsed().as_millis() as u64);
                if delta > 0 {
                    r.state.last_scale_out = Some(now);
                } else {
                    r.state.last_scale_in = Some(now);
                }
            }
            d.action = Some(a);
        }
    }
    tracing::info!(pool = %d.pool, outcome = %d.outcome, "{}", d.reason);
    Some(d)
}

fn lead_time(r: &PoolRun) -> u64 {
    super::lead_time(r.p.settings.lead_time, &r.launches, r.p.settings.policy.lead_time_s)
}

/// Requests/s per vCPU from the learned cost, once it has enough samples (kept within 5× of
/// the configured prior either way).
fn learned_capacity(r: &PoolRun) -> Option<f64> {
    let prior = r.p.settings.policy.capacity_rps_per_vcpu;
    (r.cost.samples >= COST_MIN_SAMPLES && r.cost.per_request > 0.0)
        .then(|| r.cost.rps_per_core().clamp(prior / 5.0, prior * 5.0))
}

fn status(r: &PoolRun) -> PoolStatus {
    let vms = r
        .last_vms
        .iter()
        .map(|v| {
            let t = r.tracks.get(&v.name);
            VmStatus {
                info: v.clone(),
                phase: t.map_or(Phase::Stopped, |t| t.phase),
                in_pool: t.is_some_and(|t| matches!(t.phase, Phase::Serving | Phase::Draining)),
                in_flight: t.and_then(|t| t.busy.as_ref().map(|b| b.0.clone())),
            }
        })
        .collect();
    let inputs = r.last_plan.as_ref().map(|p| p.inputs.clone()).unwrap_or_default();
    PoolStatus {
        pool: r.p.name.clone(),
        mode: r.p.settings.mode,
        network: r.p.settings.network.clone(),
        degraded: r.degraded.clone(),
        hosts: r.hosts.clone(),
        vms,
        capacity_rps: inputs.capacity_rps,
        required_rps: inputs.required_rps,
        forecast_hi_rps: inputs.forecast_hi,
        measured_rps: r.state.measured_rps,
        cost: CostStatus {
            source: if learned_capacity(r).is_some() { "learned" } else { "prior" },
            capacity_rps_per_vcpu: learned_capacity(r).unwrap_or(r.p.settings.policy.capacity_rps_per_vcpu),
            learned: r.cost.clone(),
            cores_used: r.last_cores,
            headroom: r.headroom,
            memory_source: if r.memory.samples >= COST_MIN_SAMPLES { "learned" } else { "prior" },
            memory: r.memory.clone(),
        },
        usage: r.usage.clone(),
        accurate_since: r.accurate_since,
        lead: LeadStats {
            lead_time_s: lead_time(r),
            auto: r.p.settings.lead_time == LeadTime::Auto,
            launches: r.launches.len(),
            launch_p50_s: percentile(&r.launches, 0.5),
            launch_p90_s: percentile(&r.launches, 0.9),
            hotplug_p50_ms: percentile(&r.hotplugs, 0.5),
        },
    }
}

/// Requests in flight for `endpoints` by Little's law: each endpoint's rate over the last
/// minute × the mean latency of its most recent calls (up to 2,000 of them).
fn concurrency(snap: &crate::historian::store::Snapshot, endpoints: &[String]) -> f64 {
    endpoints
        .iter()
        .map(|e| {
            let rate = snap.endpoint(e).map_or(0.0, |v| v.recent_rate(60));
            let lat: Vec<f64> = snap
                .recent
                .iter()
                .filter(|c| &*c.endpoint == e.as_str())
                .take(2000)
                .map(|c| c.latency_us as f64)
                .collect();
            if lat.is_empty() { 0.0 } else { rate * lat.iter().sum::<f64>() / lat.len() as f64 / 1e6 }
        })
        .sum()
}

/// HTTP GET `path` on `addr`, 2xx within a second.
fn healthy(addr: &str, path: &str) -> bool {
    use std::io::Read;
    let Ok(sa) = addr.parse::<std::net::SocketAddr>() else { return false };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(1)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: prescale-allocator\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n >= 12 && buf.starts_with(b"HTTP/1.") && buf[9] == b'2'
}

fn authority(addr: &str) -> Option<http::uri::Authority> {
    addr.parse().ok()
}

fn tick(
    r: &mut PoolRun,
    proxy: &Proxy,
    forecasts: Option<&ForecastView>,
    historian: Option<&HistorianView>,
    now_us: u64,
) -> Vec<LoggedDecision> {
    let now = now_us / 1_000_000;
    let mut out = Vec::new();
    let pool = proxy.pool(&r.p.name);
    if r.hosts_checked.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
        r.hosts = r.p.hypervisor.hosts();
        r.hosts_checked = Some(Instant::now());
    }
    let vms = match r.p.hypervisor.list(&r.p.name) {
        Ok(v) => {
            r.degraded = r
                .hosts
                .iter()
                .find(|h| !h.up)
                .map(|h| format!("host {} down: {}", h.uri, h.error.clone().unwrap_or_default()));
            v
        }
        Err(e) => {
            r.degraded = Some(e.to_string());
            return out;
        }
    };
    // Track every VM; adopted ones get their phase from what they are doing.
    let members: Vec<String> =
        pool.as_ref().map(|p| p.members().iter().map(|m| m.addr.to_string()).collect()).unwrap_or_default();
    r.tracks.retain(|name, _| vms.iter().any(|v| &v.name == name));
    for v in &vms {
        let t = r.tracks.entry(v.name.clone()).or_insert_with(|| Track {
            phase: match v.state {
                VmState::Running if v.addr.as_ref().is_some_and(|a| members.contains(a)) => Phase::Serving,
                VmState::Running => Phase::Booting,
                VmState::Paused => Phase::Suspended,
                _ => Phase::Stopped,
            },
            busy: None,
            drain_started: None,
            launched_at: None,
            weight: v.vcpus.max(1),
        });
        // The hypervisor's truth wins over stale tracking.
        match (v.state, t.phase) {
            (VmState::Shutoff, Phase::Serving | Phase::Booting) if t.busy.is_none() => t.phase = Phase::Stopped,
            (VmState::Running, Phase::Suspended | Phase::Stopped) if t.busy.is_none() => t.phase = Phase::Booting,
            _ => {}
        }
        // Vertical changes finish when the hypervisor shows them.
        if let Some((what, since)) = &t.busy
            && let Some(n) = what.strip_prefix("set_vcpus ").and_then(|n| n.parse::<u32>().ok())
            && v.vcpus == n
        {
            r.hotplugs.push(since.elapsed().as_secs_f64() * 1000.0);
            t.busy = None;
        }
        if t.busy.as_ref().is_some_and(|b| b.1.elapsed() > Duration::from_secs(600)) {
            t.busy = None; // never stuck forever
        }
    }
    // A VM we launched that is not healthy within `boot_timeout` is deleted (logged); after
    // BOOT_FAILURES_PAUSE of them in a row, launches pause for a boot timeout (no loop of
    // launching VMs that cannot come up), and the pool shows why.
    let timeout = r.p.settings.boot_timeout;
    let failed: Vec<String> = r
        .tracks
        .iter()
        .filter(|(_, t)| t.phase == Phase::Booting && t.launched_at.is_some_and(|l| l.elapsed() > timeout))
        .map(|(n, _)| n.clone())
        .collect();
    for name in failed {
        let outcome = match r.p.hypervisor.delete(&name) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        r.tracks.remove(&name);
        r.boot_failures += 1;
        let mut reason = format!("{name} did not become healthy within {} s of its launch: deleted", timeout.as_secs());
        if r.boot_failures >= BOOT_FAILURES_PAUSE {
            r.launches_paused_until = Some(Instant::now() + timeout);
            reason.push_str(&format!(
                "; {} launches in a row failed, launches paused for {} s",
                r.boot_failures,
                timeout.as_secs()
            ));
        }
        out.push(LoggedDecision {
            action: Some(Action::Stop { vm: name }),
            outcome,
            ..LoggedDecision::note(&r.p.name, r.p.settings.mode, now, reason)
        });
    }
    let paused = r.launches_paused_until.is_some_and(|u| Instant::now() < u);
    if !paused {
        r.last_reason.remove("paused");
    }
    if paused {
        r.degraded = Some(format!("{} launches in a row never became healthy; launches paused", r.boot_failures));
    }
    // Booting → Serving once healthy; joins the upstream pool then.
    for v in &vms {
        let Some(t) = r.tracks.get_mut(&v.name) else { continue };
        if t.phase == Phase::Booting && v.state == VmState::Running {
            let Some(addr) = v.addr.as_deref() else { continue };
            if healthy(addr, &r.p.settings.health_path) {
                if r.p.settings.mode == Mode::Enabled
                    && let (Some(p), Some(a)) = (&pool, authority(addr))
                {
                    p.add_member(a, v.vcpus.max(1));
                }
                t.phase = Phase::Serving;
                t.weight = v.vcpus.max(1);
                r.boot_failures = 0;
                let took = t.launched_at.take().map(|s| s.elapsed());
                if let Some(d) = took {
                    r.launches.push(d.as_secs_f64());
                }
                t.busy = None;
                let reason = format!(
                    "{} healthy at {addr}{}; joined the upstream pool",
                    v.name,
                    took.map_or(String::new(), |d| format!(" {:.1} s after launch", d.as_secs_f64()))
                );
                out.push(LoggedDecision {
                    duration_ms: took.map(|d| d.as_millis() as u64),
                    ..LoggedDecision::note(&r.p.name, r.p.settings.mode, now, reason)
                });
            }
        }
        // Serving VMs stay members (a reload may have reset the member list).
        if t.phase == Phase::Serving
            && r.p.settings.mode == Mode::Enabled
            && let (Some(p), Some(a)) = (&pool, v.addr.as_deref().and_then(authority))
            && !p.members().iter().any(|m| m.addr == a)
        {
            p.add_member(a, t.weight);
        }
    }
    // Drains finish when nothing is in flight (or on timeout).
    let drained: Vec<String> = vms
        .iter()
        .filter(|v| {
            let Some(t) = r.tracks.get(&v.name) else { return false };
            if t.phase != Phase::Draining {
                return false;
            }
            let idle = match (&pool, v.addr.as_deref().and_then(authority)) {
                (Some(p), Some(a)) => p.members().iter().find(|m| m.addr == a).is_none_or(|m| m.outstanding() == 0),
                _ => true,
            };
            idle || t.drain_started.is_some_and(|s| s.elapsed() > r.p.settings.drain_timeout)
        })
        .map(|v| v.name.clone())
        .collect();

    // Load and forecast.
    let measured = historian.map_or(0.0, |h| {
        let snap = h.snapshot();
        r.p.endpoints.iter().filter_map(|e| snap.endpoint(e)).map(|e| e.recent_rate(60)).sum()
    });
    let forecast = forecasts
        .and_then(|f| f.pool(&r.p.name))
        .map(|pf| ForecastInput { points: pf.rate.iter().map(|p| (p.t, p.rate, p.hi80)).collect() })
        .unwrap_or_default();
    // Usage: libvirt domain stats of the pool's running VMs every `stats_interval`; cores (from
    // CPU-time deltas) against the measured rate feed the cost model, host RSS against requests
    // in flight feeds the memory model.
    if r.last_sample.is_none_or(|t| t.elapsed() >= r.p.settings.stats_interval) {
        let polled = Instant::now();
        let stats = r.p.hypervisor.stats(&r.p.name);
        let poll_ms = polled.elapsed().as_secs_f64() * 1e3;
        r.last_sample = Some(Instant::now());
        if let Ok(stats) = stats {
            // On the allocator's clock, like the rates it is compared with.
            let at = now_us * 1000;
            let running: Vec<&DomainStats> =
                stats.iter().filter(|s| vms.iter().any(|v| v.name == s.name && v.state == VmState::Running)).collect();
            let mut per_vm = Vec::new();
            let mut complete = !running.is_empty();
            for s in &running {
                match r.readings.get(&s.name) {
                    Some((prev, t0)) if at > *t0 => {
                        per_vm.push(crate::hypervisor::stats::usage(prev, s, (at - t0) as f64 / 1e9))
                    }
                    _ => complete = false,
                }
            }
            r.readings = running.iter().map(|s| (s.name.clone(), ((*s).clone(), at))).collect();
            let cores: f64 = per_vm.iter().filter_map(|u| u.cores).sum();
            complete &= per_vm.iter().all(|u| u.cores.is_some());
            let total = |f: fn(&Usage) -> Option<f64>| -> Option<f64> {
                let v: Vec<f64> = per_vm.iter().filter_map(f).collect();
                (!v.is_empty()).then(|| v.iter().sum())
            };
            let concurrency = historian.map_or(0.0, |h| concurrency(&h.snapshot(), &r.p.endpoints));
            // Cost-weighted requests/s: each endpoint's rate × the cost of its current class mix
            // relative to its usual one (1 without classes).
            let weighted_rps = historian.map_or(measured, |h| {
                let snap = h.snapshot();
                r.p.endpoints
                    .iter()
                    .map(|e| {
                        let rate = snap.endpoint(e).map_or(0.0, |v| v.recent_rate(60));
                        let w = forecasts
                            .and_then(|f| f.get(e))
                            .and_then(|f| f.classes.as_ref().map(|c| c.weight_now()))
                            .unwrap_or(1.0);
                        rate * w
                    })
                    .sum()
            });
            let u = PoolUsage {
                t: at / 1_000_000_000,
                cores,
                rss_mib: total(|u| u.rss_mib),
                balloon_mib: total(|u| u.balloon_mib),
                block_bytes_per_s: total(|u| u.block_bytes_per_s),
                net_bytes_per_s: total(|u| u.net_bytes_per_s),
                measured_rps: measured,
                weighted_rps,
                concurrency,
                poll_ms,
                vms: per_vm,
            };
            if complete {
                r.cost.observe(weighted_rps, cores);
                r.last_cores = cores;
                // Per VM: a VM's fixed footprint is the intercept, the slope is per request
                // in flight (the pool's VM count changes; per-VM values do not confound it).
                let n = u.vms.len() as f64;
                if let Some(mem) = u.rss_mib {
                    r.memory.observe(concurrency / n, mem / n);
                }
                r.usage = Some(u);
            }
        }
    }
    // Promotion: a dry-run pool whose forecasts have been accurate for `auto_enable_after`
    // becomes enabled, if the user opted in.
    if r.p.settings.auto_enable
        && r.p.settings.mode == Mode::DryRun
        && let Some(f) = forecasts
    {
        let accs: Vec<(String, Option<Vec<HorizonAccuracy>>)> =
            r.p.endpoints.iter().map(|e| (e.clone(), f.accuracy(e).map(|a| a.to_vec()))).collect();
        let check = crate::feedback::promote::accurate(&accs);
        let (since, promote) =
            crate::feedback::promote::step(r.accurate_since, now, r.p.settings.auto_enable_after.as_secs(), check);
        r.accurate_since = since;
        if let Some(why) = promote {
            r.p.settings.mode = Mode::Enabled;
            tracing::info!(pool = %r.p.name, "{why}");
            out.push(LoggedDecision::note(&r.p.name, r.p.settings.mode, now, why));
        }
    }
    // Margin: the headroom follows how far the pool's endpoints' 80 % bands had to stretch to
    // keep their promise (the largest stretch among endpoints with enough points).
    if r.calibrated_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600))
        && let Some(f) = forecasts
    {
        let stretch =
            r.p.endpoints
                .iter()
                .filter_map(|e| f.accuracy(e)?.iter().find(|h| h.horizon_minutes == 60)?.band_stretch80)
                .filter(|s| s.1 >= crate::feedback::margin::MIN_POINTS)
                .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((h, why)) = crate::feedback::margin::calibrate(r.headroom, stretch, r.p.settings.headroom_bounds) {
            r.headroom = h;
            r.calibrated_at = Some(Instant::now());
            out.push(LoggedDecision::note(&r.p.name, r.p.settings.mode, now, format!("margin calibration: {why}")));
        }
    }
    let mut policy = r.p.settings.policy.clone();
    policy.lead_time_s = lead_time(r);
    policy.headroom = r.headroom;
    if let Some(c) = learned_capacity(r) {
        policy.capacity_rps_per_vcpu = c;
    }
    r.state.measured_rps = measured;
    r.state.hosts = r.hosts.iter().map(|h| plan::HostView { uri: h.uri.clone(), cpus: h.cpus, up: h.up }).collect();
    r.state.vms = vms
        .iter()
        .filter_map(|v| {
            let t = r.tracks.get(&v.name)?;
            Some(VmView {
                name: v.name.clone(),
                phase: t.phase,
                vcpus: v.vcpus,
                max_vcpus: v.max_vcpus,
                memory_mib: v.memory_mib,
                max_memory_mib: v.max_memory_mib,
                busy: t.busy.is_some(),
                drained: drained.contains(&v.name),
                weight: t.weight,
                created_at: v.created_at,
                host: v.host.clone(),
            })
        })
        .collect();
    let p = plan::plan(&forecast, &r.state, &policy, now);
    r.state.low_since = if p.low { r.state.low_since.or(Some(now)) } else { None };
    for d in &p.decisions {
        // A decision without an action is logged when its reason changes, not every second.
        if d.action.is_none() {
            let key = d.reason.split(':').next().unwrap_or("").to_string();
            if r.last_reason.get("none") == Some(&key) {
                continue;
            }
            r.last_reason.insert("none".into(), key);
        }
        let mut logged = LoggedDecision {
            t: now,
            pool: r.p.name.clone(),
            mode: r.p.settings.mode,
            action: d.action.clone(),
            reason: d.reason.clone(),
            reactive: d.reactive,
            inputs: p.inputs.clone(),
            outcome: "skipped".into(),
            duration_ms: None,
        };
        if let Some(a) = &d.action {
            if paused && matches!(a, Action::Launch { .. }) {
                logged.outcome = "skipped: launches paused after failed boots".into();
                let key = "paused".to_string();
                if r.last_reason.get("paused") == Some(&key) {
                    continue;
                }
                r.last_reason.insert("paused".into(), key);
            } else if r.p.settings.mode == Mode::DryRun {
                logged.outcome = "dry_run".into();
                // A dry run does not repeat the same action every second.
                let key = format!("{a:?}");
                if r.last_reason.get("dry") == Some(&key) {
                    continue;
                }
                r.last_reason.insert("dry".into(), key);
            } else {
                let started = Instant::now();
                logged.outcome = match execute(r, pool.as_deref(), &vms, a) {
                    Ok(()) => "ok".into(),
                    Err(e) => format!("error: {e}"),
                };
                logged.duration_ms = Some(started.elapsed().as_millis() as u64);
                match a {
                    Action::Launch { .. } | Action::Resume { .. } | Action::SetVcpus { .. } => {
                        r.state.last_scale_out = Some(now)
                    }
                    Action::Drain { .. } => r.state.last_scale_in = Some(now),
                    _ => {}
                }
            }
        }
        out.push(logged);
    }
    r.last_plan = Some(p);
    // Shown as they are after this tick's actions: listed again only if something was done.
    let acted = out.iter().any(|d| d.action.is_some() && d.outcome == "ok");
    r.last_vms = if acted { r.p.hypervisor.list(&r.p.name).unwrap_or(vms) } else { vms };
    out
}

/// Carries out one action (enabled mode).
fn execute(r: &mut PoolRun, pool: Option<&crate::proxy::pool::Pool>, vms: &[VmInfo], a: &Action) -> Result<(), String> {
    let hv = &mut r.p.hypervisor;
    let addr_of = |vm: &str| vms.iter().find(|v| v.name == vm).and_then(|v| v.addr.clone());
    match a {
        Action::SetVcpus { vm, to, .. } => {
            hv.set_vcpus(vm, *to).map_err(|e| e.to_string())?;
            if let Some(t) = r.tracks.get_mut(vm) {
                t.busy = Some((format!("set_vcpus {to}"), Instant::now()));
            }
            Ok(())
        }
        Action::SetMemory { vm, to_mib, .. } => hv.set_memory(vm, *to_mib).map_err(|e| e.to_string()),
        Action::Resume { vm } => {
            hv.resume(vm).map_err(|e| e.to_string())?;
            if let Some(t) = r.tracks.get_mut(vm) {
                t.phase = Phase::Booting;
                t.launched_at = Some(Instant::now());
            }
            Ok(())
        }
        Action::Launch { count, vcpus } => {
            let mut taken: Vec<u16> = Vec::new();
            for _ in 0..*count {
                // A stopped VM of the pool starts faster than a clone.
                let stopped = vms.iter().find(|v| {
                    v.state == VmState::Shutoff
                        && r.tracks.get(&v.name).is_some_and(|t| t.phase == Phase::Stopped && t.busy.is_none())
                });
                let name = match stopped {
                    Some(v) => v.name.clone(),
                    None => {
                        let name = (1..)
                            .map(|n| format!("{}-{n}", r.p.name))
                            .find(|n| !vms.iter().any(|v| &v.name == n) && !r.tracks.contains_key(n))
                            .unwrap_or_default();
                        let used: Vec<u16> = vms
                            .iter()
                            .filter_map(|v| v.addr.as_deref()?.rsplit(':').next()?.parse().ok())
                            .chain(taken.iter().copied())
                            .collect();
                        let (lo, hi) = r.p.settings.ports;
                        let network = r.p.settings.network.clone();
                        // A forwarded port only for user networking; on a bridge the VM's
                        // own address is discovered once it runs.
                        let port = match network {
                            crate::hypervisor::Network::User => (lo..=hi)
                                .find(|p| !used.contains(p) && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
                                .ok_or("no free port left in ports")?,
                            crate::hypervisor::Network::Bridge { port, .. } => port,
                        };
                        let spec = CloneSpec {
                            template: r.p.settings.template.clone(),
                            name: name.clone(),
                            pool: r.p.name.clone(),
                            port,
                            network,
                            host: None,
                        };
                        taken.push(port);
                        let v = hv.clone_vm(&spec).map_err(|e| e.to_string())?;
                        if v.vcpus < *vcpus {
                            // Offline VM: the config's count (within the template's maximum).
                            let _ = hv.set_vcpus(&name, (*vcpus).min(v.max_vcpus));
                        }
                        name
                    }
                };
                hv.start(&name).map_err(|e| e.to_string())?;
                r.tracks.insert(
                    name,
                    Track {
                        phase: Phase::Booting,
                        busy: Some(("launch".into(), Instant::now())),
                        drain_started: None,
                        launched_at: Some(Instant::now()),
                        weight: (*vcpus).max(1),
                    },
                );
            }
            Ok(())
        }
        Action::Drain { vm } => {
            if let (Some(p), Some(a)) = (pool, addr_of(vm).as_deref().and_then(authority)) {
                p.drain(&a);
            }
            if let Some(t) = r.tracks.get_mut(vm) {
                t.phase = Phase::Draining;
                t.drain_started = Some(Instant::now());
            }
            Ok(())
        }
        Action::Stop { vm } => {
            // Out of the upstream pool first, then stopped.
            if let (Some(p), Some(a)) = (pool, addr_of(vm).as_deref().and_then(authority)) {
                p.remove(&a);
            }
            hv.stop(vm, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            if let Some(t) = r.tracks.get_mut(vm) {
                t.phase = Phase::Stopped;
                t.drain_started = None;
            }
            Ok(())
        }
        Action::Migrate { vm, to, .. } => {
            if let Some(t) = r.tracks.get_mut(vm) {
                t.busy = Some(("migrate".into(), Instant::now()));
            }
            let res = hv.migrate(vm, to).map_err(|e| e.to_string());
            if let Some(t) = r.tracks.get_mut(vm) {
                t.busy = None;
            }
            r.hosts_checked = None;
            res
        }
        Action::SetWeight { vm, weight } => {
            if let (Some(p), Some(a)) = (pool, addr_of(vm).as_deref().and_then(authority)) {
                p.set_weight(&a, *weight);
            }
            if let Some(t) = r.tracks.get_mut(vm) {
                t.weight = *weight;
            }
            Ok(())
        }
    }
}
