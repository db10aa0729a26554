//! Planning as a pure function: `(forecast, pool state, policy, now) → decisions`. The
//! controller calls it, live and in the simulator.
//!
//! Required capacity (requests/s), over the window `[now + lead time, now + lead time + window]`,
//! is the larger of two needs, × (1 + headroom):
//! - the forecast mean ÷ target utilisation (the load the pool should run at, on average);
//! - the forecast's `q` quantile, `q` chosen from the prices of the two errors
//!   ([`plan_quantile`]: a violation-minute against a vCPU-hour), read from the calibrated
//!   bands ([`ForecastPoint::quantile`]): the capacity the demand stays under with probability
//!   `q` (an SLO violation is demand above capacity).
//!
//! A measured rate that already exceeds what the running VMs serve at the target utilisation
//! raises it (the reactive safety net, recorded as such). Capacity = Σ vCPUs × requests/s per
//! vCPU over VMs serving or on their way (booting, resuming, resizing): what is in flight is
//! counted, so nothing is launched twice.
//!
//! Short of capacity: first vertical (hot-add vCPUs to running VMs up to the policy's and the
//! VM's maxima, memory following in proportion: seconds), then horizontal (resume a suspended
//! VM, else launch a clone: minutes), within max_vms and a step limit. Long on capacity — one VM
//! fewer would still cover the need from now to the end of the window (the time it would take
//! to get it back) — for the whole stabilisation window: drain one VM (the newest), stop it once
//! drained. Never below min_vms, never above max_vms, never a second action on a VM with one in
//! flight, nothing during the cooldown after the last scaling action except reactive scale-out.
//! Balancer weights follow vCPUs, so a VM resized up takes its share before it would overload.

use serde::Serialize;

/// The pool's scaling policy (from `[pool.scaling]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_vms: u32,
    pub max_vms: u32,
    pub vcpus: (u32, u32),
    pub memory_mib: (u64, u64),
    pub capacity_rps_per_vcpu: f64,
    pub target_utilization: f64,
    /// The forecast quantile planned for ([`plan_quantile`] of the configured prices).
    pub quantile: f64,
    pub headroom: f64,
    /// Lead time in force (configured, or learned when `auto`).
    pub lead_time_s: u64,
    /// Width of the window the requirement looks at, after the lead time.
    pub window_s: u64,
    pub cooldown_s: u64,
    pub scale_in_stabilization_s: u64,
    /// VMs launched in one decision at most.
    pub max_step: u32,
    /// vCPUs a new VM starts with (within `vcpus`): the maximum covers most per launch; less
    /// keeps room to grow in seconds by hot-plug when a burst comes.
    pub launch_vcpus: u32,
    /// Warm spares kept at most (suspended VMs, [`warm_spares_wanted`]).
    pub warm_spares: u32,
    /// Scale in by CPU caps (off where the hypervisor has no `vcpu_quota`).
    pub cpu_caps: bool,
    /// Known events (`[[pool.schedule]]`): capacity floors and forecast multipliers.
    pub schedule: Vec<super::schedule::Event>,
}

/// What a VM is doing, as the controller tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Defined or started, not yet healthy.
    Booting,
    /// Healthy and in the upstream pool.
    Serving,
    /// Out of the pool's rotation, finishing in-flight requests.
    Draining,
    /// Suspended (a warm spare).
    Suspended,
    /// Shut off.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmView {
    pub name: String,
    pub phase: Phase,
    /// vCPUs plugged.
    pub vcpus: u32,
    /// vCPUs' worth of CPU time it may use: `vcpus` unless a CPU cap holds it lower (vertical
    /// scale-down without unplug, undone in a second).
    pub active_vcpus: u32,
    pub max_vcpus: u32,
    pub memory_mib: u64,
    pub max_memory_mib: u64,
    /// An action on this VM not finished yet.
    pub busy: bool,
    /// Draining and no request in flight any more (or the drain timed out).
    pub drained: bool,
    pub weight: u32,
    pub created_at: u64,
    /// URI of the host it runs on.
    pub host: String,
}

/// A host the pool may use: its CPUs and the vCPUs of the pool's VMs running there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostView {
    pub uri: String,
    pub cpus: u32,
    pub up: bool,
}

/// Everything the planner knows about the pool now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolState {
    pub vms: Vec<VmView>,
    /// Requests/s measured over the last minute.
    pub measured_rps: f64,
    /// Epoch seconds of the last scale-out / scale-in action.
    pub last_scale_out: Option<u64>,
    pub last_scale_in: Option<u64>,
    /// Since when capacity has been more than needed.
    pub low_since: Option<u64>,
    /// The pool's hosts (one for a single-host pool).
    pub hosts: Vec<HostView>,
    /// Memory the requests in flight take in a serving VM at the current load, by the learned
    /// memory model (with a margin); 0 until it has samples. A balloon leaves a VM this much over
    /// what the policy gives its vCPUs.
    pub memory_load_mib: u64,
}

/// The forecast as the planner sees it: requests/s by minute start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ForecastInput {
    pub points: Vec<ForecastPoint>,
}

/// One minute of forecast: the mean and the upper edges of the 80 % and 95 % bands (its 90 %
/// and 97.5 % quantiles), requests/s.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ForecastPoint {
    pub t: u64,
    pub mean: f64,
    pub hi80: f64,
    pub hi95: f64,
}

impl ForecastPoint {
    /// A point known exactly (the oracle, a test).
    pub fn exact(t: u64, rate: f64) -> Self {
        Self { t, mean: rate, hi80: rate, hi95: rate }
    }

    /// The `q` quantile (q ≥ 0.5), read off the three known ones — the mean as the median, hi80
    /// at 90 %, hi95 at 97.5 % — piecewise linearly in the normal score, so a band twice as
    /// wide gives a quantile twice as far from the mean; beyond 97.5 % the last piece goes on.
    pub fn quantile(&self, q: f64) -> f64 {
        let z = if q <= 0.5 { 0.0 } else { normal_score(q.min(0.9999)).max(0.0) };
        let (z80, z95) = (normal_score(0.9), normal_score(0.975));
        let hi80 = self.hi80.max(self.mean);
        let hi95 = self.hi95.max(hi80);
        if z <= z80 { self.mean + (hi80 - self.mean) * z / z80 } else { hi80 + (hi95 - hi80) * (z - z80) / (z95 - z80) }
    }
}

/// The standard normal's `p` quantile (Abramowitz & Stegun 26.2.23, error under 5e-4).
pub fn normal_score(p: f64) -> f64 {
    let upper = p > 0.5;
    let tail = if upper { 1.0 - p } else { p }.clamp(1e-12, 0.5);
    let t = (-2.0 * tail.ln()).sqrt();
    let x = t
        - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
    if upper { x } else { -x }
}

