//! The controller of one pool. Its tick is a short sequence of named phases, one file each,
//! every notion of time taken from the injected [`Clock`](crate::clock::Clock) — so the live
//! allocator thread ([`super::live`]) and the simulator ([`crate::simulate`]) run the same code:
//!
//! 1. [`reconcile`] — list the pool's VMs through the hypervisor, adopt those whose metadata
//!    names the pool, notice VMs destroyed or shut off behind prescale's back;
//! 2. [`join`] — boot timeouts, health checks ([`Prober`]) and joining the upstream pool, drains
//!    that have finished;
//! 3. [`usage`] — domain stats every `stats_interval`: the cost and memory models;
//! 4. [`calibrate`] — dry-run promotion and the hourly margin calibration;
//! 5. plan — [`plan::plan`], the pure planning function, on the policy in force;
//! 6. [`execute`] — carries the decisions out (enabled mode), failing actions backing off;
//! 7. [`log`] — every decision kept once (a hold or a dry run is logged when it changes).
//!
//! What the controller needs from outside comes through three small traits: [`Membership`]
//! (the proxy pool, or the simulator's), [`Prober`] (an HTTP health check, or the simulated
//! guest's readiness) and [`Signals`] (measured load, forecast, forecast accuracy).

mod calibrate;
mod execute;
mod join;
mod log;
mod reconcile;
mod status;
mod usage;

use std::collections::HashMap;

use super::plan::{self, ForecastInput, Phase, PoolState, VmView};
use super::{LeadTime, Mode, ScalingSettings};
use crate::clock::SharedClock;
use crate::feedback::cost::LinearCost;
use crate::feedback::score::HorizonAccuracy;
use crate::hypervisor::stats::DomainStats;
use crate::hypervisor::{HostInfo, Hypervisor, VmInfo};
pub use log::{LoggedDecision, Outcome};
pub use status::{CostStatus, FleetRole, LeadStats, PoolStatus, PoolUsage, VmStatus};

/// The upstream pool as the controller changes it (addresses as `host:port`).
pub trait Membership {
    /// Adds `addr` (or re-activates it if draining).
    fn join(&mut self, addr: &str, weight: u32);
    /// No new requests to `addr`; in-flight ones finish.
    fn drain(&mut self, addr: &str);
    fn remove(&mut self, addr: &str);
    fn set_weight(&mut self, addr: &str, weight: u32);
    /// Requests in flight to `addr`; `None` when it is not a member.
    fn in_flight(&self, addr: &str) -> Option<u32>;
}

/// Whether a booting VM's guest answers its health check.
pub trait Prober {
    fn healthy(&mut self, addr: &str, path: &str) -> bool;
}

impl Prober for crate::hypervisor::fake::FakeGuests {
    fn healthy(&mut self, addr: &str, _path: &str) -> bool {
        self.0.world().answers(addr)
    }
}

/// What the controller reads about load and forecasts.
pub trait Signals {
    /// Requests/s measured over the last minute, summed over the pool's endpoints.
    fn measured_rps(&self) -> f64;
    /// The pool's forecast (requests/s per minute, with the 80 % upper band).
    fn forecast(&self) -> ForecastInput;
    /// Requests in flight (Little's law) and the cost-weighted request rate, for the cost
    /// models; read only when usage is sampled.
    fn load_detail(&self) -> (f64, f64) {
        (0.0, self.measured_rps())
    }
    /// Scored accuracy per horizon group of one endpoint's forecasts.
    fn accuracy(&self, _endpoint: &str) -> Option<Vec<HorizonAccuracy>> {
        None
    }
}

/// Proof, before each action, that this instance may still act on the pool (`[cluster]`: it
/// still holds the leadership lease); `Err` says why not, and the action is not carried out.
pub trait Fence {
    fn check(&self, action: &plan::Action) -> Result<(), String>;
    /// What new VMs' metadata names as their maker (`fleet/instance/term`).
    fn owner(&self) -> String;
}

