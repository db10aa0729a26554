//! What `/admin/api/pools` shows of a pool: its VMs and what each is doing, capacity against
//! requirement, the lead time and how it was learned, the cost models, usage, and why the pool
//! is degraded when it is.

use serde::Serialize;

use super::{COST_MIN_SAMPLES, Controller, Pending};
use crate::allocator::Mode;
use crate::allocator::percentile;
use crate::allocator::plan::Phase;
use crate::feedback::cost::LinearCost;
use crate::hypervisor::stats::Usage;
use crate::hypervisor::{HostInfo, VmInfo};

#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    #[serde(flatten)]
    pub info: VmInfo,
    pub phase: Phase,
    pub in_pool: bool,
    /// The action in flight on it (`"launch"`, `"set_vcpus 4"`, `"migrate"`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_text")]
    pub in_flight: Option<Pending>,
    /// vCPUs' worth of CPU a cap holds it to (absent: uncapped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_vcpus: Option<u32>,
}

fn as_text<S: serde::Serializer>(p: &Option<Pending>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
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

/// Where a cost figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The configured value (`capacity_rps_per_vcpu`, the forecast's `memory_mib_per_request`).
    Prior,
    /// Learned from the pool's measured usage.
    Learned,
}

impl CostSource {
    pub fn word(self) -> &'static str {
        match self {
            Self::Prior => "prior",
            Self::Learned => "learned",
        }
    }
}

/// The cost model as shown in `/admin/api/pools`.
#[derive(Debug, Clone, Serialize)]
pub struct CostStatus {
    pub source: CostSource,
    pub capacity_rps_per_vcpu: f64,
    pub learned: LinearCost,
    /// Cores the pool's VMs used over the last sample.
    pub cores_used: f64,
    pub headroom: f64,
    /// The forecast quantile the planner covers (from the configured prices).
    pub quantile: f64,
    /// Memory model: MiB per VM = base + per_request × requests in flight per VM (host RSS);
    /// the prior until it has enough samples.
    pub memory_source: CostSource,
    pub memory: LinearCost,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub pool: String,
    pub mode: Mode,
    /// How its VMs are reached (`{"mode": "user"}` or `{"mode": "bridge", "port": …,
    /// "sources": […]}`); each VM's `addr` is the forwarded or the discovered address.
    pub network: crate::hypervisor::Network,
    /// Set while the hypervisor fails, a host is down, launches are paused or an action keeps
    /// failing: why, in words.
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
    /// Why CPU caps are off for this pool (the hypervisor refused one), if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caps_refused: Option<String>,
    /// Measured usage of the pool's VMs at the last stats reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<PoolUsage>,
    /// Known events (`[[pool.schedule]]`), with whether each applies now and when that changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventStatus>,
    /// With `[cluster]`: this instance's part in the pool's fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetRole>,
}

/// This instance's part in a pool shared by a fleet (`[cluster]`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetRole {
    /// `leader` (plans and acts), `follower` (shows and follows the leader's decisions) or
    /// `paused` (cannot reach etcd or lost its lease: nobody acts from here).
    pub role: &'static str,
    /// The leading instance's id and admin address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_admin: Option<String>,
    /// The leader's term (grows with every new leader).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<i64>,
    /// Why, when paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A known event as the admin page and API show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventStatus {
    #[serde(flatten)]
    pub event: crate::allocator::schedule::Event,
    /// Running now.
    pub active: bool,
    /// Its end if it runs, else its next start (within a week); epoch seconds.
    pub next_change: Option<u64>,
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

impl Controller {
    /// Why the pool is degraded, if it is: the hypervisor failing, a host down, launches
    /// paused, or actions backing off.
    pub fn degraded(&self) -> Option<String> {
        let now_us = self.now_us();
        let mut why = Vec::new();
        if let Some(e) = &self.hv_error {
            why.push(e.clone());
        } else if let Some(h) = self.hosts.iter().find(|h| !h.up) {
            why.push(format!("host {} down: {}", h.uri, h.error.clone().unwrap_or_default()));
        }
        if self.launches_paused_until_us.is_some_and(|u| now_us < u) {
            why.push(format!("{} launches in a row never became healthy; launches paused", self.boot_failures));
        }
        why.extend(self.backoff.describe(now_us));
        (!why.is_empty()).then(|| why.join("; "))
    }

    pub fn status(&self) -> PoolStatus {
        let vms = self
            .last_vms
            .iter()
            .map(|v| {
                let t = self.tracks.get(&v.name);
                VmStatus {
                    info: v.clone(),
                    phase: t.map_or(Phase::Stopped, |t| t.phase),
                    in_pool: t.is_some_and(|t| matches!(t.phase, Phase::Serving | Phase::Draining)),
                    in_flight: t.and_then(|t| t.pending.map(|p| p.0)),
                    cap_vcpus: t.and_then(|t| t.cap),
                }
            })
            .collect();
        let inputs = self.last_plan.as_ref().map(|p| p.inputs.clone()).unwrap_or_default();
        let learned = self.learned_capacity();
        let source = |learned: bool| if learned { CostSource::Learned } else { CostSource::Prior };
        PoolStatus {
            pool: self.p.name.clone(),
            mode: self.p.settings.mode,
            network: self.p.settings.network.clone(),
            degraded: self.degraded(),
            hosts: self.hosts.clone(),
            vms,
            capacity_rps: inputs.capacity_rps,
            required_rps: inputs.required_rps,
            forecast_hi_rps: inputs.forecast_hi,
            measured_rps: self.state.measured_rps,
            cost: CostStatus {
                source: source(learned.is_some()),
                capacity_rps_per_vcpu: learned.unwrap_or(self.p.settings.policy.capacity_rps_per_vcpu),
                learned: self.cost.clone(),
                cores_used: self.last_cores,
                headroom: self.headroom,
                quantile: self.p.settings.policy.quantile,
                memory_source: source(self.memory.samples >= COST_MIN_SAMPLES),
                memory: self.memory.clone(),
            },
            usage: self.usage.clone(),
            accurate_since: self.accurate_since,
            caps_refused: self.caps_refused.clone(),
            events: {
                let now = self.clock.now_us() / 1_000_000;
                self.p
                    .settings
                    .policy
                    .schedule
                    .iter()
                    .map(|e| EventStatus {
                        event: e.clone(),
                        active: e.active_at(now),
                        next_change: e.next_change(now),
                    })
                    .collect()
            },
            lead: LeadStats {
                lead_time_s: self.lead_time(),
                auto: self.lead_auto(),
                launches: self.launches.len(),
                launch_p50_s: percentile(&self.launches, 0.5),
                launch_p90_s: percentile(&self.launches, 0.9),
                hotplug_p50_ms: percentile(&self.hotplugs, 0.5),
            },
            fleet: None,
        }
    }
}