/// The quantile to plan for, from the prices of the two errors: one vCPU short for a minute
/// costs about a violation-minute; one vCPU too many for a minute costs a sixtieth of a
/// vCPU-hour. The quantile that balances them (the newsvendor's critical ratio) is
/// `short ÷ (short + over)`, kept within [0.5, 0.999].
pub fn plan_quantile(violation_minute_price: f64, vcpu_hour_price: f64) -> f64 {
    let short = violation_minute_price.max(0.0);
    let over = vcpu_hour_price.max(0.0) / 60.0;
    if short + over <= 0.0 {
        return 0.5;
    }
    (short / (short + over)).clamp(0.5, 0.999)
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    SetVcpus {
        vm: String,
        from: u32,
        to: u32,
    },
    /// Caps a VM's CPU time at `to` vCPUs' worth (`to` = its vCPUs lifts the cap).
    SetCap {
        vm: String,
        from: u32,
        to: u32,
    },
    SetMemory {
        vm: String,
        from_mib: u64,
        to_mib: u64,
    },
    Resume {
        vm: String,
    },
    /// Suspends a drained VM: a warm spare (memory held, no CPU), resumed in under a second.
    Suspend {
        vm: String,
    },
    Launch {
        count: u32,
        vcpus: u32,
    },
    Drain {
        vm: String,
    },
    Stop {
        vm: String,
    },
    SetWeight {
        vm: String,
        weight: u32,
    },
    Migrate {
        vm: String,
        from: String,
        to: String,
    },
}

impl Action {
    /// The action's kind, one word (its JSON `kind`, a metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SetVcpus { .. } => "set_vcpus",
            Self::SetCap { .. } => "set_cap",
            Self::SetMemory { .. } => "set_memory",
            Self::Resume { .. } => "resume",
            Self::Suspend { .. } => "suspend",
            Self::Launch { .. } => "launch",
            Self::Drain { .. } => "drain",
            Self::Stop { .. } => "stop",
            Self::SetWeight { .. } => "set_weight",
            Self::Migrate { .. } => "migrate",
        }
    }
}

/// A rate given in requests/s, written per minute as the admin page shows rates.
fn per_min(rps: f64) -> String {
    // `+ 0.0`: an empty sum is −0.0, which would print as such.
    let m = rps * 60.0 + 0.0;
    if m.abs() < 10.0 { format!("{m:.1}/min") } else { format!("{m:.0}/min") }
}

/// A probability as a percentage, as few digits as it needs (`95 %`, `97.5 %`).
fn pct(q: f64) -> String {
    let v = (q * 1000.0).round() / 10.0;
    if v.fract() == 0.0 { format!("{v:.0} %") } else { format!("{v:.1} %") }
}

/// `HH:MM` of an epoch second (UTC).
fn hhmm(t: u64) -> String {
    format!("{:02}:{:02}", t % 86_400 / 3600, t % 3600 / 60)
}

impl std::fmt::Display for Action {
    /// The action in words, as the admin page shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SetVcpus { vm, from, to } => write!(f, "{vm}: vCPUs {from} → {to}"),
            Self::SetCap { vm, from, to } => write!(f, "{vm}: CPU cap {from} → {to} vCPUs"),
            Self::SetMemory { vm, from_mib, to_mib } => write!(f, "{vm}: memory {from_mib} → {to_mib} MiB"),
            Self::Resume { vm } => write!(f, "resume {vm}"),
            Self::Suspend { vm } => write!(f, "suspend {vm}"),
            Self::Launch { count, vcpus } => {
                write!(f, "launch {count} VM{} of {vcpus} vCPU{}", plural(*count as u64), plural(*vcpus as u64))
            }
            Self::Drain { vm } => write!(f, "drain {vm}"),
            Self::Stop { vm } => write!(f, "stop {vm}"),
            Self::SetWeight { vm, weight } => write!(f, "{vm}: weight {weight}"),
            Self::Migrate { vm, from, to } => write!(f, "migrate {vm} from {from} to {to}"),
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The arithmetic behind a decision, for the log.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct Inputs {
    /// Highest planned quantile in the window, requests/s; `None` without a forecast.
    pub forecast_hi: Option<f64>,
    pub forecast_mean: Option<f64>,
    pub window_from: u64,
    pub window_to: u64,
    pub measured_rps: f64,
    /// Requirement after headroom and target utilisation.
    pub required_rps: f64,
    /// Capacity of VMs serving or on their way.
    pub capacity_rps: f64,
    pub serving_vms: usize,
    pub lead_time_s: u64,
    /// Known events that shaped the requirement (their reasons).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub action: Option<Action>,
    pub reason: String,
    /// Taken because measured load exceeded capacity (a forecast miss), not ahead of it.
    pub reactive: bool,
}

/// The plan for one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub inputs: Inputs,
    pub decisions: Vec<Decision>,
    /// Capacity exceeds need (for the controller to keep `low_since`).
    pub low: bool,
}

fn counts(p: Phase) -> bool {
    matches!(p, Phase::Booting | Phase::Serving)
}

/// Memory that goes with `vcpus` under the policy (linear between the minima and maxima).
pub fn memory_for(p: &Policy, vcpus: u32) -> u64 {
    let (v0, v1) = p.vcpus;
    let (m0, m1) = p.memory_mib;
    if v1 <= v0 {
        return m1;
    }
    let f = (vcpus.clamp(v0, v1) - v0) as f64 / (v1 - v0) as f64;
    m0 + ((m1 - m0) as f64 * f).round() as u64
}

/// Memory follows the vCPUs a VM gets (hot-plugged or under its CPU cap): up at once, down by
/// the balloon (tens of milliseconds, live) to what the policy gives those vCPUs plus `load`,
/// what the learned memory model says the requests in flight take (`Some`: down only; `None`,
/// growth: up only).
fn memory_follows(p: &Policy, v: &VmView, vcpus: u32, load: Option<u64>, d: &mut Vec<Decision>, reactive: bool) {
    let target = match load {
        None => memory_for(p, vcpus).max(v.memory_mib),
        Some(l) => (memory_for(p, vcpus) + l).min(v.memory_mib), // down only
    }
    .min(v.max_memory_mib);
    // Nothing to do, or a shrink not worth a balloon round.
    if target == v.memory_mib || (target < v.memory_mib && v.memory_mib - target < 16) {
        return;
    }
    let load = load.unwrap_or(0);
    let reason = if target > v.memory_mib {
        format!("memory follows vCPUs ({vcpus} vCPUs → {target} MiB)")
    } else if target > memory_for(p, vcpus) {
        format!("balloon down to {target} MiB ({vcpus} vCPUs' memory and {load} MiB the requests in flight take)")
    } else {
        format!("memory follows the CPU cap: balloon down to {target} MiB ({vcpus} vCPUs)")
    };
    d.push(Decision {
        action: Some(Action::SetMemory { vm: v.name.clone(), from_mib: v.memory_mib, to_mib: target }),
        reason,
        reactive,
    });
}

/// vCPUs a new VM starts with: `launch_vcpus` within the policy's range (its template allows up
/// to the maximum).
fn launch_size(p: &Policy) -> u32 {
    p.launch_vcpus.clamp(p.vcpus.0.max(1), p.vcpus.1.max(1))
}