/// What one tick may use.
pub struct Env<'a> {
    pub membership: &'a mut dyn Membership,
    pub prober: &'a mut dyn Prober,
    pub signals: &'a dyn Signals,
    /// `None`: a lone instance, nothing to prove.
    pub fence: Option<&'a dyn Fence>,
}

/// One pool the controller runs.
pub struct ManagedPool {
    pub name: String,
    pub settings: ScalingSettings,
    pub hypervisor: Box<dyn Hypervisor>,
    /// Endpoints routed to this pool (their measured rate is the pool's load).
    pub endpoints: Vec<String>,
    /// Prior of the memory model (the forecast's `memory_mib_per_request`).
    pub memory_mib_per_request: f64,
}

/// An action started on a VM and not visibly finished yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Launch,
    /// A vCPU hot-plug to this count: done when the hypervisor shows it.
    SetVcpus(u32),
    Migrate,
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Launch => write!(f, "launch"),
            Self::SetVcpus(n) => write!(f, "set_vcpus {n}"),
            Self::Migrate => write!(f, "migrate"),
        }
    }
}

/// What the controller knows of a VM beyond the hypervisor's view. Times are clock µs.
#[derive(Debug, Clone)]
pub(crate) struct Track {
    pub(crate) phase: Phase,
    pub(crate) pending: Option<(Pending, u64)>,
    pub(crate) drain_started_us: Option<u64>,
    /// Set when we started it: timing start → healthy.
    pub(crate) launched_us: Option<u64>,
    pub(crate) weight: u32,
    /// Its last known upstream address (to take it out of the pool if the VM vanishes).
    pub(crate) addr: Option<String>,
    /// vCPUs' worth of CPU time a cap holds it to (`None`: uncapped). A cap lasts while the
    /// guest runs: a start or resume clears it.
    pub(crate) cap: Option<u32>,
}

/// Consecutive launches that never became healthy before launches pause (for a boot timeout).
pub(crate) const BOOT_FAILURES_PAUSE: u32 = 2;
/// Samples before the learned cost replaces the configured capacity prior.
pub(crate) const COST_MIN_SAMPLES: u64 = 30;
/// How often the hosts' capacity is read again.
const HOSTS_EVERY_US: u64 = 30_000_000;

/// One pool's controller.
pub struct Controller {
    pub(crate) p: ManagedPool,
    clock: SharedClock,
    pub(crate) tracks: HashMap<String, Track>,
    pub(crate) state: PoolState,
    /// Measured start → healthy durations (s) and hot-plug → visible durations (ms).
    pub(crate) launches: Vec<f64>,
    pub(crate) hotplugs: Vec<f64>,
    /// Why the hypervisor refused a CPU cap (a driver without `vcpu_quota`): the planner then
    /// scales in by draining only.
    pub(crate) caps_refused: Option<String>,
    /// The hypervisor's last error, while it fails.
    pub(crate) hv_error: Option<String>,
    pub(crate) hosts: Vec<HostInfo>,
    hosts_checked_us: Option<u64>,
    pub(crate) last_vms: Vec<VmInfo>,
    pub(crate) last_plan: Option<plan::Plan>,
    pub(crate) dedup: log::Dedup,
    /// Online cost model (cores vs requests/s) and memory model (MiB vs requests in flight).
    pub(crate) cost: LinearCost,
    pub(crate) memory: LinearCost,
    /// Last stats reading per VM and when it was taken (clock ns).
    pub(crate) readings: HashMap<String, (DomainStats, u64)>,
    pub(crate) last_sample_us: Option<u64>,
    pub(crate) usage: Option<PoolUsage>,
    pub(crate) last_cores: f64,
    /// Headroom in force (calibrated) and when calibration last looked.
    pub(crate) headroom: f64,
    pub(crate) calibrated_us: Option<u64>,
    /// Since when (epoch s) the forecasts have been accurate without a break (`auto_enable`).
    pub(crate) accurate_since: Option<u64>,
    /// Launched VMs that never became healthy, in a row; launches pause until then after
    /// [`BOOT_FAILURES_PAUSE`] of them.
    pub(crate) boot_failures: u32,
    pub(crate) launches_paused_until_us: Option<u64>,
    pub(crate) backoff: execute::Backoff,
}

