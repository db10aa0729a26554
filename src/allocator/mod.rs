//! The resource allocator: turns each pool's demand forecast into VM actions early enough that
//! capacity is ready when traffic arrives. [`plan`] is the pure planning function,
//! [`controller`] the per-pool control cycle (in phases, on an injected clock) that the live
//! thread ([`live`]) and the simulator both run.

pub mod plan;
pub mod schedule;

use std::time::Duration;

use plan::Policy;

/// `lead_time`: fixed, or learned from measured action durations (starting from the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadTime {
    Auto,
    Fixed(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Compute and log decisions, do nothing.
    DryRun,
    Enabled,
}

/// `[pool.scaling]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingSettings {
    /// libvirt URIs of the hosts the pool may use.
    pub uris: Vec<String>,
    /// Name of the template domain new VMs are cloned from.
    pub template: String,
    pub policy: Policy,
    pub lead_time: LeadTime,
    pub mode: Mode,
    /// Range new VMs' forwarded ports are taken from (`network = "user"`).
    pub ports: (u16, u16),
    /// How the pool's VMs are reached: a host port forward, or an address on a network.
    pub network: crate::hypervisor::Network,
    /// Health check a new VM must pass before it joins the upstream pool.
    pub health_path: String,
    /// Longest wait for in-flight requests of a draining VM.
    pub drain_timeout: Duration,
    /// A launched VM not healthy by then is deleted; two in a row pause launches this long.
    pub boot_timeout: Duration,
    /// Range the margin calibration keeps the headroom in.
    pub headroom_bounds: (f64, f64),
    /// How often VM usage (CPU, memory, I/O) is read from the hypervisor.
    pub stats_interval: Duration,
    /// Promote the pool from `dry_run` to `enabled` once its forecasts have been accurate for
    /// `auto_enable_after` (opt-in).
    pub auto_enable: bool,
    pub auto_enable_after: Duration,
}

impl ScalingSettings {
    /// What a reload of `new` puts in force over these settings: everything but the hosts and
    /// the network, which need a restart (running VMs live there).
    pub fn reloaded(&self, new: &ScalingSettings) -> ScalingSettings {
        ScalingSettings { uris: self.uris.clone(), network: self.network.clone(), ..new.clone() }
    }
}

impl Default for ScalingSettings {
    fn default() -> Self {
        Self {
            uris: Vec::new(),
            template: String::new(),
            policy: Policy {
                min_vms: 1,
                max_vms: 4,
                vcpus: (1, 2),
                memory_mib: (256, 512),
                capacity_rps_per_vcpu: 100.0,
                target_utilization: 0.6,
                quantile: plan::plan_quantile(DEFAULT_VIOLATION_MINUTE_PRICE, DEFAULT_VCPU_HOUR_PRICE),
                headroom: 0.2,
                lead_time_s: 120,
                window_s: 300,
                cooldown_s: 60,
                scale_in_stabilization_s: 600,
                max_step: 2,
                launch_vcpus: 2,
                warm_spares: DEFAULT_WARM_SPARES,
                cpu_caps: true,
                schedule: Vec::new(),
            },
            lead_time: LeadTime::Auto,
            mode: Mode::DryRun,
            ports: (18000, 18999),
            network: crate::hypervisor::Network::User,
            health_path: "/".into(),
            drain_timeout: Duration::from_secs(30),
            boot_timeout: Duration::from_secs(300),
            headroom_bounds: (0.0, 1.0),
            stats_interval: Duration::from_secs(10),
            auto_enable: false,
            auto_enable_after: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Default prices of the two errors the planner weighs (`[pool.scaling]`): a minute of SLO
/// violation costs as much as this many vCPU-hours. The planned quantile follows
/// ([`plan::plan_quantile`]).
pub const DEFAULT_VIOLATION_MINUTE_PRICE: f64 = 0.15;
pub const DEFAULT_VCPU_HOUR_PRICE: f64 = 1.0;
/// Seconds of measured load the reactive safety net averages: short, so a burst no forecast saw
/// is answered within seconds (the 1-second tier), not after a minute's mean has caught up.
pub const REACTIVE_WINDOW_S: u64 = 15;
/// … or the last 5 s up to now (open buckets included), when that is higher: a burst at 2.7×
/// capacity crosses it in about 2 s instead of 6, plus the 5 s a bucket takes to close.
pub const REACTIVE_BURST_S: u64 = 5;
/// Warm spares (suspended VMs) a pool keeps at most by default.
pub const DEFAULT_WARM_SPARES: u32 = 4;
/// Default headroom over the planned need (the margin calibration moves it within bounds).
pub const DEFAULT_HEADROOM: f64 = 0.1;

pub mod controller;
pub mod live;

/// Added to the p90 of measured launch durations for the learned lead time.
pub const LEAD_MARGIN_S: u64 = 30;

/// The `q` quantile (nearest rank) of `v`.
pub fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    Some(s[((s.len() - 1) as f64 * q).round() as usize])
}

/// The lead time in force: fixed, or the p90 of measured clone→ready durations (seconds) plus
/// [`LEAD_MARGIN_S`], `configured` until a launch has been measured (the controller's rule, live
/// and in the simulator).
pub fn lead_time(lead: LeadTime, launches: &[f64], configured: u64) -> u64 {
    match lead {
        LeadTime::Fixed(s) => s,
        LeadTime::Auto => percentile(launches, 0.9).map_or(configured, |p90| p90.ceil() as u64 + LEAD_MARGIN_S),
    }
}