/// Resumes suspended VMs for `deficit`, within `room`; a balloon shrunk under a CPU cap
/// before the suspend gives the memory back with the vCPUs.
fn resume_spares(
    p: &Policy,
    s: &PoolState,
    deficit: &mut f64,
    room: &mut u32,
    d: &mut Vec<Decision>,
    why: &str,
    reactive: bool,
) {
    let per = p.capacity_rps_per_vcpu.max(1e-9);
    for v in s.vms.iter().filter(|v| v.phase == Phase::Suspended && !v.busy) {
        if *deficit <= 1e-9 || *room == 0 {
            break;
        }
        *deficit -= v.vcpus as f64 * per;
        *room -= 1;
        d.push(Decision {
            action: Some(Action::Resume { vm: v.name.clone() }),
            reason: format!("{why}: resume warm spare {}", v.name),
            reactive,
        });
        memory_follows(p, v, v.vcpus, None, d, reactive);
    }
}

/// Warm spares the pool should hold: enough VMs of the launch size to cover what the forecast
/// leaves possible beyond the planned need (its 99.9 % quantile from now to the window's end)
/// while a boot would take, at most `warm_spares` — and at least one for a pool that may scale to
/// zero (`min_vms = 0`): its first request is held while the spare resumes.
fn warm_spares_wanted(f: &ForecastInput, p: &Policy, now: u64, to: u64, required: f64, per: f64) -> u32 {
    if p.warm_spares == 0 {
        return 0;
    }
    let worst = f.points.iter().filter(|x| x.t + 60 > now && x.t < to).map(|x| x.quantile(0.999)).fold(0.0, f64::max);
    let per_vm = launch_size(p) as f64 * per;
    let floor = u32::from(p.min_vms == 0);
    (((worst - required) / per_vm).ceil().max(0.0) as u32).clamp(floor, p.warm_spares)
}