impl Controller {
    pub fn new(p: ManagedPool, clock: SharedClock) -> Self {
        Self {
            tracks: HashMap::new(),
            state: PoolState::default(),
            launches: Vec::new(),
            hotplugs: Vec::new(),
            caps_refused: None,
            hv_error: None,
            hosts: Vec::new(),
            hosts_checked_us: None,
            last_vms: Vec::new(),
            last_plan: None,
            dedup: log::Dedup::default(),
            cost: LinearCost::prior(1.0 / p.settings.policy.capacity_rps_per_vcpu.max(1e-9)),
            memory: LinearCost::prior(p.memory_mib_per_request),
            readings: HashMap::new(),
            last_sample_us: None,
            usage: None,
            last_cores: 0.0,
            headroom: p.settings.policy.headroom,
            calibrated_us: None,
            accurate_since: None,
            boot_failures: 0,
            launches_paused_until_us: None,
            backoff: execute::Backoff::default(),
            p,
            clock,
        }
    }

    pub fn name(&self) -> &str {
        &self.p.name
    }

    pub fn settings(&self) -> &ScalingSettings {
        &self.p.settings
    }

    /// The hypervisor, for callers that inspect it (the simulator's accounting).
    pub fn hypervisor(&mut self) -> &mut dyn Hypervisor {
        self.p.hypervisor.as_mut()
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    /// One control cycle; the decisions it made.
    pub fn tick(&mut self, env: &mut Env<'_>) -> Vec<LoggedDecision> {
        let now_us = self.now_us();
        let mut out = Vec::new();
        // Every 30 s; every tick while the hypervisor or a host is down, so that its return
        // clears the pool's degraded state at once (the libvirt layer paces reconnects).
        let down = self.hv_error.is_some() || self.hosts.iter().any(|h| !h.up);
        if down || self.hosts_checked_us.is_none_or(|t| now_us >= t + HOSTS_EVERY_US) {
            self.hosts = self.p.hypervisor.hosts();
            self.hosts_checked_us = Some(now_us);
        }
        let Some(vms) = reconcile::run(self, env, now_us, &mut out) else { return out };
        join::run(self, env, &vms, now_us, &mut out);
        let drained = join::drained(self, env, &vms, now_us);
        usage::run(self, env, &vms, now_us);
        calibrate::run(self, env, now_us, &mut out);
        let plan = self.plan(env, &vms, &drained, now_us / 1_000_000);
        execute::run(self, env, &vms, &plan, now_us, &mut out);
        self.last_plan = Some(plan);
        // Shown as they are after this tick's actions: listed again only if something was done.
        let acted = out.iter().any(|d| d.action.is_some() && d.outcome == Outcome::Done);
        self.last_vms = if acted { self.p.hypervisor.list(&self.p.name).unwrap_or(vms) } else { vms };
        out
    }

    /// A follower's cycle (`[cluster]`): the pool's VMs as the hypervisor shows them, health
    /// checks and joins (every instance checks on its own), and the leader's drains applied
    /// to this instance's upstream pool. Nothing is planned or carried out, and no VM is
    /// deleted here (boot timeouts are the leader's).
    pub fn observe(&mut self, env: &mut Env<'_>, draining: &[String]) -> Vec<LoggedDecision> {
        let now_us = self.now_us();
        let mut out = Vec::new();
        for t in self.tracks.values_mut() {
            t.launched_us = None;
        }
        let Some(vms) = reconcile::run(self, env, now_us, &mut out) else { return out };
        join::run(self, env, &vms, now_us, &mut out);
        for v in &vms {
            let (Some(t), Some(addr)) = (self.tracks.get_mut(&v.name), v.addr.as_deref()) else { continue };
            if t.phase == Phase::Serving && draining.iter().any(|d| d == addr) {
                env.membership.drain(addr);
                t.phase = Phase::Draining;
                t.drain_started_us = Some(now_us);
            }
        }
        self.last_vms = vms;
        out
    }

    /// Addresses of the VMs this controller is draining.
    pub fn draining(&self) -> Vec<String> {
        self.tracks.values().filter(|t| t.phase == Phase::Draining).filter_map(|t| t.addr.clone()).collect()
    }

    /// The lead time in force (learned or fixed).
    pub fn lead_time(&self) -> u64 {
        super::lead_time(self.p.settings.lead_time, &self.launches, self.p.settings.policy.lead_time_s)
    }

    /// Requests/s per vCPU from the learned cost, once it has enough samples (kept within 5×
    /// of the configured prior either way).
    pub(crate) fn learned_capacity(&self) -> Option<f64> {
        let prior = self.p.settings.policy.capacity_rps_per_vcpu;
        (self.cost.samples >= COST_MIN_SAMPLES && self.cost.per_request > 0.0)
            .then(|| self.cost.rps_per_core().clamp(prior / 5.0, prior * 5.0))
    }

    /// Memory a serving VM's share of the requests in flight takes at the last sampled load, by
    /// the learned memory model's slope (its intercept is the host process's footprint, not the
    /// guest's need), with a 25 % margin; 0 until the model has `COST_MIN_SAMPLES` samples.
    fn memory_load_mib(&self) -> u64 {
        let Some(u) = self.usage.as_ref().filter(|_| self.memory.samples >= COST_MIN_SAMPLES) else { return 0 };
        let per_vm = u.concurrency / u.vms.len().max(1) as f64;
        let mib = self.memory.per_request.max(0.0) * per_vm * 1.25;
        if mib.is_finite() { mib.ceil() as u64 } else { 0 }
    }

    /// The policy in force: configured, with the learned lead time, calibrated headroom and
    /// learned capacity.
    pub fn policy(&self) -> plan::Policy {
        let mut policy = self.p.settings.policy.clone();
        policy.lead_time_s = self.lead_time();
        policy.headroom = self.headroom;
        policy.cpu_caps &= self.caps_refused.is_none();
        if let Some(c) = self.learned_capacity() {
            policy.capacity_rps_per_vcpu = c;
        }
        policy
    }

    fn plan(&mut self, env: &Env<'_>, vms: &[VmInfo], drained: &[String], now: u64) -> plan::Plan {
        let forecast = env.signals.forecast();
        self.state.measured_rps = env.signals.measured_rps();
        self.state.memory_load_mib = self.memory_load_mib();
        self.state.hosts =
            self.hosts.iter().map(|h| plan::HostView { uri: h.uri.clone(), cpus: h.cpus, up: h.up }).collect();
        self.state.vms = vms
            .iter()
            .filter_map(|v| {
                let t = self.tracks.get(&v.name)?;
                Some(VmView {
                    name: v.name.clone(),
                    phase: t.phase,
                    vcpus: v.vcpus,
                    active_vcpus: t.cap.map_or(v.vcpus, |c| c.min(v.vcpus)),
                    max_vcpus: v.max_vcpus,
                    memory_mib: v.memory_mib,
                    max_memory_mib: v.max_memory_mib,
                    busy: t.pending.is_some(),
                    drained: drained.contains(&v.name),
                    weight: t.weight,
                    created_at: v.created_at,
                    host: v.host.clone(),
                })
            })
            .collect();
        let p = plan::plan(&forecast, &self.state, &self.policy(), now);
        self.state.low_since = if p.low { self.state.low_since.or(Some(now)) } else { None };
        p
    }

    /// Applies reloaded `[pool.scaling]` settings: everything but the hosts and the network
    /// takes effect at the next tick (the caller reports those two as needing a restart).
    pub fn reconfigure(&mut self, s: ScalingSettings) -> Option<String> {
        let old = &self.p.settings;
        let s = old.reloaded(&s);
        if *old == s {
            return None;
        }
        let mut changed = Vec::new();
        if old.mode != s.mode {
            changed.push(format!("mode {:?} → {:?}", old.mode, s.mode));
            self.accurate_since = None;
        }
        if old.policy != s.policy {
            changed.push("policy".to_string());
        }
        if old.policy.headroom != s.policy.headroom || old.headroom_bounds != s.headroom_bounds {
            self.headroom = s.policy.headroom.clamp(s.headroom_bounds.0, s.headroom_bounds.1);
        }
        if old.lead_time != s.lead_time {
            changed.push("lead_time".to_string());
        }
        self.p.settings = s;
        if changed.is_empty() {
            changed.push("settings".to_string());
        }
        Some(format!("reload: [pool.scaling] {} applied", changed.join(", ")))
    }

    /// Switches dry-run / enabled.
    pub fn set_mode(&mut self, mode: Mode) {
        self.p.settings.mode = mode;
        self.accurate_since = None;
    }

    pub(crate) fn force_hosts_check(&mut self) {
        self.hosts_checked_us = None;
    }

    pub(crate) fn lead_auto(&self) -> bool {
        self.p.settings.lead_time == LeadTime::Auto
    }
}

/// What an operator asks of a pool's controller (admin POSTs, reloads); each is logged as a
/// decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Switch a pool between dry-run and enabled.
    SetMode { pool: String, mode: Mode },
    /// Launch one VM (+1) or drain the newest serving one (−1), now.
    Scale { pool: String, delta: i32 },
    /// Record something done elsewhere (a forecast refit) in the pool's decision log.
    Note { pool: String, reason: String },
    /// Reloaded `[pool.scaling]` settings.
    Reconfigure { pool: String, settings: Box<ScalingSettings> },
}