pub fn plan(f: &ForecastInput, s: &PoolState, p: &Policy, now: u64) -> Plan {
    let per = p.capacity_rps_per_vcpu.max(1e-9);
    let util = p.target_utilization.clamp(0.05, 1.0);
    let (from, to) = (now + p.lead_time_s, now + p.lead_time_s + p.window_s.max(60));
    // Points whose minute overlaps the window.
    // Known events that touch the span planned for: from now (one already running keeps its
    // capacity until it ends) to the end of the window (one about to start gets it in time).
    let events: Vec<&super::schedule::Event> = p.schedule.iter().filter(|e| e.overlaps(now, to)).collect();
    // The forecast inside an event with a multiplier is scaled by it (the largest, if several)
    // until the event starts: from then on the forecast sees the event's own traffic, and
    // scaling it again would count the event twice (a floor holds through the event).
    let scale = |t: u64| {
        events
            .iter()
            .filter(|e| !e.active_at(now) && e.overlaps(t, t + 60))
            .filter_map(|e| e.forecast_multiplier)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            .unwrap_or(1.0)
    };
    // `(t, mean, planned quantile)` of the points whose minute overlaps `[a, b)`.
    let span = |a: u64, b: u64| -> Vec<(u64, f64, f64)> {
        f.points
            .iter()
            .filter(|x| x.t + 60 > a && x.t < b)
            .map(|x| (x.t, x.mean * scale(x.t), x.quantile(p.quantile) * scale(x.t)))
            .collect()
    };
    let need_of = |w: &[(u64, f64, f64)]| -> Option<(f64, f64)> {
        let hi = w.iter().map(|x| x.2).reduce(f64::max)?;
        let mean = w.iter().map(|x| x.1).reduce(f64::max)?;
        Some((hi, mean))
    };
    let window = span(from, to);
    let (forecast_hi, forecast_mean) = need_of(&window).unzip();
    // From now to the window's end: what taking capacity away must still cover (it is undone no
    // sooner than a lead time from now).
    let ahead = span(now, to);
    let floor = events.iter().filter_map(|e| e.min_capacity_rps).fold(0.0, f64::max);
    // A pool that may scale to zero is idle when nothing is measured and less than one request
    // is expected from now to the window's end: it needs nothing (its first request is held
    // while a warm spare resumes).
    let idle = p.min_vms == 0
        && s.measured_rps <= 0.0
        && !ahead.is_empty()
        && ahead.iter().map(|x| x.1 * 60.0).sum::<f64>() < 1.0;
    let forecast_need = if idle {
        0.0
    } else {
        forecast_hi.unwrap_or(0.0).max(forecast_mean.unwrap_or(0.0) / util) * (1.0 + p.headroom)
    };
    let keep_need =
        if idle { Some(0.0) } else { need_of(&ahead).map(|(hi, mean)| hi.max(mean / util) * (1.0 + p.headroom)) };
    let planned = forecast_need.max(floor);
    let scaled = window.iter().any(|(t, _, _)| scale(*t) != 1.0);
    // What the events did, in words, for the reasons below.
    let event_note = (floor > forecast_need || scaled).then(|| {
        events
            .iter()
            .filter(|e| {
                (e.min_capacity_rps.is_some() && floor > forecast_need) || e.forecast_multiplier.is_some() && scaled
            })
            .map(|e| {
                let mut s = format!("known event \"{}\"", e.reason);
                if let Some(m) = e.forecast_multiplier.filter(|_| scaled) {
                    s.push_str(&format!(": forecast × {m}"));
                }
                if let Some(fl) = e.min_capacity_rps.filter(|_| floor > forecast_need) {
                    s.push_str(&format!(": capacity floor {}", per_min(fl)));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    let serving_cap: f64 =
        s.vms.iter().filter(|v| v.phase == Phase::Serving).map(|v| v.active_vcpus as f64 * per).sum();
    let capacity: f64 = s.vms.iter().filter(|v| counts(v.phase)).map(|v| v.active_vcpus as f64 * per).sum();
    // What the load measured now needs. Reactive: the load is above what serving VMs handle at
    // the target utilisation. And nothing is taken away below it, whatever the forecast says (a
    // forecast that missed a burst must not drain the VMs serving it).
    let reactive_need = s.measured_rps * (1.0 + p.headroom) / util;
    let reactive = s.measured_rps > serving_cap * util && reactive_need > planned && reactive_need > capacity;
    let required = planned.max(if reactive { reactive_need } else { 0.0 });
    let inputs = Inputs {
        forecast_hi,
        forecast_mean,
        window_from: from,
        window_to: to,
        measured_rps: s.measured_rps,
        required_rps: required,
        capacity_rps: capacity,
        serving_vms: s.vms.iter().filter(|v| v.phase == Phase::Serving).count(),
        lead_time_s: p.lead_time_s,
        events: events.iter().map(|e| e.reason.clone()).collect(),
    };
    let mut d = Vec::new();
    let active = s.vms.iter().filter(|v| counts(v.phase)).count() as u32;
    let in_cooldown = |last: Option<u64>| last.is_some_and(|t| now < t + p.cooldown_s);

    // Drained VMs are suspended while the pool has fewer warm spares than the forecast's
    // uncertainty calls for, stopped otherwise — whatever else happens.
    let mut spares = s.vms.iter().filter(|v| v.phase == Phase::Suspended).count() as u32;
    let spares_wanted = warm_spares_wanted(f, p, now, to, required, per);
    for v in s.vms.iter().filter(|v| v.phase == Phase::Draining && v.drained && !v.busy) {
        let (action, reason) = if spares < spares_wanted {
            spares += 1;
            (
                Action::Suspend { vm: v.name.clone() },
                format!("{} drained; kept as a warm spare ({spares} of {spares_wanted} wanted)", v.name),
            )
        } else {
            (Action::Stop { vm: v.name.clone() }, format!("{} drained", v.name))
        };
        d.push(Decision { action: Some(action), reason, reactive: false });
    }
    // Below the minimum: launch regardless of the forecast.
    if active < p.min_vms {
        let n = (p.min_vms - active).min(p.max_step.max(1));
        d.push(Decision {
            action: Some(Action::Launch { count: n, vcpus: p.vcpus.0 }),
            reason: format!("{active} VMs serving or booting, below min_vms {}", p.min_vms),
            reactive: false,
        });
        return Plan { inputs, decisions: d, low: false };
    }
    let low = capacity > 0.0 && {
        let smallest =
            s.vms.iter().filter(|v| counts(v.phase)).map(|v| v.active_vcpus as f64 * per).fold(f64::MAX, f64::min);
        forecast_hi.is_some() && capacity - smallest >= keep_need.unwrap_or(0.0).max(required * 1.1).max(reactive_need)
    };
    if required > capacity + 1e-9 {
        if in_cooldown(s.last_scale_out) && !reactive {
            d.push(Decision {
                action: None,
                reason: format!(
                    "need {} > capacity {}, but in cooldown until {} UTC",
                    per_min(required),
                    per_min(capacity),
                    hhmm(s.last_scale_out.unwrap_or(0) + p.cooldown_s)
                ),
                reactive: false,
            });
            return Plan { inputs, decisions: d, low: false };
        }
        let why = if reactive {
            format!("measured {} exceeds serving capacity {} × {util}", per_min(s.measured_rps), per_min(serving_cap))
        } else {
            // Times of day and rounded factors: the reason is read by people (the exact inputs
            // are in the record's `inputs`).
            let base = if floor > forecast_need {
                format!("need {} > capacity {}", per_min(required), per_min(capacity))
            } else {
                let (hi, mean) = (forecast_hi.unwrap_or(0.0), forecast_mean.unwrap_or(0.0));
                let what = if hi >= mean / util {
                    format!("forecast {} quantile {}", pct(p.quantile), per_min(hi))
                } else {
                    format!("forecast mean {} ÷ {util}", per_min(mean))
                };
                format!(
                    "{what} in {}–{} UTC × (1 + {:.2}) = {} > capacity {}",
                    hhmm(from),
                    hhmm(to),
                    p.headroom,
                    per_min(required),
                    per_min(capacity)
                )
            };
            match &event_note {
                Some(n) => format!("{base} ({n})"),
                None => base,
            }
        };
        let mut deficit = required - capacity;
        let mut room = p.max_vms.saturating_sub(active);
        let size = launch_size(p);
        let per_vm = size as f64 * per;
        // Ahead of the need, whole VMs are launched first (the lead time covers a boot), so the
        // running VMs keep their vCPU room for what no forecast saw: hot-plug answers that in
        // seconds, a boot in minutes. Reactive, the fastest lever goes first.
        let early = if reactive { 0 } else { ((deficit / per_vm).floor() as u32).min(room).min(p.max_step.max(1)) };
        deficit -= early as f64 * per_vm;
        room -= early;
        // Capped VMs first: lifting a cap takes a second; reactive, warm spares next (a resume
        // is sub-second, a hot-plug seconds).
        for v in s.vms.iter().filter(|v| v.phase == Phase::Serving && !v.busy && v.active_vcpus < v.vcpus) {
            if deficit <= 1e-9 {
                break;
            }
            let add = ((deficit / per).ceil() as u32).clamp(1, v.vcpus - v.active_vcpus);
            deficit -= add as f64 * per;
            let to = v.active_vcpus + add;
            d.push(Decision {
                action: Some(Action::SetCap { vm: v.name.clone(), from: v.active_vcpus, to }),
                reason: format!("{why}: lift the CPU cap by {add} vCPU(s)"),
                reactive,
            });
            memory_follows(p, v, to, None, &mut d, reactive);
            d.push(Decision {
                action: Some(Action::SetWeight { vm: v.name.clone(), weight: v.active_vcpus + add }),
                reason: format!("{} gets {} vCPUs' worth of CPU: weight follows", v.name, v.active_vcpus + add),
                reactive,
            });
        }
        if reactive {
            resume_spares(p, s, &mut deficit, &mut room, &mut d, &why, true);
        }
        // Vertical: running, idle VMs below their maxima, largest headroom first.
        let mut vs: Vec<&VmView> = s
            .vms
            .iter()
            .filter(|v| {
                // A capped VM is lifted above, not hot-plugged.
                v.phase == Phase::Serving
                    && !v.busy
                    && v.active_vcpus == v.vcpus
                    && v.vcpus < v.max_vcpus.min(p.vcpus.1)
            })
            .collect();
        vs.sort_by_key(|v| std::cmp::Reverse(v.max_vcpus.min(p.vcpus.1) - v.vcpus));
        for v in vs {
            if deficit <= 1e-9 {
                break;
            }
            let top = v.max_vcpus.min(p.vcpus.1);
            let add = ((deficit / per).ceil() as u32).clamp(1, top - v.vcpus);
            let to = v.vcpus + add;
            deficit -= add as f64 * per;
            d.push(Decision {
                action: Some(Action::SetVcpus { vm: v.name.clone(), from: v.vcpus, to }),
                reason: format!("{why}: hot-add {add} vCPU(s)"),
                reactive,
            });
            memory_follows(p, v, to, None, &mut d, reactive);
        }
        // Then horizontal: warm spares (ahead of the need: they are kept for surprises), then
        // clones.
        if !reactive {
            resume_spares(p, s, &mut deficit, &mut room, &mut d, &why, false);
        }
        if deficit > 1e-9 || early > 0 {
            let want = (deficit.max(0.0) / per_vm).ceil() as u32;
            let n = early + want.min(room).min(p.max_step.max(1).saturating_sub(early));
            if n > 0 {
                d.push(Decision {
                    action: Some(Action::Launch { count: n, vcpus: size }),
                    reason: format!("{why}: launch {n} VM(s) of {size} vCPUs"),
                    reactive,
                });
            } else {
                d.push(Decision {
                    action: None,
                    reason: format!("{why}, but the pool is at max_vms {}", p.max_vms),
                    reactive,
                });
            }
        }
        return Plan { inputs, decisions: d, low: false };
    }
    // Long on capacity by whole vCPUs but not by a whole VM: cap the largest VM down (seconds,
    // undone in a second), out of the cooldown after a scale-out and not while a VM boots (what
    // boots is not serving yet). What stays must cover the need from now to the window's end.
    if !low
        && p.cpu_caps
        && !in_cooldown(s.last_scale_out)
        && !in_cooldown(s.last_scale_in)
        && !s.vms.iter().any(|v| v.phase == Phase::Booting)
        && let Some(k) = keep_need
    {
        // A 10 % margin over everything it must cover: a cap lifted again minutes later is noise.
        let keep = k.max(required).max(reactive_need) * 1.1;
        let spare = ((capacity - keep) / per).floor();
        if spare >= 1.0
            && let Some(v) = s
                .vms
                .iter()
                .filter(|v| v.phase == Phase::Serving && !v.busy && v.active_vcpus > 1)
                .max_by_key(|v| (v.active_vcpus, v.name.clone()))
        {
            let cap = v.active_vcpus - (spare as u32).min(v.active_vcpus - 1);
            d.push(Decision {
                action: Some(Action::SetCap { vm: v.name.clone(), from: v.active_vcpus, to: cap }),
                reason: format!(
                    "capacity {} exceeds the need {} until {} UTC by {} vCPU(s): cap {}",
                    per_min(capacity),
                    per_min(keep),
                    hhmm(to),
                    spare as u32,
                    v.name
                ),
                reactive: false,
            });
            memory_follows(p, v, cap, Some(s.memory_load_mib), &mut d, false);
        }
    }
    // Long on capacity for the whole stabilisation window: drain the newest VM.
    if low {
        let since = s.low_since.unwrap_or(now);
        let draining = s.vms.iter().any(|v| v.phase == Phase::Draining);
        if now >= since + p.scale_in_stabilization_s
            && active > p.min_vms
            && !draining
            && !in_cooldown(s.last_scale_in)
            && !in_cooldown(s.last_scale_out)
            && let Some(v) = s
                .vms
                .iter()
                .filter(|v| v.phase == Phase::Serving && !v.busy)
                .max_by_key(|v| (v.created_at, v.name.clone()))
        {
            d.push(Decision {
                action: Some(Action::Drain { vm: v.name.clone() }),
                reason: format!(
                    "capacity {} exceeds the need {} even without {} for {} s",
                    per_min(capacity),
                    per_min(required),
                    v.name,
                    now - since
                ),
                reactive: false,
            });
        }
    }
    // Across hosts: a host whose guests' vCPUs exceed its CPUs (after vertical growth) gives
    // its smallest idle VM to the host with the most spare CPUs, live, before it overloads.
    if s.hosts.iter().filter(|h| h.up).count() >= 2 {
        let used =
            |uri: &str| -> u32 { s.vms.iter().filter(|v| v.host == uri && counts(v.phase)).map(|v| v.vcpus).sum() };
        let spare = |h: &HostView| h.cpus as i64 - used(&h.uri) as i64;
        if let Some(hot) = s.hosts.iter().filter(|h| h.up && spare(h) < 0).min_by_key(|h| spare(h))
            && let Some(cool) = s.hosts.iter().filter(|h| h.up && h.uri != hot.uri).max_by_key(|h| spare(h))
            && let Some(v) = s
                .vms
                .iter()
                .filter(|v| {
                    v.host == hot.uri && v.phase == Phase::Serving && !v.busy && (v.vcpus as i64) <= spare(cool)
                })
                .min_by_key(|v| v.vcpus)
        {
            d.push(Decision {
                action: Some(Action::Migrate { vm: v.name.clone(), from: hot.uri.clone(), to: cool.uri.clone() }),
                reason: format!(
                    "{} runs {} vCPUs of guests on {} CPUs; {} has {} spare: live-migrate {}",
                    hot.uri,
                    used(&hot.uri),
                    hot.cpus,
                    cool.uri,
                    spare(cool),
                    v.name
                ),
                reactive: false,
            });
        }
    }
    // Weights follow vCPUs (pre-emptive rebalancing after vertical changes).
    for v in s.vms.iter().filter(|v| v.phase == Phase::Serving && !v.busy) {
        let w = d
            .iter()
            .find_map(|x| match &x.action {
                Some(Action::SetCap { vm, to, .. }) if *vm == v.name => Some(*to),
                _ => None,
            })
            .unwrap_or(v.active_vcpus)
            .max(1);
        if v.weight != w {
            d.push(Decision {
                action: Some(Action::SetWeight { vm: v.name.clone(), weight: w }),
                reason: format!("{} has {w} vCPUs' worth of CPU: weight follows", v.name),
                reactive: false,
            });
        }
    }
    Plan { inputs, decisions: d, low }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 21, section 5): the page showed actions as raw JSON.
    #[test]
    fn actions_read_as_words() {
        assert_eq!(Action::Launch { count: 2, vcpus: 1 }.to_string(), "launch 2 VMs of 1 vCPU");
        assert_eq!(Action::SetVcpus { vm: "a-1".into(), from: 1, to: 2 }.to_string(), "a-1: vCPUs 1 → 2");
        assert_eq!(Action::Stop { vm: "a-2".into() }.to_string(), "stop a-2");
    }

    fn policy() -> Policy {
        Policy {
            min_vms: 1,
            max_vms: 4,
            vcpus: (1, 4),
            memory_mib: (256, 1024),
            capacity_rps_per_vcpu: 100.0,
            target_utilization: 0.5,
            quantile: 0.95,
            headroom: 0.0,
            lead_time_s: 120,
            window_s: 300,
            cooldown_s: 60,
            scale_in_stabilization_s: 600,
            max_step: 2,
            launch_vcpus: 4,
            warm_spares: 0,
            cpu_caps: true,
            schedule: Vec::new(),
        }
    }

    fn vm(name: &str, phase: Phase, vcpus: u32) -> VmView {
        VmView {
            name: name.into(),
            phase,
            vcpus,
            active_vcpus: vcpus,
            max_vcpus: 4,
            memory_mib: memory_for(&policy(), vcpus),
            max_memory_mib: 1024,
            busy: false,
            drained: false,
            weight: vcpus,
            created_at: name.len() as u64,
            host: "h1".into(),
        }
    }

    /// A forecast from `now` on: `rate(minute)` as the mean, hi80 = mean × 1.2.
    fn forecast(now: u64, rate: impl Fn(u64) -> f64) -> ForecastInput {
        ForecastInput {
            points: (0..60)
                .map(|k| ForecastPoint { t: now + k * 60, mean: rate(k), hi80: rate(k) * 1.2, hi95: rate(k) * 1.4 })
                .collect(),
        }
    }

    fn actions(p: &Plan) -> Vec<Action> {
        p.decisions.iter().filter_map(|d| d.action.clone()).collect()
    }

    const NOW: u64 = 1_800_000_000;

    fn event(reason: &str, from: u64, to: u64, floor: Option<f64>, mult: Option<f64>) -> super::super::schedule::Event {
        super::super::schedule::Event {
            reason: reason.into(),
            when: super::super::schedule::When::Once { from, to },
            min_capacity_rps: floor,
            forecast_multiplier: mult,
        }
    }

    #[test]
    fn known_events_raise_the_requirement_ahead_of_time_and_hold_it_until_they_end() {
        let flat = forecast(NOW, |_| 40.0); // 48 hi80 → 96 rps: one vCPU is enough
        let one = PoolState { vms: vec![vm("a", Phase::Serving, 1)], ..Default::default() };
        // A sale starts in 4 minutes (inside lead 2 min + window 5 min): the floor of 500 rps
        // (5 vCPUs) is planned for now, and the decision says why.
        let mut p = policy();
        p.schedule = vec![event("winter sale", NOW + 240, NOW + 3600, Some(500.0), None)];
        let ahead = plan(&flat, &one, &p, NOW);
        assert_eq!(ahead.inputs.required_rps, 500.0);
        assert_eq!(ahead.inputs.events, ["winter sale"]);
        assert!(!actions(&ahead).is_empty());
        let reason = &ahead.decisions[0].reason;
        assert!(reason.contains("known event \"winter sale\": capacity floor 30000/min"), "{reason}");
        // Too far ahead: not yet.
        p.schedule = vec![event("winter sale", NOW + 1200, NOW + 3600, Some(500.0), None)];
        assert!(actions(&plan_for(&flat, &one, &p)).is_empty());
        // While it runs, capacity that covers the floor is not scaled in, though the forecast is low.
        p.schedule = vec![event("winter sale", NOW - 600, NOW + 600, Some(500.0), None)];
        let big = PoolState {
            vms: vec![vm("a", Phase::Serving, 4), vm("b", Phase::Serving, 2)],
            low_since: Some(NOW - 10_000),
            ..Default::default()
        };
        let during = plan(&flat, &big, &p, NOW);
        assert!(!during.low && actions(&during).is_empty(), "{:?}", during.decisions);
        // After it: the same pool drains.
        p.schedule = vec![event("winter sale", NOW - 7200, NOW - 60, Some(500.0), None)];
        let after = plan(&flat, &big, &p, NOW);
        assert!(after.low && after.inputs.events.is_empty());
        // A multiplier scales the forecast inside the event only: × 3 on a mean of 40 → 120
        // (its 95 % quantile × 3 too) → 240 rps at 0.5 utilisation.
        p.schedule = vec![event("launch day", NOW + 180, NOW + 3600, None, Some(3.0))];
        let m = plan(&flat, &one, &p, NOW);
        let q95 = ForecastPoint { t: 0, mean: 120.0, hi80: 144.0, hi95: 168.0 }.quantile(0.95);
        assert!((m.inputs.forecast_hi.unwrap() - q95).abs() < 1e-9, "{:?}", m.inputs);
        assert_eq!(m.inputs.required_rps, 240.0);
        assert!(
            m.decisions[0].reason.contains("known event \"launch day\": forecast × 3"),
            "{}",
            m.decisions[0].reason
        );
        assert_eq!(
            actions(&m)[0],
            Action::SetVcpus { vm: "a".into(), from: 1, to: 3 },
            "the usual levers, vertical first"
        );
    }

    fn plan_for(f: &ForecastInput, s: &PoolState, p: &Policy) -> Plan {
        plan(f, s, p, NOW)
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            rate: fn(u64) -> f64,
            vms: Vec<VmView>,
            state: PoolState,
            want: Vec<Action>,
        }
        let flat = |_| 40.0; // hi80 48 → need 96 rps at 0.5 utilisation: one vCPU.
        let cases = vec![
            Case {
                name: "flat, enough",
                rate: flat,
                vms: vec![vm("a", Phase::Serving, 1)],
                state: PoolState::default(),
                want: vec![],
            },
            Case {
                name: "ramp inside the lead window: vertical first",
                rate: |k| if k >= 2 { 120.0 } else { 40.0 }, // hi80 144 → 288 rps → 3 vCPUs
                vms: vec![vm("a", Phase::Serving, 1)],
                state: PoolState::default(),
                want: vec![
                    Action::SetVcpus { vm: "a".into(), from: 1, to: 3 },
                    Action::SetMemory { vm: "a".into(), from_mib: 256, to_mib: 768 },
                ],
            },
            Case {
                name: "ramp ahead: whole VMs launched first, vCPU room kept for surprises",
                rate: |k| if k >= 2 { 300.0 } else { 40.0 }, // mean ÷ 0.5 = 600 rps → 6 vCPUs
                vms: vec![vm("a", Phase::Serving, 2)],
                state: PoolState::default(),
                want: vec![Action::Launch { count: 1, vcpus: 4 }],
            },
            Case {
                name: "ramp ahead beyond whole VMs: launch, then the rest vertical",
                rate: |k| if k >= 2 { 350.0 } else { 40.0 }, // 700 rps → 7 vCPUs
                vms: vec![vm("a", Phase::Serving, 2)],
                state: PoolState::default(),
                want: vec![
                    Action::SetVcpus { vm: "a".into(), from: 2, to: 3 },
                    Action::SetMemory { vm: "a".into(), from_mib: 512, to_mib: 768 },
                    Action::Launch { count: 1, vcpus: 4 },
                ],
            },
            Case {
                name: "ramp after the window: nothing yet",
                rate: |k| if k >= 20 { 300.0 } else { 40.0 },
                vms: vec![vm("a", Phase::Serving, 1)],
                state: PoolState::default(),
                want: vec![],
            },
            Case {
                name: "boot already in flight covers the need: no double launch",
                rate: |_| 300.0,
                vms: vec![vm("a", Phase::Serving, 4), vm("b", Phase::Booting, 4)],
                state: PoolState::default(),
                want: vec![],
            },
            Case {
                name: "max_vms caps the launch",
                rate: |_| 2000.0,
                vms: (0..4).map(|i| vm(&format!("v{i}"), Phase::Serving, 4)).collect(),
                state: PoolState::default(),
                want: vec![],
            },
            Case {
                name: "warm spare resumed before a clone",
                rate: |_| 300.0,
                vms: vec![vm("a", Phase::Serving, 4), vm("s", Phase::Suspended, 4)],
                state: PoolState::default(),
                want: vec![Action::Resume { vm: "s".into() }],
            },
            Case {
                name: "below min_vms: launch",
                rate: flat,
                vms: vec![],
                state: PoolState::default(),
                want: vec![Action::Launch { count: 1, vcpus: 1 }],
            },
            Case {
                name: "cooldown holds a forecast scale-out",
                rate: |_| 300.0,
                vms: vec![vm("a", Phase::Serving, 4)],
                state: PoolState { last_scale_out: Some(NOW - 30), ..Default::default() },
                want: vec![],
            },
            Case {
                name: "reactive scale-out ignores the cooldown",
                rate: flat,
                vms: vec![vm("a", Phase::Serving, 4)],
                state: PoolState { last_scale_out: Some(NOW - 30), measured_rps: 500.0, ..Default::default() },
                want: vec![Action::Launch { count: 2, vcpus: 4 }],
            },
            Case {
                name: "decline, not yet stable: keep",
                rate: |_| 10.0,
                vms: vec![vm("a", Phase::Serving, 1), vm("bb", Phase::Serving, 1)],
                state: PoolState { low_since: Some(NOW - 100), ..Default::default() },
                want: vec![],
            },
            Case {
                name: "decline, stable: drain the newest",
                rate: |_| 10.0,
                vms: vec![vm("a", Phase::Serving, 1), vm("bb", Phase::Serving, 1)],
                state: PoolState { low_since: Some(NOW - 700), ..Default::default() },
                want: vec![Action::Drain { vm: "bb".into() }],
            },
            Case {
                name: "never below min_vms",
                rate: |_| 0.0,
                vms: vec![vm("a", Phase::Serving, 1)],
                state: PoolState { low_since: Some(NOW - 7000), ..Default::default() },
                want: vec![],
            },
            Case {
                name: "drained VM is stopped, no second drain meanwhile",
                rate: |_| 10.0,
                vms: vec![
                    vm("a", Phase::Serving, 1),
                    vm("bb", Phase::Serving, 1),
                    VmView { drained: true, ..vm("ccc", Phase::Draining, 1) },
                ],
                state: PoolState { low_since: Some(NOW - 7000), ..Default::default() },
                want: vec![Action::Stop { vm: "ccc".into() }],
            },
            Case {
                name: "a VM with an action in flight gets no other",
                rate: |_| 120.0,
                vms: vec![VmView { busy: true, ..vm("a", Phase::Serving, 1) }],
                state: PoolState::default(),
                want: vec![Action::Launch { count: 1, vcpus: 4 }],
            },
            Case {
                name: "an overcommitted host gives a VM to the host with room",
                rate: flat,
                vms: vec![vm("a", Phase::Serving, 4), VmView { host: "h1".into(), ..vm("bb", Phase::Serving, 2) }],
                state: PoolState {
                    hosts: vec![
                        HostView { uri: "h1".into(), cpus: 4, up: true },
                        HostView { uri: "h2".into(), cpus: 8, up: true },
                    ],
                    ..Default::default()
                },
                want: vec![Action::Migrate { vm: "bb".into(), from: "h1".into(), to: "h2".into() }],
            },
            Case {
                name: "no migration to a host that is down",
                rate: flat,
                vms: vec![vm("a", Phase::Serving, 4), vm("bb", Phase::Serving, 2)],
                state: PoolState {
                    hosts: vec![
                        HostView { uri: "h1".into(), cpus: 4, up: true },
                        HostView { uri: "h2".into(), cpus: 8, up: false },
                    ],
                    ..Default::default()
                },
                want: vec![],
            },
            Case {
                name: "weights follow vCPUs",
                rate: |_| 125.0, // 250 rps: the 3 vCPUs are needed
                vms: vec![VmView { weight: 1, ..vm("a", Phase::Serving, 3) }],
                state: PoolState::default(),
                want: vec![Action::SetWeight { vm: "a".into(), weight: 3 }],
            },
            Case {
                name: "long by whole vCPUs, not by a VM: capped in seconds, weight follows the cap",
                rate: flat, // 80 rps: one vCPU's worth
                vms: vec![vm("a", Phase::Serving, 3)],
                state: PoolState::default(),
                want: vec![
                    Action::SetCap { vm: "a".into(), from: 3, to: 1 },
                    Action::SetMemory { vm: "a".into(), from_mib: 768, to_mib: 256 },
                    Action::SetWeight { vm: "a".into(), weight: 1 },
                ],
            },
            Case {
                name: "capped, the balloon leaves what the learned memory model says the requests take",
                rate: flat,
                vms: vec![vm("a", Phase::Serving, 3)],
                state: PoolState { memory_load_mib: 344, ..Default::default() },
                want: vec![
                    Action::SetCap { vm: "a".into(), from: 3, to: 1 },
                    Action::SetMemory { vm: "a".into(), from_mib: 768, to_mib: 600 },
                    Action::SetWeight { vm: "a".into(), weight: 1 },
                ],
            },
            Case {
                name: "capped, no balloon round when the learned need is (nearly) all it has",
                rate: flat,
                vms: vec![vm("a", Phase::Serving, 3)],
                state: PoolState { memory_load_mib: 504, ..Default::default() },
                want: vec![
                    Action::SetCap { vm: "a".into(), from: 3, to: 1 },
                    Action::SetWeight { vm: "a".into(), weight: 1 },
                ],
            },
            Case {
                name: "short while capped: the cap is lifted first, no hot-plug",
                rate: |_| 125.0,
                vms: vec![VmView { active_vcpus: 1, weight: 1, ..vm("a", Phase::Serving, 4) }],
                state: PoolState::default(),
                want: vec![
                    Action::SetCap { vm: "a".into(), from: 1, to: 3 },
                    Action::SetWeight { vm: "a".into(), weight: 3 },
                ],
            },
            Case {
                name: "a cap lifted: the ballooned memory comes back with it",
                rate: |_| 125.0,
                vms: vec![VmView { active_vcpus: 1, weight: 1, memory_mib: 256, ..vm("a", Phase::Serving, 4) }],
                state: PoolState::default(),
                want: vec![
                    Action::SetCap { vm: "a".into(), from: 1, to: 3 },
                    Action::SetMemory { vm: "a".into(), from_mib: 256, to_mib: 768 },
                    Action::SetWeight { vm: "a".into(), weight: 3 },
                ],
            },
            Case {
                name: "no cap while a VM boots",
                rate: flat,
                vms: vec![vm("a", Phase::Serving, 3), vm("b", Phase::Booting, 1)],
                state: PoolState::default(),
                want: vec![],
            },
        ];
        for c in cases {
            let s = PoolState { vms: c.vms, ..c.state };
            let p = plan(&forecast(NOW, c.rate), &s, &policy(), NOW);
            assert_eq!(actions(&p), c.want, "{}: {:#?}", c.name, p);
            // Invariants: never above max_vms, never two actions on one VM.
            let launched: u32 =
                actions(&p).iter().map(|a| if let Action::Launch { count, .. } = a { *count } else { 0 }).sum();
            let active = s.vms.iter().filter(|v| counts(v.phase)).count() as u32;
            assert!(active + launched <= policy().max_vms.max(active), "{}", c.name);
            for d in &p.decisions {
                assert!(!d.reason.is_empty(), "{}: every decision has a reason", c.name);
            }
        }
    }

    #[test]
    fn the_planned_quantile_comes_from_the_prices_and_reads_off_the_bands() {
        assert!((normal_score(0.975) - 1.96).abs() < 1e-3);
        assert!((normal_score(0.9) - 1.2816).abs() < 1e-3);
        assert!((normal_score(0.1) + 1.2816).abs() < 1e-3);
        let pt = ForecastPoint { t: 0, mean: 100.0, hi80: 130.0, hi95: 150.0 };
        assert!((pt.quantile(0.5) - 100.0).abs() < 1e-9);
        assert!((pt.quantile(0.9) - 130.0).abs() < 1e-9);
        assert!((pt.quantile(0.975) - 150.0).abs() < 1e-9);
        let (q8, q95, q99) = (pt.quantile(0.8), pt.quantile(0.95), pt.quantile(0.99));
        assert!(100.0 < q8 && q8 < 130.0 && 130.0 < q95 && q95 < 150.0 && q99 > 150.0, "{q8} {q95} {q99}");
        // Dearer violations, a higher quantile; dearer vCPUs, a lower one; always within bounds.
        let q = plan_quantile(crate::allocator::DEFAULT_VIOLATION_MINUTE_PRICE, 1.0);
        assert!((0.85..0.99).contains(&q), "{q}");
        assert!(plan_quantile(1.0, 1.0) > q && plan_quantile(0.4, 4.0) < q);
        assert_eq!(plan_quantile(0.0, 1.0), 0.5);
        assert_eq!(plan_quantile(1e9, 1.0), 0.999);
        // The plan follows: the same forecast needs more at a higher quantile.
        let f = ForecastInput {
            points: (0..60).map(|k| ForecastPoint { t: NOW + k * 60, mean: 100.0, hi80: 200.0, hi95: 300.0 }).collect(),
        };
        let s = PoolState { vms: vec![vm("a", Phase::Serving, 1)], ..Default::default() };
        let need = |q: f64| plan(&f, &s, &Policy { quantile: q, ..policy() }, NOW).inputs.required_rps;
        assert!(need(0.99) > need(0.95) && need(0.95) > need(0.9), "{} {} {}", need(0.99), need(0.95), need(0.9));
        // Never below the mean at the target utilisation, whatever the quantile.
        assert_eq!(need(0.5), 200.0);
    }

    /// Issue 18, lever 2: a burst no forecast saw is met with the fastest lever first.
    #[test]
    fn a_burst_goes_vertical_first_a_forecast_ramp_launches_first() {
        let s = PoolState { vms: vec![vm("a", Phase::Serving, 2)], measured_rps: 300.0, ..Default::default() };
        let p = plan(&forecast(NOW, |_| 40.0), &s, &policy(), NOW);
        assert!(p.decisions.iter().all(|d| d.reactive), "{:?}", p.decisions);
        assert_eq!(
            actions(&p),
            [
                Action::SetVcpus { vm: "a".into(), from: 2, to: 4 },
                Action::SetMemory { vm: "a".into(), from_mib: 512, to_mib: 1024 },
                Action::Launch { count: 1, vcpus: 4 },
            ]
        );
        // The same need, forecast ahead: a whole VM is launched and the vCPU room kept.
        let s = PoolState { vms: vec![vm("a", Phase::Serving, 2)], ..Default::default() };
        let p = plan(&forecast(NOW, |k| if k >= 2 { 300.0 } else { 40.0 }), &s, &policy(), NOW);
        assert_eq!(actions(&p), [Action::Launch { count: 1, vcpus: 4 }]);
    }

    /// Issue 18, lever 5: with `min_vms = 0`, an idle pool (nothing measured, under one request
    /// expected before the window's end) drains its last VM and launches nothing; a trickle or
    /// `min_vms = 1` keeps it.
    #[test]
    fn an_idle_pool_may_go_to_zero_and_stays_there() {
        let tiny = forecast(NOW, |_| 0.001); // 0.06 requests a minute
        let zero = Policy { min_vms: 0, ..policy() };
        let one =
            PoolState { vms: vec![vm("a", Phase::Serving, 1)], low_since: Some(NOW - 3600), ..Default::default() };
        let p = plan(&tiny, &one, &zero, NOW);
        assert_eq!(actions(&p), [Action::Drain { vm: "a".into() }]);
        assert!(actions(&plan(&tiny, &one, &policy(), NOW)).is_empty(), "min_vms = 1 keeps it");
        let busy = PoolState { measured_rps: 0.5, ..one.clone() };
        assert!(actions(&plan(&tiny, &busy, &zero, NOW)).is_empty(), "traffic keeps it");
        let trickle = forecast(NOW, |_| 0.05); // 3 a minute
        assert!(actions(&plan(&trickle, &one, &zero, NOW)).is_empty(), "a trickle keeps it");
        // At zero, nothing is launched for an idle forecast; a held request (measured) launches.
        let none = PoolState::default();
        assert!(actions(&plan(&tiny, &none, &zero, NOW)).is_empty());
        let held = PoolState { measured_rps: 1.0, ..Default::default() };
        assert!(matches!(actions(&plan(&tiny, &held, &zero, NOW))[..], [Action::Launch { .. }]));
    }

    /// Regression (found on real guests, issue 18): a forecast that missed a burst said "nothing
    /// needed" and the planner drained a VM serving the measured load (and at `min_vms = 0`, the
    /// last one, mid-burst). What the measured load needs is never taken away.
    #[test]
    fn measured_load_is_never_drained_or_capped_away() {
        let tiny = forecast(NOW, |_| 0.001);
        let s = PoolState {
            vms: vec![vm("a", Phase::Serving, 1), vm("bb", Phase::Serving, 1)],
            measured_rps: 60.0, // under 2 × 100 × 0.5: no reactive scale-out, but one VM is not enough
            low_since: Some(NOW - 3600),
            ..Default::default()
        };
        for p in [policy(), Policy { min_vms: 0, ..policy() }] {
            let plan = plan(&tiny, &s, &p, NOW);
            assert!(actions(&plan).is_empty(), "{:?}", plan.decisions);
        }
        let big = PoolState { vms: vec![vm("a", Phase::Serving, 4)], measured_rps: 120.0, ..Default::default() };
        let plan = plan(&tiny, &big, &policy(), NOW);
        assert!(
            !actions(&plan).iter().any(|a| matches!(a, Action::SetCap { to, .. } if *to < 3)),
            "{:?}",
            plan.decisions
        );
    }

    #[test]
    fn reasons_carry_the_arithmetic() {
        let s = PoolState { vms: vec![vm("a", Phase::Serving, 1)], ..Default::default() };
        let p = plan(&forecast(NOW, |_| 120.0), &s, &policy(), NOW);
        assert!(p.inputs.forecast_hi.is_some_and(|q| q > 144.0 && q < 168.0), "{:?}", p.inputs);
        assert!((p.inputs.required_rps - 240.0).abs() < 1e-9);
        assert_eq!(p.inputs.capacity_rps, 100.0);
        assert!(
            // The mean of 120 requests/s ÷ 0.5 = 240, written per minute like the page.
            p.decisions[0].reason.contains("forecast mean 7200/min ÷ 0.5")
                && p.decisions[0].reason.contains("14400/min"),
            "{:?}",
            p.decisions
        );
        // A wide band: the quantile leads, and the reason says which.
        let wide = ForecastInput {
            points: (0..60).map(|k| ForecastPoint { t: NOW + k * 60, mean: 100.0, hi80: 200.0, hi95: 300.0 }).collect(),
        };
        let w = plan(&wide, &s, &policy(), NOW);
        assert!(w.decisions[0].reason.starts_with("forecast 95 % quantile"), "{:?}", w.decisions);
        assert!(w.inputs.required_rps > 200.0 && w.inputs.required_rps < 300.0, "{:?}", w.inputs);
        assert!(!p.decisions[0].reactive);
    }

    #[test]
    fn no_flapping_on_a_noisy_flat_forecast() {
        // A flat load with noise around what 2 VMs of 1 vCPU serve comfortably: over a day of
        // minutes, the planner must not alternate launches and drains.
        let mut rng = fastrand::Rng::with_seed(1);
        let mut s =
            PoolState { vms: vec![vm("a", Phase::Serving, 1), vm("bb", Phase::Serving, 1)], ..Default::default() };
        let mut changes = 0;
        for minute in 0..1440u64 {
            let now = NOW + minute * 60;
            let noise: Vec<f64> = (0..60).map(|_| 60.0 + 10.0 * (rng.f64() - 0.5)).collect();
            let f = ForecastInput {
                points: (0..60)
                    .map(|k| {
                        let m = noise[k as usize];
                        ForecastPoint { t: now + k * 60, mean: m, hi80: m * 1.2, hi95: m * 1.4 }
                    })
                    .collect(),
            };
            let p = plan(&f, &s, &policy(), now);
            s.low_since = if p.low { s.low_since.or(Some(now)) } else { None };
            for a in actions(&p) {
                match a {
                    Action::Launch { .. } | Action::Drain { .. } | Action::SetVcpus { .. } => changes += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(changes, 0, "steady noisy load caused {changes} scaling actions");
    }
}