impl Command {
    pub fn pool(&self) -> &str {
        match self {
            Self::SetMode { pool, .. }
            | Self::Scale { pool, .. }
            | Self::Note { pool, .. }
            | Self::Reconfigure { pool, .. } => pool,
        }
    }
}

impl Controller {
    /// Carries out an operator's command; the decision it logs (none for a reload that
    /// changed nothing).
    pub fn command(&mut self, env: &mut Env<'_>, c: Command) -> Option<LoggedDecision> {
        let now_us = self.now_us();
        let now = now_us / 1_000_000;
        let mut d = LoggedDecision::note(&self.p.name, self.p.settings.mode, now, String::new());
        match c {
            Command::SetMode { mode, .. } => {
                d.reason = format!("admin: mode {:?} → {mode:?}", self.p.settings.mode);
                self.set_mode(mode);
                d.mode = mode;
            }
            Command::Note { reason, .. } => d.reason = format!("admin: {reason}"),
            Command::Reconfigure { settings, .. } => {
                d.reason = self.reconfigure(*settings)?;
                d.mode = self.p.settings.mode;
            }
            Command::Scale { delta, .. } => {
                let action = if delta > 0 {
                    Some(plan::Action::Launch { count: 1, vcpus: self.p.settings.policy.launch_vcpus })
                } else {
                    self.tracks
                        .iter()
                        .filter(|(_, t)| t.phase == Phase::Serving && t.pending.is_none())
                        .filter_map(|(n, _)| self.last_vms.iter().find(|v| &v.name == n))
                        .max_by_key(|v| (v.created_at, v.name.clone()))
                        .map(|v| plan::Action::Drain { vm: v.name.clone() })
                };
                let Some(a) = action else {
                    d.reason = "admin: scale in asked, but no idle serving VM to drain".into();
                    d.outcome = Outcome::NothingToDrain;
                    return Some(d);
                };
                d.reason = format!("admin: manual scale {}", if delta > 0 { "out" } else { "in" });
                if self.p.settings.mode == Mode::DryRun {
                    d.outcome = Outcome::DryRun;
                } else {
                    let (outcome, ms) = execute::manual(self, env, &a, now_us);
                    d.outcome = outcome;
                    d.duration_ms = Some(ms);
                    if delta > 0 {
                        self.state.last_scale_out = Some(now);
                    } else {
                        self.state.last_scale_in = Some(now);
                    }
                }
                d.action = Some(a);
            }
        }
        tracing::info!(pool = %d.pool, outcome = %d.outcome, "{}", d.reason);
        Some(d)
    }
}

#[cfg(test)]
mod tests;
